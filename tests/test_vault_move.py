"""export | import moves a store whole, SQLite into a real PostgreSQL: times, origins, supersession,
verifications, opt-outs, audit rows and watch state survive, and importing twice adds nothing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dasctl.store import EnrollmentRecord, VerificationRecord, WatchKey, open_store

Run = Callable[..., subprocess.CompletedProcess[Any]]
AUDIO = bytes(range(256)) * 64


def _laptop_store(path: str) -> None:
    store = open_store(path)
    try:
        store.record_enrollment(EnrollmentRecord("ALICE", True, credential="cred-alice-1", audio=AUDIO,
                                                 call_id="a1", model_hash="m1", origin="register"))
        store.record_enrollment(EnrollmentRecord("ALICE", True, credential="cred-alice-2", audio=AUDIO[:999],
                                                 call_id="a2", model_hash="m2", origin="reenroll"))
        store.record_enrollment(EnrollmentRecord("BOB", False, outcome="result-fail-spoof", error="spoof",
                                                 call_id="b1", origin="register"))
        store.record_enrollment(EnrollmentRecord("CAROL", True, credential="cred-carol", call_id="c1"))
        store.record_verification(VerificationRecord("ALICE", True, outcome="result-success", score=0.93,
                                                     call_id="v1", document={"schema": "dasctl.verify/1"}))
        report = {"schema": "dasctl.watch/1", "file": "DAVE.wav", "ok": True, "credential": "cred-dave",
                  "exit_code": 0}
        dave = EnrollmentRecord("DAVE", True, credential="cred-dave", call_id="d1", origin="watch")
        store.watch_update("/srv/calls", WatchKey("DAVE.wav", 960044, 17), "done", attempt=1, call_id="d1",
                           report=report, enrollment=dave)
        store.watch_reported("/srv/calls", WatchKey("DAVE.wav", 960044, 17))
        store.watch_update("/srv/calls", WatchKey("ERIN.wav", 12, 18), "retry", attempt=1, call_id="e1")
        store.opt_out("CAROL", "GDPR #7")
        store.audit("optout", ["CAROL"], 1, "GDPR #7")
    finally:
        store.close()


def _lines(text: str) -> list[dict[str, Any]]:
    """Export lines without what is each store's own numbering (row ids, and the ids they point to)."""
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        for key in ("id", "enrollment_id"):
            line.pop(key, None)
    return lines


def test_export_import_moves_a_store_whole_into_postgresql_and_twice_adds_nothing(
    dasctl: Run, tmp_path: Path, postgres_store_url: str
) -> None:
    laptop = str(tmp_path / "laptop.db")
    _laptop_store(laptop)
    moved = dasctl("credentials", "export", "--with-audio", "--store", laptop)
    assert moved.returncode == 0, moved.stderr
    schemas = [json.loads(line)["schema"] for line in moved.stdout.splitlines()]
    assert schemas[0] == "dasctl.opt-out/1"
    assert "dasctl.watch-file/1" in schemas and "dasctl.audit/1" in schemas
    first = dasctl("credentials", "import", "-", "--json", "--store", postgres_store_url, input=moved.stdout)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["already"], summary["refused"]) == (0, 0) and summary["new"] == len(schemas)
    again = dasctl("credentials", "import", "-", "--json", "--store", postgres_store_url, input=moved.stdout)
    assert (json.loads(again.stdout)["new"], json.loads(again.stdout)["already"]) == (0, len(schemas))

    # everything is the same line for line, secrets included; the audit log is the one that moved (the
    # laptop's has one row more since: the export that moved it, which was audited)
    def audit_apart(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lines = _lines(text)
        return ([line for line in lines if line["schema"] != "dasctl.audit/1"],
                [line for line in lines if line["schema"] == "dasctl.audit/1"])

    for flags in ([], ["--with-audio"]):
        source = audit_apart(dasctl("credentials", "export", *flags, "--store", laptop).stdout)
        target = audit_apart(dasctl("credentials", "export", *flags, "--store", postgres_store_url).stdout)
        assert source[0] == target[0] and len(source[0]) == len(schemas) - 1
        assert target[1][:1] == audit_apart(moved.stdout)[1] and source[1][0] == target[1][0]

    target_store = open_store(postgres_store_url)
    try:
        alice = target_store.history("ALICE", reveal=True)
        kinds = [(e.origin, e.credential, e.superseded_at is None)
                 for e in alice if isinstance(e, EnrollmentRecord)]
        assert kinds == [("register", "cred-alice-1", False), ("reenroll", "cred-alice-2", True)]
        assert target_store.current("ALICE", with_audio=True).audio == AUDIO[:999]  # type: ignore[union-attr]
        assert target_store.opt_out_of("CAROL") is not None and target_store.current("CAROL") is None
        states = {f.key.relpath: (f.state, f.reported) for f in target_store.watch_files("/srv/calls")}
        assert states == {"DAVE.wav": ("done", True), "ERIN.wav": ("retry", False)}
    finally:
        target_store.close()
