"""The journal: the record of truth for `watch` (JSON lines, fsynced); replaying it tells what is done."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dasctl.errors import UsageError
from dasctl.watch.inbox import FileIdentity

JOURNAL_SCHEMA = "dasctl.watch-journal/1"
DEFAULT_JOURNAL_NAME = ".dasctl-watch.jsonl"

# journal states
STARTED = "started"
DONE = "done"
FAILED = "failed"
RETRY = "retry"  # a transient failure; the file will be tried again
ABORTED = "aborted"  # cancelled by a shutdown; the file will be tried again on the next run
REPORTED = "reported"  # the stdout line for the latest final record was printed
FINAL_STATES = (DONE, FAILED)


# --------------------------------------------------------------------------------------------
# journal: the record of truth


@dataclass(slots=True)
class JournalEntry:
    """What the journal says about one file identity, after replay."""

    state: str
    attempts: int = 0
    final: dict[str, Any] | None = None  # the latest done/failed record, kept only until it is reported
    reported: bool = False  # whether the latest done/failed record was printed


class JournalBusy(UsageError):
    """Another `dasctl watch` holds this journal."""


class Journal:
    """Append-only JSON lines; final records are flushed and fsynced before anything depends on them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[FileIdentity, JournalEntry] = {}
        # identities in the order they last reached a final state (a dict: ordered, O(1) to move)
        self.order: dict[FileIdentity, None] = {}
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._file_lock: Any = None
        self.skipped_lines = 0

    def open(self) -> None:
        """Take the journal's lock (one watch per journal), replay it, and get ready to append."""
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout as error:
            raise JournalBusy(
                f"another dasctl watch is using the journal {self.path}",
                "Stop it first, or give this one its own --journal FILE.",
            ) from error
        self._file_lock = lock
        try:
            self._replay()
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if created:  # the new name must be durable too, or fsynced records could vanish with it
                _fsync_directory(self.path.parent)
            self._repair_tail()
        except OSError as error:
            lock.release()
            raise UsageError(f"cannot use the journal {self.path}: {error.strerror}") from error

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _replay(self) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            for raw in handle:
                try:
                    record = json.loads(raw)
                except ValueError:  # a line torn by a crash: it never counted
                    self.skipped_lines += 1
                    continue
                if isinstance(record, dict) and record.get("schema") == JOURNAL_SCHEMA:
                    self._apply(record)
                else:
                    self.skipped_lines += 1

    def _repair_tail(self) -> None:
        """A crash mid-write can leave a line without its newline; start ours on a fresh line."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with self.path.open("rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                os.write(self._fd, b"\n")
                os.fsync(self._fd)

    def _apply(self, record: dict[str, Any]) -> None:
        identity = FileIdentity.from_record(record)
        state = record.get("state")
        if identity is None or not isinstance(state, str):
            self.skipped_lines += 1
            return
        entry = self.entries.get(identity)
        if entry is None:
            entry = self.entries[identity] = JournalEntry(state)
        attempt = record.get("attempt")
        # Only attempts that ended count against a file's retries; one cut short by a crash does not.
        if isinstance(attempt, int) and state in (RETRY, *FINAL_STATES):
            entry.attempts = max(entry.attempts, attempt)
        if state == REPORTED:
            if entry.final is not None:
                entry.reported = True
                entry.final = None  # printed: a long journal must not hold every result in memory
                self.order.pop(identity, None)
            return
        entry.state = state
        if state in FINAL_STATES:
            entry.final = record
            entry.reported = False
            self.order.pop(identity, None)
            self.order[identity] = None

    def append(self, record: dict[str, Any], *, durable: bool = True) -> None:
        """Write one record as one write(2); fsync it when something will depend on it."""
        record = {"schema": JOURNAL_SCHEMA, **record, "at": round(time.time(), 3)}
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd is None:
                raise RuntimeError("journal is not open")
            os.write(self._fd, line)
            if durable:
                os.fsync(self._fd)
            self._apply(record)

    def entry(self, identity: FileIdentity) -> JournalEntry | None:
        return self.entries.get(identity)

    def unreported(self) -> list[tuple[FileIdentity, dict[str, Any]]]:
        """Final records whose stdout line may not have been printed, oldest first."""
        found = []
        for identity in self.order:
            entry = self.entries[identity]
            if entry.final is not None and not entry.reported and entry.state in FINAL_STATES:
                found.append((identity, entry.final))
        return found


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; nothing better to do there
        pass
    finally:
        os.close(fd)
