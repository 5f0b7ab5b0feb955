"""The credential store's interface, against real databases: the same tests for every backend."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dasctl.errors import ExitCode
from dasctl.store import (
    EnrollmentRecord,
    Store,
    StoreBusy,
    StoreUnusable,
    VerificationRecord,
    WatchKey,
    open_store,
)

AUDIO = bytes(range(256)) * 160  # 5 s of 8 kHz mu-law


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh, empty store lives, for each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "credentials.db")
    return str(request.getfixturevalue("postgres_store_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def reopen(store_url: str) -> Iterator[Callable[[], Store]]:
    """Open the same store again, as another process would (closed at the end)."""
    opened: list[Store] = []

    def open_again() -> Store:
        opened.append(open_store(store_url))
        return opened[-1]

    yield open_again
    for one in opened:
        one.close()


def enrollment(speaker: str = "CUST1", ok: bool = True, **fields: object) -> EnrollmentRecord:
    values: dict[str, object] = dict(
        credential=f"cred-{speaker}-{fields.get('call_id', 'x')}" if ok else None,
        model_hash="model-v1", profile="local", service_url="http://127.0.0.1:7272",
        call_id=None, protocol="twilio", authenticity=0.93, voice_seconds=5.0,
        source_path=f"/in/{speaker}.wav",
        source_size=123456, source_sha256="ab" * 32, outcome="result-success" if ok else "result-fail-spoof",
        error=None if ok else "the service rejected the audio as a spoof",
    )
    values.update(fields)
    return EnrollmentRecord(speaker=speaker, ok=ok, **values)  # type: ignore[arg-type]


# -- enrollments ---------------------------------------------------------------------------------------
def test_a_recorded_enrollment_is_the_current_one_with_every_field(store: Store) -> None:
    document = {"schema": "x", "n": 1}
    kept = store.record_enrollment(enrollment(call_id="call-1", audio=AUDIO, document=document))
    assert kept.id is not None and kept.created_at and kept.created_at.endswith("Z") and kept.has_audio
    current = store.current("CUST1")
    assert current is not None
    assert (current.id, current.credential, current.model_hash, current.call_id) == (
        kept.id, "cred-CUST1-call-1", "model-v1", "call-1")
    assert (current.profile, current.service_url, current.protocol) == (
        "local", "http://127.0.0.1:7272", "twilio")
    assert (current.authenticity, current.voice_seconds) == (0.93, 5.0)
    assert (current.source_path, current.source_size, current.source_sha256) == (
        "/in/CUST1.wav", 123456, "ab" * 32)
    assert current.document == {"schema": "x", "n": 1}
    assert current.audio is None and current.has_audio  # audio only on request
    assert store.current("CUST1", with_audio=True).audio == AUDIO  # type: ignore[union-attr]
    assert store.enrollment_audio(kept.id) == AUDIO
    assert store.current("nobody") is None


def test_reenrolling_supersedes_and_keeps_the_older_credential_as_history(store: Store) -> None:
    first = store.record_enrollment(enrollment(call_id="c1"))
    failed = store.record_enrollment(enrollment(ok=False, call_id="c2"))
    second = store.record_enrollment(enrollment(call_id="c3"))
    assert store.current("CUST1").id == second.id  # type: ignore[union-attr]
    history = [h for h in store.history("CUST1") if isinstance(h, EnrollmentRecord)]
    assert [h.id for h in history] == [first.id, failed.id, second.id]
    assert history[0].superseded_at is not None and history[2].superseded_at is None
    assert history[1].ok is False and history[1].outcome == "result-fail-spoof" and history[1].error


def test_a_failed_attempt_does_not_replace_the_current_credential(store: Store) -> None:
    good = store.record_enrollment(enrollment(call_id="c1"))
    store.record_enrollment(enrollment(ok=False, call_id="c2"))
    assert store.current("CUST1").id == good.id  # type: ignore[union-attr]


def test_recording_is_idempotent_on_speaker_call_id_and_outcome(store: Store) -> None:
    first = store.record_enrollment(enrollment(call_id="same"))
    again = store.record_enrollment(enrollment(call_id="same", credential="different"))
    assert again.id == first.id and again.credential == first.credential
    assert len(store.history("CUST1")) == 1
    # without a call id there is nothing to recognise: each is a new attempt
    store.record_enrollment(enrollment(ok=False, call_id=None))
    store.record_enrollment(enrollment(ok=False, call_id=None))
    assert len(store.history("CUST1")) == 3


def test_list_current_filters_by_glob_model_hash_and_staleness(store: Store) -> None:
    store.record_enrollment(enrollment("CUST1", call_id="a"))
    store.record_enrollment(enrollment("CUST2", call_id="b", model_hash="model-v2"))
    store.record_enrollment(enrollment("VIP1", call_id="c"))
    store.record_enrollment(enrollment("CUST3", ok=False, call_id="d"))  # no credential: never listed
    store.record_enrollment(enrollment("CUST4", call_id="e", model_hash=None))
    assert [r.speaker for r in store.list_current()] == ["CUST1", "CUST2", "CUST4", "VIP1"]
    assert [r.speaker for r in store.list_current(speaker_glob="CUST*")] == ["CUST1", "CUST2", "CUST4"]
    assert [r.speaker for r in store.list_current(speaker_glob="*1")] == ["CUST1", "VIP1"]
    assert [r.speaker for r in store.list_current(speaker_glob="CUST[!1]")] == ["CUST2", "CUST4"]
    assert [r.speaker for r in store.list_current(model_hash="model-v2")] == ["CUST2"]
    # stale for v2: made with any other model, an unknown one included
    assert [r.speaker for r in store.list_current(stale_for="model-v2")] == ["CUST1", "CUST4", "VIP1"]
    listed = next(iter(store.list_current(speaker_glob="CUST1")))
    assert listed.credential is None and listed.audio is None  # metadata: listing never opens a secret
    revealed = next(iter(store.list_current(speaker_glob="CUST1", reveal=True)))
    assert revealed.credential == "cred-CUST1-a" and revealed.audio is None


def test_remove_deletes_everything_about_a_speaker_and_nothing_else(store: Store) -> None:
    store.record_enrollment(enrollment("CUST1", call_id="a", audio=AUDIO))
    store.record_enrollment(enrollment("CUST1", call_id="b"))
    store.record_verification(VerificationRecord(speaker="CUST1", ok=True, score=0.9))
    store.record_enrollment(enrollment("CUST2", call_id="c"))
    assert store.remove("CUST1") == 3
    assert store.current("CUST1") is None and store.history("CUST1") == []
    assert store.current("CUST2") is not None
    assert store.remove("CUST1") == 0


def test_verifications_join_the_speakers_history(store: Store) -> None:
    enrolled = store.record_enrollment(enrollment(call_id="a"))
    verified = store.record_verification(VerificationRecord(
        speaker="CUST1", ok=False, outcome="result-fail-score", score=0.2, enrollment_id=enrolled.id,
        document={"schema": "dasctl.verify/1"}))
    assert verified.id is not None and verified.created_at
    history = store.history("CUST1")
    assert history[0].id == enrolled.id and isinstance(history[0], EnrollmentRecord)
    assert isinstance(history[1], VerificationRecord)
    # history is metadata: the (sealed) document is not opened
    assert (history[1].score, history[1].enrollment_id, history[1].document) == (0.2, enrolled.id, None)


def test_records_written_by_one_connection_are_seen_by_another(
    store: Store, reopen: Callable[[], Store]
) -> None:
    other = reopen()
    store.record_enrollment(enrollment(call_id="a"))
    assert other.current("CUST1") is not None


def test_threads_sharing_one_store_lose_nothing(store: Store) -> None:
    def write(worker: int) -> None:
        for n in range(20):
            store.record_enrollment(enrollment(f"S{worker}", call_id=f"{worker}-{n}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(store.history(f"S{w}")) for w in range(4)) == 80
    assert len(list(store.list_current())) == 4


# -- watch state -----------------------------------------------------------------------------------------
def test_watch_state_counts_ended_attempts_and_owes_final_reports_in_order(store: Store) -> None:
    inbox = "/srv/inbox"
    a, b = WatchKey("a.wav", 10, 1), WatchKey("sub/b.wav", 20, 2)
    store.watch_update(inbox, a, "started", attempt=1, call_id="call-a")
    store.watch_update(inbox, a, "retry", attempt=1)
    store.watch_update(inbox, a, "started", attempt=2)
    store.watch_update(inbox, b, "started", attempt=1)
    files = {f.key: f for f in store.watch_files(inbox)}
    assert files[a].state == "started" and files[a].attempts == 1 and files[a].call_id == "call-a"
    assert files[a].report is None and not files[a].reported
    store.watch_update(inbox, b, "failed", attempt=1, report={"file": "sub/b.wav", "status": "failed"})
    done = enrollment("A", call_id="call-a")
    report = {"file": "a.wav", "status": "done"}
    store.watch_update(inbox, a, "done", attempt=2, report=report, enrollment=done)
    assert store.current("A") is not None  # the enrollment went in with the report, in one transaction
    owed = [f.key for f in store.watch_files(inbox) if f.report and not f.reported]
    assert owed == [b, a]  # the order the reports were made
    store.watch_reported(inbox, b)
    files = {f.key: f for f in store.watch_files(inbox)}
    assert files[b].reported and not files[a].reported and files[a].attempts == 2
    assert files[a].report == {"file": "a.wav", "status": "done"}
    # a starting watch reads only the lines still owed; a status reads no line at all
    owed_only = {f.key: f for f in store.watch_files(inbox, owed_only=True)}
    assert owed_only[b].report is None and owed_only[b].reported and owed_only[b].state == "failed"
    assert owed_only[a].report == {"file": "a.wav", "status": "done"}
    assert all(f.report is None for f in store.watch_files(inbox, reveal=False))
    # another folder's state is its own; a re-recorded file is a new key
    assert list(store.watch_files("/srv/other")) == []
    store.watch_update(inbox, WatchKey("a.wav", 11, 3), "started", attempt=1)
    assert len(list(store.watch_files(inbox))) == 3


def test_a_new_final_report_is_owed_again(store: Store) -> None:
    key = WatchKey("a.wav", 10, 1)
    store.watch_update("/in", key, "failed", attempt=1, report={"status": "failed"})
    store.watch_reported("/in", key)
    store.watch_update("/in", key, "done", attempt=2, report={"status": "done"})
    (file,) = store.watch_files("/in")
    assert file.report == {"status": "done"} and not file.reported


def test_watch_lock_admits_one_holder_per_folder(store: Store, reopen: Callable[[], Store]) -> None:
    other = reopen()
    with store.watch_lock("/srv/inbox"):
        with pytest.raises(StoreBusy) as busy:
            with other.watch_lock("/srv/inbox"):
                pass
        assert "/srv/inbox" in str(busy.value) and busy.value.exit_code == ExitCode.USAGE
        with other.watch_lock("/srv/elsewhere"):
            pass
    with other.watch_lock("/srv/inbox"):
        pass


# -- SQLite specifics --------------------------------------------------------------------------------------
def test_the_default_store_is_a_private_file_in_the_data_directory(isolated_config: Path) -> None:
    store = open_store()
    try:
        store.record_enrollment(enrollment(call_id="a"))
    finally:
        store.close()
    path = isolated_config / "store.db"
    assert store.location == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_dasctl_store_environment_variable_moves_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASCTL_STORE", str(tmp_path / "elsewhere.db"))
    store = open_store()
    store.close()
    assert store.location == str(tmp_path / "elsewhere.db") and (tmp_path / "elsewhere.db").exists()


def test_a_new_directory_is_created_private(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "new" / "dir" / "c.db"))
    store.close()
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o700


def test_a_store_in_an_existing_directory_leaves_its_mode_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o1777)  # like /tmp
    open_store(str(shared / "c.db")).close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "c.db").stat().st_mode) == 0o600


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = path.read_bytes()
    with pytest.raises(StoreUnusable) as refused:
        open_store(str(path))
    assert str(path) in str(refused.value) and refused.value.exit_code == ExitCode.USAGE
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = path.read_bytes()
    with pytest.raises(StoreUnusable) as refused:
        open_store(str(path))
    assert "not a dasctl credential store" in str(refused.value) and str(path) in str(refused.value)
    assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


def test_a_store_from_a_newer_dasctl_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    open_store(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO _dasctl_migrations (name, applied_at) VALUES ('m999_future', 'x')")
    with pytest.raises(StoreUnusable, match="newer dasctl"):
        open_store(str(path))


def test_an_older_schema_is_migrated_forward_and_keeps_its_records(tmp_path: Path) -> None:
    from dasctl.store.migrations import MIGRATIONS, statements
    from dasctl.store.sqlite import SQLITE_TYPES

    path = tmp_path / "old.db"
    # a store as the first release left it: only the first migration
    name, first = MIGRATIONS[0]
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE _dasctl_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for statement in statements(name, first, SQLITE_TYPES):
            db.execute(statement)
        db.execute("INSERT INTO _dasctl_migrations VALUES (?, '2026-01-01T00:00:00.000Z')", (name,))
        db.execute("INSERT INTO enrollments (speaker, ok, origin, credential, created_at) "
                   "VALUES ('OLD1', 1, 'register', 'old-cred', '2026-01-01T00:00:00.000Z')")
    store = open_store(str(path))
    try:
        old = store.current("OLD1")
        assert old is not None and old.credential == "old-cred"
        # a row kept before listing lines were made when kept (m003) is listed all the same
        from dasctl.results import json_line
        from dasctl.store.records import credential_document

        # sealed on this first open with a key, and listed without it (a listing never holds a secret)
        old.credential = None
        assert list(store.list_current_lines()) == [json_line(credential_document(old))]
        store.watch_update("/in", WatchKey("a.wav", 1, 1), "started", attempt=1)  # the newer table exists
        assert len(list(store.watch_files("/in"))) == 1
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        applied = [row[0] for row in db.execute("SELECT name FROM _dasctl_migrations ORDER BY rowid")]
    assert applied == [n for n, _ in MIGRATIONS]


def test_the_sqlite_watch_lock_lives_outside_the_folder_and_is_removed(
    tmp_path: Path, isolated_config: Path
) -> None:
    # (the PostgreSQL lock is an advisory lock: no file at all)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store = open_store(str(tmp_path / "c.db"))
    try:
        from dasctl.config import locks_dir

        with store.watch_lock(str(inbox)):
            assert list(inbox.iterdir()) == []
            assert len(list(locks_dir().iterdir())) == 1
            # not in the folder, and not in the config directory either (issue 13 item 15)
            assert not (isolated_config / "locks").exists()
        assert list(locks_dir().iterdir()) == []
    finally:
        store.close()


WRITER = """
import sys
from dasctl.store import EnrollmentRecord, open_store
store = open_store(sys.argv[1])
for n in range(int(sys.argv[3])):
    store.record_enrollment(EnrollmentRecord(
        speaker=f"P{sys.argv[2]}-{n % 3}", ok=True, call_id=f"{sys.argv[2]}-{n}", credential="c",
        audio=b"\\xff" * 40000))
store.close()
"""


def test_eight_processes_writing_at_once_lose_nothing(store_url: str) -> None:
    # none of them finds the store: all eight create and migrate it at once
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, str(p), "25"],
                              stderr=subprocess.PIPE, env=dict(os.environ)) for p in range(8)]
    errors = [proc.communicate(timeout=120)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, errors
    store = open_store(store_url)
    try:
        assert sum(len(store.history(f"P{p}-{s}")) for p in range(8) for s in range(3)) == 200
        assert len(list(store.list_current())) == 24
    finally:
        store.close()


# -- PostgreSQL specifics --------------------------------------------------------------------------------
def test_the_postgres_password_is_masked_in_the_location(postgres_store_url: str) -> None:
    store = open_store(postgres_store_url)
    try:
        assert "pg-test-password" not in store.location and "dasctl:****@127.0.0.1" in store.location
    finally:
        store.close()


def test_an_unreachable_postgres_store_is_exit_6_naming_it_without_the_password(
    dasctl: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    from tests.conftest import free_port

    url = f"postgresql://ops:hunter2secret@127.0.0.1:{free_port()}/creds"
    done = dasctl("register", "--store", url, str(Path(__file__).parent / "data" / "speech-a-8k-mono.wav"),
                  env={"DASCTL_URL": "http://127.0.0.1:9"}, timeout=30)
    assert done.returncode == ExitCode.UNAVAILABLE
    assert "cannot connect to the store postgresql://ops:****@127.0.0.1" in done.stderr
    assert "hunter2secret" not in done.stderr + done.stdout
    shown = dasctl("config", "show", env={"DASCTL_STORE": url})
    assert "hunter2secret" not in shown.stdout and "ops:****@" in shown.stdout


def test_list_current_lines_are_the_credential_documents_compact(store: Store) -> None:
    import json

    from dasctl.results import json_line
    from dasctl.store.records import credential_document

    store.record_enrollment(enrollment("CUST1", call_id="a", audio=AUDIO, profile="prôd"))
    store.record_enrollment(enrollment("CUST2", call_id="b", model_hash="v2", authenticity=None))
    store.record_enrollment(enrollment("CUST2", call_id="c", model_hash="v2", source_path="/in/ünï.wav"))
    for filters in ({}, {"speaker_glob": "*2"}, {"stale_for": "v2"}):
        lines = list(store.list_current_lines(**filters))  # type: ignore[arg-type]
        expected = [credential_document(r) for r in store.list_current(**filters)]  # type: ignore[arg-type]
        assert [json.loads(line) for line in lines] == expected
        assert lines == [json_line(document) for document in expected] or not store.location.endswith(".db")
