"""What a finished file leaves: its stdout line (register's result document plus what watch adds) and
its enrollment record for the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import DasctlError
from dasctl.watch.inbox import FileIdentity

if TYPE_CHECKING:
    from dasctl.store import EnrollmentRecord
    from dasctl.watch.settings import Attempt, SessionTap, WatchSettings

OUTPUT_SCHEMA = "dasctl.watch/1"


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


def build_enrollment(
    report: dict[str, Any],
    *,
    speaker: str,
    tap: SessionTap,
    settings: WatchSettings,
    collected_audio: bytes | None,
) -> EnrollmentRecord:
    """The store's record of one final outcome (origin "watch"); failures too, with their error. The
    enrollment audio is what the service returned with result-success, else the mu-law that was sent."""
    from dasctl.store.records import enrollment_from_document

    size, sha256 = tap.source if tap.source is not None else (None, None)
    audio = collected_audio if collected_audio else (bytes(tap.sent) if tap.sent else None)
    return enrollment_from_document(
        report,
        speaker=speaker,
        origin="watch",
        profile=settings.profile,
        service_url=settings.service_url,
        source_path=str(report.get("path") or "") or None,
        source_size=size,
        source_sha256=sha256,
        audio=audio,
    )


def attempt_outcome(
    identity: FileIdentity,
    path: Path,
    call_id: str,
    attempt_number: int,
    attempt: Attempt,
    settings: WatchSettings,
    *,
    event: events.SessionResult | events.SessionError | None,
    error: DasctlError | None,
    timings: dict[str, float],
) -> tuple[dict[str, Any], EnrollmentRecord | None]:
    """A final attempt's line, and its enrollment record unless --no-store (or no speaker id)."""
    report = build_report(
        identity,
        path=path,
        call_id=call_id,
        attempts=attempt_number,
        model_hash=settings.model_hash or "",
        protocol=settings.protocol,
        audio_total_duration=settings.audio_total_duration,
        event=event,
        error=error,
        audio_seconds_sent=attempt.audio_seconds_sent,
        last_vad=attempt.last_vad,
        timings=timings,
    )
    report.update(attempt.tap.channel)  # which channel was sent, as register's document says it
    report["speaker"] = attempt.speaker  # whose voice it enrolled (None: no name matched --speaker-from)
    if attempt.consent is not None:
        report["consent"] = attempt.consent
    if not settings.keep_enrollments or attempt.speaker is None:
        return report, None
    enrollment = build_enrollment(report, speaker=attempt.speaker, tap=attempt.tap, settings=settings,
                                  collected_audio=getattr(event, "collected_audio", None))
    enrollment.consent = attempt.consent
    return report, enrollment


def opted_out_report(identity: FileIdentity, path: Path, speaker: str, refusal: str) -> dict[str, Any]:
    """The line of a recording of a customer who opted out: skipped, never sent (counted apart)."""
    return {"schema": OUTPUT_SCHEMA, "id": identity.id, "file": identity.relpath, "path": str(path),
            "ok": False, "outcome": "opted-out", "skipped": True, "speaker": speaker, "reason": refusal,
            "exit_code": 0}
