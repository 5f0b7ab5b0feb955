"""The runner: schedules register sessions for an inbox on one asyncio loop; the store makes it resumable.

This module is the scheduling half (startup, signals, slots, draining); which settled files become
work is `intake.InboxIntake`; the per-file steps, from a session to its durable outcome, are
`attempts.AttemptSteps`. On a restart, final outcomes not yet marked reported are printed first. See
docs/watch.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.errors import (
    AuthError,
    DasctlError,
    ExitCode,
    ServiceUnavailable,
    UsageError,
)
from dasctl.watch.attempts import AttemptSteps
from dasctl.watch.inbox import FileIdentity, Inbox, follow_changes
from dasctl.watch.intake import InboxIntake
from dasctl.watch.journal import DEFAULT_JOURNAL_NAME
from dasctl.watch.lines import ResultLines
from dasctl.watch.observer import SilentObserver, WatchObserver, WatchTotals, skipped_figures, summary_line
from dasctl.watch.retries import ServiceHealth, wait_for_service
from dasctl.watch.settings import (
    FileSession,
    TextOut,
    TokenCheck,
    WatchSettings,
    WorkItem,
    ndjson_line,
)
from dasctl.watch.sharing import InboxSharing
from dasctl.watch.state import WatchState
from dasctl.watch.store_writes import StoreWrites

if TYPE_CHECKING:
    from dasctl.store import Store



class _Stop(Exception):
    """Internal: a fatal condition that ends the run with an exit code."""

    def __init__(self, error: DasctlError) -> None:
        super().__init__(error.message)
        self.error = error


class WatchRunner(InboxIntake, InboxSharing, AttemptSteps):
    """Schedules register sessions for an inbox on one asyncio loop; the store makes it resumable."""

    def __init__(
        self,
        settings: WatchSettings,
        session: FileSession,
        *,
        store: Store,
        out: TextOut,
        render: Callable[[dict[str, Any]], str] = ndjson_line,
        observer: WatchObserver | None = None,
        token_check: TokenCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
        state: WatchState | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.observer: WatchObserver = observer or SilentObserver()
        self.token_check = token_check
        self.clock = clock
        root = Path(os.path.abspath(settings.root))
        excluded = [d for d in (settings.done_dir, settings.failed_dir) if d is not None]
        self.inbox = Inbox(
            root, settings.patterns, recursive=settings.recursive, excluded=excluded, settle=settings.settle,
            clock=clock,
        )
        self.journal = state if state is not None else WatchState(store, root)
        self.health = ServiceHealth(settings.unreachable_budget, clock)
        self.writes = StoreWrites(settings.unreachable_budget, settings.retry, self._status,
                                  self._fatal_error, clock)
        self._keeping: dict[FileIdentity, asyncio.Task[bool]] = {}  # final outcomes not yet durable
        self._reporting: set[FileIdentity] = set()  # lines queued, not yet printed and marked
        self._printing = asyncio.Lock()
        self.totals = WatchTotals()
        self._active: set[FileIdentity] = set()  # queued, in flight or waiting to retry
        self._retried: set[FileIdentity] = set()  # --retry-failed: once per run
        self._opted_out: set[FileIdentity] = set()  # skipped once per run (an optin needs a new run)
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stop_reason: str | None = None
        self._signals = 0
        self._fatal: DasctlError | None = None
        self._failed_earlier = 0  # failed files an earlier run reported, still in the folder
        self._counted: set[FileIdentity] = set()  # finished earlier: counted once, however often seen
        # settled files another watcher holds (a shared PostgreSQL store): looked at again when one is let go
        self._elsewhere: dict[FileIdentity, Path] = {}
        self._looked_elsewhere = 0.0
        self._probing: set[asyncio.Task[None]] = set()  # files whose name says nothing, being opened
        self.inbox.on_skip = self.observer.skipped
        self.lines = ResultLines(out, render, self.observer, self.totals)

    @property
    def stdout_closed(self) -> bool:
        return self.lines.closed

    # ---- public entry point

    async def run(self) -> ExitCode:
        """Process the inbox until --once is done, a signal arrives, or a fatal error; the exit code."""
        if not self.settings.root.is_dir():
            raise UsageError(f"{self.settings.root} is not a directory", "Give the folder to watch.")
        loop = asyncio.get_running_loop()
        installed = self._install_signal_handlers(loop)
        try:
            self.journal.open()
            return await self._run()
        finally:
            for signum, previous in installed.items():
                try:
                    signal.signal(signum, previous)
                except (ValueError, TypeError, OSError):
                    pass
            self.journal.close()
            self.observer.close()

    async def _run(self) -> ExitCode:
        started = self.clock()
        try:
            self._import_old_journal()
            self._replay_unreported()  # the marks land in the background, within the budget
            await self._connect()
        except _Stop as stop:
            await self.writes.settle(self.settings.grace)  # the replayed lines' marks
            return self._finish(stop.error, started)
        if self._stop_requested.is_set():
            await self.writes.settle(self.settings.grace)
            return self._finish(None, started)

        watcher: asyncio.Task[None] | None = None
        stop_watching = asyncio.Event()
        if not self.settings.once:
            watcher = asyncio.create_task(self._watch_changes(stop_watching))
        self._rescan()
        self.observer.status(self._watching_line())
        dispatcher = asyncio.create_task(self._dispatch())
        stop_following = self._follow_nudges(asyncio.get_running_loop())
        try:
            await self._coordinate()
        finally:
            stop_following()
            stop_watching.set()
            for probing in list(self._probing):
                probing.cancel()
            dispatcher.cancel()
            for timer in self._timers:
                timer.cancel()
            await self._drain()
            await self.writes.settle(0.0 if self._fatal is not None else self.settings.grace)
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await asyncio.gather(dispatcher, return_exceptions=True)
        return self._finish(self._fatal, started)

    def _finish(self, fatal: DasctlError | None, started: float) -> ExitCode:
        elapsed = self.clock() - started
        skipped = self.inbox.skipped
        summary = summary_line(self.totals, elapsed, self._failed_earlier, self.settings.failed_dir, skipped)
        figures = {
            "done": self.totals.done, "failed": self.totals.failed, "already_reported": self.totals.skipped,
            "opted_out": self.totals.opted_out, "failed_earlier": self._failed_earlier,
            "skipped": len(skipped), "skipped_files": skipped_figures(skipped), "seconds": round(elapsed, 3),
        }
        self.observer.summary(figures)
        # What `--once` (and a run its reader cut short) answers: is every recording here enrolled?
        verdict = ExitCode.BATCH_FAILED if self.lines.any_failed or self._failed_earlier else ExitCode.OK
        if fatal is not None:
            ended, code = "error", fatal.exit_code
        elif self._stop_requested.is_set() and not self.stdout_closed:
            ended, code = "interrupted", ExitCode.INTERRUPTED
        else:
            ended, code = "finished", verdict
        if self.settings.summary_line:
            self.lines.summary({"ended": ended, "exit_code": int(code), **figures})
        if fatal is not None:
            self.observer.status(f"stopped: {summary}")
            raise fatal
        if self.stdout_closed:
            self.observer.status(f"stopped (stdout closed): {summary}")
            return verdict
        if self._stop_requested.is_set():
            self.observer.status(f"{self._stop_reason or 'stopped'}: {summary}")
            return ExitCode.INTERRUPTED
        self.observer.status(f"finished: {summary}")
        return verdict

    def _import_old_journal(self) -> None:
        path = self.settings.journal_path or (self.inbox.root / DEFAULT_JOURNAL_NAME)
        try:
            said = self.journal.import_once(path)
        except DasctlError as error:
            raise _Stop(error) from error
        if said:
            self.observer.warning(said)

    # ---- signals

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> dict[int, Any]:
        """SIGINT, SIGTERM, SIGHUP ask for a stop; the handlers from before come back after the run.
        Plain signal.signal handlers (as asyncio's runner uses): the loop's remove_signal_handler would
        leave SIG_DFL behind, and a SIGTERM while watch prints its summary would kill it (143)."""
        installed: dict[int, Any] = {}

        def stop(signum: int, frame: object) -> None:
            try:
                loop.call_soon_threadsafe(self.request_stop, signal.Signals(signum).name)
            except RuntimeError:  # the loop is closing: the run is over, nothing left to stop
                pass

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN and signum != signal.SIGINT:
                continue  # `nohup dasctl watch ...`: the hangup stays ignored
            try:
                signal.signal(signum, stop)
                installed[signum] = previous
            except (ValueError, OSError):  # not the main thread
                pass
        return installed

    def _status(self, message: str) -> None:
        self.observer.status(message)

    def request_stop(self, reason: str = "stop") -> None:
        """First call: take no new files, let the in-flight ones finish (bounded). Second: abort them now."""
        # Act first, then say so: on a hung-up terminal (SIGHUP from a closed tmux pane) the message
        # raises EIO, and a stop requested after it was never requested: watch outlived every signal.
        self._signals += 1
        self._stop_requested.set()
        self._wakeup.set()
        in_flight = len(self._in_flight)
        if self._signals == 1:
            self._stop_reason = f"stopped by {reason}"
            message = (
                f"{reason}: taking no new files; finishing {in_flight} in flight "
                f"(at most {self.settings.grace:g} s; {reason} again aborts them)"
            ) if in_flight else ""
        else:
            for task in self._in_flight:
                task.cancel()
            self.writes.cancel()
            message = f"{reason} again: aborting {in_flight} in flight"
        if message:
            try:
                self.observer.status(message)
            except OSError:  # stderr is gone; the journal and stdout still carry the results
                pass

    # ---- startup

    async def _connect(self) -> None:
        """One token before any session: fail fast on bad credentials, wait out a short outage."""
        if self.token_check is None:
            return
        self.observer.status("connecting")
        try:
            await wait_for_service(self.token_check, self.health, self.settings.retry, self._stop_requested,
                                   self.observer.status)
        except (AuthError, ServiceUnavailable) as error:
            raise _Stop(error) from error

    # ---- finding files

    async def _watch_changes(self, stop: asyncio.Event) -> None:
        try:
            await follow_changes(self.inbox, stop, self._wakeup.set)
        except Exception as error:  # the periodic rescan still finds new files
            self.observer.warning(f"file notifications stopped ({error}); falling back to rescans")

    def _watching_line(self) -> str:
        where = self.inbox.root
        waiting = self.inbox.waiting
        mode = "processing" if self.settings.once else "watching"
        return f"{mode} {where} ({waiting} file{'s' if waiting != 1 else ''} found)"

    async def _coordinate(self) -> None:
        """Take settled files, notice when --once is done, rescan now and then, until told to stop."""
        last_rescan = self.clock()
        while not self._stop_requested.is_set() and self._fatal is None:
            for settled in self.inbox.take_settled():
                self._take(settled)
            self._look_elsewhere()
            if not self.settings.once and self.clock() - last_rescan >= self.settings.rescan_interval:
                last_rescan = self.clock()
                self._rescan()
            self._update_totals()
            if self.settings.once and self._idle():
                return
            next_check = self.inbox.next_check()
            timeout = 1.0 if next_check is None else min(1.0, next_check + 0.01)
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.01, timeout))
            except asyncio.TimeoutError:
                pass

    def _idle(self) -> bool:
        # _active covers queued, held by the dispatcher, in flight and waiting to retry; --once also waits
        # for the files other watchers hold: if one of them dies, its files are ours to finish
        return (self.inbox.waiting == 0 and not self._active and not self._in_flight and not self._elsewhere
                and not self._probing and not self._reporting)

    # ---- running sessions

    async def _dispatch(self) -> None:
        slots = asyncio.Semaphore(max(1, self.settings.concurrency))
        while True:
            item = await self._queue.get()
            await slots.acquire()
            if self._stop_requested.is_set() or self._fatal is not None:
                slots.release()
                return
            if not await self._claim(item):
                slots.release()
                self._wakeup.set()
                continue
            task = asyncio.create_task(self._process(item))
            self._in_flight.add(task)

            def done(t: asyncio.Task[None]) -> None:
                self._in_flight.discard(t)
                slots.release()
                self._wakeup.set()

            task.add_done_callback(done)
            self._update_totals()

    async def _drain(self) -> None:
        """Let in-flight sessions finish within the grace period (none on a fatal error), then cancel."""
        if not self._in_flight:
            return
        grace = 0.0 if self._fatal is not None else self.settings.grace
        if grace > 0:
            await asyncio.wait(set(self._in_flight), timeout=grace)
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=30)
