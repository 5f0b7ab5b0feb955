"""`dasctl register`: enroll a speaker from each recording, with live progress and a credential out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dasctl.cli import common
from dasctl.cli.stream import AttachOption, AttachWaitOption
from dasctl.cli.transcode import ChannelOption, EndOption, StartOption
from dasctl.cli.usage import compose_help
from dasctl.errors import DasctlError, Interrupted, UsageError

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.results import RegisterResult

HELP = compose_help(
    "Enroll a speaker in das-Peak Streaming from each recording (FILE, or - for stdin).",
    """
    Each file is one register session: the audio is converted to 8 kHz mu-law, streamed to the service at
    --speed (1 = real time), and the service answers with a credential. Progress goes to stderr (a live bar
    on a terminal, plain lines otherwise); the result goes to stdout (a summary, or JSON with --json).

    Every attempt, successful or not, is kept in the credential store (docs/store.md) under a speaker id:
    --speaker, else the file's name without its extension. --no-store keeps nothing.
    """,
    examples=[
        "dasctl register call.wav --speaker CUST12345",
        "dasctl register call.wav --channel right --protocol audiohook --json",
        "dasctl register calls/*.wav --output credentials/   # one credential file per recording",
        "sox call.mp3 -t wav - | dasctl register -",
        "dasctl register --attach $CALL_ID --speaker CUST12345   # a live call: the platform streams",
        "dasctl register call.wav --speaker CUST12345 --consent FORM-2026-0042",
    ],
    exit_codes="""
    0 registered
    2 usage error
    3 audio unusable
    4 authentication
    5 the service said no (result-fail-*, error-parameters, error-audio)
    6 service unreachable, timed out or failing (worth retrying), or the result could not be kept
      in the store (it is still printed)
    7 several files and some failed
    130 interrupted
    """,
)


def _report_failure(environment: Environment, error: DasctlError, position: str = "") -> None:
    from dasctl.logs import redact
    from dasctl.safe_text import line

    environment.stderr.write(f"dasctl: error: {position}{line(redact(error.message))}\n")
    if error.hint:
        environment.stderr.write(f"  {line(redact(error.hint))}\n")
    environment.stderr.flush()


def _render(
    environment: Environment, as_json: bool, stdout_takes: str | None = None
) -> Callable[[RegisterResult, int, int], None]:
    """Each file's result as it comes: its document on stdout, its failure on stderr. When `-o -` or
    `--keep-audio -` gives stdout to the record or the audio, the human summary goes to stderr instead."""

    def render(result: RegisterResult, index: int, total: int) -> None:
        # in a batch, every file's lines carry [i/n], its failures included
        position = f"[{index + 1}/{total}] " if total > 1 else ""
        if as_json:
            environment.stdout.write(result.json_line() + "\n")
        elif stdout_takes is not None:
            if result.document.get("outcome") is not None:
                environment.stderr.write(position + result.summary() + "\n")
            if stdout_takes == "--output" and result.error is None:
                from dasctl import results

                environment.stdout.write(results.json_line(results.credential_record(result.document)) + "\n")
        elif result.document.get("outcome") is not None:
            environment.stdout.write(position + result.summary() + "\n")
        environment.stdout.flush()
        if result.store_error is not None and result.error is not None:
            # the outcome's own error still gets its line
            _report_failure(environment, result.error, position)
        if total > 1 and result.failure is not None:
            _report_failure(environment, result.failure, position)

    return render


def _stdout_taker(
    output: Path | None, keep_audio: Path | None, several: bool, machine_output: bool,
    environment: Environment,
) -> str | None:
    """Which of --output/--keep-audio is `-` (stdout), refusing what cannot share stdout with it."""
    takers = [name for name, value in (("--output", output), ("--keep-audio", keep_audio))
              if value is not None and str(value) == "-"]
    if not takers:
        return None
    if len(takers) > 1:
        raise UsageError("--output - and --keep-audio - both ask for stdout",
                         "Send one of them to a file.")
    taker = takers[0]
    if several:
        raise UsageError(f"{taker} - takes one recording: stdout holds one result",
                         f"Give {taker} a directory to keep one file per recording.")
    if machine_output:
        raise UsageError(f"{taker} - and --json/--events both write to stdout", "Choose one of them.")
    if taker == "--keep-audio" and environment.stdout_isatty:  # as credentials audio -: WAV is binary
        raise UsageError("--keep-audio - writes a WAV file to stdout, which is a terminal",
                         "Redirect it: dasctl register call.wav --keep-audio - > voice.wav")
    return taker


def register(
    files: Annotated[
        list[str] | None,
        typer.Argument(metavar="FILE", help="Recordings to enroll (WAV, FLAC, ...); - reads stdin.",
                       show_default=False),
    ] = None,
    protocol: common.ProtocolOption = "twilio",
    threshold: common.ThresholdOption = None,
    duration: common.DurationOption = None,
    model_hash: common.ModelHashOption = None,
    call_id: Annotated[
        str | None,
        typer.Option(
            "--call-id", metavar="UUID", help="Call id for the session; default: a fresh one.",
            show_default=False,
        ),
    ] = None,
    channel: ChannelOption = None,
    start: StartOption = 0.0,
    end: EndOption = None,
    speed: common.SpeedOption = 1.0,
    timeout: common.TimeoutOption = 60.0,
    as_json: common.JsonOption = False,
    events: common.EventsOption = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the credential record here (JSON, 0600); a directory with several files; - stdout.",
            show_default=False,
        ),
    ] = None,
    keep_audio: Annotated[
        Path | None,
        typer.Option(
            "--keep-audio",
            help="Save the voice the service collected as a WAV; a directory for several files; - stdout.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Let --output replace an existing file.")
    ] = False,
    speaker: Annotated[
        str | None,
        typer.Option(
            "--speaker",
            help="Speaker id to keep the credential under (one file; default: the file name without "
            "its extension; needed for stdin).",
            show_default=False,
        ),
    ] = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not keep the result in the credential store.")
    ] = False,
    consent: Annotated[
        str | None,
        typer.Option("--consent", metavar="REF", show_default=False,
                     help="The consent reference to keep with the enrollment (a signed form's number, a CRM "
                          "case); shown by credentials show, history and export."),
    ] = None,
    store: common.StoreOption = None,
    store_key_file: common.StoreKeyFileOption = None,
    quiet: common.QuietOption = False,
    profile: common.ProfileOption = None,
    attach: AttachOption = None,
    wait: AttachWaitOption = 60.0,
) -> None:
    """Enroll a speaker from each recording; print the credential (or JSON with --json)."""
    import asyncio
    import dataclasses

    from dasctl import enroll
    from dasctl.batch import batch_failure, check_inputs
    from dasctl.display.register import choose_display
    from dasctl.session.attach import recordings_of, waiting_line

    environment = common.environment()
    common.check_protocol(protocol)
    recordings, call_id = recordings_of(files or [], attach, call_id, speaker, not no_store, wait)
    check_inputs(recordings, speed, timeout, call_id)
    from dasctl.audio import check_range, parse_channel

    parse_channel(channel)  # a bad --channel or range is a usage error now, not after connecting
    check_range(start, end)
    several = len(recordings) > 1
    stdout_takes = _stdout_taker(output, keep_audio, several, as_json or events, environment)
    spool = None  # --keep-audio -: the WAV is written privately, then copied to stdout
    if stdout_takes == "--output":
        output = None  # the record is printed by _render, from the result document
    elif stdout_takes == "--keep-audio":
        import tempfile

        spool = tempfile.TemporaryDirectory(prefix="dasctl-audio-")
        keep_audio = Path(spool.name) / "collected.wav"
    outputs = [
        enroll.Outputs(
            enroll.output_target("--output", output, recording, ".credential.json", several, force),
            enroll.output_target("--keep-audio", keep_audio, recording, ".collected.wav", several),
        )
        for recording in recordings
    ]
    enroll.check_speaker(recordings, speaker, not no_store)
    if consent is not None:
        from dasctl.store.records import check_consent

        consent = check_consent(consent)
        if no_store:
            raise UsageError("--consent is kept with the enrollment in the store, and --no-store keeps "
                             "nothing", "Drop one of them.")
    profile_obj, options = enroll.register_request(
        common.profile_name(profile),
        protocol=protocol,
        model_hash=model_hash,
        threshold=threshold,
        duration=duration,
        speed=speed,
        timeout=timeout,
        call_id=call_id,
        sends_audio=attach is None,
        store_key_file=common.key_file_flag(store_key_file)["store_key_file"],
    )
    if attach is not None:  # a live call: the platform sends the audio
        options = dataclasses.replace(options, audio_wait=wait)
        if not (quiet or environment.quiet):
            common.say(waiting_line(call_id or "", protocol, profile_obj))
    unusual = enroll.duration_warning(profile_obj.audio_total_duration)
    if unusual:
        common.warn(unusual, environment.stderr)
    from dasctl.audio import MixWarning, choose_channel

    # --channel > DASCTL_CHANNEL > the profile's channel; nothing chosen on a stereo call: said once
    audio_options = {"channel": choose_channel(channel, profile_obj, MixWarning(common.warn)),
                     "start": start, "end": end}
    # opened before any session: a store that cannot be used costs no enrollment
    keeper = (None if no_store
              else enroll.Keeper(common.open_store_option(store, profile_obj), speaker, profile_obj, consent))
    if keeper is not None:
        keeper.store.require_secrets()  # before any audio is sent: no key (exit 4), an unwritable store (6)
        for recording in recordings:  # ...and a customer who opted out (exit 5)
            keeper.store.refuse_opted_out(keeper.speaker_for(recording))
        common.warn_of_stale_profile_model(keeper.store, profile_obj, environment.stderr)
    display = choose_display(environment, quiet=quiet, events=events)
    try:
        results = common.run_sessions(
            enroll.register_each(
                recordings, outputs, options, profile_obj, audio_options=audio_options, sink=display,
                warn=lambda message: common.warn(message, environment.stderr), keeper=keeper,
                on_result=_render(environment, as_json or events, stdout_takes),
            )
        )
        if spool is not None and keep_audio is not None and keep_audio.exists():
            binary = getattr(environment.stdout, "buffer", None)
            if binary is None:
                raise UsageError("stdout takes no binary data here", "Give --keep-audio a file instead.")
            environment.stdout.flush()
            binary.write(keep_audio.read_bytes())  # at most the collected voice: a few hundred kB
            binary.flush()
    except (KeyboardInterrupt, asyncio.CancelledError):
        display.end()
        raise Interrupted(
            "interrupted; the session was closed", "Nothing was registered for that file."
        ) from None
    finally:
        if keeper is not None:
            keeper.store.close()
        if spool is not None:
            spool.cleanup()
    ending = batch_failure(
        results,
        "{failed} of {total} files failed ({numbers})",
        "Each file's JSON line says what happened to it." if as_json or events
        else "See each file's error above.",
    )
    if ending is not None:
        raise ending


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("register", help=HELP)(register)
