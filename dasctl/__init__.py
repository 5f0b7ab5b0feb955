"""dasctl: enroll speakers in das-Peak Streaming from recorded calls, and verify them.

The command line (`dasctl --help`) and this Python API run the same code. A client holds a profile's
settings (`dasctl config show`); each call is one session with the service:

    import dasctl

    client = dasctl.Client(profile="local")          # `dasctl serve` runs the local emulator
    enrolled = client.register("calls/alice.wav", speaker="alice", channel="left", speed=0)
    print(enrolled.credential, enrolled.stored_id)    # kept in the credential store too

    decision = client.verify("calls/today.wav", speaker="alice", check=False)
    print(decision.verified, decision.score)
    for record in client.store.history("alice"):      # every enrollment and verification
        print(record.created_at, record.ok)

In async code (a notebook cell, an async web view) use `AsyncClient` and `await` the same methods, or
iterate them for progress: `async for progress in client.register(...)`. Failures raise one hierarchy,
`dasctl.DasctlError`, whose `exit_code` is what the command line would exit with (2 usage, 3 audio,
4 auth, 5 the service said no, 6 unreachable or the store, ...). The guide is docs/python.md.

Names: Client, AsyncClient, Run, RegisterResult, VerifyResult, Progress, ServiceEvent, VadStatus,
ConsumerReady, SessionResult, SessionError, EnrollmentRecord, VerificationRecord, DasctlError,
UsageError, AudioError, AuthError, ServiceRejected, ServiceUnavailable, StoreError, RunningLoopError,
ExitCode.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives. They are imported on first use, so `import dasctl` (and so every run of
# the command line, `dasctl --help` included) stays cheap.
_LAZY = {
    "Client": "dasctl.client",
    "AsyncClient": "dasctl.client",
    "Run": "dasctl.client",
    "RunningLoopError": "dasctl.client",
    "RegisterResult": "dasctl.results",
    "VerifyResult": "dasctl.results",
    "SessionReport": "dasctl.results",
    "StreamOutcome": "dasctl.stream",
    "StreamProgress": "dasctl.stream",
    "Progress": "dasctl.session",
    "ServiceEvent": "dasctl.events",
    "ConsumerReady": "dasctl.events",
    "VadStatus": "dasctl.events",
    "SessionResult": "dasctl.events",
    "SessionError": "dasctl.events",
    "EnrollmentRecord": "dasctl.store",
    "VerificationRecord": "dasctl.store",
    "StoreError": "dasctl.store",
    "DasctlError": "dasctl.errors",
    "UsageError": "dasctl.errors",
    "AudioError": "dasctl.errors",
    "AuthError": "dasctl.errors",
    "ServiceRejected": "dasctl.errors",
    "ServiceUnavailable": "dasctl.errors",
    "BatchFailed": "dasctl.errors",
    "Interrupted": "dasctl.errors",
    "ExitCode": "dasctl.errors",
}

__all__ = [
    "__version__", "Client", "AsyncClient", "Run", "RunningLoopError", "RegisterResult", "VerifyResult",
    "SessionReport", "Progress", "ServiceEvent", "ConsumerReady", "VadStatus", "SessionResult",
    "SessionError", "EnrollmentRecord", "VerificationRecord", "StoreError", "DasctlError", "UsageError",
    "AudioError", "AuthError", "ServiceRejected", "ServiceUnavailable", "BatchFailed", "Interrupted",
    "ExitCode",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # AttributeError lets `from dasctl import cli` (a submodule) go on to import it
        raise AttributeError(f"module 'dasctl' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:
    from dasctl.client import AsyncClient, Client, Run, RunningLoopError
    from dasctl.errors import (
        AudioError,
        AuthError,
        BatchFailed,
        DasctlError,
        ExitCode,
        Interrupted,
        ServiceRejected,
        ServiceUnavailable,
        UsageError,
    )
    from dasctl.events import ConsumerReady, ServiceEvent, SessionError, SessionResult, VadStatus
    from dasctl.results import RegisterResult, SessionReport, VerifyResult
    from dasctl.session import Progress
    from dasctl.store import EnrollmentRecord, StoreError, VerificationRecord
