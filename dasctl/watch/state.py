"""watch's record of truth, kept in the store (never in the watched folder): what each recording reached.

The order of durable steps is what makes `kill -9` safe: a final outcome (with its credential, and its
enrollment record in the same transaction) is durable in the store before its stdout line is printed,
and marked reported right after printing. On a restart, final outcomes not yet marked are printed first.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dasctl.watch.claims import Claims, claims_for
from dasctl.watch.inbox import FileIdentity
from dasctl.watch.journal import ABORTED, FINAL_STATES, RETRY, STARTED, JournalEntry, LegacyJournal

T = TypeVar("T")

if TYPE_CHECKING:
    from dasctl.store import EnrollmentRecord, Store


class WatchState:
    """One watched folder's state in a store, mirrored in memory. Several watchers may share it (a
    PostgreSQL store): then a recording's entry is read again from the store once it is claimed."""

    def __init__(self, store: Store, root: Path, claims: Claims | None = None) -> None:
        self.store = store
        self.inbox = os.path.abspath(root)
        self.claims = claims if claims is not None else claims_for(store, self.inbox)
        self.entries: dict[FileIdentity, JournalEntry] = {}
        self._partial = False  # finished recordings gone from the folder were dropped (forget_gone)
        self._unreported: dict[FileIdentity, None] = {}  # in the order they finished
        # Store calls made while sessions run go to this one thread, in order: a store that stops
        # answering holds that thread (for its bounded wait), never the event loop and its sessions.
        self._worker: ThreadPoolExecutor | None = None
        self.on_store_call: Callable[[float, BaseException | None], None] | None = None  # --metrics

    def _call(self, step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Every store call watch makes while it runs goes through here (one transaction each): timed
        for --metrics, and the one place to move them off the event loop."""
        started = time.monotonic()
        error: BaseException | None = None
        try:
            return step(*args, **kwargs)
        except BaseException as failed:
            error = failed
            raise
        finally:
            if self.on_store_call is not None:
                self.on_store_call(time.monotonic() - started, error)

    @property
    def location(self) -> str:
        return self.store.location

    def open(self) -> None:
        """Join the folder's watchers (SQLite: take its lock, StoreBusy when another watch has it) and
        load its state."""
        self.claims.open()
        try:
            for known in self.store.watch_files(self.inbox, owed_only=True):
                key = known.key
                identity = FileIdentity(key.relpath, key.size, key.mtime_ns)
                final = known.report if known.state in FINAL_STATES and not known.reported else None
                self.entries[identity] = JournalEntry(
                    known.state, known.attempts, final, known.reported, known.call_id
                )
                if final is not None:
                    self._unreported[identity] = None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.shutdown(wait=True, cancel_futures=True)  # a call under way ends within the store's bound
        self.claims.close()

    async def refresh(self, identity: FileIdentity) -> JournalEntry | None:
        """The entry as the store has it now (another watcher may have moved it on), read off the event
        loop; the memory alone when no other watcher can share this folder and it holds them all."""
        if not self.claims.shared:
            remembered = self.entries.get(identity)
            if remembered is not None or not self._partial:
                return remembered
        known = await self.off_loop(self._call, self.store.watch_file, self.inbox, _key(identity))
        if known is None:
            return self.entries.get(identity)
        final = known.report if known.state in FINAL_STATES and not known.reported else None
        entry = JournalEntry(known.state, known.attempts, final, known.reported, known.call_id)
        self.entries[identity] = entry
        if final is None:
            self._unreported.pop(identity, None)
        return entry

    @property
    def empty(self) -> bool:
        return not self.entries and not self._partial

    def forget_gone(self, present: set[str], in_use: Callable[[FileIdentity], bool]) -> list[FileIdentity]:
        """Drop from memory the finished, reported recordings whose names are no longer in the folder
        (`present`: the relative paths a scan found): moved by --done-dir, deleted, archived. A watch
        that runs for months then holds what its folder holds, not every file it ever saw (about 1 KB
        each: benchmarks/watch_memory.py). The store keeps them all; a file that comes back is looked up
        there before it is run (refresh). The identities dropped."""
        gone = [identity for identity, entry in self.entries.items()
                if identity.relpath not in present and entry.state in FINAL_STATES
                and identity not in self._unreported and not in_use(identity)]
        for identity in gone:
            del self.entries[identity]
        self._partial = self._partial or bool(gone)
        return gone

    def entry(self, identity: FileIdentity) -> JournalEntry | None:
        return self.entries.get(identity)

    def unreported(self) -> list[tuple[FileIdentity, dict[str, Any]]]:
        """Final reports whose stdout line may not have been printed, oldest first."""
        return [(identity, self.entries[identity].final or {}) for identity in self._unreported]

    async def off_loop(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one store call on the store's own thread, in the order asked."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dasctl-store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, functools.partial(call, *args, **kwargs))

    async def step(
        self, state: str, identity: FileIdentity, attempt: int, call_id: str, *,
        report: dict[str, Any] | None = None, enrollment: EnrollmentRecord | None = None,
    ) -> None:
        """A recording's new state written off the event loop (with a final report: durable on return)."""
        await self.off_loop(self._write, identity, state, attempt, call_id, report, enrollment)
        self._remember(identity, state, attempt=attempt, call_id=call_id, report=report)

    # -- the steps of a recording (each one transaction; StoreError when the store cannot be written)
    def started(self, identity: FileIdentity, attempt: int, call_id: str) -> None:
        self._update(identity, STARTED, attempt=attempt, call_id=call_id)

    def retry(self, identity: FileIdentity, attempt: int, call_id: str) -> None:
        self._update(identity, RETRY, attempt=attempt, call_id=call_id)

    def aborted(self, identity: FileIdentity, attempt: int, call_id: str) -> None:
        self._update(identity, ABORTED, attempt=attempt, call_id=call_id)

    def final(
        self,
        identity: FileIdentity,
        state: str,
        attempt: int,
        call_id: str,
        report: dict[str, Any],
        enrollment: EnrollmentRecord | None = None,
    ) -> None:
        """The outcome, its report line and its enrollment record: one transaction, durable on return.
        The report gains the `stored` object (the record's id), as the store kept it."""
        self._update(identity, state, attempt=attempt, call_id=call_id, report=report, enrollment=enrollment)

    async def refusal(self, speaker: str) -> str | None:
        """Why this speaker must not be enrolled (an opt-out), read off the event loop; None when free."""
        return await self.off_loop(self._call, self.store.refusal, speaker)

    async def mark_reported(self, identity: FileIdentity) -> None:
        """`reported`, written off the event loop."""
        await self.off_loop(self._call, self.store.watch_reported, self.inbox, _key(identity))
        self._forget_final(identity)

    def reported(self, identity: FileIdentity) -> None:
        """The report line was printed."""
        self._call(self.store.watch_reported, self.inbox, _key(identity))
        self._forget_final(identity)

    def _forget_final(self, identity: FileIdentity) -> None:
        entry = self.entries.get(identity)
        if entry is not None and entry.final is not None:
            entry.reported = True
            entry.final = None  # printed: a long-running watch must not hold every result in memory
        self._unreported.pop(identity, None)

    def _update(
        self,
        identity: FileIdentity,
        state: str,
        *,
        attempt: int,
        call_id: str | None,
        report: dict[str, Any] | None = None,
        enrollment: EnrollmentRecord | None = None,
    ) -> None:
        self._write(identity, state, attempt, call_id, report, enrollment)
        self._remember(identity, state, attempt=attempt, call_id=call_id, report=report)

    def _write(
        self, identity: FileIdentity, state: str, attempt: int, call_id: str | None,
        report: dict[str, Any] | None, enrollment: EnrollmentRecord | None,
    ) -> None:
        kept = self._call(self.store.watch_update, self.inbox, _key(identity), state, attempt=attempt,
                          call_id=call_id, report=report, enrollment=enrollment, report_stored=True)
        if kept is not None and report is not None:
            from dasctl.store.records import stored_fields

            report["stored"] = stored_fields(kept, self.store.location)

    def _remember(
        self, identity: FileIdentity, state: str, *, attempt: int, call_id: str | None,
        report: dict[str, Any] | None = None,
    ) -> None:
        """The in-memory mirror of a write that reached the store (on the event loop's thread)."""
        entry = self.entries.get(identity)
        if entry is None:
            entry = self.entries[identity] = JournalEntry(state)
        entry.state = state
        entry.call_id = call_id
        if state in (RETRY, *FINAL_STATES):
            entry.attempts = max(entry.attempts, attempt)
        if report is not None:
            entry.final, entry.reported = report, False
            self._unreported.pop(identity, None)
            self._unreported[identity] = None

    # -- an old journal file
    def import_once(self, path: Path) -> str | None:
        """Import an old journal file when the store knows nothing of this folder yet; it is left alone.
        What to tell the user, or None when there was nothing to import."""
        if not path.is_file() or not self.empty:
            return None
        old = LegacyJournal.read(path)
        count = self.import_journal(old)
        skipped = f"; {old.skipped_lines} unreadable line(s) skipped" if old.skipped_lines else ""
        return (f"imported the state of {count} file(s) from {path} into the store {self.location}{skipped}; "
                "that file is no longer used (keep or remove it)")

    def import_journal(self, journal: LegacyJournal) -> int:
        """Copy an old journal's state into the store (finished files in the order they finished); the
        number of recordings imported."""
        for identity, entry in journal.in_order():
            if entry.state in FINAL_STATES:
                self._update(identity, entry.state, attempt=entry.attempts, call_id=entry.call_id,
                             report=entry.final or {})
                if entry.reported:
                    self.reported(identity)
            else:
                if entry.attempts:  # the retries it has used (only ended attempts count)
                    self._update(identity, RETRY, attempt=entry.attempts, call_id=entry.call_id)
                self._update(identity, entry.state, attempt=entry.attempts, call_id=entry.call_id)
        return len(journal.entries)


def _key(identity: FileIdentity) -> Any:
    from dasctl.store import WatchKey

    return WatchKey(identity.relpath, identity.size, identity.mtime_ns)
