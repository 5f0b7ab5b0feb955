"""One file's attempt, from its session to its durable outcome: the steps `WatchRunner` takes per file.

The order of durable steps is what makes `kill -9` safe: the outcome (with any credential, and its
enrollment record) is durable in the store before its stdout line is printed, and marked reported right
after printing. A terminal answer that will not be retried is recorded the moment it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import (
    AuthError,
    DasctlError,
    ExitCode,
    exit_code_for_event,
    is_retryable,
)
from dasctl.watch.inbox import FileIdentity, Inbox, move_out
from dasctl.watch.journal import ABORTED, DONE, FAILED, RETRY, STARTED
from dasctl.watch.lines import ResultLines, StdoutClosed
from dasctl.watch.observer import WatchObserver, WatchTotals
from dasctl.watch.report import attempt_outcome
from dasctl.watch.retries import ServiceHealth, failure_of
from dasctl.watch.settings import Attempt, FileSession, WatchSettings, WorkItem
from dasctl.watch.state import WatchState
from dasctl.watch.store_writes import StoreGaveUp, StoreWrites

if TYPE_CHECKING:
    from dasctl.session import Progress

log = logging.getLogger(__name__)


class AttemptSteps:
    """The per-file half of WatchRunner: run a session, then retry, record, print and move its file."""

    settings: WatchSettings
    session: FileSession
    observer: WatchObserver
    clock: Callable[[], float]
    inbox: Inbox
    journal: WatchState
    health: ServiceHealth
    totals: WatchTotals
    lines: ResultLines
    writes: StoreWrites
    _keeping: dict[FileIdentity, asyncio.Task[bool]]  # final outcomes not yet durable
    _reporting: set[FileIdentity]  # lines queued, not yet printed and marked
    _printing: asyncio.Lock  # one line printed and marked at a time
    _active: set[FileIdentity]
    _queue: asyncio.Queue[WorkItem]
    _in_flight: set[asyncio.Task[None]]
    _timers: set[asyncio.TimerHandle]
    _wakeup: asyncio.Event
    _stop_requested: asyncio.Event
    _stop_reason: str | None
    _signals: int
    _fatal: DasctlError | None
    _opted_out: set[FileIdentity]

    if TYPE_CHECKING:  # sharing.InboxSharing's, declared for the type checker only
        def _let_go(self, identity: FileIdentity) -> None: ...


    async def _process(self, item: WorkItem) -> None:
        attempt_number = item.attempts + 1
        call_id = str(uuid.uuid4())
        name = item.identity.relpath
        attempt = Attempt(started=self.clock())
        try:
            started = await self.writes.keep(
                item.identity.relpath,
                lambda: self.journal.step(STARTED, item.identity, attempt_number, call_id))
        except asyncio.CancelledError:
            # The store's thread may have written `started` before the cancel reached this await: the
            # attempt ends `aborted` either way, as one cancelled during its session does (a second
            # SIGINT then left `started` behind; the next run does the file again in both states).
            self._abandon(item, attempt_number, call_id, "cancelled")
            raise
        if not started:
            self._active.discard(item.identity)
            return
        self.observer.started(name, attempt_number)
        attempt.tap.keep = self.settings.keep_enrollments
        try:
            speaker = attempt.speaker = self.settings.speakers.speaker(name)
        except DasctlError as error:  # a name --speaker-from does not match: no session for it
            self._after_error(item, attempt, attempt_number, call_id, error)
            return
        try:  # an opt-out: never sent (docs/store.md)
            refusal = await self.writes.read(name, lambda: self.journal.refusal(speaker))
        except StoreGaveUp:  # watch stops (exit 6); the file stays unfinished for the next run
            self._abandon(item, attempt_number, call_id, "the store could not be read")
            return
        if refusal:
            self._skip_opted_out(item, attempt_number, call_id, speaker, refusal)
            return
        if self.settings.consents is not None:
            try:
                attempt.consent = self.settings.consents.reference(name, attempt.speaker)
            except DasctlError as error:  # --consent-from gives it no reference: never sent
                self._after_error(item, attempt, attempt_number, call_id, error)
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
        from dasctl.watch.settings import ndjson_line

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
        identity = item.identity
        self.writes.spawn(identity.relpath,
                          lambda: self.journal.step(ABORTED, identity, attempt_number, call_id))
        self._active.discard(identity)
        self._let_go(identity)  # another watcher may take it now

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
        ended = attempt_number
        self.writes.spawn(item.identity.relpath,
                          lambda: self.journal.step(RETRY, item.identity, ended, call_id))
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
        # Durable off the loop (retried while the store is unreachable); _complete reports it once kept.
        identity = item.identity
        self._keeping[identity] = self.writes.spawn(
            identity.relpath,
            lambda: self.journal.step(state, identity, attempt_number, call_id, report=report,
                                      enrollment=enrollment),
        )
        return report

    def _complete(self, item: WorkItem, report: dict[str, Any]) -> None:
        if item.identity not in self._active:
            return  # already completed (the early record, then the session's return)
        keeping = self._keeping.get(item.identity)
        if keeping is not None:
            if not keeping.done():
                keeping.add_done_callback(lambda _: self._complete(item, report))
                return
            del self._keeping[item.identity]
            if keeping.cancelled() or not keeping.result():
                # never reported unless recorded: the file stays unfinished for the next run
                self._active.discard(item.identity)
                self._wakeup.set()
                return
        self._active.discard(item.identity)
        self._wakeup.set()
        state = DONE if report.get("exit_code") == ExitCode.OK else FAILED

        def finished() -> None:  # printed and marked: moved, and nothing is left for another watcher
            self._move_finished(item.path, state)
            self._let_go(item.identity)

        self._report(item.identity, report, then=finished)

    def _report(
        self, identity: FileIdentity, report: dict[str, Any], *, replay: bool = False,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Queue the line: printed, then marked printed in the store (off the event loop, tried again
        while the store is unreachable), then `then`."""
        self._reporting.add(identity)
        self.writes.track(self._print_and_mark(identity, report, replay, then))

    async def _print_and_mark(
        self, identity: FileIdentity, report: dict[str, Any], replay: bool, then: Callable[[], None] | None
    ) -> None:
        # One line at a time, each marked before the next is printed: a kill leaves at most one line
        # printed and not marked, the one the next run repeats (docs/watch.md); never several.
        async with self._printing:
            try:
                printed = self.lines.print(identity, report, replay=replay)
            except StdoutClosed:
                self._stdout_closed()
                printed = False
            self._update_totals()
            if printed:  # a mark never kept: watch stops (exit 6) and the next run prints the line again
                await self.writes.keep(identity.relpath, lambda: self.journal.mark_reported(identity))
        self._reporting.discard(identity)
        self._wakeup.set()
        if then is not None:
            then()

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
