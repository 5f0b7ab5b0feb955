"""The runner's side of sharing an inbox with other watchers (claims.py holds the SQL).

A file is claimed when a slot is free for it, never earlier, so that a watcher holds at most
`--concurrency` claims and the others get the rest. A file another watcher holds waits in `_elsewhere`
and is looked at again when a watcher lets one go (NOTIFY) and every LOOK_AGAIN_S seconds (a watcher
that died lets go without a word: PostgreSQL drops its locks with its connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.errors import DasctlError
from dasctl.watch.inbox import FileIdentity, SettledFile
from dasctl.watch.journal import FAILED, FINAL_STATES
from dasctl.watch.store_writes import StoreGaveUp

if TYPE_CHECKING:
    from dasctl.watch.lines import ResultLines
    from dasctl.watch.observer import WatchTotals
    from dasctl.watch.settings import WatchSettings, WorkItem
    from dasctl.watch.state import WatchState
    from dasctl.watch.store_writes import StoreWrites

#: seconds between looks at the files other watchers hold (finds the claims of a watcher that died)
LOOK_AGAIN_S = 2.0
#: seconds between checks that the claims connection still answers (its loss ends watch: exit 6)
PING_EVERY_S = 5.0


class InboxSharing:
    """Claim before a session, let go after the line is marked; replay only what one can claim."""

    settings: WatchSettings
    journal: WatchState
    lines: ResultLines
    writes: StoreWrites
    totals: WatchTotals
    clock: Callable[[], float]
    _active: set[FileIdentity]
    _retried: set[FileIdentity]
    _elsewhere: dict[FileIdentity, Path]
    _looked_elsewhere: float
    _wakeup: asyncio.Event
    _failed_earlier: int
    _fatal: DasctlError | None

    if TYPE_CHECKING:  # the runner's own, declared for the type checker only (never shadowing them)
        def _fatal_error(self, error: DasctlError) -> None: ...
        def _consider(self, settled: SettledFile) -> None: ...
        def _count_earlier(self, identity: FileIdentity, state: str) -> None: ...
        def _report(self, identity: FileIdentity, report: dict[str, Any], *, replay: bool = False,
                    then: Callable[[], None] | None = None) -> None: ...
        def _move_finished(self, path: Path, state: str) -> None: ...

    def _replay_unreported(self) -> None:
        """Print the lines a past run kept but did not print; with other watchers, only those no live
        watcher holds (the one that does prints its own)."""
        for identity, report in self.journal.unreported():
            if not self._try_claim(identity):
                continue
            self._report(identity, report, replay=True, then=functools.partial(self._let_go, identity))

    def _try_claim(self, identity: FileIdentity) -> bool:
        try:
            return self.journal.claims.claim(identity)
        except DasctlError as error:
            self._fatal_error(error)
            return False

    def _let_go(self, identity: FileIdentity) -> None:
        try:
            self.journal.claims.release(identity)
        except DasctlError as error:
            self._fatal_error(error)

    async def _claim(self, item: WorkItem) -> bool:
        """Whether this watcher runs the item now. A file another watcher holds waits in _elsewhere; one
        another watcher finished meanwhile is counted (and its line printed if its watcher died first)."""
        identity = item.identity
        if not self._try_claim(identity):
            self._active.discard(identity)
            if self._fatal is None:
                self._elsewhere[identity] = item.path
            return False
        try:  # read off the event loop, tried again while the store is unreachable
            entry = await self.writes.read(identity.relpath, lambda: self.journal.refresh(identity))
        except StoreGaveUp:  # watch stops (exit 6)
            self._active.discard(identity)
            self._let_go(identity)
            return False
        if entry is None or entry.state not in FINAL_STATES:
            if entry is not None:
                item.attempts = max(item.attempts, entry.attempts)
            return True
        if entry.state == FAILED and identity in self._retried and entry.final is None:
            return True  # --retry-failed, and not finished again by another watcher since
        self._active.discard(identity)
        if entry.final is not None:  # finished by a watcher that died before printing its line
            state = entry.state

            def finished() -> None:
                self._move_finished(item.path, state)
                self._let_go(identity)

            self._report(identity, entry.final, replay=True, then=finished)
            return False
        self._count_earlier(identity, entry.state)
        self._let_go(identity)
        return False

    def _look_elsewhere(self) -> None:
        """Take back the waiting files no watcher holds any longer, when nudged or now and then; and
        check that this watcher's claims are still its own."""
        claims = self.journal.claims
        if not claims.shared:
            return
        now = self.clock()
        nudged = claims.nudged()
        if not nudged and now - self._looked_elsewhere < min(LOOK_AGAIN_S, PING_EVERY_S):
            return
        self._looked_elsewhere = now
        try:
            held = claims.held_elsewhere(self._elsewhere) if self._elsewhere else set()
            if not self._elsewhere:
                claims.ping()
        except DasctlError as error:
            self._fatal_error(error)
            return
        for identity in [i for i in self._elsewhere if i not in held]:
            path = self._elsewhere.pop(identity)
            self._consider(SettledFile(path, identity))

    def _follow_nudges(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Wake the coordinator when a NOTIFY arrives on the claims connection; the undo function."""
        fileno = self.journal.claims.fileno()
        if fileno is None:
            return lambda: None
        try:
            loop.add_reader(fileno, self._wakeup.set)
        except (NotImplementedError, ValueError, OSError):  # no reader on this loop: the tick still looks
            return lambda: None

        def undo() -> None:
            with contextlib.suppress(Exception):
                loop.remove_reader(fileno)

        return undo
