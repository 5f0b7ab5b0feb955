"""`dasctl register` keeps every attempt in the credential store: real emulator, real store, real files."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dasctl.store import EnrollmentRecord, open_store
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
SILENCE = DATA / "silence-8k-mono.wav"
Run = Callable[..., subprocess.CompletedProcess[Any]]


def _current(speaker: str, store: str | None = None) -> EnrollmentRecord | None:
    opened = open_store(store)
    try:
        return opened.current(speaker, with_audio=True)
    finally:
        opened.close()


def test_register_keeps_the_credential_under_the_files_stem(dasctl: Run, emulator: Emulator) -> None:
    done = dasctl("register", "--json", "--speed", "0", "-q", str(SPEECH), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["stored"]["speaker"] == "speech-a-8k-mono" and document["stored"]["id"] >= 1
    kept = _current("speech-a-8k-mono")
    assert kept is not None and kept.id == document["stored"]["id"]
    assert document["stored"]["store"] == open_store().location
    assert (kept.credential, kept.call_id, kept.model_hash) == (
        document["credential"], document["call_id"], document["model_hash"])
    assert (kept.protocol, kept.profile, kept.service_url) == ("twilio", "local", emulator.url)
    assert kept.authenticity == document["authenticity"] and kept.voice_seconds == document["voice_seconds"]
    assert kept.source_path == str(SPEECH.resolve()) and kept.source_size == SPEECH.stat().st_size
    assert kept.source_sha256 == hashlib.sha256(SPEECH.read_bytes()).hexdigest()
    assert kept.audio and len(kept.audio) >= 8000 * 3  # the enrollment audio, 8 kHz mu-law
    assert kept.origin == "register"
    assert kept.document is not None and kept.document["call_id"] == kept.call_id


def test_the_human_summary_says_where_the_record_went(dasctl: Run, emulator: Emulator) -> None:
    done = dasctl("register", "--speed", "0", "-q", "--speaker", "CUST7", str(SPEECH),
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert "stored" in done.stdout and "as CUST7 (record 1) in " in done.stdout


def test_stdin_needs_a_speaker_and_is_hashed_whole(dasctl: Run, emulator: Emulator) -> None:
    audio = SPEECH.read_bytes()
    refused = dasctl("register", "--speed", "0", "-", input=audio, text=False, env=emulator.client_env())
    assert refused.returncode == 2
    assert "needs --speaker" in refused.stderr.decode() and refused.stdout == b""
    done = dasctl("register", "--json", "--speed", "0", "-q", "--speaker", "PIPED", "-", input=audio,
                  text=False, env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    kept = _current("PIPED")
    assert kept is not None and kept.source_path is None
    # the session stops reading once the service has its voice; the rest of the pipe is still hashed
    assert (kept.source_size, kept.source_sha256) == (len(audio), hashlib.sha256(audio).hexdigest())


def test_speaker_takes_a_single_file(dasctl: Run, emulator: Emulator) -> None:
    done = dasctl("register", "--speaker", "X", str(SPEECH), str(SPEECH), env=emulator.client_env())
    assert done.returncode == 2 and "single file" in done.stderr


def test_a_failed_attempt_is_kept_with_its_outcome(dasctl: Run, emulator: Emulator) -> None:
    done = dasctl("register", "--json", "--speed", "0", "-q", "--speaker", "QUIET", str(SILENCE),
                  env=emulator.client_env())
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout)["stored"]["id"] is not None
    store = open_store()
    try:
        (attempt,) = store.history("QUIET")
        assert store.current("QUIET") is None
    finally:
        store.close()
    assert isinstance(attempt, EnrollmentRecord) and attempt.ok is False
    assert attempt.outcome == "error-audio" and attempt.error and attempt.credential is None


def test_no_store_keeps_nothing(dasctl: Run, emulator: Emulator, isolated_config: Path) -> None:
    done = dasctl("register", "--json", "--speed", "0", "-q", "--no-store", str(SPEECH),
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert "stored" not in json.loads(done.stdout)
    assert not (isolated_config / "store.db").exists()


def test_a_store_that_refuses_the_write_still_shows_the_outcome_then_exits_6(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "refusing.db"
    open_store(str(path)).close()
    with sqlite3.connect(path) as db:  # a real store that fails every insert, as a full disk would
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON enrollments "
                   "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
    done = dasctl("register", "--speed", "0", "-q", "--store", str(path), str(SPEECH),
                  env=emulator.client_env())
    assert done.returncode == 6
    assert "registered" in done.stdout and "credential" in done.stdout  # the outcome is not lost
    assert f"NOT kept in {path}" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("dasctl: error:")]
    assert len(errors) == 1 and str(path) in errors[0] and "disk quota exceeded" in errors[0]
    assert "Traceback" not in done.stderr


def test_a_foreign_store_file_is_refused_before_connecting(dasctl: Run, tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    path.write_text("my own notes\n" * 100)
    before = path.read_bytes()
    # no emulator at all: the refusal must come first
    done = dasctl("register", "--speed", "0", "--store", str(path), str(SPEECH),
                  env={"DASCTL_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2
    assert str(path) in done.stderr and "not a dasctl credential store" in done.stderr
    assert path.read_bytes() == before


def test_dasctl_store_variable_and_profile_key_choose_the_store(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    by_env = tmp_path / "env.db"
    done = dasctl("register", "--speed", "0", "-q", "--speaker", "E1", str(SPEECH),
                  env={**emulator.client_env(), "DASCTL_STORE": str(by_env)})
    assert done.returncode == 0, done.stderr
    assert _current("E1", str(by_env)) is not None and _current("E1") is None
    by_profile = tmp_path / "profile.db"
    assert dasctl("config", "set", "--profile", "local", "store", str(by_profile)).returncode == 0
    done = dasctl("register", "--speed", "0", "-q", "--speaker", "P1", str(SPEECH), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert _current("P1", str(by_profile)) is not None


def test_output_refuses_to_overwrite_an_existing_file_unless_forced(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    target = tmp_path / "cred.json"
    target.write_text("precious\n")
    # refused before any connection: no emulator needed
    done = dasctl("register", "--speed", "0", "-o", str(target), str(SPEECH), env={"DASCTL_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2 and "already exists" in done.stderr and "--force" in done.stderr
    assert target.read_text() == "precious\n"
    done = dasctl("register", "--speed", "0", "-q", "--force", "-o", str(target), str(SPEECH),
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["credential"]


def test_eight_register_processes_at_once_lose_nothing(emulator: Emulator, tmp_path: Path) -> None:
    store = tmp_path / "shared.db"
    env = {**os.environ, **emulator.client_env(), "DASCTL_STORE": str(store)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dasctl", "register", "--json", "--speed", "0", "-q", "--speaker", f"C{n}",
             str(SPEECH)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        for n in range(8)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, [err for _, err in outputs]
    assert not any("locked" in err for _, err in outputs)
    ids = {json.loads(out)["stored"]["id"] for out, _ in outputs}
    opened = open_store(str(store))
    try:
        assert len(ids) == 8
        assert sorted(r.speaker for r in opened.list_current()) == [f"C{n}" for n in range(8)]
    finally:
        opened.close()


def test_register_keeps_its_record_in_a_postgres_store_with_the_password_masked(
    dasctl: Run, emulator: Emulator, postgres_store_url: str
) -> None:
    done = dasctl("-vv", "register", "--json", "--speed", "0", "--speaker", "PG1",
                  "--store", postgres_store_url, str(SPEECH), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert "pg-test-password" not in done.stdout + done.stderr
    assert document["stored"]["store"].startswith("postgresql://dasctl:****@127.0.0.1:")
    kept = _current("PG1", postgres_store_url)
    assert kept is not None and kept.credential == document["credential"] and kept.audio
