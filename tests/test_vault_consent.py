"""Opt-out: secrets destroyed and metadata kept, nothing sent for an opted-out customer by register, verify,
import or watch; optin lifts it; the audit log says who did what. Real emulator, real store, real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dasctl.store import EnrollmentRecord, VerificationRecord, open_store
from tests.conftest import DATA, Emulator

Run = Callable[..., subprocess.CompletedProcess[Any]]
SPEECH = DATA / "speech-a-8k-mono.wav"
AUDIO = bytes(range(256)) * 40


def _seed(path: str) -> None:
    store = open_store(path)
    try:
        for speaker in ("CUST1", "CUST2", "CUST3"):
            store.record_enrollment(EnrollmentRecord(speaker, True, credential=f"cred-{speaker}", audio=AUDIO,
                                                     call_id=f"c-{speaker}", model_hash="m1"))
        store.record_verification(VerificationRecord("CUST1", True, score=0.9, document={"x": 1}))
    finally:
        store.close()


def test_optout_destroys_secrets_keeps_the_history_and_is_audited(dasctl: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    _seed(path)
    crm = tmp_path / "optouts.txt"
    crm.write_text("CUST2\n\n  \nCUST3\nCUST2\n")  # blank lines and a duplicate, as CRM exports have
    done = dasctl("credentials", "optout", "CUST1", "--from", str(crm), "--reason", "GDPR #44", "--json",
                  "--store", path)
    assert done.returncode == 0, done.stderr
    assert [(line["speaker"], line["destroyed"]) for line in map(json.loads, done.stdout.splitlines())] == [
        ("CUST1", 1), ("CUST2", 1), ("CUST3", 1)]
    store = open_store(path)
    try:
        assert store.current("CUST1") is None
        (enrollment, verification) = store.history("CUST1", reveal=True)
        assert isinstance(enrollment, EnrollmentRecord) and enrollment.credential is None
        assert enrollment.model_hash == "m1" and not enrollment.has_audio and enrollment.superseded_at
        assert isinstance(verification, VerificationRecord) and verification.score == 0.9
        opted = store.opt_out_of("CUST2")
        assert opted is not None and opted.reason == "GDPR #44"
    finally:
        store.close()
    listed = dasctl("credentials", "list", "--json", "--store", path)
    assert listed.returncode == 0 and listed.stdout == ""
    audited = dasctl("credentials", "audit", "--json", "--store", path).stdout
    audit = [json.loads(line) for line in audited.splitlines()]
    (row,) = [row for row in audit if row["command"] == "optout"]
    assert row["speakers"] == ["CUST1", "CUST2", "CUST3"] and row["count"] == 3 and "@" in row["actor"]
    nobody = dasctl("credentials", "optout", "--from", str(tmp_path / "empty.txt"), "--store", path)
    assert nobody.returncode == 2 and "cannot read" in nobody.stderr
    # a day's export with nobody in it (blank lines only): nothing to do, and a cron job does not fail
    (tmp_path / "empty.txt").write_text("\n  \n")
    nobody = dasctl("credentials", "optout", "--from", str(tmp_path / "empty.txt"), "--store", path)
    assert (nobody.returncode, nobody.stdout) == (0, "")
    assert nobody.stderr == f"optout: {tmp_path / 'empty.txt'} names no speaker; nothing to do\n"
    audited_again = dasctl("credentials", "audit", "--json", "--store", path).stdout
    assert [json.loads(line)["command"] for line in audited_again.splitlines()].count("optout") == 1
    no_one = dasctl("credentials", "optout", "--store", path)
    assert no_one.returncode == 2 and "name at least one speaker" in no_one.stderr


def test_register_verify_and_import_refuse_an_opted_out_customer_before_any_audio_is_sent(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    path = str(tmp_path / "s.db")
    env = emulator.client_env()
    assert dasctl("credentials", "optout", "CUST9", "--store", path).returncode == 0
    recording = tmp_path / "CUST9.wav"
    shutil.copy(SPEECH, recording)
    register = dasctl("register", "--speed", "0", "--json", "--store", path, str(recording), env=env)
    assert register.returncode == 5, register.stderr
    assert "the customer CUST9 opted out on 20" in register.stderr and register.stdout == ""
    verify = dasctl("verify", "--speaker", "CUST9", "--speed", "0", "--store", path, str(recording), env=env)
    assert verify.returncode == 5 and "opted out" in verify.stderr
    store = open_store(path)
    try:
        assert store.history("CUST9") == []  # nothing was attempted, so nothing recorded
    finally:
        store.close()
    line = {"schema": "dasctl.credential/1", "speaker": "CUST9", "ok": True, "credential": "c",
            "call_id": "x"}
    listing = tmp_path / "in.ndjson"
    listing.write_text(json.dumps(line) + "\n")
    imported = dasctl("credentials", "import", str(listing), "--store", path)
    assert imported.returncode == 7
    assert "in.ndjson:1: not imported: the customer CUST9 opted out" in imported.stderr
    # optin lifts it: the same recording enrolls
    assert dasctl("credentials", "optin", "CUST9", "--store", path).returncode == 0
    again = dasctl("register", "--speed", "0", "--json", "--store", path, str(recording), env=env)
    assert again.returncode == 0, again.stderr
    assert dasctl("credentials", "optin", "CUST9", "--store", path).returncode == 2  # not opted out now


def test_watch_skips_an_opted_out_customer_and_never_sends_it(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for name in ("CUST1.wav", "CUST2.wav"):
        shutil.copy(SPEECH, inbox / name)
    assert dasctl("credentials", "optout", "CUST2").returncode == 0
    done = dasctl("watch", str(inbox), "--once", "--speed", "0", "--settle", "0", "--json",
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    lines = {line["file"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert lines["CUST1.wav"]["ok"] is True
    assert lines["CUST2.wav"]["outcome"] == "opted-out" and lines["CUST2.wav"]["skipped"] is True
    assert "credential" not in lines["CUST2.wav"]
    assert "1 done, 0 failed" in done.stderr and "1 skipped (opted out)" in done.stderr
    store = open_store()
    try:
        assert store.history("CUST2") == [] and store.current("CUST1") is not None
    finally:
        store.close()
