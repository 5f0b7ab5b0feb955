"""`dasctl watch status [DIR]`: what the watchers of an inbox are doing, read from the store (so it
answers from any host that can reach the store), and from the folder when it is readable here."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.watch.claims import inbox_key, presence_key
from dasctl.watch.inbox import Inbox
from dasctl.watch.journal import DONE, FAILED, FINAL_STATES
from dasctl.watch.probe import opens_as_audio

if TYPE_CHECKING:
    from dasctl.store import Store


@dataclass
class Watcher:
    name: str  # host:pid
    since: str | None  # ISO 8601 UTC
    address: str | None = None
    claims: int | None = None


@dataclass
class InboxStatus:
    inbox: str
    store: str
    watchers: list[Watcher] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    unfinished: int = 0  # the store knows them, not final
    unseen: int | None = None  # in the folder, not in the store yet (None: the folder is not readable here)
    oldest_waiting: str | None = None  # relpath of the oldest recording not finished
    oldest_waiting_since: str | None = None  # its mtime (ISO 8601 UTC)

    @property
    def left(self) -> int:
        return self.unfinished + (self.unseen or 0)

    def document(self) -> dict[str, Any]:
        return {
            "schema": "dasctl.watch-status/1", "inbox": self.inbox, "store": self.store,
            "watchers": [w.__dict__ for w in self.watchers], "done": self.done, "failed": self.failed,
            "left": self.left, "unfinished": self.unfinished, "not_seen_yet": self.unseen,
            "oldest_waiting": self.oldest_waiting, "oldest_waiting_since": self.oldest_waiting_since,
        }


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def inbox_status(store: Store, inbox: str) -> InboxStatus:
    """The status of one inbox (an absolute path, as watch names it in the store)."""
    status = InboxStatus(inbox, store.location)
    known: dict[str, tuple[int, int]] = {}
    finished: set[tuple[str, int, int]] = set()
    oldest: tuple[float, str] | None = None
    for entry in store.watch_files(inbox, reveal=False):
        key = entry.key
        if entry.state == DONE:
            status.done += 1
        elif entry.state == FAILED:
            status.failed += 1
        else:
            status.unfinished += 1
            mtime = key.mtime_ns / 1e9
            if oldest is None or mtime < oldest[0]:
                oldest = (mtime, key.relpath)
        if entry.state in FINAL_STATES:
            finished.add((key.relpath, key.size, key.mtime_ns))
        known[key.relpath] = (key.size, key.mtime_ns)
    root = Path(inbox)
    if root.is_dir():
        status.unseen = 0
        folder = Inbox(root, settle=0.0)
        for path in folder.scan():
            rel = folder.relpath(path) or path.name
            try:
                stat = path.stat()
            except OSError:
                continue
            if (rel, stat.st_size, stat.st_mtime_ns) in finished:
                continue
            if rel not in known or known[rel] != (stat.st_size, stat.st_mtime_ns):
                if folder.needs_probe(path) and not opens_as_audio(path):
                    continue  # watch skips it too (not audio)
                status.unseen += 1
            if oldest is None or stat.st_mtime < oldest[0]:
                oldest = (stat.st_mtime, rel)
    if oldest is not None:
        status.oldest_waiting, status.oldest_waiting_since = oldest[1], _iso(oldest[0])
    status.watchers = watchers_of(store, inbox)
    return status


def watchers_of(store: Store, inbox: str) -> list[Watcher]:
    """The watch processes on this inbox now: PostgreSQL says who holds the inbox's presence lock (and
    how many claims each); a SQLite store, whether a watch on this host holds the folder lock."""
    connect = getattr(store, "session_connection", None)
    if connect is not None:
        return _postgres_watchers(connect("dasctl watch status"), inbox)
    return _folder_lock_holder(store, inbox)


def _postgres_watchers(connection: Any, inbox: str) -> list[Watcher]:
    key = presence_key(inbox)
    with connection:
        rows = connection.execute(
            "SELECT a.application_name, a.backend_start, host(a.client_addr), "
            "  (SELECT count(*) FROM pg_locks f WHERE f.pid = l.pid AND f.locktype = 'advisory' "
            "     AND f.objsubid = 2 AND f.classid::bigint = %s) "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
            "  AND l.classid::bigint = %s AND l.objid::bigint = %s ORDER BY a.backend_start",
            (inbox_key(inbox) & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchall()
    watchers = []
    for name, since, address, claims in rows:
        when = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if since else None
        watchers.append(Watcher(str(name).removeprefix("dasctl watch "), when, address, int(claims)))
    return watchers


def _folder_lock_holder(store: Store, inbox: str) -> list[Watcher]:
    from dasctl.store import StoreBusy

    lock = store.watch_lock(inbox)
    try:
        lock.__enter__()
    except StoreBusy:
        path = getattr(lock, "path", None)
        pid, since = None, None
        if isinstance(path, Path):
            try:
                pid = path.read_text().strip() or None
                since = _iso(path.stat().st_mtime)
            except OSError:
                pass
        return [Watcher(f"{os.uname().nodename}:{pid or '?'}", since)]
    lock.__exit__(None, None, None)
    return []
