"""`dasctl register`: enroll a speaker from each recording, with live progress and a credential out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dasctl.cli import common
from dasctl.cli.transcode import ChannelOption, EndOption, StartOption
from dasctl.cli.usage import compose_help
from dasctl.errors import AuthError, BatchFailed, DasctlError, Interrupted, UsageError

if TYPE_CHECKING:
    from dasctl.audio import AudioStream
    from dasctl.config import Profile
    from dasctl.display.register import RegisterDisplay
    from dasctl.environment import Environment
    from dasctl.session import RegisterOptions, RegisterOutcome
    from dasctl.store import Store

#: PROTOCOL.md §5: enrollment wants 3..30 s of voice; outside that is allowed, with a warning.
USUAL_DURATION = (3.0, 30.0)

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


@dataclass
class Keeper:
    """Where register keeps each attempt (the credential store), and under which speaker id."""

    store: Store
    speaker: str | None  # --speaker; None: each file's stem
    profile: Profile

    def speaker_for(self, name: str) -> str:
        from dasctl.store.records import speaker_from_file

        return self.speaker or speaker_from_file(name)

    def keep(
        self,
        document: dict[str, Any],
        source: str,
        name: str,
        audio: bytes | None,
        fingerprint: tuple[int, str] | None,
    ) -> DasctlError | None:
        """Record the attempt and add `stored` to its document; the store's error, if writing failed."""
        from dasctl.store import StoreError
        from dasctl.store.records import enrollment_from_document, stored_fields

        path = None if source == "-" else str(Path(source).resolve())
        size, sha256 = fingerprint if fingerprint else (None, None)
        if size is None and path is not None:
            try:
                size = Path(path).stat().st_size
            except OSError:
                size = None
        record = enrollment_from_document(
            document, speaker=self.speaker_for(name), origin="register", profile=self.profile.name,
            service_url=self.profile.url, source_path=path, source_size=size, source_sha256=sha256,
            audio=audio,
        )
        try:
            kept = self.store.record_enrollment(record)
        except DasctlError as error:
            document["stored"] = {"id": None, "store": self.store.location, "error": error.message}
            # the store's errors name it; whatever went wrong, this is exit 6 (the result was printed)
            return error if isinstance(error, StoreError) else StoreError(error.message, error.hint)
        document["stored"] = stored_fields(kept, self.store.location)
        return None


@dataclass
class Outputs:
    """Where --output and --keep-audio put things for one input."""

    output: Path | None
    keep_audio: Path | None


def _target(
    option: str, value: Path | None, name: str, suffix: str, several: bool, force: bool = True
) -> Path | None:
    """A file path, or with several inputs (or an existing directory) a file named after the input there;
    an existing file is refused unless force."""
    if value is None:
        return None
    if value.is_dir():
        stem = "stdin" if name == "-" else Path(name).stem
        return _not_existing(option, value / f"{stem}{suffix}", force)
    if several:
        raise UsageError(
            f"{option} {value} must be an existing directory when registering several files",
            f"Create the directory first, e.g. `mkdir -p {value}`; each file's result goes there.",
        )
    if not value.parent.is_dir():
        raise UsageError(f"{option} {value}: the directory {value.parent} does not exist")
    return _not_existing(option, value, force)


def _not_existing(option: str, path: Path, force: bool) -> Path:
    if not force and path.exists():
        raise UsageError(f"{option} {path} already exists; not overwriting it",
                         "Pass --force to replace it, or choose another file.")
    return path


def _check(files: list[str], speed: float, timeout: float, call_id: str | None) -> None:
    if files.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for name in files:
        # before any connection: a typo in the last of ten files should not cost nine sessions
        if name != "-" and not Path(name).exists():
            raise UsageError(f"{name}: no such file", "Check the path; use - to read the audio from stdin.")
        if name != "-" and Path(name).is_dir():
            raise UsageError(
                f"{name} is a directory", "Give recording files; `dasctl watch DIR` enrolls a folder."
            )
    if speed < 0:
        raise UsageError(f"--speed {speed:g} is negative", "Use 1 for real time, 0 for as fast as possible.")
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout:g} must be positive")
    if call_id is not None:
        if len(files) > 1:
            raise UsageError("--call-id needs a single file", "Each session needs its own call id.")
        try:
            uuid.UUID(call_id)
        except ValueError:
            raise UsageError(
                f"--call-id {call_id!r} is not a UUID", "Leave it out to get a fresh one."
            ) from None


def _report_failure(environment: Environment, error: DasctlError, position: str = "") -> None:
    from dasctl.logs import redact

    environment.stderr.write(f"dasctl: error: {position}{redact(error.message)}\n")
    if error.hint:
        environment.stderr.write(f"  {redact(error.hint)}\n")
    environment.stderr.flush()


async def _register_one(
    source: str,
    name: str,
    outputs: Outputs,
    options: RegisterOptions,
    audio_options: dict[str, Any],
    profile: Any,
    tokens: Any,
    network: Any,
    display: RegisterDisplay,
    environment: Environment,
    keeper: Keeper | None = None,
) -> tuple[dict[str, Any], DasctlError | None, DasctlError | None]:
    """One file: (the JSON document, the error that decides the exit code or None, the store's error)."""
    from dasctl import results
    from dasctl.audio import write_mulaw_wav
    from dasctl.errors import AudioError, ServiceUnavailable

    try:
        outcome, sent, fingerprint = await _run_session(
            source, options, audio_options, profile, tokens, network, display, keeper is not None
        )
    except (AudioError, AuthError, ServiceUnavailable, UsageError) as failure:
        display.end()
        document = results.failure_document(name, failure, call_id=options.call_id)
        store_error = keeper.keep(document, source, name, None, None) if keeper else None
        return document, failure, store_error
    display.end()
    document = results.result_document(
        name, outcome, model_hash=options.model_hash, audio_total_duration=options.audio_total_duration
    )
    error = results.outcome_error(name, outcome)
    result = outcome.result
    store_error = None
    if keeper is not None:
        # first, so that an --output record names the speaker it is kept under (verify --credential
        # then adds to that speaker's history); the service's collected voice when it returned it, else
        # what was sent (8 kHz mu-law either way)
        kept_audio = getattr(result, "collected_audio", None) or (bytes(sent) if sent else None)
        store_error = keeper.keep(document, source, name, kept_audio, fingerprint)
    if error is None and outputs.output is not None:
        results.write_private_json(outputs.output, results.credential_record(document))
        document["output"] = str(outputs.output)
    if outputs.keep_audio is not None:
        audio_bytes = getattr(result, "collected_audio", None)
        if audio_bytes:
            write_mulaw_wav(outputs.keep_audio, [audio_bytes])
            document["kept_audio"] = str(outputs.keep_audio)
        elif error is None:
            common.warn(
                f"{name}: the service returned no collected audio; nothing to keep", environment.stderr
            )
    return document, error, store_error


async def _run_session(
    source: str,
    options: RegisterOptions,
    audio_options: dict[str, Any],
    profile: Any,
    tokens: Any,
    network: Any,
    display: RegisterDisplay,
    keep: bool,
) -> tuple[RegisterOutcome, bytearray | None, tuple[int, str] | None]:
    """The session, and for the store: the audio sent and the input's (size, sha256)."""
    import asyncio

    from dasctl.audio import open_audio
    from dasctl.session import register_audio
    from dasctl.store.records import SENT_AUDIO_LIMIT_BYTES

    audio: AudioStream
    with open_audio(source, **audio_options) as audio:
        sent = audio.keep_frames(SENT_AUDIO_LIMIT_BYTES) if keep else None
        outcome = await register_audio(audio, options, profile, tokens, network, display.update)
    # after closing: a piped stdin's rest is then drained into its digest
    fingerprint = await asyncio.to_thread(audio.fingerprint) if keep else None
    return outcome, sent, fingerprint


async def _register_all(
    files: list[str],
    outputs: list[Outputs],
    options: RegisterOptions,
    audio_options: dict[str, Any],
    profile: Any,
    display: RegisterDisplay,
    environment: Environment,
    as_json: bool,
    keeper: Keeper | None = None,
) -> list[DasctlError | None]:
    import dataclasses

    from dasctl import results
    from dasctl.auth import TokenProvider
    from dasctl.net import NetworkSettings

    # SIGTERM and SIGHUP cancel this task as Ctrl-C does (common.run_sessions): the sessions close both
    # channels on the way out

    network = NetworkSettings.from_profile(profile)
    tokens = TokenProvider(profile, network)
    errors: list[DasctlError | None] = []
    for index, (source, target) in enumerate(zip(files, outputs, strict=True)):
        name = "<stdin>" if source == "-" else source
        display.begin(name, index, len(files))
        file_options = options if options.call_id else dataclasses.replace(options, call_id=str(uuid.uuid4()))
        document, error, store_error = await _register_one(
            source, name, target, file_options, audio_options, profile, tokens, network, display, environment,
            keeper,
        )
        errors.append(store_error or error)
        # in a batch, every file's lines carry [i/n], its failures included
        position = f"[{index + 1}/{len(files)}] " if len(files) > 1 else ""
        if as_json:
            environment.stdout.write(results.json_line(document) + "\n")
        elif document.get("outcome") is not None:
            environment.stdout.write(position + results.human_summary(document) + "\n")
        environment.stdout.flush()
        if store_error is not None and error is not None:
            _report_failure(environment, error, position)  # the outcome's own error still gets its line
        failure = store_error or error
        if len(files) > 1 and failure is not None:
            _report_failure(environment, failure, position)
            if isinstance(error, AuthError):
                # the same credentials would fail for every other file: stop here
                raise error
    return errors


def register(
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE", help="Recordings to enroll (WAV, FLAC, ...); - reads stdin."),
    ],
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
    channel: ChannelOption = "mix",
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
            help="Write the credential record here (JSON, mode 0600); a directory with several files.",
            show_default=False,
        ),
    ] = None,
    keep_audio: Annotated[
        Path | None,
        typer.Option(
            "--keep-audio",
            help="Save the voice the service collected as a WAV here; a directory with several files.",
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
    store: common.StoreOption = None,
    quiet: common.QuietOption = False,
    profile: common.ProfileOption = None,
) -> None:
    """Enroll a speaker from each recording; print the credential (or JSON with --json)."""
    import asyncio

    from dasctl.display.register import choose_display

    environment = common.environment()
    common.check_protocol(protocol)
    _check(files, speed, timeout, call_id)
    from dasctl.audio import check_range, parse_channel

    parse_channel(channel)  # a bad --channel or range is a usage error now, not after connecting
    check_range(start, end)
    several = len(files) > 1
    outputs = [
        Outputs(
            _target("--output", output, source, ".credential.json", several, force),
            _target("--keep-audio", keep_audio, source, ".collected.wav", several),
        )
        for source in files
    ]
    _check_speaker(files, speaker, no_store)
    profile_obj, options = common.load_register_request(
        profile,
        protocol=protocol,
        model_hash=model_hash,
        threshold=threshold,
        duration=duration,
        speed=speed,
        timeout=timeout,
        call_id=call_id,
    )
    low, high = USUAL_DURATION
    if not low <= profile_obj.audio_total_duration <= high:
        common.warn(
            f"--duration {profile_obj.audio_total_duration:g} s is outside the usual {low:g}..{high:g} s "
            "of voice for an enrollment; the service may refuse it",
            environment.stderr,
        )
    audio_options = {"channel": channel, "start": start, "end": end}
    # opened before any session: a store that cannot be used costs no enrollment
    keeper = None if no_store else Keeper(common.open_store_option(store, profile_obj), speaker, profile_obj)
    if keeper is not None:  # before any audio is sent: no key (exit 4), an opted-out customer (exit 5)
        keeper.store.require_secrets()
        for source in files:
            keeper.store.refuse_opted_out(keeper.speaker_for("<stdin>" if source == "-" else source))
    display = choose_display(environment, quiet=quiet, events=events)
    try:
        errors = common.run_sessions(
            _register_all(
                files, outputs, options, audio_options, profile_obj, display, environment, as_json or events,
                keeper,
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        display.end()
        raise Interrupted(
            "interrupted; the session was closed", "Nothing was registered for that file."
        ) from None
    finally:
        if keeper is not None:
            keeper.store.close()
    failed = [error for error in errors if error is not None]
    if not failed:
        return
    if len(files) == 1:
        raise failed[0]
    numbers = ", ".join(f"[{i + 1}/{len(files)}]" for i, error in enumerate(errors) if error is not None)
    raise BatchFailed(
        f"{len(failed)} of {len(files)} files failed ({numbers})",
        "Each file's JSON line says what happened to it." if as_json or events
        else "See each file's error above.",
    )


def _check_speaker(files: list[str], speaker: str | None, no_store: bool) -> None:
    if speaker is not None:
        if not speaker.strip():
            raise UsageError("--speaker is empty",
                             "Give the id the credential is kept under, e.g. CUST12345.")
        if len(files) > 1:
            raise UsageError("--speaker names one speaker, so it takes a single file",
                             "Register files one at a time, or name each file after its speaker.")
    elif "-" in files and not no_store:
        raise UsageError("reading stdin (-) needs --speaker ID: there is no file name to take it from",
                         "Pass --speaker CUST12345, or --no-store to keep nothing.")


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("register", help=HELP)(register)
