"""stdout's half of watch's exactly-once order: print a file's line, then mark it printed in the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dasctl.errors import DasctlError, ExitCode
from dasctl.watch.inbox import FileIdentity
from dasctl.watch.observer import WatchObserver, WatchTotals
from dasctl.watch.settings import TextOut
from dasctl.watch.state import WatchState


class StdoutClosed(Exception):
    """The reader went away (`| head -n1`)."""


class ResultLines:
    """One line per finished file, each printed once per run; a kill between the line and its mark
    repeats it (identical) on the next run, and nothing else can."""

    def __init__(
        self,
        out: TextOut,
        render: Callable[[dict[str, Any]], str],
        state: WatchState,
        observer: WatchObserver,
        totals: WatchTotals,
    ) -> None:
        self.out = out
        self.render = render
        self.state = state
        self.observer = observer
        self.totals = totals
        self.closed = False
        self.printed: set[FileIdentity] = set()  # lines this run printed (replays included)
        self.any_failed = False
        self.marking: set[asyncio.Future[None]] = set()  # marks on their way to the store

    def print(
        self, identity: FileIdentity, report: dict[str, Any], *, replay: bool = False, durable: bool = True
    ) -> None:
        """Print and mark; StdoutClosed the first time stdout is found closed; a store error (the line
        was printed, the mark not kept) is raised after the line is counted."""
        if self.closed or identity in self.printed:
            return
        try:
            self.out.write(self.render(report) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError) as error:
            self.closed = True
            raise StdoutClosed() from error
        self.printed.add(identity)
        unmarked: DasctlError | None = None
        if durable:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop (a tool replaying lines): the mark is written here and now
                try:
                    self.state.reported(identity)
                except DasctlError as error:  # the next run prints this line again: the documented repeat
                    unmarked = error
            else:  # off the loop, as every store call of a running watch
                marking = self.state.mark_reported(identity)
                self.marking.add(marking)
                marking.add_done_callback(lambda marked: self._unmarked(identity, marked))
        if report.get("exit_code") == ExitCode.OK:
            self.totals.done += 1
        else:
            self.totals.failed += 1
            self.any_failed = True
        self.observer.finished(identity.relpath, report)
        if replay:
            self.observer.status(f"{identity.relpath}: reported from the store (finished by a past run)")
        if unmarked is not None:
            raise unmarked

    async def settle(self, timeout: float) -> None:
        """Let the marks under way reach the store (a mark given up repeats its line on the next run)."""
        if self.marking:
            await asyncio.wait(set(self.marking), timeout=timeout)

    def _unmarked(self, identity: FileIdentity, marked: asyncio.Future[None]) -> None:
        self.marking.discard(marked)
        error = None if marked.cancelled() else marked.exception()
        if isinstance(error, DasctlError):  # the next run prints this line again: the documented repeat
            self.observer.warning(f"{identity.relpath}: printed, but not marked as printed in the store "
                                  f"({error.message}); the next run prints it again")
