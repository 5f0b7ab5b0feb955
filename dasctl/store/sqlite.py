"""The embedded store: one SQLite file (0600, in a 0700 directory), WAL, a generous busy timeout.

Several dasctl processes write at once (eight `register`s, a `watch -j 8`): every write transaction starts
with BEGIN IMMEDIATE, so a writer waits for the write lock up front (the busy timeout applies) instead of
failing on a read-to-write upgrade with "database is locked". Commits are synchronous=FULL: a result the
service returned is on disk before dasctl prints it (watch's exactly-once rests on that).

SQLite dialect, where it differs from PostgreSQL: `IS NOT` for "is distinct from"; the new id comes from
`cursor.lastrowid`; a write transaction already serialises all writers, so there is no per-speaker lock.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dasctl.store import StoreBusy, StoreError, StoreUnusable, WatchKey
from dasctl.store.migrations import MIGRATIONS, MIGRATIONS_TABLE
from dasctl.store.records import CREDENTIAL_FIELDS, CREDENTIAL_SCHEMA
from dasctl.store.sql import SqlStore
from dasctl.store.sqlite_file import (
    check_path,
    fix_mode,
    integrity_problems,
    quick_check,
    remember_good,
    writable_problem,
)
from dasctl.store.vault import StoreKey

#: seconds a writer waits for another's transaction before giving up: within the 15 s bound every store
#: call keeps (exit 6)
BUSY_TIMEOUT_S = 12.0
#: why a store could not be created that mean "not writable here" (exit 6), not "not a store" (2)
#: SQLite's words for a store whose place (file, directory, disk) refuses writes
_PLACE_ERRORS = ("readonly", "disk I/O error", "database or disk is full", "unable to open")
_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)

SQLITE_TYPES = {
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",  # AUTOINCREMENT: a removed record's id is never reused
    "real": "REAL",
    "bigint": "INTEGER",
    "blob": "BLOB",
}


def _json_bool(condition: str) -> str:
    return f"json(CASE WHEN {condition} THEN 'true' ELSE 'false' END)"


_COMPUTED = {
    "ok": _json_bool("ok = 1"),
    "current": _json_bool("ok = 1 AND superseded_at IS NULL"),
    "has_audio": _json_bool("audio_size IS NOT NULL"),
    "credential": "NULL",  # sealed (sealing.py): a listing never needs the key, so never holds it
}
_CREDENTIAL_JSON = "json_object('schema', '{}', {})".format(
    CREDENTIAL_SCHEMA, ", ".join(f"'{key}', {_COMPUTED.get(key, key)}" for key in CREDENTIAL_FIELDS)
)


class SqliteStore(SqlStore):
    """The Store protocol on a SQLite file."""

    types = SQLITE_TYPES
    IS_DISTINCT = "IS NOT"

    def __init__(
        self,
        path: Path,
        env: Mapping[str, str] | None = None,
        key: StoreKey | None = None,
        *,
        create: bool = True,
        default: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self._env = env
        self._warn = warn or (lambda message: None)
        # a read-only command never creates a store: the default one missing reads as empty (in memory)
        # the default store, not made yet: a read-only command opens it empty, in memory
        self.absent = not create and default and not self.path.exists()
        if not create and not default and not self.path.exists() and not self.path.is_symlink():
            raise StoreUnusable(f"no credential store at {self.path}",
                                "Nothing was created. Check --store (or DASCTL_STORE, the profile's store).")
        self._connection = self._open_read_only() if self._read_only_place(create) else self._open()
        if self.absent and key is not None:
            key = StoreKey(key.kek, key.source, key.looked)  # and no key made for it either
        try:
            self._setup_sealing(key or StoreKey(None, None))
        except BaseException:
            self._connection.close()
            raise

    # -- opening ----------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        from dasctl.config import private_dir

        path = self.path
        if self.absent:
            connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            connection.execute(f"CREATE TABLE {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at TEXT)")
            self._connection = connection
            with self._write() as cursor:
                self._migrate(cursor, set())
            return connection
        check_path(path)
        if path.is_dir():
            raise StoreUnusable(f"the store {path} is a directory, not a dasctl store file",
                                "Pass --store with a file path, e.g. --store ~/credentials.db.")
        try:
            existed = path.exists()
            if not existed:
                # a directory we create is private; an existing one (/tmp, a shared folder) is not ours to
                # chmod (the default data directory is made private by open_store)
                if not path.parent.exists():
                    private_dir(path.parent)
                # created 0600 before SQLite touches it; SQLite gives its -wal and -shm files the same mode
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as error:
            if error.errno in _CANNOT_WRITE:  # a read-only or full place: the store cannot be written (6)
                raise StoreError(f"cannot create the store {path}: {error.strerror}",
                                 "Nothing was sent. Free the disk or fix the permissions, or pass another "
                                 "--store.") from None
            raise StoreUnusable(f"cannot create the store {path}: {error.strerror}") from None
        try:
            connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the store {path}: {error}") from None
        try:
            self._check_ours(connection)
            if existed:
                fix_mode(path, self._warn)
                quick_check(connection, path, self._env)
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            # what is deleted or overwritten is zeroed, not left in free pages (a sealed value's plaintext,
            # a removed speaker's ciphertext)
            connection.execute("PRAGMA secure_delete = ON")
            self._connection = connection
            with self._write() as cursor:
                cursor.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")
                self._migrate(cursor, {row[0] for row in cursor.fetchall()})
        except BaseException:
            connection.close()
            raise
        return connection

    def _read_only_place(self, create: bool) -> bool:
        """A read-only command (create=False) on an existing store it cannot write: opened read-only."""
        return (not create and not self.absent and self.path.is_file()
                and writable_problem(self.path) is not None)

    def _open_read_only(self) -> sqlite3.Connection:
        """The store opened read-only: SQLite cannot make its WAL index (-shm) on read-only media, so the
        file is read as immutable, which is right only when no change waits in the -wal file."""
        from urllib.parse import quote

        path = self.path
        check_path(path)
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        waiting = wal.exists() and wal.stat().st_size > 0
        if waiting and not shm.exists():
            raise StoreError(f"cannot read the store {path}: it is read-only, and its last changes are still "
                             f"in {wal}",
                             "Copy the store and its -wal file somewhere writable and read it there.")
        self.read_only = True
        uri = f"file:{quote(str(path))}?mode=ro{'' if waiting else '&immutable=1'}"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the store {path}: {error}") from None
        try:
            self._check_ours(connection)
            quick_check(connection, path, self._env)
            connection.execute("PRAGMA foreign_keys = ON")
            applied = {row[0] for row in connection.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
            missing = [name for name, _ in MIGRATIONS if name not in applied]
            if missing:
                raise StoreError(
                    f"the store {path} is read-only and was written by an older dasctl: its schema needs "
                    f"{missing[0]}, which is a write",
                    "Copy it somewhere writable and read it there (the copy is upgraded when opened).")
        except sqlite3.Error as error:
            connection.close()
            raise self._failure("read", error) from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _check_ours(self, connection: sqlite3.Connection) -> None:
        """Refuse, before writing anything, a file that is not a SQLite database or not a dasctl store."""
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {row[0] for row in rows}
        except sqlite3.OperationalError as error:
            raise self._failure("read", error) from None
        except sqlite3.DatabaseError as error:
            raise StoreUnusable(
                f"{self.path} is not a dasctl credential store ({error})",
                "Nothing was changed. Move it away, or pass --store with another file.",
            ) from None
        if not tables and self.read_only:
            raise StoreUnusable(f"{self.path} is empty, not a dasctl credential store",
                                "Nothing was changed. Check --store (or DASCTL_STORE, the profile's store).")
        if not tables:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                               "(name TEXT PRIMARY KEY, applied_at TEXT)")
            return
        if MIGRATIONS_TABLE not in tables:
            raise StoreUnusable(
                f"{self.path} is a SQLite database but not a dasctl credential store",
                "Nothing was changed. Move it away, or pass --store with another file.",
            )
        known = {name for name, _ in MIGRATIONS}
        newer = sorted({row[0] for row in connection.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")} - known)
        if newer:
            raise StoreUnusable(
                f"the store {self.path} was written by a newer dasctl (schema {newer[-1]})",
                "Upgrade dasctl to use it.",
            )

    # -- the dialect ------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._failure("write to", error) from None
            try:
                yield cursor
                cursor.execute("COMMIT")
            except BaseException as error:
                try:
                    self._connection.rollback()
                except sqlite3.Error:
                    pass
                if isinstance(error, sqlite3.Error):
                    raise self._failure("write to", error) from None
                raise
            finally:
                cursor.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._connection.cursor()
            try:
                cursor.execute("BEGIN")  # one snapshot for every query of the read
                yield cursor
            except sqlite3.Error as error:
                raise self._failure("read", error) from None
            finally:
                try:
                    self._connection.rollback()
                except sqlite3.Error:
                    pass
                cursor.close()

    def _scrub(self) -> None:
        # the WAL may still hold pages written before they were sealed: copy them in, truncate it, and
        # rewrite the file so that no free page keeps an old copy
        with self._lock:
            try:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._connection.execute("VACUUM")
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:
                raise self._failure("scrub", error) from None

    def _failure(self, action: str, error: sqlite3.Error) -> Exception:
        if isinstance(error, (sqlite3.OperationalError, sqlite3.IntegrityError)):  # locked, full, refused
            # "attempt to write a readonly database" or "disk I/O error" while reading: SQLite's WAL index
            # (-shm) cannot be made in a read-only directory or on a full disk; say which it is
            place = any(words in str(error) for words in _PLACE_ERRORS) and not self.absent
            why = writable_problem(self.path) if place else None
            if why:
                return StoreError(f"cannot {action} the store {self.path}: {why}",
                                  "Nothing was sent or changed. Free the disk or fix the permissions, or "
                                  "pass another --store.")
            return StoreError(f"cannot {action} the store {self.path}: {error}")
        return StoreUnusable(f"cannot {action} the store {self.path}: {error} (is it corrupt?)")

    def list_current_lines(
        self,
        *,
        speaker_glob: str | None = None,
        model_hash: str | None = None,
        stale_for: str | None = None,
    ) -> Iterator[str]:
        # Each success's line was made when it was kept (`listing`); for rows kept before that, SQLite's
        # json_object writes it in C, from records.CREDENTIAL_FIELDS, so the lines are credential_document's.
        # (PostgreSQL's json_build_object puts spaces around ':', so that backend builds them in Python.)
        select = f"SELECT speaker, COALESCE(listing, {_CREDENTIAL_JSON}) FROM enrollments"
        sql, params = self._current_query(select,
                                          speaker_glob, model_hash, stale_for)
        return self._stream_lines(sql, params, speaker_glob)

    def _stream_lines(self, sql: str, params: list[Any], speaker_glob: str | None) -> Iterator[str]:
        # streamed in batches: 100,000 lines are 100 MB, never all in memory at once
        with self._read() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(2000):
                for speaker, line in rows:
                    if not speaker_glob or fnmatch.fnmatchcase(speaker, speaker_glob):
                        yield line

    def _insert_id(self, cursor: Any, sql: str, params: Sequence[Any]) -> int:
        cursor.execute(sql, params)
        return int(cursor.lastrowid)

    def watch_reported(self, inbox: str, key: WatchKey) -> None:
        # The mark lands between watch's stdout line and the next one: a kill -9 there repeats that line.
        # Without the fsync the window is microseconds, not the ~10 ms of a synced commit; the WAL write
        # still survives a killed process (only a power loss can cost the mark: one repeated line).
        with self._lock:
            self._connection.execute("PRAGMA synchronous = NORMAL")
            try:
                super().watch_reported(inbox, key)
            finally:
                self._connection.execute("PRAGMA synchronous = FULL")

    # -- watch lock -------------------------------------------------------------------------------
    def watch_lock(self, inbox: str) -> InboxLock:
        from dasctl.config import locks_dir

        name = hashlib.sha256(f"{self.path.resolve()}\0{inbox}".encode()).hexdigest()[:24]
        return InboxLock(locks_dir(self._env) / f"watch-{name}.lock", inbox, self.location)

    def writable_problem(self) -> str | None:
        return None if self.absent else writable_problem(self.path)

    def integrity_problems(self) -> list[str]:
        with self._lock:
            return integrity_problems(self._connection)

    def close(self) -> None:
        with self._lock:
            self._connection.close()
            if not self.absent and self.path.exists():
                remember_good(self.path, self._env)  # as we leave it: the next open need not check


class InboxLock:
    """A non-blocking flock on a file outside the watched folder, removed when released.

    Removing a lock file is only safe when a taker checks that the file it locked is still the one at
    the path (another holder may have removed it between our open and our flock): we check, and retry.
    """

    def __init__(self, path: Path, inbox: str, location: str) -> None:
        self.path = path
        self.inbox = inbox
        self.location = location
        self._fd: int | None = None

    def __enter__(self) -> None:
        import fcntl

        from dasctl.config import private_dir

        try:
            private_dir(self.path.parent)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise StoreBusy(
                        f"another dasctl watch is using the watch state of {self.inbox} in {self.location}",
                        "Stop it first; one watch per folder and store.",
                    ) from None
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    self._fd = fd
                    os.write(fd, f"{os.getpid()}\n".encode())
                    return
                os.close(fd)  # the holder before us removed it: take the new one
        except OSError as error:
            raise StoreError(f"cannot take the watch lock {self.path}: {error.strerror}") from None

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiter then sees a different inode and retries
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
