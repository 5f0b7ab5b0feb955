"""`dasctl watch` and the credential store: records per file, speaker ids, --no-store, a store that refuses
writes, and watch sharing one SQLite store with eight `register` processes. Real emulator, store, files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dasctl.store import Store, open_store
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
FAST = ["--once", "--speed", "0", "--settle", "0", "--backoff", "0.05"]
Run = Callable[..., subprocess.CompletedProcess[Any]]


@pytest.fixture
def store() -> Iterator[Store]:
    """The default store (DASCTL_CONFIG_DIR's), as the watch subprocesses use it."""
    opened = open_store()
    yield opened
    opened.close()


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def inbox_with(tmp_path: Path, *names: str, source: Path = SPEECH) -> Path:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for name in names:
        shutil.copy(source, inbox / name)
    return inbox


def test_every_outcome_is_an_enrollment_record_named_by_speaker_from(
    dasctl: Run, emulator: Emulator, tmp_path: Path, store: Store
) -> None:
    inbox = inbox_with(tmp_path, "0412-CUST12345.wav", "0413-CUST777.wav", "agent-notes.wav")
    (inbox / "0414-CUST9.wav").write_text("not audio at all\n" * 10)
    done = dasctl("watch", str(inbox), *FAST, "--speaker-from", r"-(?P<speaker>CUST\d+)",
                  env=emulator.client_env())
    assert done.returncode == 7, done.stderr
    lines = {line["file"]: line for line in lines_of(done.stdout)}
    assert sorted(lines) == ["0412-CUST12345.wav", "0413-CUST777.wav", "0414-CUST9.wav", "agent-notes.wav"]
    # a name the pattern does not match fails at once, with a reason, and is not retried
    unnamed = lines["agent-notes.wav"]
    assert not unnamed["ok"] and unnamed["attempts"] == 1 and unnamed["exit_code"] == 2
    assert "--speaker-from" in unnamed["error"]["message"] and unnamed["error"]["kind"] == "speaker"
    for name, speaker in (("0412-CUST12345.wav", "CUST12345"), ("0413-CUST777.wav", "CUST777")):
        kept = store.current(speaker, with_audio=True)
        assert kept is not None and kept.origin == "watch", speaker
        assert kept.credential == lines[name]["credential"] and kept.call_id == lines[name]["call_id"]
        assert kept.source_path == str(inbox / name) and kept.source_size == SPEECH.stat().st_size
        assert kept.source_sha256 == hashlib.sha256(SPEECH.read_bytes()).hexdigest()
        assert kept.audio and len(kept.audio) >= 8000 * 3  # enrollment audio, 8 kHz mu-law
        assert (kept.profile, kept.service_url, kept.protocol) == ("local", emulator.url, "twilio")
    # failures are part of a speaker's history too
    [failed] = store.history("CUST9")
    assert not failed.ok and failed.outcome == "audio" and "not a recording" in (failed.error or "")
    assert sorted(p.name for p in inbox.iterdir()) == sorted(lines)  # nothing of dasctl's in the inbox


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(?P<speaker>CUST", "not a valid regular expression"), ("CUST[0-9]+", "has no group")],
)
def test_a_bad_speaker_pattern_is_a_usage_error_before_anything_starts(
    dasctl: Run, tmp_path: Path, pattern: str, message: str
) -> None:
    inbox = inbox_with(tmp_path, "0412-CUST1.wav")
    # nobody listens on port 9: the refusal must come before any connection
    done = dasctl("watch", str(inbox), *FAST, "--speaker-from", pattern, env={"DASCTL_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2 and done.stdout == ""
    [error, hint] = done.stderr.splitlines()
    assert error.startswith("dasctl: error: --speaker-from") and message in error and "(?P<speaker>" in hint


def test_no_store_keeps_no_records_but_watch_still_remembers_its_files(
    dasctl: Run, emulator: Emulator, tmp_path: Path, store: Store
) -> None:
    inbox = inbox_with(tmp_path, "CUST1.wav")
    done = dasctl("watch", str(inbox), *FAST, "--no-store", env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert [line["ok"] for line in lines_of(done.stdout)] == [True]
    assert store.history("CUST1") == []
    assert [known.state for known in store.watch_files(str(inbox))] == ["done"]
    again = dasctl("watch", str(inbox), *FAST, "--no-store", env=emulator.client_env())
    assert again.returncode == 0 and again.stdout == "" and "1 already reported" in again.stderr
    assert os.listdir(inbox) == ["CUST1.wav"]


def test_a_store_that_refuses_the_write_is_retried_within_the_budget_then_exits_6_reporting_nothing(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "refusing.db"
    open_store(str(path)).close()
    # a real store that fails every insert, as a full disk would
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON enrollments "
                   "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
    inbox = inbox_with(tmp_path, "CUST1.wav", "CUST2.wav")
    done = dasctl("watch", str(inbox), *FAST, "-j", "1", "--unreachable-budget", "1", "--store", str(path),
                  env=emulator.client_env())
    assert done.returncode == 6, done.stderr
    assert lines_of(done.stdout) == []  # never reported unless recorded: the next run does it again
    assert "CUST1.wav: not kept yet" in done.stderr and "trying again" in done.stderr
    errors = [text for text in done.stderr.splitlines() if text.startswith("dasctl: error:")]
    assert len(errors) == 1 and str(path) in errors[0] and "disk quota exceeded" in errors[0]
    assert "Traceback" not in done.stderr
    # with --no-store nothing is inserted there, and watch goes on where it stopped
    rest = dasctl("watch", str(inbox), *FAST, "--no-store", "--store", str(path), env=emulator.client_env())
    assert rest.returncode == 0, rest.stderr
    assert sorted(other["file"] for other in lines_of(rest.stdout)) == ["CUST1.wav", "CUST2.wav"]


def test_watch_and_eight_register_processes_share_one_store(emulator: Emulator, tmp_path: Path) -> None:
    shared = tmp_path / "shared.db"
    env = {**os.environ, **emulator.client_env(), "DASCTL_STORE": str(shared)}
    inbox = inbox_with(tmp_path, *(f"W{n:02}.wav" for n in range(16)))
    command = [sys.executable, "-m", "dasctl"]
    runs = [["watch", str(inbox), *FAST, "-j", "8"]]
    runs += [["register", "--json", "--speed", "0", "-q", "--speaker", f"R{n}", str(SPEECH)]
             for n in range(8)]
    procs = [subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True) for args in runs]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 9, [err for _, err in outputs]
    assert not any("locked" in err or "Traceback" in err for _, err in outputs)
    watched = lines_of(outputs[0][0])
    assert sorted(line["file"] for line in watched) == [f"W{n:02}.wav" for n in range(16)]
    with closing(open_store(str(shared))) as opened:
        current = {record.speaker: record for record in opened.list_current(reveal=True)}
        assert sorted(current) == sorted([f"R{n}" for n in range(8)] + [f"W{n:02}" for n in range(16)])
        for line in watched:
            assert current[Path(line["file"]).stem].credential == line["credential"]
        assert all(known.reported for known in opened.watch_files(str(inbox)))
