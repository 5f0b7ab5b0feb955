"""`dasctl verify`: check each recording against a speaker's credential, with live progress and a decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from dasctl.cli import common
from dasctl.cli.register import _report_failure
from dasctl.cli.stream import AttachOption, AttachWaitOption
from dasctl.cli.transcode import ChannelOption, EndOption, StartOption
from dasctl.cli.usage import compose_help
from dasctl.errors import DasctlError, Interrupted, UsageError

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.results import VerifyResult

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
        "dasctl verify --attach $CALL_ID --speaker alice   # a live call: the platform sends the audio",
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


def _render(environment: Environment, as_json: bool) -> Callable[[VerifyResult, int, int], None]:
    """Each file's decision as it comes: its document on stdout, in a batch its failure on stderr."""

    def render(result: VerifyResult, index: int, total: int) -> None:
        if as_json:
            environment.stdout.write(result.json_line() + "\n")
        elif result.document.get("outcome") is not None:
            environment.stdout.write(result.summary() + "\n")
        environment.stdout.flush()
        if result.failure is not None and total > 1:
            _report_failure(environment, result.failure)

    return render


def verify(
    files: Annotated[
        list[str] | None,
        typer.Argument(help="Recordings to verify (WAV, FLAC, ...); - reads stdin.", show_default=False),
    ] = None,
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
    channel: ChannelOption = None,
    start: StartOption = 0.0,
    end: EndOption = None,
    speed: common.SpeedOption = 1.0,
    timeout: common.TimeoutOption = 60.0,
    as_json: common.JsonOption = False,
    events: common.EventsOption = False,
    quiet: common.QuietOption = False,
    store_url: common.StoreOption = None,
    store_key_file: common.StoreKeyFileOption = None,
    profile: common.ProfileOption = None,
    attach: AttachOption = None,
    wait: AttachWaitOption = 60.0,
) -> None:
    """Verify each recording against a speaker's credential; print the decision (or JSON with --json)."""
    import asyncio
    import dataclasses

    from dasctl.batch import batch_failure, check_inputs
    from dasctl.config import DEFAULT_VERIFY_DURATION, load_profile
    from dasctl.display.register import choose_display
    from dasctl.session.attach import recordings_of, waiting_line
    from dasctl.verify import load_target, verify_each, verify_options

    environment = common.environment()
    if (speaker is None) == (credential is None):
        raise UsageError(
            "give exactly one of --speaker ID and --credential FILE",
            "--speaker uses the store's current credential; --credential a record from `register -o`.",
        )
    if credential == "-" and "-" in (files or []):
        raise UsageError("stdin (-) cannot carry both the audio and the credential")
    common.check_protocol(protocol)
    recordings, call_id = recordings_of(files or [], attach, None, speaker, False, wait)
    check_inputs(recordings, speed, timeout, None)
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise UsageError(f"--score-threshold {score_threshold:g} must be between 0 and 1")
    from dasctl.audio import check_range, parse_channel

    parse_channel(channel)
    check_range(start, end)
    profile_obj = load_profile(
        common.profile_name(profile),
        flags={"authenticity_threshold": threshold, **common.key_file_flag(store_key_file)},
        flag_names={"authenticity_threshold": "--threshold"},
    )
    verify_duration = DEFAULT_VERIFY_DURATION if duration is None else duration
    if verify_duration <= 0:
        raise UsageError(f"--duration {verify_duration:g} must be positive")
    if attach is None:  # a live call opens no audio channel: the platform does
        profile_obj.audio_url(protocol)  # no URL for this protocol: a usage error now, not after connecting
    # reading a speaker's credential never creates a store (nor its key): none yet is a speaker unknown
    store = common.open_store_option(store_url, profile_obj, create=False) if speaker is not None else None
    try:
        if store is not None and speaker is not None and not store.absent:  # before any session (store.md)
            store.require_secrets()
            store.refuse_opted_out(speaker)
            store.audit("verify", [speaker], 1)  # it reads the speaker's credential
        target = load_target(speaker, credential, store)
        if store is None and target.speaker is not None:
            # a record that names its speaker (register with the store): its verifications are kept too
            try:  # kept in a store that exists: none is made (with its key) for a verification alone
                store = common.open_store_option(store_url, profile_obj, create=False)
            except DasctlError as failure:
                common.warn(f"verifications will not be recorded: {failure.message}", environment.stderr)
            if store is not None and store.absent:
                store.close()
                store = None
            if store is not None:  # a record the customer's opt-out outlived: nothing is sent for them
                store.refuse_opted_out(target.speaker)
        options = verify_options(
            profile_obj, target, protocol=protocol, duration=verify_duration, score_threshold=score_threshold,
            speed=speed, timeout=timeout,
        )
        if attach is not None:  # a live call: the platform sends the audio
            options = dataclasses.replace(options, call_id=call_id, audio_wait=wait)
            if not (quiet or environment.quiet):
                common.say(waiting_line(call_id or "", protocol, profile_obj))
        from dasctl.audio import MixWarning, choose_channel

        # --channel customer|agent resolves through the profile's customer_channel, as register's does
        audio_options = {"channel": choose_channel(channel, profile_obj, MixWarning(common.warn)),
                         "start": start, "end": end}
        display = choose_display(environment, quiet=quiet, events=events)
        try:
            results = common.run_sessions(
                verify_each(
                    recordings, target, options, profile_obj, store=store, audio_options=audio_options,
                    sink=display, warn=lambda message: common.warn(message, environment.stderr),
                    on_result=_render(environment, as_json or events),
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
    ending = batch_failure(
        results,
        "{failed} of {total} files not verified",
        "See the errors above; each file's result says what happened to it.",
    )
    if ending is not None:
        raise ending


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("verify", help=HELP)(verify)
