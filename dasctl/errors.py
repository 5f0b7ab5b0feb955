"""One error hierarchy for dasctl; exit codes (docs/architecture.md §5) are decided here and nowhere else."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    AUDIO = 3
    AUTH = 4
    REJECTED = 5
    UNAVAILABLE = 6
    BATCH_FAILED = 7
    INTERRUPTED = 130  # SIGINT, and SIGTERM/SIGHUP, which end every command the same way
    STDOUT_CLOSED = 141  # the reader of stdout went away (`| head`): 128 + SIGPIPE, as `cat` ends there


class DasctlError(Exception):
    """An error the user should see as one line (plus an optional hint), never as a traceback."""

    exit_code: ExitCode = ExitCode.INTERNAL
    #: short machine-readable kind, used in JSON output (`"error": {"kind": ...}`)
    kind: str = "internal"
    #: the Python API's result record of the session that ended with this error (dasctl.RegisterResult,
    #: dasctl.VerifyResult), when there was a session; None otherwise
    result: Any = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DasctlError):
    """Bad flags, a missing file, a value out of range."""

    exit_code = ExitCode.USAGE
    kind = "usage"


class AudioError(DasctlError):
    """The input recording cannot be used: not audio, corrupt, empty, unreadable."""

    exit_code = ExitCode.AUDIO
    kind = "audio"


class AuthError(DasctlError):
    """Not logged in, bad credentials, or the service refused the token."""

    exit_code = ExitCode.AUTH
    kind = "auth"


class ServiceRejected(DasctlError):
    """The service answered, and the answer is no (a result-fail-* or a permanent error-* event)."""

    exit_code = ExitCode.REJECTED
    kind = "rejected"

    def __init__(self, message: str, hint: str | None = None, event: str | None = None) -> None:
        super().__init__(message, hint)
        self.event = event


class ServiceUnavailable(DasctlError):
    """The service could not be reached, stalled, dropped us, or reported a transient failure."""

    exit_code = ExitCode.UNAVAILABLE
    kind = "unavailable"

    def __init__(self, message: str, hint: str | None = None, event: str | None = None) -> None:
        super().__init__(message, hint)
        self.event = event


class BatchFailed(DasctlError):
    """A batch finished, and some of its files failed."""

    exit_code = ExitCode.BATCH_FAILED
    kind = "batch"


class Interrupted(DasctlError):
    """The user pressed Ctrl-C or the process got SIGINT/SIGTERM."""

    exit_code = ExitCode.INTERRUPTED
    kind = "interrupted"


# Terminal events of docs/protocol.md §3.2 and what they mean for the exit status.
_EVENT_EXIT_CODES: dict[str, ExitCode] = {
    "result-success": ExitCode.OK,
    "result-fail-spoof": ExitCode.REJECTED,
    "result-fail-score": ExitCode.REJECTED,
    "error-parameters": ExitCode.REJECTED,
    "error-audio": ExitCode.REJECTED,
    "error-das-Peak": ExitCode.UNAVAILABLE,
    "error-consumer-not-ready": ExitCode.UNAVAILABLE,
}


def exit_code_for_event(event: str) -> ExitCode:
    """Exit code for a terminal service event; unknown result-* is a 'no', unknown error-* is transient."""
    if event in _EVENT_EXIT_CODES:
        return _EVENT_EXIT_CODES[event]
    if event.startswith("result-"):
        return ExitCode.REJECTED
    return ExitCode.UNAVAILABLE


def is_retryable(code: int) -> bool:
    """Whether a failure with this exit code is worth trying again later (the exit-6 class)."""
    return code == ExitCode.UNAVAILABLE
