"""Encryption at rest: no credential or audio byte in the clear in the SQLite file or a pg_dump, keys by
precedence, an implicit local key, no key or the wrong key, key new/status, rekey. Real files, a real
PostgreSQL server, the real CLI."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dasctl.store import EnrollmentRecord, open_store
from dasctl.store.migrations import MIGRATIONS, statements
from dasctl.store.sqlite import SQLITE_TYPES
from tests.conftest import TEST_STORE_KEY, _postgres_bindir

Run = Callable[..., subprocess.CompletedProcess[Any]]
CREDENTIAL = "eyJ2IjoxLCJtb2RlbCI6InZhdWx0LXRlc3QiLCJ2b2ljZXByaW50IjpbMS41LDIuNV19-KNOWN-CREDENTIAL"
# a run of "enrollment audio" no ciphertext will contain by chance
AUDIO = bytes((i * 7 + 3) % 256 for i in range(8000)) * 4
AUDIO_RUN = AUDIO[1000:1064]


def _no_secret_in(data: bytes) -> None:
    assert CREDENTIAL.encode() not in data and CREDENTIAL[:40].encode() not in data
    assert AUDIO_RUN not in data


def _files_of(path: Path) -> bytes:
    """The SQLite file, its WAL and its shared memory, as a thief would copy them."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _plaintext_store(path: Path) -> None:
    """A store as a dasctl before encryption left it: the first three migrations, secrets in the clear."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE _dasctl_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for name, function in MIGRATIONS[:3]:
            for statement in statements(name, function, SQLITE_TYPES):
                db.execute(statement)
            db.execute("INSERT INTO _dasctl_migrations VALUES (?, '2026-01-01T00:00:00.000Z')", (name,))
        document = json.dumps({"credential": CREDENTIAL, "file": "c.wav"})
        db.execute("INSERT INTO enrollments (speaker, ok, origin, credential, document, created_at, "
                   "audio_size, listing) "
                   "VALUES ('CUST1', 1, 'register', ?, ?, '2026-01-01T00:00:00.000Z', ?, ?)",
                   (CREDENTIAL, document, len(AUDIO), json.dumps({"credential": CREDENTIAL})))
        db.execute("INSERT INTO enrollment_audio (enrollment_id, audio) VALUES (1, ?)", (AUDIO,))
        db.execute("INSERT INTO verifications (speaker, ok, document, created_at) VALUES "
                   "('CUST1', 1, ?, '2026-01-02T00:00:00.000Z')", (document,))
        db.execute("INSERT INTO watch_files (inbox, relpath, size, mtime_ns, state, report, updated_at) "
                   "VALUES ('/in', 'c.wav', 1, 1, 'done', ?, '2026-01-01T00:00:00.000Z')", (document,))


def test_a_plaintext_store_is_sealed_on_its_first_open_and_nothing_is_left_in_the_clear(
    dasctl: Run, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    _plaintext_store(path)
    with pytest.raises(AssertionError):  # the test can fail: the secrets are there before
        _no_secret_in(_files_of(path))
    listed = dasctl("credentials", "list", "--store", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["credential"] is None
    _no_secret_in(_files_of(path))
    # and everything is still there, behind the key
    shown = dasctl("credentials", "show", "CUST1", "--show-credential", "--json", "--store", str(path))
    assert json.loads(shown.stdout)["credential"] == CREDENTIAL
    out = tmp_path / "c.wav"
    assert dasctl("credentials", "audio", "CUST1", str(out), "--store", str(path)).returncode == 0
    assert AUDIO_RUN in out.read_bytes()
    status = json.loads(dasctl("credentials", "key", "status", "--json", "--store", str(path)).stdout)
    assert status["plaintext"] == {} and status["data_keys"][0]["records"] == {
        "enrollments": 1, "audio": 1, "verifications": 1}


def test_after_register_and_rm_no_secret_is_in_the_file(dasctl: Run, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=CREDENTIAL, audio=AUDIO,
                                                 document={"credential": CREDENTIAL}, call_id="c1"))
        store.record_enrollment(EnrollmentRecord("CUST2", True, credential=CREDENTIAL + "2", audio=AUDIO,
                                                 call_id="c2"))
        assert store.current("CUST1", with_audio=True).audio == AUDIO  # type: ignore[union-attr]
    finally:
        store.close()
    _no_secret_in(_files_of(path))
    removed = dasctl("credentials", "rm", "CUST1", "--yes", "--store", str(path))
    assert removed.returncode == 0, removed.stderr
    _no_secret_in(_files_of(path))


def test_a_pg_dump_holds_no_secret_even_of_a_store_sealed_after_the_fact(
    postgres_store_url: str, tmp_path: Path
) -> None:
    import psycopg

    store = open_store(postgres_store_url)
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=CREDENTIAL, audio=AUDIO,
                                                 document={"credential": CREDENTIAL}, call_id="c1"))
    finally:
        store.close()
    # rows an older dasctl wrote in the clear, and the store not yet marked sealed: the next open seals them
    with psycopg.connect(postgres_store_url, autocommit=True) as db:
        db.execute("INSERT INTO enrollments (speaker, ok, origin, credential, created_at, audio_size) "
                   "VALUES ('OLD', 1, 'register', %s, '2026-01-01T00:00:00.000Z', %s)",
                   (CREDENTIAL, len(AUDIO)))
        db.execute("INSERT INTO enrollment_audio (enrollment_id, audio) SELECT id, %s FROM enrollments "
                   "WHERE speaker = 'OLD'", (AUDIO,))
        db.execute("DELETE FROM store_meta")
    bindir = _postgres_bindir()
    assert bindir is not None

    def dump() -> bytes:
        url = postgres_server_url(postgres_store_url)
        done = subprocess.run([str(bindir / "pg_dump"), "--data-only", url],
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = dump()
    assert CREDENTIAL.encode() in before  # the test can fail
    reopened = open_store(postgres_store_url)
    try:
        old = reopened.current("OLD", with_audio=True)
        assert old is not None and old.credential == CREDENTIAL and old.audio == AUDIO
    finally:
        reopened.close()
    after = dump()
    _no_secret_in(after)
    assert AUDIO_RUN.hex().encode() not in after  # pg_dump writes bytea as hex


def postgres_server_url(url: str) -> str:
    return url.replace(":pg-test-password@", "@")


def test_without_the_key_metadata_works_and_secrets_fail_with_exit_4_naming_where_dasctl_looked(
    dasctl: Run, tmp_path: Path, isolated_config: Path
) -> None:
    path = str(tmp_path / "s.db")
    store = open_store(path)
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=CREDENTIAL, audio=AUDIO,
                                                 call_id="c1"))
    finally:
        store.close()
    no_key = {"DASCTL_STORE_KEY": ""}
    (isolated_config / "store.key").unlink()  # the local key file the tests' fixture writes
    assert dasctl("credentials", "list", "--store", path, env=no_key).returncode == 0
    assert dasctl("credentials", "history", "CUST1", "--store", path, env=no_key).returncode == 0
    for command in (["show", "CUST1", "--show-credential"], ["export", "--with-credential"],
                    ["audio", "CUST1", str(tmp_path / "x.wav")], ["list", "--show-credential"]):
        done = dasctl("credentials", *command, "--store", path, env=no_key)
        assert done.returncode == 4, (command, done.stderr)
        assert "no key for the encrypted credential store" in done.stderr
        assert "DASCTL_STORE_KEY" in done.stderr
        assert CREDENTIAL not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.wav").exists()
    # the wrong key: the same, saying it does not open this store
    wrong = {"DASCTL_STORE_KEY": base64.b64encode(b"w" * 32).decode()}
    wrong_key = dasctl("credentials", "show", "CUST1", "--show-credential", "--store", path, env=wrong)
    assert wrong_key.returncode in (4,) and "does not open" in wrong_key.stderr, wrong_key.stderr
    assert dasctl("credentials", "list", "--store", path, env=wrong).returncode == 0


def test_no_key_stops_register_before_any_session(
    dasctl: Run, emulator: Any, tmp_path: Path, isolated_config: Path
) -> None:
    from tests.conftest import DATA

    path = str(tmp_path / "s.db")
    open_store(path).close()  # made with the test key
    (isolated_config / "store.key").unlink()
    env = {**emulator.client_env(), "DASCTL_STORE_KEY": ""}
    done = dasctl("register", "--speed", "0", "--store", path, str(DATA / "speech-a-8k-mono.wav"), env=env)
    assert done.returncode == 4, done.stderr
    assert "no key for the encrypted credential store" in done.stderr and "registered" not in done.stdout
    verify = dasctl("verify", "--speaker", "x", "--store", path, str(DATA / "speech-a-8k-mono.wav"), env=env)
    assert verify.returncode == 4 and "no key" in verify.stderr


def test_a_local_store_gets_an_implicit_key_in_a_0600_file_with_one_warning(
    dasctl: Run, tmp_path: Path, isolated_config: Path
) -> None:
    env = {"DASCTL_STORE_KEY": ""}
    (isolated_config / "store.key").unlink()  # the fixture's; this test is about the one dasctl makes
    line = json.dumps({"schema": "dasctl.credential/1", "speaker": "CUST1", "ok": True, "current": True,
                       "credential": CREDENTIAL, "created_at": "2026-01-01T00:00:00.000Z", "call_id": "c1"})
    listing = tmp_path / "one.ndjson"
    listing.write_text(line + "\n")
    first = dasctl("credentials", "import", str(listing), "--store", str(tmp_path / "s.db"), env=env)
    assert first.returncode == 0, first.stderr
    key_file = isolated_config / "store.key"
    assert first.stderr.count("warning") == 1 and str(key_file) in first.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = dasctl("credentials", "show", "CUST1", "--show-credential", "--json", "--store",
                   str(tmp_path / "s.db"), env=env)
    assert again.returncode == 0 and "warning" not in again.stderr
    assert json.loads(again.stdout)["credential"] == CREDENTIAL
    _no_secret_in(_files_of(tmp_path / "s.db"))


def test_a_team_store_never_gets_an_implicit_key(
    dasctl: Run, postgres_store_url: str, tmp_path: Path
) -> None:
    listing = tmp_path / "one.ndjson"
    listing.write_text(json.dumps({"schema": "dasctl.credential/1", "speaker": "A", "ok": False}) + "\n")
    done = dasctl("credentials", "import", str(listing), "--store", postgres_store_url,
                  env={"DASCTL_STORE_KEY": ""})
    assert done.returncode == 4
    assert "dasctl makes one implicitly only for a local SQLite store" in done.stderr
    assert "dasctl credentials key new" in done.stderr and "pg-test-password" not in done.stderr


def test_key_new_status_and_a_rekey_that_can_be_run_again(dasctl: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = open_store(path)
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=CREDENTIAL, audio=AUDIO,
                                                 call_id="c1"))
    finally:
        store.close()
    new_key = tmp_path / "new.key"
    made = dasctl("credentials", "key", "new", str(new_key))
    assert made.returncode == 0 and stat.S_IMODE(new_key.stat().st_mode) == 0o600
    again = dasctl("credentials", "key", "new", str(new_key))
    assert again.returncode == 2 and "already exists" in again.stderr
    with (tmp_path / "piped.key").open("w") as out:
        os.chmod(tmp_path / "piped.key", 0o644)
        piped = subprocess.run([sys.executable, "-m", "dasctl", "credentials", "key", "new"], stdout=out,
                               stderr=subprocess.PIPE, text=True, timeout=60)
    assert piped.returncode == 0 and stat.S_IMODE((tmp_path / "piped.key").stat().st_mode) == 0o600
    assert len((tmp_path / "piped.key").read_text().strip()) == 44

    status = json.loads(dasctl("credentials", "key", "status", "--json", "--store", path).stdout)
    assert status["key"]["source"] == "DASCTL_STORE_KEY" and status["key"]["opens"]
    assert status["data_keys"][0]["records"] == {"enrollments": 1, "audio": 1}
    rekeyed = dasctl("credentials", "rekey", "--new-key-file", str(new_key), "--json", "--store", path)
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert (json.loads(rekeyed.stdout)["rewrapped"], json.loads(rekeyed.stdout)["already"]) == (1, 0)
    old = dasctl("credentials", "show", "CUST1", "--show-credential", "--store", path)
    assert old.returncode == 4 and "does not open" in old.stderr
    new = dasctl("credentials", "show", "CUST1", "--show-credential", "--json", "--store", path,
                 "--store-key-file", str(new_key))
    assert new.returncode == 0 and json.loads(new.stdout)["credential"] == CREDENTIAL
    # run again (as after an interruption): nothing left to do, nothing lost
    rerun = dasctl("credentials", "rekey", "--new-key-file", str(new_key), "--json", "--store", path,
                   env={"DASCTL_STORE_KEY_FILE": str(new_key)})
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["already"] == 1
    audit = dasctl("credentials", "audit", "--json", "--store", path,
                   env={"DASCTL_STORE_KEY_FILE": str(new_key)})
    assert [json.loads(line)["command"] for line in audit.stdout.splitlines()].count("rekey") == 2


def test_bad_keys_get_one_line_each(dasctl: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    short = tmp_path / "short.key"
    short.write_text("c2hvcnQ=\n")
    done = dasctl("credentials", "show", "X", "--store", path, "--store-key-file", str(short))
    assert done.returncode == 4 and "must be 32 bytes" in done.stderr and len(done.stderr.splitlines()) <= 2
    missing = dasctl("credentials", "list", "--store", path, "--store-key-file", str(tmp_path / "none.key"))
    assert missing.returncode == 4 and "no such file" in missing.stderr
    assert not Path(path).exists()  # nothing made for a command that could not get its key
    open_store(path).close()
    loose = tmp_path / "loose.key"
    loose.write_text(TEST_STORE_KEY + "\n")
    os.chmod(loose, 0o644)
    warned = dasctl("credentials", "list", "--store", path, "--store-key-file", str(loose))
    assert warned.returncode == 0 and "can be read by others" in warned.stderr
    garbage = dasctl("credentials", "list", "--store", path, env={"DASCTL_STORE_KEY": "not base64!"})
    assert garbage.returncode == 4 and "DASCTL_STORE_KEY is not a store key" in garbage.stderr


def test_a_truncated_ciphertext_is_one_clear_error(dasctl: Run, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    try:
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential=CREDENTIAL, call_id="c1"))
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE enrollments SET credential = substr(credential, 1, length(credential) - 8)")
    done = dasctl("credentials", "show", "CUST1", "--show-credential", "--store", str(path))
    assert done.returncode == 2 and "cannot decrypt" in done.stderr and "Traceback" not in done.stderr
