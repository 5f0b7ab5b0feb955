"""`credentials export` and `credentials import` without the command line: a store as NDJSON documents and
back, line by line, each bad line named and refused while the others go on.

An export carries secrets (the credential, the audio) only when asked to: an encrypted store's templates
leave it in the clear on purpose or not at all. An import seals with the target store's key, keeps each
record's times and origin, and never lets the order of lines decide which credential is current.
No Typer or rich here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dasctl.store import EnrollmentRecord, Store, VerificationRecord
from dasctl.store.audit import AUDIT_SCHEMA, AuditRow
from dasctl.store.consent import OPT_OUT_SCHEMA, OptOut
from dasctl.store.moving import WATCH_FILE_SCHEMA
from dasctl.store.records import (
    CREDENTIAL_SCHEMA,
    DOCUMENT_SCHEMAS,
    VERIFICATION_SCHEMA,
    credential_document,
    enrollment_from_document,
    speaker_from_file,
    verification_document,
)

EXPORT_KINDS = ("enrollment", "verification", "all")
IMPORTED_SCHEMAS = (CREDENTIAL_SCHEMA, VERIFICATION_SCHEMA, *DOCUMENT_SCHEMAS, OPT_OUT_SCHEMA, AUDIT_SCHEMA,
                    WATCH_FILE_SCHEMA)
#: a number no store column holds (sizes are BIGINT)
_MAX_INT = 2**63 - 1
_SCHEMA_NAME = re.compile(r"^(dasctl\.[a-z-]+)/(\d+)$")


@dataclass(frozen=True)
class ExportRequest:
    speaker_glob: str | None = None
    kind: str = "all"
    with_credential: bool = False
    with_audio: bool = False
    audio_dir: Path | None = None
    #: with kind "all": the opt-outs, audit log and watch state too (NDJSON only: a CSV has one shape)
    whole_store: bool = True

    @property
    def reveals(self) -> bool:
        """Whether the export carries a secret in the clear (what the audit row says)."""
        return self.with_credential or self.with_audio or self.audio_dir is not None


def export_documents(store: Store, request: ExportRequest) -> Iterator[dict[str, Any]]:
    """Every enrollment (history included) and then every verification, as their NDJSON documents; with
    kind "all" and no speaker filter, the store's opt-outs (first: an import then knows them before their
    records), audit log and watch state too, so that export | import moves a store whole."""
    from dasctl.audio import write_mulaw_wav

    whole = request.whole_store and request.kind == "all" and request.speaker_glob is None
    if whole:
        yield from (opted.document() for opted in store.opt_outs())
    if request.kind in ("enrollment", "all"):
        reveal = request.with_credential or request.with_audio
        for record in store.enrollments(speaker_glob=request.speaker_glob, reveal=reveal):
            document = credential_document(record)
            if request.audio_dir is not None or request.with_audio:
                audio = None
                if record.has_audio and record.id is not None:
                    audio = store.enrollment_audio(record.id)
                if request.audio_dir is not None:
                    document["audio_file"] = None
                    if audio:
                        target = request.audio_dir / f"{file_safe(record.speaker)}-{record.id}.wav"
                        write_mulaw_wav(target, [audio])
                        document["audio_file"] = str(target)
                if request.with_audio:
                    document["audio"] = base64.b64encode(audio).decode("ascii") if audio else None
            yield document
    if request.kind in ("verification", "all"):
        for verification in store.verifications(speaker_glob=request.speaker_glob):
            yield verification_document(verification)
    if whole:
        yield from (row.document() for row in store.audit_rows())
        yield from store.watch_state_rows(reveal=request.with_credential or request.with_audio)


def file_safe(speaker: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", speaker) or "_"


# --- import ------------------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    new: int = 0
    already: int = 0
    refused: int = 0
    skipped: int = 0  # lines that are not results (--events, summaries)
    problems: list[str] = field(default_factory=list)


class LineRefused(ValueError):
    """One line that cannot be imported, and why (named with its line number by the caller)."""


def _no_constant(name: str) -> float:
    raise LineRefused(f"{name} is not a number JSON allows")


def parse_line(text: str) -> dict[str, Any]:
    """One NDJSON line as an object; LineRefused for anything else (NaN, deep nesting, not an object)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise LineRefused("nested too deeply") from None
    except ValueError as error:
        raise LineRefused(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise LineRefused("not a JSON object")
    return value


def _clean_text(value: str, name: str) -> str:
    if "\0" in value:
        raise LineRefused(f"{name} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise LineRefused(f"{name} is not valid Unicode (a lone surrogate)") from None
    return value


def text_field(line: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = line.get(name)
    if value is None:
        if required:
            raise LineRefused(f"it has no {name}")
        return None
    if not isinstance(value, str):
        raise LineRefused(f"{name} must be a string, not {type(value).__name__}")
    if required and not value:
        raise LineRefused(f"{name} is empty")
    return _clean_text(value, name)


def number_field(line: dict[str, Any], name: str) -> float | None:
    value = line.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise LineRefused(f"{name} must be a finite number")
    return float(value)


def int_field(line: dict[str, Any], name: str) -> int | None:
    value = line.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise LineRefused(f"{name} must be a whole number from 0 to {_MAX_INT}")
    return value


def bool_field(line: dict[str, Any], name: str) -> bool:
    value = line.get(name, False)
    if not isinstance(value, bool):
        raise LineRefused(f"{name} must be true or false, not {json.dumps(value)[:20]}")
    return value


def _check_schema(schema: object) -> str | None:
    """The schema of a line dasctl can import; LineRefused for a newer version of one; None to skip."""
    if not isinstance(schema, str):
        return None
    if schema in IMPORTED_SCHEMAS:
        return schema
    match = _SCHEMA_NAME.match(schema)
    known = {s.split("/")[0] for s in IMPORTED_SCHEMAS}
    if match and match.group(1) in known:
        raise LineRefused(f"schema {schema} is newer than this dasctl reads; upgrade dasctl to import it")
    return None


def enrollment_from_line(line: dict[str, Any], listing: Path | None) -> EnrollmentRecord:
    """A dasctl.credential/1 line back into the record it was, its times and origin kept."""
    from dasctl.store import ORIGINS

    ok = bool_field(line, "ok")
    credential = text_field(line, "credential")
    origin = text_field(line, "origin") or "import"
    if origin not in ORIGINS:
        raise LineRefused(f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
    record = EnrollmentRecord(
        speaker=str(text_field(line, "speaker", required=True)), ok=ok, origin=origin,
        outcome=text_field(line, "outcome"), error=text_field(line, "error"),
        credential=credential if ok else None,
        model_hash=text_field(line, "model_hash"), profile=text_field(line, "profile"),
        service_url=text_field(line, "service_url"), call_id=text_field(line, "call_id"),
        protocol=text_field(line, "protocol"), authenticity=number_field(line, "authenticity"),
        voice_seconds=number_field(line, "voice_seconds"), source_path=text_field(line, "source_path"),
        source_size=int_field(line, "source_size"), source_sha256=text_field(line, "source_sha256"),
        created_at=text_field(line, "created_at"), superseded_at=text_field(line, "superseded_at"),
        consent=consent_field(line),
    )
    if ok and not bool_field(line, "current") and record.superseded_at is None and "current" in line:
        raise LineRefused("a success that is not current must say when it was superseded")
    record.audio = imported_audio(line, listing)
    # the line itself is the record's document; its audio is kept as audio, not a second time here
    record.document = {key: value for key, value in line.items() if key not in ("audio", "audio_file")}
    return record


def consent_field(line: dict[str, Any]) -> str | None:
    """An imported consent reference: text as `register --consent` takes it, or absent."""
    from dasctl.errors import UsageError
    from dasctl.store.records import check_consent

    reference = text_field(line, "consent")
    if reference is None:
        return None
    try:
        return check_consent(reference, "its consent")
    except UsageError as error:
        raise LineRefused(error.message) from None


def verification_from_line(line: dict[str, Any]) -> VerificationRecord:
    """A dasctl.verification/1 line back into the verification it was (its enrollment id is the other
    store's: not kept)."""
    if line.get("enrollment_id") is not None:
        int_field(line, "enrollment_id")
    return VerificationRecord(
        speaker=str(text_field(line, "speaker", required=True)), ok=bool_field(line, "ok"),
        outcome=text_field(line, "outcome"), error=text_field(line, "error"),
        score=number_field(line, "score"),
        authenticity=number_field(line, "authenticity"), voice_seconds=number_field(line, "voice_seconds"),
        call_id=text_field(line, "call_id"), model_hash=text_field(line, "model_hash"),
        enrollment_id=None, profile=text_field(line, "profile"), service_url=text_field(line, "service_url"),
        protocol=text_field(line, "protocol"), source_path=text_field(line, "source_path"),
        source_sha256=text_field(line, "source_sha256"),
        created_at=text_field(line, "created_at"),
    )


def imported_audio(line: dict[str, Any], listing: Path | None) -> bytes | None:
    """The enrollment audio an export line carries: inline (--with-audio) or as a file (--audio-dir); a
    file is read only when it is a regular file (a FIFO or a device would block or never end)."""
    from dasctl.audio import read_mulaw_wav
    from dasctl.errors import AudioError

    inline = text_field(line, "audio")
    if inline:
        try:
            return base64.b64decode(inline, validate=True)
        except binascii.Error:
            raise LineRefused("its audio is not base64") from None
    name = text_field(line, "audio_file")
    if not name:
        return None
    path = beside(name, listing)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise LineRefused(f"its audio_file {path}: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise LineRefused(f"its audio_file {path} is not a regular file")
    try:
        return read_mulaw_wav(path)
    except AudioError as error:
        raise LineRefused(f"its audio_file {path}: {error}") from None


def beside(name: str, listing: Path | None) -> Path:
    """An exported audio_file: as written (relative to where export ran), else beside the imported file."""
    path = Path(name)
    if path.is_absolute() or path.exists() or listing is None:
        return path
    near = listing.parent / path
    return near if near.exists() else path


def record_from_document(document: dict[str, Any]) -> EnrollmentRecord:
    """A register --json or watch line (what was printed) as its record."""
    file = text_field(document, "file", required=True)
    stored = document.get("stored")
    speaker = stored.get("speaker") if isinstance(stored, dict) else None
    if speaker is not None and not isinstance(speaker, str):
        raise LineRefused("stored.speaker must be a string")
    for name in ("credential", "model_hash", "call_id", "protocol"):
        text_field(document, name)
    number_field(document, "authenticity")
    number_field(document, "voice_seconds")
    speaker = _clean_text(speaker or speaker_from_file(str(file)), "speaker")
    return enrollment_from_document(document, speaker=speaker, origin="import",
                                    source_path=text_field(document, "path"))


def import_lines(
    store: Store, lines: Iterable[str], *, listing: Path | None, warn: Callable[[int, str], None],
    refuse_speaker: Callable[[str], str | None] = lambda speaker: None,
) -> ImportSummary:
    """Keep every line that is a result; refuse (and report by number) every line that cannot be, and
    go on. `refuse_speaker` says why a speaker's records may not be kept (an opt-out), or None."""
    summary = ImportSummary()
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        try:
            line = parse_line(text)
            schema = _check_schema(line.get("schema"))
            if schema is None:
                summary.skipped += 1
                continue
            if schema in (OPT_OUT_SCHEMA, AUDIT_SCHEMA, WATCH_FILE_SCHEMA):
                kept_new = _import_store_line(store, schema, line)
                summary.new += kept_new
                summary.already += not kept_new
                continue
            record: EnrollmentRecord | VerificationRecord
            if schema == CREDENTIAL_SCHEMA:
                record = enrollment_from_line(line, listing)
            elif schema == VERIFICATION_SCHEMA:
                record = verification_from_line(line)
            else:
                record = record_from_document(line)
            why = refuse_speaker(record.speaker)
            secret = isinstance(record, EnrollmentRecord) and bool(record.credential or record.audio)
            if why and secret:  # an opted-out customer's history moves without secrets, or not at all
                raise LineRefused(why)
            if not why and isinstance(record, EnrollmentRecord) and record.ok and not record.credential:
                raise LineRefused("a successful enrollment without its credential "
                                  "(export it with --with-credential)")
        except (LineRefused, RecursionError) as error:
            summary.refused += 1
            warn(number, str(error) if isinstance(error, LineRefused) else "nested too deeply")
            continue
        if isinstance(record, VerificationRecord):
            kept_new = store.import_verification(record)
        else:
            kept_new = store.import_enrollment(record)
        if kept_new:
            summary.new += 1
        else:
            summary.already += 1
    return summary


def _import_store_line(store: Store, schema: str, line: dict[str, Any]) -> bool:
    """An opt-out, audit row or watch state line (what only export writes); True when it was new."""
    if schema == OPT_OUT_SCHEMA:
        opted = OptOut(str(text_field(line, "speaker", required=True)),
                       str(text_field(line, "at", required=True)),
                       str(text_field(line, "actor") or "unknown"), text_field(line, "reason"))
        return store.import_opt_out(opted)
    if schema == AUDIT_SCHEMA:
        speakers = line.get("speakers")
        if not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers):
            raise LineRefused("speakers must be a list of strings")
        return store.import_audit(AuditRow(str(text_field(line, "at", required=True)),
                                           str(text_field(line, "actor", required=True)),
                                           str(text_field(line, "command", required=True)),
                                           [_clean_text(s, "speakers") for s in speakers],
                                           int_field(line, "count") or 0, text_field(line, "detail")))
    for name in ("inbox", "relpath", "state"):
        text_field(line, name, required=True)
    for name in ("size", "mtime_ns", "attempts"):
        if int_field(line, name) is None:
            raise LineRefused(f"it has no {name}")
    text_field(line, "call_id")
    text_field(line, "updated_at")
    if line.get("report") is not None and not isinstance(line["report"], dict):
        raise LineRefused("report must be an object")
    return store.import_watch_file(line)
