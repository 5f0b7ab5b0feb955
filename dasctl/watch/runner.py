"""The runner: schedules register sessions for an inbox on one asyncio loop; the store makes it resumable.

The order of durable steps is what makes `kill -9` safe: the outcome (with any credential, and its
enrollment record) is durable in the store before its stdout line is printed, and marked reported right
after printing. On a restart, final outcomes not yet marked are printed first. See docs/watch.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import (
    AuthError,
    DasctlError,
    ExitCode,
    ServiceUnavailable,
    UsageError,
    exit_code_for_event,
    is_retryable,
)
from dasctl.watch.inbox import FileIdentity, Inbox, SettledFile, follow_changes, move_out
from dasctl.watch.journal import DEFAULT_JOURNAL_NAME, DONE, FAILED, FINAL_STATES
from dasctl.watch.lines import ResultLines, StdoutClosed
from dasctl.watch.observer import SilentObserver, WatchObserver, WatchTotals, summary_line
from dasctl.watch.report import attempt_outcome
from dasctl.watch.retries import ServiceHealth, failure_of, wait_for_service
from dasctl.watch.settings import (
    Attempt,
    FileSession,
    TextOut,
    TokenCheck,
    WatchSettings,
    WorkItem,
    ndjson_line,
)
from dasctl.watch.state import WatchState

if TYPE_CHECKING:
    from dasctl.session import Progress
    from dasctl.store import Store

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Internal: a fatal condition that ends the run with an exit code."""

    def __init__(self, error: DasctlError) -> None:
        super().__init__(error.message)
        self.error = error


class WatchRunner:
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
        self.journal = WatchState(store, root)
        self.health = ServiceHealth(settings.unreachable_budget, clock)
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
        self.lines = ResultLines(out, render, self.journal, self.observer, self.totals)

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
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.journal.close()
            self.observer.close()

    async def _run(self) -> ExitCode:
        started = self.clock()
        try:
            self._import_old_journal()
            for identity, report in self.journal.unreported():
                self._report(identity, report, replay=True)
            await self._connect()
        except _Stop as stop:
            return self._finish(stop.error, started)
        if self._stop_requested.is_set():
            return self._finish(None, started)

        watcher: asyncio.Task[None] | None = None
        stop_watching = asyncio.Event()
        if not self.settings.once:
            watcher = asyncio.create_task(self._watch_changes(stop_watching))
        self._rescan()
        self.observer.status(self._watching_line())
        dispatcher = asyncio.create_task(self._dispatch())
        try:
            await self._coordinate()
        finally:
            stop_watching.set()
            dispatcher.cancel()
            for timer in self._timers:
                timer.cancel()
            await self._drain()
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await asyncio.gather(dispatcher, return_exceptions=True)
        return self._finish(self._fatal, started)

    def _finish(self, fatal: DasctlError | None, started: float) -> ExitCode:
        elapsed = self.clock() - started
        summary = summary_line(self.totals, elapsed, self._failed_earlier, self.settings.failed_dir)
        if fatal is not None:
            self.observer.status(f"stopped: {summary}")
            raise fatal
        # What `--once` (and a run its reader cut short) answers: is every recording here enrolled?
        verdict = ExitCode.BATCH_FAILED if self.lines.any_failed or self._failed_earlier else ExitCode.OK
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

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is signal.SIG_IGN and signum != signal.SIGINT:
                continue  # `nohup dasctl watch ...`: the hangup stays ignored
            try:
                loop.add_signal_handler(signum, self.request_stop, signal.Signals(signum).name)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass
        return installed

    def request_stop(self, reason: str = "stop") -> None:
        """First call: take no new files, let the in-flight ones finish (bounded). Second: abort them now."""
        self._signals += 1
        if self._signals == 1:
            self._stop_reason = f"stopped by {reason}"
            if self._in_flight:
                self.observer.status(
                    f"{reason}: taking no new files; finishing {len(self._in_flight)} in flight "
                    f"(at most {self.settings.grace:g} s; {reason} again aborts them)"
                )
        else:
            self.observer.status(f"{reason} again: aborting {len(self._in_flight)} in flight")
            for task in self._in_flight:
                task.cancel()
        self._stop_requested.set()
        self._wakeup.set()

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

    def _rescan(self) -> None:
        for path in self.inbox.scan():
            self.inbox.observe(path)

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
                self._consider(settled)
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
        # _active covers queued, held by the dispatcher, in flight and waiting to retry
        return self.inbox.waiting == 0 and not self._active and not self._in_flight

    def _consider(self, settled: SettledFile) -> None:
        identity = settled.identity
        if identity in self._active or identity in self._opted_out:
            return
        entry = self.journal.entry(identity)
        if entry is not None and entry.state in FINAL_STATES:
            retry = (
                entry.state == FAILED and self.settings.retry_failed and identity not in self._retried
            )
            if not retry:
                if identity not in self.lines.printed:  # not the lines this run replayed
                    self.totals.skipped += 1
                    if entry.state == FAILED:
                        self._failed_earlier += 1
                self._move_finished(settled.path, entry.state)
                return
            self._retried.add(identity)
        attempts = entry.attempts if entry is not None else 0
        if entry is not None and entry.state in FINAL_STATES:
            attempts = 0  # --retry-failed: a fresh set of retries
        self._active.add(identity)
        self._queue.put_nowait(WorkItem(settled.path, identity, attempts))

    # ---- running sessions

    async def _dispatch(self) -> None:
        slots = asyncio.Semaphore(max(1, self.settings.concurrency))
        while True:
            item = await self._queue.get()
            await slots.acquire()
            if self._stop_requested.is_set() or self._fatal is not None:
                slots.release()
                return
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

    async def _process(self, item: WorkItem) -> None:
        attempt_number = item.attempts + 1
        call_id = str(uuid.uuid4())
        name = item.identity.relpath
        attempt = Attempt(started=self.clock())
        if not self._write_state(self.journal.started, item.identity, attempt_number, call_id):
            self._active.discard(item.identity)
            return
        self.observer.started(name, attempt_number)
        attempt.tap.keep = self.settings.keep_enrollments
        try:
            attempt.speaker = self.settings.speakers.speaker(name)
        except DasctlError as error:  # a name --speaker-from does not match: no session for it
            self._after_error(item, attempt, attempt_number, call_id, error)
            return
        refusal = self.journal.store.refusal(attempt.speaker)  # an opt-out: never sent (docs/store.md)
        if refusal:
            self._skip_opted_out(item, attempt_number, call_id, attempt.speaker, refusal)
            return

        def on_progress(progress: Progress) -> None:
            self._on_progress(item, attempt, attempt_number, call_id, progress)

        try:
            outcome = await self.session(item.path, call_id, on_progress, attempt.tap)
        except asyncio.CancelledError:
            if attempt.report is None:
                self._abandon(item, attempt_number, call_id, "cancelled")
            else:
                self._complete(item, attempt.report)
            raise
        except Exception as error:
            if attempt.report is not None:  # the outcome is already safe; a late hiccup changes nothing
                self._complete(item, attempt.report)
                return
            self._after_error(item, attempt, attempt_number, call_id, error)
            return
        if attempt.report is None:
            attempt.audio_seconds_sent = outcome.audio_seconds_sent
            attempt.last_vad = outcome.last_vad or attempt.last_vad
            timings = dict(outcome.timings) or attempt.marks
            self._after_event(item, attempt, attempt_number, call_id, outcome.result, timings)
        else:
            self._complete(item, attempt.report)

    def _on_progress(
        self, item: WorkItem, attempt: Attempt, attempt_number: int, call_id: str, progress: Progress
    ) -> None:
        if attempt.saw(progress, self.clock() - attempt.started):
            self.health.reached()
        event = getattr(progress, "event", None)
        # A terminal answer that will not be retried is made durable the moment it arrives: a kill
        # between here and the session's teardown must not lose a credential.
        if isinstance(event, (events.SessionResult, events.SessionError)) and attempt.report is None:
            if not is_retryable(exit_code_for_event(event.name)):
                self._record_final(item, attempt, attempt_number, call_id, event=event, timings=attempt.marks)
        try:
            self.observer.progress(item.identity.relpath, progress)
        except Exception:  # a display problem must never cost a result
            log.debug("display failed", exc_info=True)

    def _after_event(
        self,
        item: WorkItem,
        attempt: Attempt,
        attempt_number: int,
        call_id: str,
        event: events.SessionResult | events.SessionError,
        timings: dict[str, float],
    ) -> None:
        self.health.reached()
        code = exit_code_for_event(event.name)
        if is_retryable(code) and not self.settings.retry.gives_up(attempt_number):
            message = event.content or event.name
            self._schedule_retry(item, attempt_number, call_id, message, unreachable=False)
            return
        report = self._record_final(item, attempt, attempt_number, call_id, event=event, timings=timings)
        self._complete(item, report)

    def _after_error(
        self, item: WorkItem, attempt: Attempt, attempt_number: int, call_id: str, error: Exception
    ) -> None:
        if isinstance(error, AuthError):
            # Not this file's fault: every other file would fail the same way.
            self._fatal_error(error)
            self._abandon(item, attempt_number, call_id, error.message)
            return
        known = failure_of(error, item.path)
        if known is None:
            self.observer.status(f"{item.identity.relpath}: vanished before it could be read; skipped")
            self._abandon(item, attempt_number, call_id, "vanished")
            return
        if is_retryable(known.exit_code):
            if not attempt.reached_service:
                if self.health.unreachable(known.message):
                    self._fatal_error(self.health.outage_error(known))
                    self._abandon(item, attempt_number, call_id, known.message)
                    return
                self._schedule_retry(item, attempt_number, call_id, known.message, unreachable=True)
                return
            if not self.settings.retry.gives_up(attempt_number):
                self._schedule_retry(item, attempt_number, call_id, known.message, unreachable=False)
                return
        report = self._record_final(
            item, attempt, attempt_number, call_id, error=known, timings=attempt.marks
        )
        self._complete(item, report)

    def _skip_opted_out(
        self, item: WorkItem, attempt_number: int, call_id: str, speaker: str, refusal: str
    ) -> None:
        """Not a failure, and not final: an `optin` lets a later run enroll the file."""
        from dasctl.watch.report import opted_out_report

        self._abandon(item, attempt_number, call_id, refusal)
        self._opted_out.add(item.identity)
        self.totals.opted_out += 1
        report = opted_out_report(item.identity, item.path, speaker, refusal)
        try:
            human = f"{report['file']}: skipped, {refusal}"
            self.lines.out.write((ndjson_line(report) if self.lines.render is ndjson_line else human) + "\n")
            self.lines.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._stdout_closed()
        self._update_totals()

    def _fatal_error(self, error: DasctlError) -> None:
        if self._fatal is None:
            self._fatal = error  # raised at the end: the CLI prints it, once, with its exit code
        self._wakeup.set()

    def _abandon(self, item: WorkItem, attempt_number: int, call_id: str, reason: str) -> None:
        log.debug("%s: attempt %d abandoned: %s", item.identity.relpath, attempt_number, reason)
        self._write_state(self.journal.aborted, item.identity, attempt_number, call_id)
        self._active.discard(item.identity)

    def _write_state(self, step: Callable[[FileIdentity, int, str], None], identity: FileIdentity,
                     attempt_number: int, call_id: str) -> bool:
        """A step that no result depends on yet; a store that cannot be written stops watch (exit 6)."""
        try:
            step(identity, attempt_number, call_id)
        except DasctlError as error:
            self._fatal_error(error)
            return False
        return True

    def _schedule_retry(
        self, item: WorkItem, attempt_number: int, call_id: str, message: str, *, unreachable: bool
    ) -> None:
        if unreachable:
            item.unreachable += 1
            # Failing to reach the service is not the file's fault: it keeps its retries.
            attempt_number -= 1
            delay = self.settings.retry.delay(max(item.unreachable, self.health.failures))
        else:
            item.unreachable = 0
            delay = self.settings.retry.delay(attempt_number)
        if not self._write_state(self.journal.retry, item.identity, attempt_number, call_id):
            self._active.discard(item.identity)
            return
        item.attempts = attempt_number
        self.observer.status(f"retrying {item.identity.relpath} in {delay:.1f} s: {message}")
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            self._timers.discard(handle)
            if self._stop_requested.is_set() or self._fatal is not None:
                return
            self._queue.put_nowait(item)
            self._wakeup.set()

        handle = loop.call_later(delay, requeue)
        self._timers.add(handle)

    def _record_final(
        self,
        item: WorkItem,
        attempt: Attempt,
        attempt_number: int,
        call_id: str,
        *,
        event: events.SessionResult | events.SessionError | None = None,
        error: DasctlError | None = None,
        timings: dict[str, float],
    ) -> dict[str, Any]:
        timings = dict(timings)
        timings.setdefault("total", self.clock() - attempt.started)
        report, enrollment = attempt_outcome(item.identity, item.path, call_id, attempt_number, attempt,
                                             self.settings, event=event, error=error, timings=timings)
        state = DONE if report["exit_code"] == ExitCode.OK else FAILED
        attempt.report = report
        try:
            self.journal.final(item.identity, state, attempt_number, call_id, report, enrollment)
        except DasctlError as error:
            # Not kept: the line is still printed (the credential reaches the user), then watch stops.
            self._fatal_error(error)
            self._report(item.identity, report, durable=False)
            self._active.discard(item.identity)
        return report

    def _complete(self, item: WorkItem, report: dict[str, Any]) -> None:
        if item.identity not in self._active:
            return  # already completed (the early record, then the session's return)
        self._active.discard(item.identity)
        self._report(item.identity, report)
        state = DONE if report.get("exit_code") == ExitCode.OK else FAILED
        self._move_finished(item.path, state)

    def _report(
        self, identity: FileIdentity, report: dict[str, Any], *, replay: bool = False, durable: bool = True
    ) -> None:
        try:
            self.lines.print(identity, report, replay=replay, durable=durable)
        except StdoutClosed:
            self._stdout_closed()
        except DasctlError as error:
            self._fatal_error(error)
        self._update_totals()

    def _stdout_closed(self) -> None:
        """The reader went away (`| head -n1`): stop now, quietly; lines not printed stay unreported."""
        self.observer.warning(
            "stdout was closed: stopping; results not printed are kept and the next run prints them"
        )
        self._stop_reason = "stdout closed"
        self._signals = max(self._signals, 1)  # a later signal aborts at once
        for task in self._in_flight:
            task.cancel()
        self._stop_requested.set()
        self._wakeup.set()

    def _move_finished(self, path: Path, state: str) -> None:
        target_dir = self.settings.done_dir if state == DONE else self.settings.failed_dir
        if target_dir is not None:
            problem = move_out(self.inbox, path, target_dir)
            if problem:
                self.observer.warning(problem)

    def _update_totals(self) -> None:
        self.totals.in_flight = len(self._in_flight)
        # waiting for a free slot: in the queue, or already taken by the dispatcher
        self.totals.queued = max(0, len(self._active) - len(self._in_flight) - len(self._timers))
        self.totals.waiting = self.inbox.waiting
        self.totals.retrying = len(self._timers)
        self.observer.totals(self.totals)
