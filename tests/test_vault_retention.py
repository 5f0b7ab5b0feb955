"""Retention (purge, and watch applying a profile's policy), the audit log, and the CSV an auditor reads.
Real store files, the real CLI, the real emulator for watch."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Emulator

Run = Callable[..., subprocess.CompletedProcess[Any]]
AUDIO_B64 = "gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgA=="


def _line(speaker: str, made: str, *, ok: bool = True, audio: bool = False, call: str | None = None) -> str:
    line: dict[str, Any] = {"schema": "dasctl.credential/1", "speaker": speaker, "ok": ok, "current": ok,
                            "credential": f"cred-{speaker}" if ok else None, "created_at": made,
                            "superseded_at": None, "origin": "register",
                            "call_id": call or f"{speaker}-{made}",
                            "outcome": "result-success" if ok else "result-fail-spoof", "model_hash": "m1"}
    if audio:
        line["audio"] = AUDIO_B64
    return json.dumps(line)


def _seed(dasctl: Run, tmp_path: Path, store: str) -> None:
    lines = [
        _line("OLD", "2020-01-01T00:00:00.000Z", audio=True),
        _line("FAILS", "2020-01-02T00:00:00.000Z", ok=False),
        _line("FAILS", "2099-01-01T00:00:00.000Z", audio=True),  # recent (in the future, for a stable test)
        json.dumps({"schema": "dasctl.verification/1", "speaker": "FAILS", "ok": True, "score": 0.9,
                    "created_at": "2020-06-01T00:00:00.000Z"}),
    ]
    (tmp_path / "seed.ndjson").write_text("\n".join(lines) + "\n")
    done = dasctl("credentials", "import", str(tmp_path / "seed.ndjson"), "--store", store)
    assert done.returncode == 0, done.stderr


def test_purge_destroys_what_is_past_each_limit_says_so_and_audits_it(dasctl: Run, tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    _seed(dasctl, tmp_path, store)
    dry = dasctl("credentials", "purge", "--audio-older-than", "90d", "--failed-older-than", "30d",
                 "--dry-run", "--json", "--store", store)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["dry_run"], report["audio"], report["failed"]) == (True, 1, 1)
    assert json.loads(dasctl("credentials", "show", "OLD", "--json", "--store", store).stdout)["has_audio"]

    done = dasctl("credentials", "purge", "--audio-older-than", "90d", "--failed-older-than", "30d",
                  "--store", store)
    assert done.returncode == 0
    assert "destroyed the audio of 1 record(s), 1 failed attempt(s)" in done.stderr
    shown = dasctl("credentials", "show", "OLD", "--json", "--store", store)
    assert not json.loads(shown.stdout)["has_audio"]
    gone = dasctl("credentials", "audio", "OLD", str(tmp_path / "old.wav"), "--store", store)
    assert gone.returncode == 2 and "no enrollment audio" in gone.stderr
    history = dasctl("credentials", "history", "FAILS", "--json", "--store", store).stdout.splitlines()
    assert [json.loads(line)["ok"] for line in history] == [True, True]  # the verification, the success

    inactive = dasctl("credentials", "purge", "--inactive-for", "3y", "--json", "--store", store)
    assert json.loads(inactive.stdout)["inactive_speakers"] == ["OLD"]
    assert dasctl("credentials", "history", "OLD", "--store", store).returncode == 2
    audited = dasctl("credentials", "audit", "--json", "--store", store).stdout
    audit = [json.loads(line) for line in audited.splitlines()]
    assert [row["command"] for row in audit] == ["purge", "purge"] and audit[1]["speakers"] == ["OLD"]


def test_a_duration_in_words_says_what_forms_are_accepted(dasctl: Run, tmp_path: Path) -> None:
    done = dasctl("credentials", "purge", "--older-than", "3 years", "--store", str(tmp_path / "s.db"))
    assert done.returncode == 2 and "'3 years' is not a duration" in done.stderr
    assert "3y (years)" in done.stderr and not (tmp_path / "s.db").exists()
    nothing = dasctl("credentials", "purge", "--store", str(tmp_path / "s.db"))
    assert nothing.returncode == 2 and "say what to purge" in nothing.stderr


def test_watch_applies_the_profiles_retention_at_start(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    _seed(dasctl, tmp_path, str(Path(__import__("os").environ["DASCTL_CONFIG_DIR"]) / "store.db"))
    inbox = tmp_path / "calls"
    inbox.mkdir()
    env = {**emulator.client_env(), "DASCTL_RETENTION": "audio-older-than=90d"}
    done = dasctl("watch", str(inbox), "--once", "--settle", "0", env=env)
    assert done.returncode == 0, done.stderr
    assert "retention: destroyed audio of 1" in done.stderr
    assert not json.loads(dasctl("credentials", "show", "OLD", "--json").stdout)["has_audio"]
    bad = dasctl("watch", str(inbox), "--once", "--settle", "0",
                 env={**emulator.client_env(), "DASCTL_RETENTION": "audio=90 days"})
    assert bad.returncode == 2 and "is not a retention rule" in bad.stderr


def test_the_csv_for_auditors_chooses_columns_kinds_and_times(dasctl: Run, tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    _seed(dasctl, tmp_path, store)
    done = dasctl("credentials", "export", "--format", "csv", "--kind", "all", "--columns",
                  "schema,speaker,ok,created_at,score", "--since", "2020-01-02", "--until", "2021-01-01",
                  "--store", store)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["schema"], r["speaker"], r["ok"], r["score"]) for r in rows] == [
        ("dasctl.credential/1", "FAILS", "false", ""), ("dasctl.verification/1", "FAILS", "true", "0.9")]
    assert "cred-" not in done.stdout  # no templates unless asked for
    refused = dasctl("credentials", "export", "--format", "csv", "--columns", "speaker,credential",
                     "--store", store)
    assert refused.returncode == 2 and "--with-credential" in refused.stderr
    listing = tmp_path / "audit.csv"
    listing.write_text(done.stdout)
    imported = dasctl("credentials", "import", str(listing), "--store", store)
    assert imported.returncode == 7 and imported.stderr.count("import reads NDJSON") == 1
