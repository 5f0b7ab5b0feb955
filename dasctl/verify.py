"""Verify: what a credential to check against is, where it comes from, what a verify "no" means, and the
sessions themselves, for `dasctl verify` and the Python API alike.

Recordings are checked against a speaker's current credential in the store, or against a credential
given by the user (a record written by `register -o`, a `register --json` document, or the bare
credential). Every verification of a known speaker is kept in the store (`credentials history`). No
Typer or rich here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.batch import NoProgress, ProgressSink, Warn, run_each
from dasctl.errors import AudioError, AuthError, DasctlError, ServiceRejected, ServiceUnavailable, UsageError
from dasctl.results import VerifyResult

if TYPE_CHECKING:
    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings
    from dasctl.recording import Recording
    from dasctl.session import RegisterOptions
    from dasctl.store import Store


@dataclass(frozen=True)
class Target:
    """The credential a recording is verified against, and what is known about it."""

    credential: str
    source: str  # "store", a file path, or "<stdin>"
    speaker: str | None = None
    model_hash: str | None = None
    enrollment_id: int | None = None  # the store record, when it came from the store


def parse_credential(text: str, source: str) -> Target:
    """A credential from a `register -o` record, a `register --json` document, or the bare credential."""
    stripped = text.strip()
    if not stripped:
        raise UsageError(
            f"{source}: no credential in it (empty)", "Give a credential record from `register -o`."
        )
    if stripped.startswith("{"):
        documents = _json_documents(stripped, source)
        if len(documents) != 1:
            raise UsageError(
                f"{source}: {len(documents)} JSON documents; give one credential",
                "Keep the line of the one file you want, e.g. with `jq -c 'select(.file==\"call.wav\")'`.",
            )
        return _from_document(documents[0], source)
    if any(character.isspace() for character in stripped):
        raise UsageError(
            f"{source}: not a credential (it has spaces or several lines)",
            "Give a record from `register -o`, a `register --json` document, or the credential alone.",
        )
    return Target(credential=stripped, source=source)


def _json_documents(text: str, source: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        pass
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UsageError(f"{source}: line {number} is not JSON ({error.msg})") from None
    return documents


def _from_document(document: Any, source: str) -> Target:
    if not isinstance(document, dict) or events.F_CREDENTIAL not in document:
        raise UsageError(
            f"{source}: a JSON document with no 'credential' field",
            "Give a credential record from `register -o` or a `register --json` document.",
        )
    credential = document[events.F_CREDENTIAL]
    if not isinstance(credential, str) or not credential.strip():
        raise UsageError(
            f"{source}: the record has no credential (its registration failed)",
            "Verify against a successful registration.",
        )
    model_hash = document.get("model_hash")
    # register's documents say where their record was kept (`stored`): verify then records under it
    stored = document.get("stored")
    stored = stored if isinstance(stored, dict) else {}
    speaker = document.get("speaker") or stored.get("speaker")
    enrollment_id = stored.get("id")
    return Target(
        credential=credential.strip(),
        source=source,
        speaker=speaker if isinstance(speaker, str) and speaker else None,
        model_hash=model_hash if isinstance(model_hash, str) and model_hash else None,
        enrollment_id=enrollment_id if isinstance(enrollment_id, int) else None,
    )


def stale_model_error(
    file: str, outcome_content: str, target: Target, service_model_hash: str | None
) -> ServiceRejected:
    """The service could not use the credential (error-parameters about it): most often a credential made
    with a model the service no longer has, which only re-enrolling cures."""
    made_with = (f"The credential was made with model {target.model_hash}" if target.model_hash
                 else "The credential may have been made with a model the service no longer has")
    new = service_model_hash if service_model_hash and service_model_hash != target.model_hash else "NEW"
    who = f" --speaker '{target.speaker}'" if target.speaker else ""
    return ServiceRejected(
        f"{file}: the service cannot use this credential (error-parameters): {outcome_content}",
        f"{made_with}; if the service has moved to another model, run "
        f"`dasctl reenroll --model-hash {new}{who}` and verify again.",
        event=events.ERROR_PARAMETERS,
    )


#: What to do after a verify "no" whose register wording (results._HINTS) would not fit.
VERIFY_HINTS = {
    events.RESULT_FAIL_SPOOF: "The recording looks replayed or synthetic; verify with a live call recording, "
    "or lower --threshold if you trust it.",
}


def is_credential_refusal(event_name: str, content: str) -> bool:
    """Whether an error-parameters is about the credential (the emulator names the field; the real
    service's wording is unknown, so any mention of the credential counts)."""
    return event_name == events.ERROR_PARAMETERS and events.R_CREDENTIAL in content.lower()


def load_target(speaker: str | None, credential: str | None, store: Store | None) -> Target:
    """The credential to verify against: the speaker's current one in the store, or the one given (a
    file, or - for stdin)."""
    import sys

    if credential is not None:
        if credential == "-":
            if sys.stdin.isatty():
                raise UsageError(
                    "--credential - reads the credential from stdin, and stdin is a terminal",
                    "Pipe it in: `jq -r .credential alice.json | dasctl verify call.wav --credential -`.",
                )
            return parse_credential(sys.stdin.read(), "<stdin>")
        return credential_file(Path(credential), credential)
    assert speaker is not None and store is not None
    return stored_target(store, speaker)


def credential_file(path: Path, name: str) -> Target:
    """The credential in a file: a `register -o` record, a `register --json` document, or the bare one."""
    if not path.exists():  # a device (/dev/null), a FIFO or <(...) is read like a file
        raise UsageError(f"--credential {name}: no such file", "Give a record written by `register -o`.")
    if path.is_dir():
        raise UsageError(f"--credential {name} is a directory", "Give a record written by `register -o`.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        raise UsageError(f"--credential {name}: cannot read it ({error})") from None
    return parse_credential(text, name)


def stored_target(store: Store, speaker: str) -> Target:
    """The speaker's current credential in the store."""
    if store.absent:
        raise UsageError(
            f"speaker {speaker!r} has no credential: there is no credential store yet ({store.location})",
            "Enroll the speaker first: `dasctl register FILE --speaker ID` keeps the credential there.",
        )
    record = store.current(speaker)
    if record is None or not record.credential:
        raise UsageError(
            f"speaker {speaker!r} has no credential in the store ({store.location})",
            "See `dasctl credentials list`; enroll the speaker with `dasctl register FILE --speaker ID`.",
        )
    return Target(
        credential=record.credential,
        source="store",
        speaker=speaker,
        model_hash=record.model_hash,
        enrollment_id=record.id,
    )


def target_of(credential: object) -> Target:
    """What the Python API takes as a credential: a RegisterResult, a register document or record (a
    dict), a record file (a pathlib.Path), or the text of one (a str: JSON or the bare credential)."""
    from dasctl.results import RegisterResult

    if isinstance(credential, RegisterResult):
        credential = credential.document
    if isinstance(credential, Mapping):
        return _from_document(dict(credential), "the credential record")
    if isinstance(credential, Path):
        return credential_file(credential, str(credential))
    if isinstance(credential, str):
        return parse_credential(credential, "the credential")
    raise UsageError(
        "credential= takes a RegisterResult, a dict, a pathlib.Path or a str, "
        f"not a {type(credential).__name__}"
    )


def verify_options(
    profile: Profile,
    target: Target,
    *,
    protocol: str,
    duration: float | None,
    score_threshold: float | None,
    speed: float,
    timeout: float,
) -> RegisterOptions:
    """The session options of a verify request against this credential."""
    from dasctl.config import DEFAULT_SCORE_THRESHOLD, DEFAULT_VERIFY_DURATION
    from dasctl.session import RegisterOptions

    return RegisterOptions(
        protocol=protocol,
        authenticity_threshold=profile.authenticity_threshold,
        audio_total_duration=DEFAULT_VERIFY_DURATION if duration is None else duration,
        speed=speed,
        timeout=timeout,
        kind=events.NS_VERIFY,
        credential=target.credential,
        score_threshold=DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold,
    )


def record_verification(
    store: Store, target: Target, recording: Recording, document: dict[str, Any], profile: Profile,
    protocol: str, fingerprint: tuple[int, str] | None = None,
) -> None:
    """Keep the verification in the store: the audit trail of `credentials history` (`fingerprint`: the
    input's (size, sha256) when already known, else the file's is taken)."""
    from dasctl.audio import path_fingerprint
    from dasctl.store import VerificationRecord

    assert target.speaker is not None
    outcome = document.get("outcome") or {}
    error = document.get("error") or {}
    if fingerprint is None and recording.path is not None:
        fingerprint = path_fingerprint(recording.path)
    store.record_verification(
        VerificationRecord(
            speaker=target.speaker,
            ok=bool(document.get("ok")),
            outcome=outcome.get("event") or error.get("kind"),
            error=error.get("message"),
            score=document.get("score"),
            authenticity=document.get("authenticity"),
            voice_seconds=document.get("voice_seconds"),
            call_id=document.get("call_id"),
            model_hash=target.model_hash,
            enrollment_id=target.enrollment_id,
            profile=profile.name,
            service_url=profile.url,
            protocol=protocol,
            source_path=recording.source_path,
            source_sha256=fingerprint[1] if fingerprint else None,
            document=document,
        )
    )


@dataclass
class Verification:
    """What every session of one verify run shares."""

    target: Target
    store: Store | None  # where verifications of target.speaker are kept, if anywhere
    audio_options: dict[str, Any]
    profile: Profile
    tokens: TokenProvider
    network: NetworkSettings
    sink: ProgressSink
    warn: Warn

    async def one(self, recording: Recording, options: RegisterOptions) -> VerifyResult:
        """One recording: the session, its decision, and its line in the speaker's history."""
        import asyncio

        from dasctl.store import StoreError

        document, error, fingerprint = await self._decision(recording, options)
        store_error: DasctlError | None = None
        if self.store is not None and self.target.speaker is not None and document.get("outcome") is not None:
            try:
                await asyncio.to_thread(record_verification, self.store, self.target, recording, document,
                                        self.profile, options.protocol, fingerprint)
            except StoreError as failure:
                # the decision stands, but an audit trail with a hole in it must not look like success
                self.warn(f"{recording.name}: the verification was not recorded: {failure.message}")
                store_error = failure
        return VerifyResult.from_document(document, error, store_error)

    async def _decision(
        self, recording: Recording, options: RegisterOptions
    ) -> tuple[dict[str, Any], DasctlError | None, tuple[int, str] | None]:
        """(the dasctl.verify/1 document, the error that decides the exit code or None, the input's
        (size, sha256) when it was held in memory)."""
        from dasctl import results
        from dasctl.session import register_audio

        name, target = recording.name, self.target
        fingerprint = None
        try:
            with recording.open(**self.audio_options) as opened:
                fingerprint = opened.known_fingerprint
                outcome = await register_audio(
                    opened.stream, options, self.profile, self.tokens, self.network, self.sink.update
                )
        except (AudioError, AuthError, ServiceUnavailable, UsageError) as failure:
            self.sink.end()
            document = results.failure_document(
                name, failure, call_id=options.call_id, schema=results.VERIFY_SCHEMA
            )
            document["speaker"] = target.speaker
            return document, failure, fingerprint
        self.sink.end()
        document = results.verify_document(
            name,
            outcome,
            speaker=target.speaker,
            model_hash=target.model_hash,
            score_threshold=options.score_threshold,
            audio_total_duration=options.audio_total_duration,
        )
        error: DasctlError | None = results.outcome_error(name, outcome)
        result = outcome.result
        if error is not None and result.name in VERIFY_HINTS:
            error.hint = VERIFY_HINTS[result.name]
            document["error"]["hint"] = error.hint
        if error is not None and is_credential_refusal(result.name, result.content):
            error = stale_model_error(name, result.content, target, self.profile.model_hash)
            document["error"] = {
                "kind": error.kind,
                "message": error.message,
                "hint": error.hint,
                "event": result.name,
            }
        return document, error, fingerprint


async def verify_each(
    recordings: Sequence[Recording],
    target: Target,
    options: RegisterOptions,
    profile: Profile,
    *,
    store: Store | None = None,
    audio_options: dict[str, Any] | None = None,
    sink: ProgressSink | None = None,
    warn: Warn,
    on_result: Callable[[VerifyResult, int, int], None] = lambda result, index, total: None,
    env: Mapping[str, str] | None = None,
) -> list[VerifyResult]:
    """Verify each recording in turn against the target's credential."""
    from dasctl.auth import TokenProvider
    from dasctl.net import NetworkSettings

    network = NetworkSettings.from_profile(profile, env)
    verification = Verification(
        target, store, audio_options or {}, profile, TokenProvider(profile, network, env), network,
        sink or NoProgress(), warn,
    )

    async def one(index: int, recording: Recording, file_options: RegisterOptions) -> VerifyResult:
        return await verification.one(recording, file_options)

    return await run_each(recordings, options, verification.sink, one, on_result)
