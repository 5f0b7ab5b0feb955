"""The runner's intake: which settled files become work, and which are done already.

A scan (at the start and every `rescan_interval` seconds) and the folder's change events feed the inbox;
each file that settles is considered here: a file whose name says nothing is opened first (probe), one
an earlier run finished is counted and left alone (or moved to --done-dir/--failed-dir), the rest are
queued for a session.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from dasctl.watch.inbox import NOT_AUDIO, FileIdentity, Inbox, SettledFile
from dasctl.watch.journal import FAILED, FINAL_STATES
from dasctl.watch.probe import probe
from dasctl.watch.settings import WorkItem

if TYPE_CHECKING:
    from dasctl.watch.lines import ResultLines
    from dasctl.watch.observer import WatchTotals
    from dasctl.watch.settings import WatchSettings
    from dasctl.watch.state import WatchState


class InboxIntake:
    """Settled files in, work items out."""

    settings: WatchSettings
    inbox: Inbox
    journal: WatchState
    lines: ResultLines
    totals: WatchTotals
    _active: set[FileIdentity]
    _retried: set[FileIdentity]
    _opted_out: set[FileIdentity]
    _reporting: set[FileIdentity]
    _keeping: dict[FileIdentity, asyncio.Task[bool]]
    _elsewhere: dict[FileIdentity, Path]
    _counted: set[FileIdentity]
    _probing: set[asyncio.Task[None]]
    _queue: asyncio.Queue[WorkItem]
    _wakeup: asyncio.Event
    _failed_earlier: int

    if TYPE_CHECKING:  # the runner's own, declared for the type checker only (never shadowing them)
        def _move_finished(self, path: Path, state: str) -> None: ...

    def _rescan(self) -> None:
        """Look at every file of the folder again; forget the finished ones that left it."""
        present: set[str] = set()
        for path in self.inbox.scan():
            self.inbox.observe(path)
            present.add(self.inbox.relpath(path) or "")
        busy = (self._active, self._reporting, self._keeping, self._elsewhere)
        for identity in self.journal.forget_gone(present, lambda i: any(i in held for held in busy)):
            for seen in (self.lines.printed, self._counted, self._retried, self._opted_out):
                seen.discard(identity)

    def _count_earlier(self, identity: FileIdentity, state: str) -> None:
        """A file finished before (by an earlier run, or another watcher): counted once in this run's
        figures, however often a rescan sees it again; not at all when this run printed its line."""
        if identity in self.lines.printed or identity in self._counted:
            return
        self._counted.add(identity)
        self.totals.skipped += 1
        if state == FAILED:
            self._failed_earlier += 1

    def _take(self, settled: SettledFile) -> None:
        """A settled file: considered now, or once a look inside shows it is a recording."""
        entry = self.journal.entry(settled.identity)
        if not self.inbox.needs_probe(settled.path) or (entry is not None and entry.state in FINAL_STATES):
            self._consider(settled)
            return
        task = asyncio.create_task(self._probe(settled))
        self._probing.add(task)
        task.add_done_callback(self._probing.discard)

    async def _probe(self, settled: SettledFile) -> None:
        if await probe(settled.path):
            self._consider(settled)
        else:
            self.inbox.skip(settled.path, NOT_AUDIO)
        self._wakeup.set()

    def _consider(self, settled: SettledFile) -> None:
        identity = settled.identity
        if identity in self._active or identity in self._opted_out or identity in self._reporting:
            return
        entry = self.journal.entry(identity)
        if entry is not None and entry.state in FINAL_STATES:
            retry = (
                entry.state == FAILED and self.settings.retry_failed and identity not in self._retried
            )
            if not retry:
                self._count_earlier(identity, entry.state)
                self._move_finished(settled.path, entry.state)
                return
            self._retried.add(identity)
        attempts = entry.attempts if entry is not None else 0
        if entry is not None and entry.state in FINAL_STATES:
            attempts = 0  # --retry-failed: a fresh set of retries
        self._active.add(identity)
        self._queue.put_nowait(WorkItem(settled.path, identity, attempts))
