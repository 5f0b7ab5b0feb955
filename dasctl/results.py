"""What a register session leaves behind: the JSON result document, the credential record, the summary.

Shared by `dasctl register` and `dasctl watch` so that both print the same document for the same
outcome. No Typer or rich here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import DasctlError, ExitCode, ServiceRejected, ServiceUnavailable

if TYPE_CHECKING:
    from dasctl.session import RegisterOutcome

SCHEMA = "dasctl.register/1"
VERIFY_SCHEMA = "dasctl.verify/1"
EVENT_SCHEMA = "dasctl.event/1"

# What to do after each "no" from the service (docs/protocol.md §3.2), in one line.
_HINTS = {
    events.RESULT_FAIL_SPOOF: "The recording looks replayed or synthetic; enroll from a live call recording.",
    events.RESULT_FAIL_SCORE: "The voice did not match; check that the recording is of the right speaker.",
    events.ERROR_PARAMETERS: "Check --model-hash, --threshold and --duration against what the service takes.",
    events.ERROR_AUDIO: "The service did not get enough usable voice; use a longer recording, another "
    "--channel, or a smaller --duration.",
    events.ERROR_DAS_PEAK: "The biometric service failed; this is usually transient, try again later.",
    events.ERROR_CONSUMER_NOT_READY: "The audio consumer was not ready; usually transient, try again.",
}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def result_document(
    file: str, outcome: RegisterOutcome, *, model_hash: str, audio_total_duration: float | None = None
) -> dict[str, Any]:
    """The JSON document for a session that ended with a terminal event (success or not)."""
    result = outcome.result
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "file": file,
        "call_id": outcome.call_id,
        "ok": outcome.exit_code == ExitCode.OK,
        "exit_code": int(outcome.exit_code),
        "outcome": {"event": result.name, "content": result.content},
        "credential": None,
        "model_hash": model_hash,
        "protocol": outcome.protocol,
        "voice_seconds": _round(outcome.voice_seconds, 2),
        "target_voice_seconds": audio_total_duration,
        "audio_seconds_sent": _round(outcome.audio_seconds_sent),
        "timings": {name: round(value, 3) for name, value in outcome.timings.items()},
    }
    if isinstance(result, events.SessionResult):
        document["credential"] = result.credential
        if result.authenticity is not None:
            document["authenticity"] = result.authenticity
        if result.score is not None:
            document["score"] = result.score
    error = outcome_error(file, outcome)
    document["error"] = _error_fields(error) if error else None
    return document


def verify_document(
    file: str,
    outcome: RegisterOutcome,
    *,
    speaker: str | None,
    model_hash: str | None,
    score_threshold: float,
    audio_total_duration: float,
) -> dict[str, Any]:
    """The `dasctl.verify/1` document: the register document's fields, less the credential (a verify
    session makes none), plus who was checked and the decision."""
    document = result_document(
        file, outcome, model_hash=model_hash or "", audio_total_duration=audio_total_duration
    )
    document.pop("credential", None)
    document["schema"] = VERIFY_SCHEMA
    document["speaker"] = speaker
    document["model_hash"] = model_hash
    document["verified"] = document["ok"]
    document["score_threshold"] = score_threshold
    return document


def failure_document(
    file: str, error: DasctlError, *, call_id: str | None = None, schema: str = SCHEMA
) -> dict[str, Any]:
    """The JSON document for a file that ended without a terminal event (bad audio, auth, network)."""
    return {
        "schema": schema,
        "file": file,
        "call_id": call_id,
        "ok": False,
        "exit_code": int(error.exit_code),
        "outcome": None,
        "credential": None,
        "error": _error_fields(error),
    }


def _error_fields(error: DasctlError) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": error.kind, "message": error.message}
    if error.hint:
        fields["hint"] = error.hint
    event = getattr(error, "event", None)
    if event:
        fields["event"] = event
    return fields


def outcome_error(file: str, outcome: RegisterOutcome) -> ServiceRejected | ServiceUnavailable | None:
    """The error a non-success terminal event stands for (exit 5 or 6), or None on success."""
    code = outcome.exit_code
    if code == ExitCode.OK:
        return None
    result = outcome.result
    content = f": {result.content}" if result.content else ""
    hint = _HINTS.get(result.name)
    if code == ExitCode.UNAVAILABLE:
        return ServiceUnavailable(
            f"{file}: the service failed ({result.name}){content}",
            hint or "This is usually transient; try again later.",
            event=result.name,
        )
    return ServiceRejected(
        f"{file}: the service said no ({result.name}){content}",
        hint or "See the service's message above.",
        event=result.name,
    )


def credential_record(document: dict[str, Any]) -> dict[str, Any]:
    """What --output keeps: the result document with the credential, its model hash, and when it was made."""
    record = dict(document)
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


def write_private_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file in the same directory, then replace) with mode 0600."""
    from dasctl.atomic_file import write_atomically

    write_atomically(Path(path), (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def json_line(document: dict[str, Any]) -> str:
    """One compact JSON line (NDJSON)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def event_document(file: str, call_id: str, event: events.ServiceEvent, elapsed: float) -> dict[str, Any]:
    """One --events line: the event's payload fields, never the audio bytes."""
    payload = {key: value for key, value in event.raw.items() if isinstance(key, str)}
    payload.pop(events.F_EVENT, None)
    return {
        "schema": EVENT_SCHEMA,
        "file": file,
        "call_id": call_id,
        "elapsed": round(elapsed, 3),
        "event": event.name,
        **payload,
    }


def masked_credential(credential: str) -> str:
    """A credential fit to show a person (`Q2Fz…x9Yk0=`): the first characters, as tokens are masked,
    plus the last ones, since credentials share their first. Whole only in JSON and --output files."""
    from dasctl.auth import mask

    return mask(credential) + credential[-6:] if len(credential) > 24 else mask(credential)


def human_summary(document: dict[str, Any]) -> str:
    """A few aligned lines for a person: what happened, the credential, the figures (every value that
    came from outside dasctl quoted by safe_text: file names, speaker ids, the service's words)."""
    from dasctl.safe_text import line, quoted

    file = quoted(document.get("file", ""))
    outcome = document.get("outcome") or {}
    error = document.get("error") or {}
    done = "verified" if document.get("schema") == VERIFY_SCHEMA else "registered"
    if document.get("ok"):
        head = f"{file}: {done}"
    elif outcome:
        head = f"{file}: not {done} ({quoted(outcome.get('event'))})"
    else:
        head = f"{file}: failed ({quoted(error.get('kind', 'error'))})"
    rows: list[tuple[str, str]] = []
    if document.get("speaker"):
        rows.append(("speaker", quoted(document["speaker"])))
    if document.get("credential"):
        rows.append(("credential", quoted(masked_credential(str(document["credential"])))))
    if outcome:
        if document.get("model_hash"):
            rows.append(("model hash", quoted(document["model_hash"])))
        if outcome.get("content"):
            rows.append(("service says", quoted(outcome["content"])))
        if "authenticity" in document:
            rows.append(("authenticity", f"{document['authenticity']}"))
        if "score" in document:
            threshold = document.get("score_threshold")
            limit = f" (threshold {threshold:g})" if threshold else ""
            rows.append(("score", f"{document['score']}{limit}"))
        voice = document.get("voice_seconds")
        target = document.get("target_voice_seconds")
        if voice is not None:
            rows.append(("voice", f"{voice:.2f} s" + (f" of {target:g} s" if target else "")))
        sent = document.get("audio_seconds_sent")
        if sent is not None:
            rows.append(("audio sent", f"{sent:.2f} s"))
        finished = (document.get("timings") or {}).get("finished")
        if finished is not None:
            rows.append(("took", f"{finished:.2f} s"))
    if document.get("call_id"):
        rows.append(("call id", quoted(document["call_id"])))
    stored = document.get("stored")
    if isinstance(stored, dict):
        if stored.get("id") is not None:
            speaker, store = quoted(stored.get("speaker")), quoted(stored.get("store"))
            rows.append(("stored", f"as {speaker} (record {stored['id']}) in {store}"))
        else:
            rows.append(("stored", f"NOT kept in {quoted(stored.get('store'))}"))
    width = max((len(name) for name, _ in rows), default=0)
    lines = [head, *(f"  {name.ljust(width)}  {value}" for name, value in rows)]
    return "\n".join(line(text) for text in lines)


# --- typed records: what the Python API returns, and what the command line prints ---------------------
@dataclass
class SessionReport:
    """One recording's session as the command line reports it: `document` is the JSON it prints (one
    `--json` line), `summary()` the lines a person sees; `error` is what the session ended with (None when
    it went well), `store_error` what went wrong keeping it in the credential store."""

    file: str  # the recording, as it was named
    ok: bool
    call_id: str | None
    event: str | None  # the service's terminal event (result-success, result-fail-score, ...), if any
    voice_seconds: float | None
    speaker: str | None
    document: dict[str, Any] = field(repr=False)
    error: DasctlError | None = field(default=None, repr=False)
    store_error: DasctlError | None = field(default=None, repr=False)

    @property
    def failure(self) -> DasctlError | None:
        """The error that decides the exit code, or None."""
        return self.error or self.store_error

    @property
    def exit_code(self) -> int:
        """The exit code the command line ends with for this recording alone."""
        return int(self.failure.exit_code) if self.failure is not None else int(ExitCode.OK)

    def json_line(self) -> str:
        """The `--json` line."""
        return json_line(self.document)

    def summary(self) -> str:
        """What the command line prints for a person."""
        return human_summary(self.document)

    @staticmethod
    def _common(document: dict[str, Any]) -> dict[str, Any]:
        outcome = document.get("outcome") or {}
        return {
            "file": str(document.get("file", "")),
            "ok": bool(document.get("ok")),
            "call_id": document.get("call_id"),
            "event": outcome.get("event"),
            "voice_seconds": document.get("voice_seconds"),
        }


@dataclass
class RegisterResult(SessionReport):
    """A register session (dasctl.register/1): the credential, and where it was kept."""

    credential: str | None = None
    model_hash: str | None = None
    authenticity: float | None = None
    stored_id: int | None = None  # the record in the credential store, when it was kept
    output: str | None = None  # the credential record written (--output)
    kept_audio: str | None = None  # the collected voice written (--keep-audio)

    @property
    def failure(self) -> DasctlError | None:
        # a result that could not be kept is exit 6 even when the service said no: it must be retried
        return self.store_error or self.error

    @classmethod
    def from_document(
        cls, document: dict[str, Any], error: DasctlError | None, store_error: DasctlError | None = None
    ) -> RegisterResult:
        stored = document.get("stored")
        stored = stored if isinstance(stored, dict) else {}
        return cls(
            **cls._common(document),
            speaker=stored.get("speaker"),
            document=document,
            error=error,
            store_error=store_error,
            credential=document.get("credential"),
            model_hash=document.get("model_hash"),
            authenticity=document.get("authenticity"),
            stored_id=stored.get("id"),
            output=document.get("output"),
            kept_audio=document.get("kept_audio"),
        )


@dataclass
class VerifyResult(SessionReport):
    """A verify session (dasctl.verify/1): whether the voice is the speaker's, and the figures."""

    verified: bool = False
    score: float | None = None
    score_threshold: float | None = None
    authenticity: float | None = None
    model_hash: str | None = None

    @classmethod
    def from_document(
        cls, document: dict[str, Any], error: DasctlError | None, store_error: DasctlError | None = None
    ) -> VerifyResult:
        return cls(
            **cls._common(document),
            speaker=document.get("speaker"),
            document=document,
            error=error,
            store_error=store_error,
            verified=bool(document.get("verified")),
            score=document.get("score"),
            score_threshold=document.get("score_threshold"),
            authenticity=document.get("authenticity"),
            model_hash=document.get("model_hash"),
        )
