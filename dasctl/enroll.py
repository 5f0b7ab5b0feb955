"""Register recordings: the sessions, the credential record (--output), the collected voice (--keep-audio)
and the credential store, for `dasctl register` and the Python API alike.

The command line parses and renders; everything between is here. No Typer or rich here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.batch import NoProgress, ProgressSink, Warn, run_each
from dasctl.errors import AudioError, AuthError, DasctlError, ServiceUnavailable, UsageError
from dasctl.results import RegisterResult

if TYPE_CHECKING:
    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings
    from dasctl.recording import Recording
    from dasctl.session import RegisterOptions
    from dasctl.store import Store

#: Enrollment wants 3..30 s of voice (docs/protocol.md); outside that is allowed, with a warning.
USUAL_DURATION = (3.0, 30.0)


def duration_warning(seconds: float, option: str = "--duration") -> str | None:
    """The warning for an unusual amount of voice to collect, or None."""
    low, high = USUAL_DURATION
    if low <= seconds <= high:
        return None
    return (f"{option} {seconds:g} s is outside the usual {low:g}..{high:g} s of voice for an enrollment; "
            "the service may refuse it")


def missing_settings(resolved: Profile, protocol: str, *, sends_audio: bool = True) -> None:
    """Every setting a session with this profile and protocol lacks, named in one UsageError.

    A live call (`--attach`) opens no audio channel, so it needs no audio URL nor AudioHook key.
    Hints name commands that exist (`dasctl config set`) and carry the profile they are about."""
    from dasctl.config import config_key

    missing: list[tuple[str, str]] = []  # (key, example value)
    if not resolved.model_hash:
        missing.append(("model_hash", "HASH"))
    if sends_audio and not resolved.audio_urls.get(protocol):
        missing.append((f"audio_url.{protocol}", "wss://HOST/PATH"))
    if sends_audio and protocol == "audiohook" and not resolved.audiohook_api_key:
        missing.append(("audiohook_api_key", "KEY"))
    if not missing:
        return
    keys = [key for key, _ in missing]
    listed = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
    commands = "; ".join(
        f"`dasctl config set {key} {value} --profile {resolved.name}`" for key, value in missing
    )
    variables = ", ".join(config_key(key).env for key in keys)
    flag = " (or pass --model-hash)" if "model_hash" in keys else ""
    them = "it" if len(keys) == 1 else "them"
    raise UsageError(
        f"profile '{resolved.name}' has no {listed}",
        f"Set {them} with {commands}{flag}, or in the environment: {variables}.",
    )


def register_request(
    profile: str | None,
    *,
    protocol: str,
    model_hash: str | None,
    threshold: float | None,
    duration: float | None,
    speed: float,
    timeout: float,
    call_id: str | None = None,
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    flag_names: Mapping[str, str] | None = None,
    sends_audio: bool = True,
    store_key_file: str | None = None,
) -> tuple[Profile, RegisterOptions]:
    """The profile with a request's own values applied (they win over the environment and the profile
    file), and the session options they make; a usage error for whatever a session would lack."""
    from dasctl.config import load_profile
    from dasctl.session import RegisterOptions

    resolved = load_profile(
        profile,
        flags={
            "url": url,
            "model_hash": model_hash,
            "authenticity_threshold": threshold,
            "audio_total_duration": duration,
            "store_key_file": store_key_file,
        },
        env=env,
        flag_names=flag_names
        or {"authenticity_threshold": "--threshold", "audio_total_duration": "--duration"},
    )
    missing_settings(resolved, protocol, sends_audio=sends_audio)  # a usage error now, not after connecting
    assert resolved.model_hash  # missing_settings checked it
    options = RegisterOptions(
        protocol=protocol,
        authenticity_threshold=resolved.authenticity_threshold,
        audio_total_duration=resolved.audio_total_duration,
        model_hash=resolved.model_hash,
        call_id=call_id,
        speed=speed,
        timeout=timeout,
    )
    return resolved, options


def check_speaker(
    recordings: Sequence[Recording], speaker: str | None, store: bool, option: str = "--speaker",
    no_store: str = "--no-store",
) -> None:
    """A speaker id to keep each result under: --speaker for one recording, else each file's name."""
    if speaker is not None:
        if not speaker.strip():
            raise UsageError(f"{option} is empty",
                             "Give the id the credential is kept under, e.g. CUST12345.")
        if len(recordings) > 1:
            raise UsageError(f"{option} names one speaker, so it takes a single file",
                             "Register files one at a time, or name each file after its speaker.")
        return
    if not store:
        return
    for recording in recordings:
        if recording.is_stdin:
            raise UsageError(f"reading stdin (-) needs {option} ID: there is no file name to take it from",
                             f"Pass {option} CUST12345, or {no_store} to keep nothing.")
        if not recording.named:
            raise UsageError(f"{recording.name} needs {option}: there is no file name to take it from",
                             f"Pass {option}='CUST12345', or {no_store} to keep nothing.")


@dataclass
class Outputs:
    """Where --output and --keep-audio put things for one input."""

    output: Path | None = None
    keep_audio: Path | None = None


def output_target(
    option: str, value: Path | None, recording: Recording, suffix: str, several: bool, force: bool = True
) -> Path | None:
    """A file path, or with several inputs (or an existing directory) a file named after the input there;
    an existing file is refused unless force."""
    if value is None:
        return None
    if value.is_dir():
        return _not_existing(option, value / f"{recording.stem}{suffix}", force)
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


@dataclass
class Keeper:
    """Where register keeps each attempt (the credential store), and under which speaker id."""

    store: Store
    speaker: str | None  # --speaker; None: each file's stem
    profile: Profile
    consent: str | None = None  # --consent: the reference kept with each enrollment

    def speaker_for(self, recording: Recording) -> str:
        from dasctl.store.records import speaker_from_file

        return self.speaker or speaker_from_file(recording.name)

    def keep(
        self,
        document: dict[str, Any],
        recording: Recording,
        audio: bytes | None,
        fingerprint: tuple[int, str] | None,
    ) -> DasctlError | None:
        """Record the attempt and add `stored` to its document; the store's error, if writing failed."""
        from dasctl.store import StoreError
        from dasctl.store.records import enrollment_from_document, stored_fields

        path = recording.source_path
        size, sha256 = fingerprint if fingerprint else (None, None)
        if size is None and path is not None:
            try:
                size = Path(path).stat().st_size
            except OSError:
                size = None
        record = enrollment_from_document(
            document, speaker=self.speaker_for(recording), origin="register", profile=self.profile.name,
            service_url=self.profile.url, source_path=path, source_size=size, source_sha256=sha256,
            audio=audio,
        )
        record.consent = self.consent
        try:
            kept = self.store.record_enrollment(record)
        except DasctlError as error:
            document["stored"] = {"id": None, "store": self.store.location, "error": error.message}
            # the store's errors name it; whatever went wrong, this is exit 6 (the result was printed)
            return error if isinstance(error, StoreError) else StoreError(error.message, error.hint)
        document["stored"] = stored_fields(kept, self.store.location)
        return None


@dataclass
class Registration:
    """What every session of one register run shares."""

    options: RegisterOptions
    audio_options: dict[str, Any]
    profile: Profile
    tokens: TokenProvider
    network: NetworkSettings
    sink: ProgressSink
    warn: Warn
    keeper: Keeper | None = None

    async def one(self, recording: Recording, outputs: Outputs, options: RegisterOptions) -> RegisterResult:
        """One recording, start to end: the session, the store, --output and --keep-audio."""
        from dasctl import results
        from dasctl.audio import write_mulaw_wav

        try:
            outcome, sent, fingerprint, channel = await self._session(recording, options)
        except (AudioError, AuthError, ServiceUnavailable, UsageError) as failure:
            self.sink.end()
            document = results.failure_document(recording.name, failure, call_id=options.call_id)
            store_error = (await asyncio.to_thread(self.keeper.keep, document, recording, None, None)
                           if self.keeper else None)  # off the loop: the store's wait is its own
            return RegisterResult.from_document(document, failure, store_error)
        self.sink.end()
        document = results.result_document(
            recording.name, outcome, model_hash=options.model_hash,
            audio_total_duration=options.audio_total_duration,
        )
        document.update(channel)  # which channel was sent: "channel" (and "side" when named by role)
        error = results.outcome_error(recording.name, outcome)
        result = outcome.result
        store_error = None
        if self.keeper is not None:
            # first, so that an --output record names the speaker it is kept under (verify --credential
            # then adds to that speaker's history); the service's collected voice when it returned it,
            # else what was sent (8 kHz mu-law either way)
            kept_audio = getattr(result, "collected_audio", None) or (bytes(sent) if sent else None)
            keep = self.keeper.keep
            store_error = await asyncio.to_thread(keep, document, recording, kept_audio, fingerprint)
        if error is None and outputs.output is not None:
            results.write_private_json(outputs.output, results.credential_record(document))
            document["output"] = str(outputs.output)
        if outputs.keep_audio is not None:
            audio_bytes = getattr(result, "collected_audio", None)
            if audio_bytes:
                write_mulaw_wav(outputs.keep_audio, [audio_bytes])
                document["kept_audio"] = str(outputs.keep_audio)
            elif error is None:
                self.warn(f"{recording.name}: the service returned no collected audio; nothing to keep")
        return RegisterResult.from_document(document, error, store_error)

    async def _session(
        self, recording: Recording, options: RegisterOptions
    ) -> tuple[Any, bytearray | None, tuple[int, str] | None, dict[str, Any]]:
        """The session's outcome, and for the store: the audio sent and the input's (size, sha256); the
        channel sent."""
        import asyncio

        from dasctl.session import register_audio
        from dasctl.store.records import SENT_AUDIO_LIMIT_BYTES

        keep = self.keeper is not None
        with recording.open(**self.audio_options) as opened:
            sent = opened.stream.keep_frames(SENT_AUDIO_LIMIT_BYTES) if keep else None
            outcome = await register_audio(
                opened.stream, options, self.profile, self.tokens, self.network, self.sink.update
            )
        # after closing: a piped stdin's rest is then drained into its digest
        fingerprint = await asyncio.to_thread(opened.fingerprint) if keep else None
        return outcome, sent, fingerprint, opened.stream.channel_fields()


async def register_each(
    recordings: Sequence[Recording],
    outputs: Sequence[Outputs],
    options: RegisterOptions,
    profile: Profile,
    *,
    audio_options: dict[str, Any] | None = None,
    sink: ProgressSink | None = None,
    warn: Warn,
    keeper: Keeper | None = None,
    on_result: Callable[[RegisterResult, int, int], None] = lambda result, index, total: None,
    env: Mapping[str, str] | None = None,
) -> list[RegisterResult]:
    """Register each recording in turn (SIGTERM and SIGHUP, where the caller routes them to cancel the
    task, close both channels of the session on the way out)."""
    from dasctl.auth import TokenProvider
    from dasctl.net import NetworkSettings

    network = NetworkSettings.from_profile(profile, env)
    registration = Registration(
        options, audio_options or {}, profile, TokenProvider(profile, network, env), network,
        sink or NoProgress(), warn, keeper,
    )

    async def one(index: int, recording: Recording, file_options: RegisterOptions) -> RegisterResult:
        return await registration.one(recording, outputs[index], file_options)

    return await run_each(recordings, options, registration.sink, one, on_result)
