"""Running sessions one recording after another: what register and verify share (and the Python API uses).

Each recording is one session with its own call id; what the caller sees goes through three small hooks:
a progress sink (the CLI's display, or the API's callback), a warning hook, and a per-file hook that
renders the result as soon as it is there. The exit code of a batch is decided here. No Typer or rich.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from dasctl.errors import AuthError, BatchFailed, DasctlError, UsageError

if TYPE_CHECKING:
    from dasctl.recording import Recording
    from dasctl.results import SessionReport
    from dasctl.session import Progress, RegisterOptions

#: A warning for the user (one line, no prefix): stderr on the command line, `logging` in the API.
Warn = Callable[[str], None]


class ProgressSink(Protocol):
    """Where a session's progress goes, file by file (the CLI's displays have this shape)."""

    def begin(self, name: str, index: int, total: int) -> None: ...

    def update(self, progress: Progress) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    """A sink that shows nothing."""

    def begin(self, name: str, index: int, total: int) -> None:
        pass

    def update(self, progress: Progress) -> None:
        pass

    def end(self) -> None:
        pass


class CallbackProgress(NoProgress):
    """Every progress snapshot handed to one function (the API's `on_progress`)."""

    def __init__(self, callback: Callable[[Progress], None]) -> None:
        self.callback = callback

    def update(self, progress: Progress) -> None:
        self.callback(progress)


Report = TypeVar("Report", bound="SessionReport")


def check_inputs(
    recordings: Sequence[Recording], speed: float, timeout: float, call_id: str | None,
    names: dict[str, str] | None = None,
) -> None:
    """What can be refused before any connection; `names` spells the options as the caller named them
    (the command line's flags by default)."""
    spelled = {"speed": "--speed", "timeout": "--timeout", "call_id": "--call-id", **(names or {})}
    if sum(recording.is_stdin for recording in recordings) > 1:
        raise UsageError("stdin (-) can be given only once")
    for recording in recordings:
        recording.check_exists()
    if speed < 0:
        raise UsageError(f"{spelled['speed']} {speed:g} is negative",
                         "Use 1 for real time, 0 for as fast as possible.")
    if timeout <= 0:
        raise UsageError(f"{spelled['timeout']} {timeout:g} must be positive")
    if call_id is not None:
        if len(recordings) > 1:
            raise UsageError(f"{spelled['call_id']} needs a single file",
                             "Each session needs its own call id.")
        try:
            uuid.UUID(call_id)
        except ValueError:
            raise UsageError(
                f"{spelled['call_id']} {call_id!r} is not a UUID", "Leave it out to get a fresh one."
            ) from None


async def run_each(
    recordings: Sequence[Recording],
    options: RegisterOptions,
    sink: ProgressSink,
    one: Callable[[int, Recording, RegisterOptions], Awaitable[Report]],
    on_result: Callable[[Report, int, int], None],
) -> list[Report]:
    """One session per recording, in order (`one` gets its index), each with a fresh call id unless one was
    given. on_result
    sees each file's result as it comes; in a batch, an authentication failure stops it (the same
    credentials would fail for every other file)."""
    reports: list[Report] = []
    for index, recording in enumerate(recordings):
        sink.begin(recording.name, index, len(recordings))
        file_options = options if options.call_id else dataclasses.replace(options, call_id=str(uuid.uuid4()))
        report = await one(index, recording, file_options)
        reports.append(report)
        on_result(report, index, len(recordings))
        if len(recordings) > 1 and isinstance(report.error, AuthError):
            raise report.error
    return reports


def batch_failure(reports: Sequence[SessionReport], message: str, hint: str) -> DasctlError | None:
    """What the run as a whole ends with: nothing when every file went well, a single file's own error,
    else BatchFailed (exit 7) with `message` (formatted with failed, total and numbers, e.g. [2/3])."""
    failed = [report.failure for report in reports if report.failure is not None]
    if not failed:
        return None
    if len(reports) == 1:
        return failed[0]
    total = len(reports)
    numbers = ", ".join(
        f"[{i + 1}/{total}]" for i, report in enumerate(reports) if report.failure is not None
    )
    return BatchFailed(message.format(failed=len(failed), total=total, numbers=numbers), hint)
