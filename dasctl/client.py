"""The Python API: `AsyncClient` and `Client` register and verify recordings and read the credential store.

They run the very code `dasctl register` and `dasctl verify` run (dasctl.enroll, dasctl.verify), return
the records those commands print (dasctl.results), and raise the errors they exit with (dasctl.errors,
each with its `exit_code`). docs/python.md is the guide. No Typer or rich here, and nothing heavy is
imported before a session starts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast

from dasctl.batch import CallbackProgress, check_inputs
from dasctl.errors import UsageError
from dasctl.store_reader import AsyncStoreReader, StoreReader

if TYPE_CHECKING:
    import os

    from dasctl.config import Profile
    from dasctl.recording import AudioInput, Recording
    from dasctl.results import RegisterResult, SessionReport, VerifyResult
    from dasctl.session import Progress
    from dasctl.store import Store
    from dasctl.stream import StreamOutcome, StreamProgress

log = logging.getLogger("dasctl")

R = TypeVar("R")  # what a Run ends with: a SessionReport, or a StreamOutcome
Report = TypeVar("Report", bound="SessionReport")
P = ParamSpec("P")

#: How the API's keyword arguments are named in messages (the command line names its flags).
_NAMES = {"speed": "speed", "timeout": "timeout", "call_id": "call_id"}
_FLAG_NAMES = {"url": "url", "model_hash": "model_hash", "authenticity_threshold": "threshold",
               "audio_total_duration": "duration"}
_END = object()


class RunningLoopError(UsageError, RuntimeError):
    """A blocking `Client` method was called where an event loop is already running (a notebook cell, an
    async web view): it cannot start another one there. Use AsyncClient and `await` (exit code 2)."""


class Run(Generic[R]):
    """One session started by AsyncClient: `await` it for its result, or iterate it first for its progress.

        run = client.register("call.wav", speaker="alice")
        async for progress in run:       # dasctl.Progress snapshots, in order
            print(progress.state, progress.voice_seconds)
        result = await run               # the RegisterResult (or the DasctlError raised)

    The session starts at the first `await` or iteration (inside a running loop) and goes on to its end
    whether or not the progress is read; `cancel()` stops it and closes its channels.
    """

    def __init__(self, work: Callable[[CallbackProgress], Awaitable[R]],
                 on_progress: Callable[[Progress], None] | None) -> None:
        self._work = work
        self._on_progress = on_progress
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[R] | None = None

    def _start(self) -> asyncio.Task[R]:
        if self._task is None:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            on_progress = self._on_progress

            def update(progress: Progress) -> None:
                queue.put_nowait(progress)
                if on_progress is not None:
                    on_progress(progress)

            self._queue = queue

            async def main() -> R:
                try:
                    return await self._work(CallbackProgress(update))
                finally:
                    queue.put_nowait(_END)

            self._task = asyncio.ensure_future(main())
        return self._task

    def __await__(self) -> Generator[Any, None, R]:
        return self._start().__await__()

    def __aiter__(self) -> AsyncIterator[Progress]:
        return self._progress()

    async def _progress(self) -> AsyncIterator[Progress]:
        task = self._start()
        assert self._queue is not None
        while (item := await self._queue.get()) is not _END:
            yield item
        task.result()  # a session that failed says so here too, not only to whoever awaits it

    def cancel(self) -> None:
        """Stop the session (its channels are closed); awaiting it then raises CancelledError."""
        if self._task is not None:
            self._task.cancel()


class ClientSettings:
    """What a client holds: which profile, service and store its sessions use.

    `profile` is a profile name (default: DASCTL_PROFILE, else the profiles file's default, else `local`,
    the emulator of `dasctl serve`); `url` overrides its service URL; `env` replaces os.environ as the
    source of DASCTL_* settings; `store` is a credential store (a SQLite path or postgresql:// URL) in
    place of the profile's. Warnings (e.g. an unusual duration) go to `on_warning`, by default the
    `dasctl` logger.
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        store: str | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.profile = profile
        self.url = url
        self.env = env
        self.store_url = store
        self.warn = on_warning or log.warning

    def _open_store(self, profile: Profile | None = None, *, create: bool = True) -> Store:
        """The store by precedence: the client's `store` > the profile's (DASCTL_STORE or its file) >
        the default file in dasctl's data directory; its key by the profile's store_key_file resolution."""
        from dasctl.store import open_store
        from dasctl.store.vault import key_settings

        if profile is None:
            from dasctl.config import load_profile

            profile = load_profile(self.profile, flags={"url": self.url}, env=self.env,
                                   flag_names=_FLAG_NAMES)
        # its key as the commands find it: DASCTL_STORE_KEY_FILE, DASCTL_STORE_KEY, the profile's file
        key = key_settings(profile)
        return open_store(self.store_url if self.store_url is not None else profile.store, self.env, key=key,
                          warn=self.warn, create=create)


class AsyncClient(ClientSettings):
    """Register and verify recordings from async code (asyncio), with a profile's settings (see
    ClientSettings for the arguments). `register` and `verify` return a Run to await (or iterate)."""

    @property
    def store(self) -> AsyncStoreReader:
        """The credential store this client uses, to read (awaited)."""
        return AsyncStoreReader(self._open_store)

    # --- register ----------------------------------------------------------------------------------
    def register(
        self,
        audio: AudioInput,
        *,
        speaker: str | None = None,
        channel: str = "mix",
        protocol: str = "twilio",
        store: bool = True,
        start: float = 0.0,
        end: float | None = None,
        model_hash: str | None = None,
        threshold: float | None = None,
        duration: float | None = None,
        speed: float = 1.0,
        timeout: float = 60.0,
        call_id: str | None = None,
        output: str | os.PathLike[str] | None = None,
        keep_audio: str | os.PathLike[str] | None = None,
        force: bool = False,
        name: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        check: bool = True,
        consent: str | None = None,
    ) -> Run[RegisterResult]:
        """Enroll a speaker from one recording, as `dasctl register` does; await the returned Run.

        `audio` is a path, the bytes of a recording, or a file opened in binary mode (`name` names the
        last two in messages and gives the default speaker id). The result is kept in the credential
        store under `speaker` (default: the file name without its extension) unless store=False.
        `output` writes the credential record (JSON, mode 0600), `keep_audio` the voice the service
        collected. `consent` is the consent reference kept with the enrollment (a signed form's number).
        With check=True (the default) a failure raises its DasctlError; with check=False the result comes
        back with `.ok` False and `.failure` set. As the command, it refuses before any audio is sent a
        store without its key (StoreKeyError) and a speaker who opted out (OptedOut).
        """
        from dasctl.recording import Recording

        async def work(sink: CallbackProgress) -> RegisterResult:
            from dasctl import enroll

            recording = Recording.of(audio, name)
            _check_common(recording, protocol, channel, start, end, speed, timeout, call_id)
            outputs = enroll.Outputs(
                enroll.output_target("output", _path(output), recording, ".credential.json", False, force),
                enroll.output_target("keep_audio", _path(keep_audio), recording, ".collected.wav", False),
            )
            enroll.check_speaker([recording], speaker, store, option="speaker", no_store="store=False")
            reference = None
            if consent is not None:
                from dasctl.store.records import check_consent

                reference = check_consent(consent, "consent")
                if not store:
                    raise UsageError("consent= is kept with the enrollment in the store, and store=False "
                                     "keeps nothing")
            profile, options = enroll.register_request(
                self.profile, protocol=protocol, model_hash=model_hash, threshold=threshold,
                duration=duration, speed=speed, timeout=timeout, call_id=call_id, url=self.url,
                env=self.env, flag_names=_FLAG_NAMES,
            )
            unusual = enroll.duration_warning(profile.audio_total_duration, "duration")
            if unusual:
                self.warn(unusual)
            kept = await asyncio.to_thread(self._open_store, profile) if store else None
            keeper = enroll.Keeper(kept, speaker, profile, reference) if kept is not None else None
            try:
                if keeper is not None:
                    await asyncio.to_thread(_ready_for, keeper.store, keeper.speaker_for(recording))
                [result] = await enroll.register_each(
                    [recording], [outputs], options, profile,
                    audio_options={"channel": channel, "start": start, "end": end},
                    sink=sink, warn=self.warn, keeper=keeper, env=self.env,
                )
            finally:
                if kept is not None:
                    await asyncio.to_thread(kept.close)
            return _checked(result, check)

        return Run(work, on_progress)

    # --- verify ------------------------------------------------------------------------------------
    def verify(
        self,
        audio: AudioInput,
        *,
        speaker: str | None = None,
        credential: object = None,
        score_threshold: float | None = None,
        channel: str = "mix",
        protocol: str = "twilio",
        start: float = 0.0,
        end: float | None = None,
        threshold: float | None = None,
        duration: float | None = None,
        speed: float = 1.0,
        timeout: float = 60.0,
        name: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        check: bool = True,
    ) -> Run[VerifyResult]:
        """Verify that one recording is the voice of an enrolled speaker, as `dasctl verify` does.

        Give exactly one of `speaker` (their current credential in the store) and `credential` (a
        RegisterResult, a register record as a dict, a record file as a pathlib.Path, or the credential
        as a str). Verifications of a known speaker are kept in the store's history. A "no"
        (result-fail-score, result-fail-spoof) raises ServiceRejected (exit code 5) unless check=False,
        which returns the VerifyResult with `.verified` False.
        """
        from dasctl.recording import Recording

        async def work(sink: CallbackProgress) -> VerifyResult:
            from dasctl.config import load_profile
            from dasctl.verify import stored_target, target_of, verify_each, verify_options

            if (speaker is None) == (credential is None):
                raise UsageError("give exactly one of speaker= and credential=",
                                 "speaker= uses the store's current credential; credential= one you have.")
            recording = Recording.of(audio, name)
            _check_common(recording, protocol, channel, start, end, speed, timeout, None)
            if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
                raise UsageError(f"score_threshold {score_threshold:g} must be between 0 and 1")
            if duration is not None and duration <= 0:
                raise UsageError(f"duration {duration:g} must be positive")
            profile = load_profile(self.profile, flags={"url": self.url, "authenticity_threshold": threshold},
                                   env=self.env, flag_names=_FLAG_NAMES)
            profile.audio_url(protocol)  # no URL for this protocol: a usage error now, not after connecting
            store: Store | None = None
            try:
                if speaker is not None:
                    # reading a credential never creates a store: none yet is a speaker unknown
                    opening = functools.partial(self._open_store, profile, create=False)
                    store = await asyncio.to_thread(opening)
                    await asyncio.to_thread(_ready_for, store, speaker, "verify")  # it reads the credential
                    target = await asyncio.to_thread(stored_target, store, speaker)
                else:
                    target = target_of(credential)
                    if target.speaker is not None:
                        # a record that names its speaker: its verifications are kept in its history
                        store = await self._try_store(profile)
                        if store is not None:  # a record the customer's opt-out outlived
                            await asyncio.to_thread(store.refuse_opted_out, target.speaker)
                options = verify_options(profile, target, protocol=protocol, duration=duration,
                                         score_threshold=score_threshold, speed=speed, timeout=timeout)
                [result] = await verify_each(
                    [recording], target, options, profile, store=store,
                    audio_options={"channel": channel, "start": start, "end": end},
                    sink=sink, warn=self.warn, env=self.env,
                )
            finally:
                if store is not None:
                    await asyncio.to_thread(store.close)
            return _checked(result, check)

        return Run(work, on_progress)

    # --- stream ------------------------------------------------------------------------------------
    def stream(
        self,
        audio: AudioInput,
        *,
        call_id: str,
        protocol: str = "twilio",
        channel: str = "mix",
        start: float = 0.0,
        end: float | None = None,
        speed: float = 1.0,
        wait: float = 0.0,
        timeout: float = 60.0,
        name: str | None = None,
        on_progress: Callable[[StreamProgress], None] | None = None,
    ) -> Run[StreamOutcome]:
        """Send one recording as the audio of call `call_id`, as `dasctl stream` does: the platform's part
        of a live call, whose session another process (or `register(...)` elsewhere) drives with the same
        call id. `wait` keeps retrying while no session waits for the call. Progress comes as
        dasctl.stream.StreamProgress snapshots; the result is a StreamOutcome (closed_by_service: the
        service had enough audio)."""
        from dasctl.recording import Recording

        async def work(sink: CallbackProgress) -> StreamOutcome:
            from dasctl.config import load_profile
            from dasctl.net import NetworkSettings
            from dasctl.session import parse_call_id
            from dasctl.stream import StreamOptions, stream_call

            call = parse_call_id(call_id, "call_id")
            recording = Recording.of(audio, name)
            _check_common(recording, protocol, channel, start, end, speed, timeout, None)
            if wait < 0:
                raise UsageError(f"wait {wait:g} must be 0 or more")
            profile = load_profile(self.profile, flags={"url": self.url}, env=self.env,
                                   flag_names=_FLAG_NAMES)
            profile.audio_url(protocol)  # no URL for this protocol: a usage error now, not after connecting
            options = StreamOptions(call_id=call, protocol=protocol, speed=speed, wait=wait, timeout=timeout)
            with recording.open(channel=channel, start=start, end=end) as opened:
                return await stream_call(opened.stream, options, profile,
                                         NetworkSettings.from_profile(profile, self.env),
                                         cast(Any, sink.callback), env=self.env)

        return Run(work, cast(Any, on_progress))

    async def _try_store(self, profile: Profile) -> Store | None:
        from dasctl.errors import DasctlError

        try:  # kept in a store that exists: none is made (with its key) for a verification alone
            store = await asyncio.to_thread(functools.partial(self._open_store, profile, create=False))
        except DasctlError as failure:
            self.warn(f"verifications will not be recorded: {failure.message}")
            return None
        if store.absent:
            store.close()
            return None
        return store


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Run[R]],
) -> Callable[Concatenate[Client, P], R]:
    """A Client method: the AsyncClient method of the same name and arguments, run to its result."""

    @functools.wraps(method)
    def blocking(self: Client, *args: P.args, **kwargs: P.kwargs) -> R:
        _no_running_loop(method.__name__)  # before the Run exists: no coroutine is left never awaited
        run = method(self.client, *args, **kwargs)

        async def main() -> R:
            return await run

        return asyncio.run(main())

    blocking.__doc__ = f"AsyncClient.{method.__name__}, blocking until its result.\n\n{method.__doc__}"
    return blocking


class Client(ClientSettings):
    """The blocking form of AsyncClient, for scripts, tasks and web back offices that have no event loop
    running: the same arguments (see ClientSettings), and methods that return the result itself.

    Each call runs its own event loop (asyncio.run); called where a loop is already running (a notebook
    cell, an async view) it raises RunningLoopError: use AsyncClient and `await` there.
    """

    @property
    def store(self) -> StoreReader:
        """The credential store this client uses, to read."""
        return StoreReader(self._open_store)

    @functools.cached_property
    def client(self) -> AsyncClient:
        """The AsyncClient of the same settings, which runs each call."""
        return AsyncClient(self.profile, url=self.url, env=self.env, store=self.store_url,
                           on_warning=self.warn)

    register = _blocking(AsyncClient.register)
    verify = _blocking(AsyncClient.verify)
    stream = _blocking(AsyncClient.stream)


def _no_running_loop(method: str) -> None:
    """Refuse before anything starts: asyncio.run cannot run inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RunningLoopError(
        f"dasctl.Client.{method}() blocks, and it was called inside a running event loop",
        f"Use dasctl.AsyncClient there: `result = await dasctl.AsyncClient(...).{method}(...)` "
        "(a notebook cell can `await` directly).",
    )


def _check_common(
    recording: Recording, protocol: str, channel: str, start: float, end: float | None, speed: float,
    timeout: float, call_id: str | None,
) -> None:
    from dasctl.audio import check_range, parse_channel
    from dasctl.config import AUDIO_PROTOCOLS

    if protocol not in AUDIO_PROTOCOLS:
        raise UsageError(f"protocol {protocol!r} is not one of: {', '.join(AUDIO_PROTOCOLS)}")
    check_inputs([recording], speed, timeout, call_id, _NAMES)
    parse_channel(channel)
    check_range(start, end)


def _ready_for(store: Store, speaker: str, audit: str | None = None) -> None:
    """What `dasctl register` and `verify` check before any audio is sent: the store's key (and that it
    can be written), and that the customer did not opt out; a read of a credential is audited. A store
    not made yet (read-only open of the default one) holds nothing to check."""
    if store.absent:
        return
    store.require_secrets()
    store.refuse_opted_out(speaker)
    if audit is not None:
        store.audit(audit, [speaker], 1)


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


def _checked(result: Report, check: bool) -> Report:
    if check and result.failure is not None:
        result.failure.result = result  # the call id, the document, a credential that could not be kept
        raise result.failure
    return result
