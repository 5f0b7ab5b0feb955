"""`dasctl verify`: check each recording against a speaker's credential, with live progress and a decision."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dasctl.cli import common
from dasctl.cli.register import _check, _report_failure
from dasctl.cli.transcode import ChannelOption, EndOption, StartOption
from dasctl.cli.usage import compose_help
from dasctl.errors import AuthError, BatchFailed, DasctlError, Interrupted, UsageError

if TYPE_CHECKING:
    from dasctl.config import Profile
    from dasctl.display.register import RegisterDisplay
    from dasctl.environment import Environment
    from dasctl.session import RegisterOptions
    from dasctl.store import Store
    from dasctl.verify import Target

HELP = compose_help(
    "Verify that each recording (FILE, or - for stdin) is the voice of an enrolled speaker.",
    """
    Each file is one verify session against the speaker's current credential in the credential store
    (--speaker), or against a credential you give (--credential: a record written by `register -o`, a
    `register --json` document, or the bare credential; - reads it from stdin). Progress goes to stderr (a
    live bar of the voice collected, plain lines when not a terminal); the decision goes to stdout:
    verified or not, score, authenticity, voice seconds (JSON with --json: one dasctl.verify/1 document
    per file). Every verification of a stored speaker is kept in the store: `dasctl credentials history
    SPEAKER`.
    """,
    examples=[
        "dasctl verify call.wav --speaker alice",
        "dasctl verify call.wav --channel left --speaker alice --json | jq .score",
        "dasctl verify call.wav --credential alice.credential.json --score-threshold 0.7",
        "jq -r .credential alice.json | dasctl verify call.wav --credential -",
    ],
    exit_codes="""
    0 verified
    2 usage error (unknown speaker, bad credential file)
    3 audio unusable
    4 authentication
    5 not verified (result-fail-score, result-fail-spoof) or refused (error-parameters, error-audio;
      a credential of a model the service no longer has: run `dasctl reenroll`)
    6 service unreachable, timed out or failing (worth retrying)
    7 several files and some not verified
    130 interrupted
    """,
)


def load_target(speaker: str | None, credential: str | None, store: Store | None) -> Target:
    """The credential to verify against: the speaker's current one in the store, or the one given."""
    import sys

    from dasctl.verify import Target, parse_credential

    if credential is not None:
        if credential == "-":
            if sys.stdin.isatty():
                raise UsageError(
                    "--credential - reads the credential from stdin, and stdin is a terminal",
                    "Pipe it in: `jq -r .credential alice.json | dasctl verify call.wav --credential -`.",
                )
            return parse_credential(sys.stdin.read(), "<stdin>")
        path = Path(credential)
        if not path.is_file():
            raise UsageError(
                f"--credential {credential}: no such file", "Give a record written by `register -o`."
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as error:
            raise UsageError(f"--credential {credential}: cannot read it ({error})") from None
        return parse_credential(text, credential)
    assert speaker is not None and store is not None
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


def _sha256(source: str) -> str | None:
    from dasctl.audio import path_fingerprint

    fingerprint = None if source == "-" else path_fingerprint(Path(source))
    return fingerprint[1] if fingerprint else None


async def _verify_one(
    source: str,
    name: str,
    target: Target,
    options: RegisterOptions,
    audio_options: dict[str, Any],
    profile: Profile,
    tokens: Any,
    network: Any,
    display: RegisterDisplay,
) -> tuple[dict[str, Any], DasctlError | None]:
    """One file: (the dasctl.verify/1 document, the error that decides the exit code or None)."""
    from dasctl import results
    from dasctl.audio import open_audio
    from dasctl.errors import AudioError, ServiceUnavailable
    from dasctl.session import register_audio
    from dasctl.verify import VERIFY_HINTS, is_credential_refusal, stale_model_error

    try:
        with open_audio(source, **audio_options) as audio:
            outcome = await register_audio(audio, options, profile, tokens, network, display.update)
    except (AudioError, AuthError, ServiceUnavailable, UsageError) as failure:
        display.end()
        document = results.failure_document(
            name, failure, call_id=options.call_id, schema=results.VERIFY_SCHEMA
        )
        document["speaker"] = target.speaker
        return document, failure
    display.end()
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
        error = stale_model_error(name, result.content, target, profile.model_hash)
        document["error"] = {
            "kind": error.kind,
            "message": error.message,
            "hint": error.hint,
            "event": result.name,
        }
    return document, error


def _record(
    store: Store, target: Target, source: str, document: dict[str, Any], profile: Profile, protocol: str
) -> None:
    """Keep the verification in the store: the audit trail of `credentials history`."""
    from dasctl.store import VerificationRecord

    assert target.speaker is not None
    outcome = document.get("outcome") or {}
    error = document.get("error") or {}
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
            source_path=None if source == "-" else str(Path(source).resolve()),
            source_sha256=_sha256(source),
            document=document,
        )
    )


async def _verify_all(
    files: list[str],
    target: Target,
    store: Store | None,
    options: RegisterOptions,
    audio_options: dict[str, Any],
    profile: Profile,
    display: RegisterDisplay,
    environment: Environment,
    as_json: bool,
) -> list[DasctlError | None]:
    import asyncio

    from dasctl import results
    from dasctl.auth import TokenProvider
    from dasctl.net import NetworkSettings
    from dasctl.store import StoreError

    network = NetworkSettings.from_profile(profile)
    tokens = TokenProvider(profile, network)
    errors: list[DasctlError | None] = []
    for index, source in enumerate(files):
        name = "<stdin>" if source == "-" else source
        display.begin(name, index, len(files))
        file_options = options if options.call_id else dataclasses.replace(options, call_id=str(uuid.uuid4()))
        document, error = await _verify_one(
            source, name, target, file_options, audio_options, profile, tokens, network, display
        )
        if store is not None and target.speaker is not None and document.get("outcome") is not None:
            try:
                await asyncio.to_thread(_record, store, target, source, document, profile, options.protocol)
            except StoreError as failure:
                # the decision stands, but an audit trail with a hole in it must not look like success
                common.warn(
                    f"{name}: the verification was not recorded: {failure.message}", environment.stderr
                )
                error = error or failure
        errors.append(error)
        if as_json:
            environment.stdout.write(results.json_line(document) + "\n")
        elif document.get("outcome") is not None:
            environment.stdout.write(results.human_summary(document) + "\n")
        environment.stdout.flush()
        if error is not None and len(files) > 1:
            _report_failure(environment, error)
            if isinstance(error, AuthError):
                raise error
    return errors


def verify(
    files: Annotated[list[str], typer.Argument(help="Recordings to verify (WAV, FLAC, ...); - reads stdin.")],
    speaker: Annotated[
        str | None,
        typer.Option(
            "--speaker",
            "-s",
            help="Verify against this speaker's current credential in the store.",
            show_default=False,
        ),
    ] = None,
    credential: Annotated[
        str | None,
        typer.Option(
            "--credential",
            help="Verify against this credential: a `register -o` record, a `register --json` document, "
            "or the credential alone; - reads stdin.",
            show_default=False,
        ),
    ] = None,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold", help="Lowest score that verifies, 0..1 (default 0.6).", show_default=False
        ),
    ] = None,
    protocol: common.ProtocolOption = "twilio",
    threshold: common.ThresholdOption = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Seconds of voice to collect (default 3).", show_default=False),
    ] = None,
    channel: ChannelOption = "mix",
    start: StartOption = 0.0,
    end: EndOption = None,
    speed: common.SpeedOption = 1.0,
    timeout: common.TimeoutOption = 60.0,
    as_json: common.JsonOption = False,
    events: common.EventsOption = False,
    quiet: common.QuietOption = False,
    store_url: common.StoreOption = None,
    profile: common.ProfileOption = None,
) -> None:
    """Verify each recording against a speaker's credential; print the decision (or JSON with --json)."""
    import asyncio

    from dasctl.config import DEFAULT_SCORE_THRESHOLD, DEFAULT_VERIFY_DURATION, load_profile
    from dasctl.display.register import choose_display
    from dasctl.events import NS_VERIFY
    from dasctl.session import RegisterOptions

    environment = common.environment()
    if (speaker is None) == (credential is None):
        raise UsageError(
            "give exactly one of --speaker ID and --credential FILE",
            "--speaker uses the store's current credential; --credential a record from `register -o`.",
        )
    if credential == "-" and "-" in files:
        raise UsageError("stdin (-) cannot carry both the audio and the credential")
    common.check_protocol(protocol)
    _check(files, speed, timeout, None)
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise UsageError(f"--score-threshold {score_threshold:g} must be between 0 and 1")
    from dasctl.audio import check_range, parse_channel

    parse_channel(channel)
    check_range(start, end)
    profile_obj = load_profile(
        common.profile_name(profile),
        flags={"authenticity_threshold": threshold},
        flag_names={"authenticity_threshold": "--threshold"},
    )
    verify_duration = DEFAULT_VERIFY_DURATION if duration is None else duration
    if verify_duration <= 0:
        raise UsageError(f"--duration {verify_duration:g} must be positive")
    profile_obj.audio_url(protocol)  # no URL for this protocol: a usage error now, not after connecting
    store = common.open_store_option(store_url, profile_obj) if speaker is not None else None
    try:
        if store is not None and speaker is not None:  # before any session (docs/store.md)
            store.require_secrets()
            store.refuse_opted_out(speaker)
            store.audit("verify", [speaker], 1)  # it reads the speaker's credential
        target = load_target(speaker, credential, store)
        if store is None and target.speaker is not None:
            # a record that names its speaker (register with the store): its verifications are kept too
            try:
                store = common.open_store_option(store_url, profile_obj)
            except DasctlError as failure:
                common.warn(f"verifications will not be recorded: {failure.message}", environment.stderr)
        options = RegisterOptions(
            protocol=protocol,
            authenticity_threshold=profile_obj.authenticity_threshold,
            audio_total_duration=verify_duration,
            speed=speed,
            timeout=timeout,
            kind=NS_VERIFY,
            credential=target.credential,
            score_threshold=DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold,
        )
        audio_options = {"channel": channel, "start": start, "end": end}
        display = choose_display(environment, quiet=quiet, events=events)
        try:
            errors = common.run_sessions(
                _verify_all(
                    files,
                    target,
                    store,
                    options,
                    audio_options,
                    profile_obj,
                    display,
                    environment,
                    as_json or events,
                )
            )
        except (KeyboardInterrupt, asyncio.CancelledError):
            display.end()
            raise Interrupted(
                "interrupted; the session was closed", "Nothing was verified for that file."
            ) from None
    finally:
        if store is not None:
            store.close()
    failed = [error for error in errors if error is not None]
    if not failed:
        return
    if len(files) == 1:
        raise failed[0]
    raise BatchFailed(
        f"{len(failed)} of {len(files)} files not verified",
        "See the errors above; each file's result says what happened to it.",
    )


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("verify", help=HELP)(verify)
