"""The stdout line for one file: register's result document plus what watch adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dasctl import events
from dasctl.errors import DasctlError
from dasctl.watch.inbox import FileIdentity

OUTPUT_SCHEMA = "dasctl.watch/1"

# --------------------------------------------------------------------------------------------
# reports (the stdout line)


def build_report(
    identity: FileIdentity,
    *,
    path: Path,
    call_id: str,
    attempts: int,
    model_hash: str,
    protocol: str = "twilio",
    audio_total_duration: float | None = None,
    event: events.SessionResult | events.SessionError | None = None,
    error: DasctlError | None = None,
    audio_seconds_sent: float = 0.0,
    last_vad: events.VadStatus | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The JSON line for one file: register's result document (same fields) plus what watch adds."""
    from dasctl import results
    from dasctl.session import RegisterOutcome

    if event is not None:
        outcome = RegisterOutcome(call_id, event, audio_seconds_sent, dict(timings or {}), protocol, last_vad)
        document = results.result_document(
            identity.relpath, outcome, model_hash=model_hash, audio_total_duration=audio_total_duration
        )
    else:
        assert error is not None
        document = results.failure_document(identity.relpath, error, call_id=call_id)
        document["timings"] = {name: round(value, 3) for name, value in (timings or {}).items()}
    document.pop("schema", None)
    return {
        "schema": OUTPUT_SCHEMA,
        "id": identity.id,
        "file": identity.relpath,
        "path": str(path),
        **document,
        "attempts": attempts,
    }
