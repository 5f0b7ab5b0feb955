"""Who works on which recording when several watchers share one inbox and one store.

PostgreSQL (`PostgresClaims`): any number of watchers, on any hosts, share an inbox. A recording is
claimed with a session advisory lock, `pg_try_advisory_lock(inbox, file)`, taken on a connection of the
watcher's own: a watcher that cannot take it skips the file, as `FOR UPDATE SKIP LOCKED` skips a row.
PostgreSQL drops a session's advisory locks when its connection ends, so a watcher killed with `kill -9`,
or cut off with its host, loses its claims as soon as the server notices, and the others take those
files over on their next look: no lease, no clock compared across hosts. Every watcher also holds the
inbox's presence lock shared (`dasctl watch status` lists the holders), and LISTENs on one channel: a
watcher that lets a file go NOTIFYs, so the others look again at once instead of on their next tick.

A claim is held from the moment a session may start until the file's line is printed and marked, so
two watchers can neither run one file nor print its line twice.

Anything else (SQLite) (`FolderClaims`): one watch per inbox and store, held by the store's folder lock,
and every claim is granted; the error when a second watch starts names the PostgreSQL way.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from dasctl.errors import DasctlError
from dasctl.watch.inbox import FileIdentity

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from dasctl.store import Store

#: NOTIFY channel: "a claim was let go somewhere; look again" (payload: the inbox's key)
CHANNEL = "dasctl_watch"
# The presence lock is a one-bigint key; file claims are (inbox, file) pairs of int4: the two spaces
# never meet in pg_locks (objsubid 1 and 2).
_PRESENCE_PREFIX = "dasctl-watch-presence\0"


def inbox_key(inbox: str) -> int:
    """The int4 that names an inbox's claims (the first half of each claim's key)."""
    return _int(f"inbox\0{inbox}", 4)


def file_key(identity: FileIdentity) -> int:
    """The int4 that names one recording within its inbox. Two recordings that share a key can only
    not run at the same time: a collision delays, never doubles."""
    return _int(f"{identity.relpath}\0{identity.size}\0{identity.mtime_ns}", 4)


def presence_key(inbox: str) -> int:
    return _int(_PRESENCE_PREFIX + inbox, 8)


def _int(text: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big", signed=True)


def worker_name() -> str:
    """How a watcher is named in logs, metrics and `watch status`: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Claims(Protocol):
    """What the runner asks before it works on a recording, and tells when it lets one go."""

    shared: bool  # other watchers may work on this inbox at the same time

    def open(self) -> None: ...
    def claim(self, identity: FileIdentity) -> bool: ...
    def release(self, identity: FileIdentity) -> None: ...
    def held_elsewhere(self, identities: Iterable[FileIdentity]) -> set[FileIdentity]: ...
    def nudged(self) -> bool: ...
    def fileno(self) -> int | None: ...
    def count(self) -> int: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class FolderClaims:
    """One watch per inbox and store (the store's folder lock); every claim is granted."""

    shared = False

    def __init__(self, store: Store, inbox: str) -> None:
        self.store = store
        self.inbox = inbox
        self._lock: AbstractContextManager[None] | None = None
        self._held: set[FileIdentity] = set()

    def open(self) -> None:
        from dasctl.store import StoreBusy

        lock = self.store.watch_lock(self.inbox)
        try:
            lock.__enter__()
        except StoreBusy as busy:
            raise StoreBusy(
                busy.message,
                "One watch per folder with a SQLite store. To run several watchers on one inbox (on one "
                "host or several), give them all one PostgreSQL store: --store postgresql://USER@HOST/DB "
                "(see docs/deploy.md).",
            ) from None
        self._lock = lock

    def claim(self, identity: FileIdentity) -> bool:
        self._held.add(identity)
        return True

    def release(self, identity: FileIdentity) -> None:
        self._held.discard(identity)

    def held_elsewhere(self, identities: Iterable[FileIdentity]) -> set[FileIdentity]:
        return set()

    def nudged(self) -> bool:
        return False

    def fileno(self) -> int | None:
        return None

    def count(self) -> int:
        return len(self._held)

    def ping(self) -> None:
        pass

    def close(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)


class PostgresClaims:
    """Claims as session advisory locks on a connection of this watcher's own (see the module's text)."""

    shared = True

    def __init__(self, connect: Callable[[str], Any], location: str, inbox: str, worker: str | None = None
                 ) -> None:
        self.connect = connect  # PostgresStore.session_connection
        self.location = location
        self.inbox = inbox
        self.worker = worker or worker_name()
        self._inbox_key = inbox_key(inbox)
        self._held: dict[FileIdentity, int] = {}
        self._connection: Any = None

    def open(self) -> None:
        import psycopg

        # application_name is what `watch status` and pg_stat_activity show (63 bytes at most)
        self._connection = self.connect(f"dasctl watch {self.worker}")
        try:
            self._connection.execute("SELECT pg_advisory_lock_shared(%s)", (presence_key(self.inbox),))
            self._connection.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as error:
            self.close()
            raise self._error("cannot take the watch claims in", error) from None

    def _error(self, doing: str, error: Exception) -> DasctlError:
        from dasctl.store import StoreError
        from dasctl.store.postgres import _first_line

        return StoreError(
            f"{doing} the store {self.location}: {_first_line(error)}",
            "The claims of this watcher are gone with its connection; watch stops so that a supervisor "
            "restarts it, and the other watchers take its files over.",
        )

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        import psycopg

        if self._connection is None or self._connection.closed or self._connection.broken:
            # never reconnect silently: the claims held on the lost connection are already someone else's
            raise self._error("lost the connection (and its claims) to", ConnectionError("connection lost"))
        try:
            return self._connection.execute(sql, params)
        except psycopg.Error as error:
            raise self._error("cannot claim a file in", error) from None

    def claim(self, identity: FileIdentity) -> bool:
        if identity in self._held:
            return True
        key = file_key(identity)
        row = self._execute("SELECT pg_try_advisory_lock(%s, %s)", (self._inbox_key, key)).fetchone()
        if not row or not row[0]:
            return False
        self._held[identity] = key
        return True

    def release(self, identity: FileIdentity) -> None:
        key = self._held.pop(identity, None)
        if key is None:
            return
        # one round trip: let go, and tell the other watchers to look again
        self._execute("SELECT pg_advisory_unlock(%s, %s), pg_notify(%s, %s)",
                      (self._inbox_key, key, CHANNEL, str(self._inbox_key)))

    def held_elsewhere(self, identities: Iterable[FileIdentity]) -> set[FileIdentity]:
        """Which of these recordings another watcher holds now (one query for all of them)."""
        wanted = {file_key(identity): identity for identity in identities}
        if not wanted:
            return set()
        rows = self._execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
            "AND granted AND classid::bigint = %s AND pid <> pg_backend_pid()",
            (self._inbox_key & 0xFFFFFFFF,),
        ).fetchall()
        held = {_signed32(int(row[0])) for row in rows}
        return {identity for key, identity in wanted.items() if key in held}

    def nudged(self) -> bool:
        """Whether some watcher let a claim of this inbox go since the last call (NOTIFY), without
        waiting."""
        if self._connection is None or self._connection.closed:
            return False
        mine = str(self._inbox_key)
        try:
            # read them all: the generator holds the connection's lock until it is exhausted
            return any([n.payload == mine for n in self._connection.notifies(timeout=0)])
        except Exception:  # a broken connection shows on the next claim, as a StoreError
            return False

    def fileno(self) -> int | None:
        return None if self._connection is None or self._connection.closed else int(self._connection.fileno())

    def count(self) -> int:
        return len(self._held)

    def ping(self) -> None:
        """The claims connection still answers; StoreError (with the claims gone) when it does not."""
        self._execute("SELECT 1")

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                if not connection.closed and not connection.broken and self._held:
                    connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(self._inbox_key)))
            except Exception:  # closing releases everything anyway
                pass
            connection.close()  # the server drops every advisory lock of the session
        self._held.clear()


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def claims_for(store: Store, inbox: str) -> Claims:
    """Shared claims on a PostgreSQL store, the folder lock on any other."""
    connect = getattr(store, "session_connection", None)
    if connect is not None:
        return PostgresClaims(connect, store.location, inbox)
    return FolderClaims(store, inbox)
