"""What a finished file leaves: its stdout line (register's result document plus what watch adds) and
its enrollment record for the store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import DasctlError
from dasctl.watch.inbox import FileIdentity

if TYPE_CHECKING:
    from dasctl.store import EnrollmentRecord
    from dasctl.watch.settings import WatchSettings

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


def file_fingerprint(path: Path) -> tuple[int, str]:
    """(size, sha256) of a recording, read in blocks (never whole in memory)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def build_enrollment(
    report: dict[str, Any],
    *,
    speaker: str,
    source: tuple[int, str] | None,
    settings: WatchSettings,
    audio: bytes | None,
) -> EnrollmentRecord:
    """The store's record of one final outcome (origin "watch"); failures too, with their error."""
    from dasctl.store import EnrollmentRecord

    size, sha256 = source if source is not None else (None, None)
    outcome = report.get("outcome") or {}
    error = report.get("error") or {}
    ok = bool(report.get("ok")) and bool(report.get("credential"))
    authenticity, voice = report.get("authenticity"), report.get("voice_seconds")
    return EnrollmentRecord(
        speaker=speaker,
        ok=ok,
        origin="watch",
        outcome=outcome.get("event") or error.get("kind"),
        error=None if ok else error.get("message"),
        credential=report.get("credential") if ok else None,
        model_hash=report.get("model_hash"),
        profile=settings.profile,
        service_url=settings.service_url,
        call_id=report.get("call_id"),
        protocol=report.get("protocol"),
        authenticity=float(authenticity) if isinstance(authenticity, (int, float)) else None,
        voice_seconds=float(voice) if isinstance(voice, (int, float)) else None,
        source_path=str(report.get("path") or "") or None,
        source_size=size,
        source_sha256=sha256,
        audio=audio,
        document=report,
    )
