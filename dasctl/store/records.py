"""From what `register` and `watch` print (dasctl.register/1, dasctl.watch/1) to an EnrollmentRecord.

One mapping for the three writers: `register` and `watch` as they print a result, and `credentials import`
reading their old output back. No Typer or rich here.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from dasctl.errors import UsageError
from dasctl.store import EnrollmentRecord, VerificationRecord

#: the result documents a record can be made from
DOCUMENT_SCHEMAS = ("dasctl.register/1", "dasctl.watch/1")
#: when the service returns no collected audio, the sent mu-law is kept instead: its first 10 minutes
SENT_AUDIO_LIMIT_BYTES = 8000 * 600


def speaker_from_file(name: str) -> str:
    """The default speaker id: the recording's file name without its extension (calls/CUST1.wav -> CUST1)."""
    return PurePath(name).stem


#: a consent reference is a form's number or a case id, not a document
MAX_CONSENT_CHARS = 200


def check_consent(reference: str, option: str = "--consent") -> str:
    """A consent reference as kept with an enrollment: one line of printable text (stripped), or a
    UsageError saying what is wrong with it."""
    text = reference.strip()
    if not text:
        raise UsageError(f"{option} is empty", "Give the consent's reference, e.g. a signed form's number.")
    if any(not char.isprintable() for char in text):
        raise UsageError(f"{option} {text!r} holds a control character; a reference is one line of text")
    if len(text) > MAX_CONSENT_CHARS:
        raise UsageError(f"{option} is {len(text)} characters; a reference is at most {MAX_CONSENT_CHARS}")
    return text


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def enrollment_from_document(
    document: dict[str, Any],
    *,
    speaker: str,
    origin: str,
    profile: str | None = None,
    service_url: str | None = None,
    source_path: str | None = None,
    source_size: int | None = None,
    source_sha256: str | None = None,
    audio: bytes | None = None,
) -> EnrollmentRecord:
    """The record of one result document; failed attempts too (their outcome and error kept)."""
    outcome = document.get("outcome") if isinstance(document.get("outcome"), dict) else None
    error = document.get("error") if isinstance(document.get("error"), dict) else None
    ok = bool(document.get("ok")) and bool(document.get("credential"))
    return EnrollmentRecord(
        speaker=speaker,
        ok=ok,
        origin=origin,
        outcome=(outcome or {}).get("event") or (error or {}).get("kind"),
        error=None if ok else (error or {}).get("message"),
        credential=document.get("credential") if ok else None,
        model_hash=document.get("model_hash"),
        profile=profile,
        service_url=service_url,
        call_id=document.get("call_id"),
        protocol=document.get("protocol"),
        authenticity=_number(document.get("authenticity")),
        voice_seconds=_number(document.get("voice_seconds")),
        source_path=source_path,
        source_size=source_size,
        source_sha256=source_sha256,
        audio=audio,
        document={key: value for key, value in document.items() if key != "stored"},
    )


CREDENTIAL_SCHEMA = "dasctl.credential/1"
VERIFICATION_SCHEMA = "dasctl.verification/1"
#: the fields of a dasctl.credential/1 line, in order (export's CSV columns too)
CREDENTIAL_FIELDS = (
    "speaker", "id", "ok", "current", "credential", "model_hash", "created_at", "superseded_at", "origin",
    "outcome", "error", "call_id", "protocol", "profile", "service_url", "authenticity", "voice_seconds",
    "source_path", "source_size", "source_sha256", "has_audio", "consent",
)


#: the fields of a dasctl.verification/1 line, in order (export's CSV columns too)
VERIFICATION_FIELDS = (
    "speaker", "id", "ok", "outcome", "error", "score", "authenticity", "voice_seconds", "call_id",
    "model_hash", "enrollment_id", "profile", "service_url", "protocol", "source_path", "source_sha256",
    "created_at",
)


def credential_document(record: EnrollmentRecord) -> dict[str, Any]:
    """One enrollment as `credentials` prints it (schema dasctl.credential/1): the credential whole."""
    return {
        "schema": CREDENTIAL_SCHEMA, "speaker": record.speaker, "id": record.id, "ok": record.ok,
        "current": record.ok and record.superseded_at is None, "credential": record.credential,
        "model_hash": record.model_hash, "created_at": record.created_at,
        "superseded_at": record.superseded_at,
        "origin": record.origin, "outcome": record.outcome, "error": record.error, "call_id": record.call_id,
        "protocol": record.protocol, "profile": record.profile, "service_url": record.service_url,
        "authenticity": record.authenticity, "voice_seconds": record.voice_seconds,
        "source_path": record.source_path, "source_size": record.source_size,
        "source_sha256": record.source_sha256, "has_audio": record.has_audio, "consent": record.consent,
    }


def verification_document(record: VerificationRecord) -> dict[str, Any]:
    """One verification as `credentials history` prints it (schema dasctl.verification/1)."""
    fields = {key: value for key, value in record.__dict__.items() if key != "document"}
    return {"schema": VERIFICATION_SCHEMA, **fields}


def enrollment_from_credential_line(line: dict[str, Any], origin: str = "import") -> EnrollmentRecord:
    """A dasctl.credential/1 line (from `credentials export`) back into a record to keep."""
    ok = bool(line.get("ok")) and bool(line.get("credential"))
    return EnrollmentRecord(
        speaker=str(line["speaker"]), ok=ok, origin=origin, outcome=line.get("outcome"),
        error=line.get("error"), credential=line.get("credential") if ok else None,
        model_hash=line.get("model_hash"), profile=line.get("profile"), service_url=line.get("service_url"),
        call_id=line.get("call_id"), protocol=line.get("protocol"),
        authenticity=_number(line.get("authenticity")), voice_seconds=_number(line.get("voice_seconds")),
        source_path=line.get("source_path"), source_size=line.get("source_size"),
        source_sha256=line.get("source_sha256"), consent=line.get("consent"),
        # the audio an export carried is kept as audio, not a second time inside the document
        document={key: value for key, value in line.items() if key not in ("audio", "audio_file")},
    )


def stored_fields(record: EnrollmentRecord, location: str) -> dict[str, Any]:
    """What a result document says about where its record was kept (the `stored` object)."""
    stored = {"id": record.id, "speaker": record.speaker, "store": location}
    if record.consent is not None:
        stored["consent"] = record.consent
    return stored
