"""The store's tables as Python sees them: the columns, and a row <-> record mapping both backends share.

A sealed value (sealing.py) maps to None here: what needs no key. SqlStore opens it when asked to reveal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from dasctl.store import EnrollmentRecord, VerificationRecord
from dasctl.store.crypto import is_sealed_text

ENROLLMENT_COLUMNS = (
    "speaker", "ok", "origin", "outcome", "error", "credential", "model_hash", "profile", "service_url",
    "call_id", "protocol", "authenticity", "voice_seconds", "source_path", "source_size", "source_sha256",
    "document", "created_at", "superseded_at", "audio_size", "consent",
)
VERIFICATION_COLUMNS = (
    "speaker", "ok", "outcome", "error", "score", "authenticity", "voice_seconds", "call_id", "model_hash",
    "enrollment_id", "profile", "service_url", "protocol", "source_path", "source_sha256", "document",
    "created_at",
)
WATCH_COLUMNS = (
    "relpath", "size", "mtime_ns", "state", "attempts", "call_id", "report", "reported", "updated_at",
)
ENROLLMENT_SELECT = "SELECT id, " + ", ".join(ENROLLMENT_COLUMNS) + " FROM enrollments"
# listing leaves out the (possibly large) printed document: a list shows fields, not documents
_LIST_COLUMNS = tuple("NULL" if c == "document" else c for c in ENROLLMENT_COLUMNS)
LIST_SELECT = "SELECT id, " + ", ".join(_LIST_COLUMNS) + " FROM enrollments"
VERIFICATION_SELECT = "SELECT id, " + ", ".join(VERIFICATION_COLUMNS) + " FROM verifications"

def now_iso() -> str:
    """The current time as the store writes it: ISO 8601 UTC, milliseconds (2026-11-25T17:42:00.123Z)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def from_json(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def enrollment_from_row(row: Sequence[Any]) -> EnrollmentRecord:
    (id_, speaker, ok, origin, outcome, error, credential, model_hash, profile, service_url, call_id,
     protocol, authenticity, voice_seconds, source_path, source_size, source_sha256, document, created_at,
     superseded_at, audio_size, consent) = row
    return EnrollmentRecord(
        speaker=speaker, ok=bool(ok), origin=origin, outcome=outcome, error=error,
        credential=None if credential is None or is_sealed_text(credential) else credential,
        model_hash=model_hash, profile=profile, service_url=service_url, call_id=call_id, protocol=protocol,
        authenticity=_float(authenticity), voice_seconds=_float(voice_seconds), source_path=source_path,
        source_size=source_size, source_sha256=source_sha256,
        document=None if is_sealed_text(document) else from_json(document), id=id_,
        created_at=created_at, superseded_at=superseded_at, has_audio=audio_size is not None, consent=consent,
    )


def verification_from_row(row: Sequence[Any]) -> VerificationRecord:
    (id_, speaker, ok, outcome, error, score, authenticity, voice_seconds, call_id, model_hash, enrollment_id,
     profile, service_url, protocol, source_path, source_sha256, document, created_at) = row
    return VerificationRecord(
        speaker=speaker, ok=bool(ok), outcome=outcome, error=error, score=_float(score),
        authenticity=_float(authenticity), voice_seconds=_float(voice_seconds), call_id=call_id,
        model_hash=model_hash, enrollment_id=enrollment_id, profile=profile, service_url=service_url,
        protocol=protocol, source_path=source_path, source_sha256=source_sha256,
        document=None if is_sealed_text(document) else from_json(document), id=id_, created_at=created_at,
    )


def glob_prefix(pattern: str) -> str:
    """The literal start of an fnmatch pattern (narrows the rows read before fnmatch decides)."""
    for index, char in enumerate(pattern):
        if char in "*?[":
            return pattern[:index]
    return pattern
