"""The socket driver: one register session (signalling + audio channel) turned into one typed outcome.

No Typer or rich here: `register_audio` is the library entry point that `dasctl register` and
`dasctl watch` both call. docs/protocol.md §3 is the contract it follows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dasctl import events
from dasctl.config import DEFAULT_SCORE_THRESHOLD
from dasctl.errors import (
    AudioError,
    AuthError,
    DasctlError,
    ExitCode,
    ServiceUnavailable,
    exit_code_for_event,
)

if TYPE_CHECKING:
    import aiohttp

    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings

log = logging.getLogger(__name__)

# Session states, in the order a session goes through them (Progress.state).
CONNECTING = "connecting"
INITIALIZING = "initializing"
STREAMING = "streaming"
PAUSED = "paused"  # the service paused the audio (AudioHook `pause`) and has not resumed it yet
WAITING = "waiting for result"
DONE = "done"
STATES = (CONNECTING, INITIALIZING, STREAMING, PAUSED, WAITING, DONE)

#: Progress is reported at least this often while audio is being sent (docs/contributing.md: >= 5 updates/s).
PROGRESS_INTERVAL = 0.1
#: After the audio channel fails abnormally, how long a terminal event that explains it may take.
CHANNEL_FAILURE_GRACE = 0.5


@functools.cache
def _async_client_class() -> type:
    """socketio.AsyncClient, except that a message still in flight when the connection closes is dropped.

    python-socketio hands each Engine.IO message to a task of its own. A binary event (result-success
    carries the collected audio) is a placeholder message and then an attachment; when the connection
    closes between the two (a session cancelled by Ctrl-C, or `watch` stopping because its stdout
    closed), the disconnect throws away the half-built packet and the attachment's task fails to decode
    the audio as a packet. Nobody awaits that task, so asyncio printed "Task exception was never
    retrieved" and a traceback on stderr as the command ended (seen once in CI). Once the connection is
    closing nothing more can come of such a message: it is dropped, and shown at -vv only.
    """
    import socketio

    class AsyncClient(socketio.AsyncClient):
        async def _handle_eio_message(self, data: Any) -> None:
            try:
                await super()._handle_eio_message(data)
            except ValueError:
                if self.connected and self.eio.state == "connected":
                    raise
                log.debug("dropped a Socket.IO message that was in flight as the connection closed",
                          exc_info=True)

    return AsyncClient


class AudioSource(Protocol):
    """What a session sends: an open recording (audio.AudioStream) or kept mu-law (audio.MulawAudio)."""

    duration: float | None  # seconds, when known (None: stdin, read in a thread)

    def frames(self, frame_ms: int = 20) -> Iterable[bytes]: ...


@dataclass(frozen=True)
class RegisterOptions:
    """What to ask the service for, and how to send the audio."""

    protocol: str = "twilio"  # or "audiohook"
    authenticity_threshold: float = 0.8
    audio_total_duration: float = 5.0
    model_hash: str = ""
    call_id: str | None = None  # fresh uuid4 when None
    speed: float = 1.0
    frame_ms: int = 20  # twilio media frame (Twilio itself sends 20 ms)
    # bound on waiting for the service (connect, consumer-ready, result after the audio ends)
    timeout: float = 60.0
    audiohook_frame_ms: int = 200  # AudioHook binary frame (the reference client sends 200 ms)
    # a verify session (docs/protocol.md §3.1) speaks the same driver: namespace verify, verify_request
    kind: str = events.NS_REGISTER  # or events.NS_VERIFY
    credential: str = ""  # verify: the credential to check the voice against
    score_threshold: float = DEFAULT_SCORE_THRESHOLD  # verify: the lowest score that verifies


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running session, handed to the display on every event and while streaming."""

    state: str
    elapsed: float  # seconds since register_audio started
    audio_seconds_sent: float
    target_seconds: float  # audio_total_duration: seconds of voice the service wants
    vad: events.VadStatus | None = None  # the last info-vad-status
    event: events.ServiceEvent | None = None  # the service event that caused this update, if any
    call_id: str = ""
    audio_duration: float | None = None  # seconds of audio in the input, when known

    @property
    def voice_seconds(self) -> float:
        return self.vad.audio_seconds if self.vad else 0.0

    @property
    def vad_percentage(self) -> int:
        return self.vad.vad_percentage if self.vad else 0


@dataclass
class RegisterOutcome:
    """How a session ended: the terminal service event and what it took to get there."""

    call_id: str
    result: events.SessionResult | events.SessionError  # the terminal event
    audio_seconds_sent: float
    # seconds since start: connected, consumer_ready, audio_done, finished
    timings: dict[str, float] = field(default_factory=dict)
    protocol: str = "twilio"
    last_vad: events.VadStatus | None = None

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for_event(self.result.name)

    @property
    def voice_seconds(self) -> float | None:
        """Voice the service collected: from the result when it says, else from the last VAD status."""
        if isinstance(self.result, events.SessionResult) and self.result.voice_audio_collected is not None:
            return self.result.voice_audio_collected
        return self.last_vad.audio_seconds if self.last_vad else None


async def register_audio(
    audio: AudioSource,
    options: RegisterOptions,
    profile: Profile,
    tokens: TokenProvider,
    network: NetworkSettings,
    on_progress: Callable[[Progress], None] | None = None,
) -> RegisterOutcome:
    """Run one register session (or verify, with options.kind) for this audio and return its terminal event.

    Terminal service events are returned (even error-*); failures with no terminal event raise
    AuthError / ServiceUnavailable / AudioError. Cancellation closes both channels before propagating.
    """
    session = RegisterSession(audio, options, profile, tokens, network, on_progress)
    return await session.run()


class RegisterSession:
    """One session's state; `register_audio` is the public way in."""

    def __init__(
        self,
        audio: AudioSource,
        options: RegisterOptions,
        profile: Profile,
        tokens: TokenProvider,
        network: NetworkSettings,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.audio = audio
        self.options = options
        self.profile = profile
        self.tokens = tokens
        self.network = network
        self.on_progress = on_progress
        self.call_id = options.call_id or str(uuid.uuid4())
        self.namespace = profile.namespace(options.kind)
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.state = CONNECTING
        self.audio_seconds_sent = 0.0
        self.last_vad: events.VadStatus | None = None
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    # --- progress -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def mark(self, name: str) -> None:
        self.timings.setdefault(name, round(self.elapsed(), 4))

    def report(self, event: events.ServiceEvent | None = None) -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            Progress(
                state=self.state,
                elapsed=self.elapsed(),
                audio_seconds_sent=self.audio_seconds_sent,
                target_seconds=self.options.audio_total_duration,
                vad=self.last_vad,
                event=event,
                call_id=self.call_id,
                audio_duration=getattr(self.audio, "duration", None),
            )
        )

    def set_state(self, state: str, event: events.ServiceEvent | None = None) -> None:
        self.state = state
        self.report(event)

    # --- the session -----------------------------------------------------------------------------------
    async def run(self) -> RegisterOutcome:
        self.set_state(CONNECTING)
        http = self.network.aiohttp_session()
        sio: Any = None
        try:
            sio = await self.connect(http)
            self.mark("connected")
            self.set_state(INITIALIZING)
            await sio.emit(events.INITIALIZE, self.initialize_payload(), namespace=self.namespace)
            return await self.drive(http)
        finally:
            await self.close(sio, http)

    def initialize_payload(self) -> dict[str, Any]:
        """docs/protocol.md §3.1, field for field (sample_rate and channels are strings on Socket.IO)."""
        request: dict[str, Any]
        if self.options.kind == events.NS_VERIFY:
            request = {
                events.R_CREDENTIAL: self.options.credential,
                events.R_AUTHENTICITY_THRESHOLD: self.options.authenticity_threshold,
                events.R_SCORE_THRESHOLD: self.options.score_threshold,
                events.R_AUDIO_TOTAL_DURATION: self.options.audio_total_duration,
            }
            request_key = events.F_VERIFY_REQUEST
        else:
            request = {
                events.R_AUTHENTICITY_THRESHOLD: self.options.authenticity_threshold,
                events.R_AUDIO_TOTAL_DURATION: self.options.audio_total_duration,
                events.R_MODEL_HASH: self.options.model_hash,
            }
            request_key = events.F_REGISTER_REQUEST
        return {
            events.F_METADATA: {
                events.M_AUDIO_PROTOCOL: self.options.protocol,
                events.M_AUDIO_FORMAT: "raw",
                events.M_AUDIO_CODEC: "mulaw",
                events.M_SAMPLE_FORMAT: "",
                events.M_SAMPLE_RATE: "8000",
                events.M_CHANNELS: "1",
                events.M_CALL_ID: self.call_id,
            },
            request_key: request,
        }

    async def token(self, refused: str | None = None) -> Any:
        """A valid token; after a refusal, a fresh one (sessions refused together share one refresh)."""
        from dasctl import logs

        token = await asyncio.to_thread(self.tokens.token, refused is not None, refused)
        logs.register_secret(token.access_token)
        return token

    async def connect(self, http: aiohttp.ClientSession) -> Any:
        """Connect to the register namespace; on an auth refusal, refresh the token once and retry."""
        refused: str | None = None
        for attempt in (1, 2):
            token = await self.token(refused)
            sio, refusal = await self.attempt_connect(http, token.authorization)
            if sio is not None:
                return sio
            if refusal == "unauthorized" and attempt == 1:
                log.info("the service refused the token; refreshing it once and retrying")
                refused = token.access_token
                continue
            raise AuthError(
                "the service refused the access token (unauthorized), even after a refresh",
                "Run `dasctl login` again, or check that the profile's auth_url belongs to this service.",
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def attempt_connect(
        self, http: aiohttp.ClientSession, authorization: str
    ) -> tuple[Any, str | None]:
        """One connection attempt: (client, None), or (None, "unauthorized") when the token was refused."""
        import socketio

        url = self.profile.url
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.queue = queue
        refusals: list[Any] = []
        sio = _async_client_class()(
            reconnection=False,
            logger=False,
            engineio_logger=False,
            http_session=http,
            handle_sigint=False,
            request_timeout=max(self.options.timeout, 1.0),
        )

        def on_any(event: str, *args: Any) -> None:
            # one queue keeps the service's order; any number of arguments (result-success carries audio)
            queue.put_nowait(("event", (event, args)))

        def on_connect_error(*args: Any) -> None:
            refusals.append(args[0] if args else None)

        def on_disconnect(*args: Any) -> None:
            queue.put_nowait(("disconnect", args[0] if args else None))

        sio.on("*", on_any, namespace=self.namespace)
        sio.on("connect_error", on_connect_error, namespace=self.namespace)
        sio.on("disconnect", on_disconnect, namespace=self.namespace)
        try:
            await asyncio.wait_for(
                sio.connect(
                    url,
                    headers={"Authorization": authorization},
                    transports=["websocket"],
                    namespaces=[self.namespace],
                    socketio_path=_socketio_path(),
                    wait_timeout=self.options.timeout,
                ),
                self.options.timeout + 1.0,
            )
            return sio, None
        except asyncio.TimeoutError:
            await _quietly_disconnect(sio)
            raise ServiceUnavailable(
                f"no answer from the signalling service at {url} within {self.options.timeout:g} s",
                "The service is slow or unreachable; try again later, or raise --timeout.",
            ) from None
        except socketio.exceptions.ConnectionError as error:
            await _quietly_disconnect(sio)
            if _unreachable(error):
                from dasctl.net import unreachable_hint

                raise ServiceUnavailable(
                    f"could not reach the signalling service at {url}", unreachable_hint(self.profile, "url")
                ) from None
            message = _refusal_message(refusals)
            if message == "unauthorized":
                return None, message
            if message:
                raise ServiceUnavailable(f"the service refused the session: {message}") from None
            raise ServiceUnavailable(
                f"cannot connect to the signalling service at {url}: {error}",
                "Check the URL (dasctl config show) and that the service is running, then try again.",
            ) from None

    async def drive(self, http: aiohttp.ClientSession) -> RegisterOutcome:
        """Funnel service events, the audio task and the clock into one loop until a terminal event."""
        timeout = self.options.timeout
        deadline = time.monotonic() + timeout
        stream_task: asyncio.Task[bool] | None = None
        channel_failure: DasctlError | None = None
        last_sent, last_sent_at = 0.0, time.monotonic()
        getter: asyncio.Future[tuple[str, Any]] = asyncio.ensure_future(self.queue.get())
        try:
            while True:
                waitables: set[asyncio.Future[Any]] = {getter}
                if stream_task is not None and not stream_task.done():
                    waitables.add(stream_task)
                # while streaming, the clock only drives progress and the stall check
                streaming = self.state in (STREAMING, PAUSED)
                wait = PROGRESS_INTERVAL if streaming else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(waitables, timeout=wait, return_when=asyncio.FIRST_COMPLETED)

                if getter in done:
                    kind, payload = getter.result()
                    getter = asyncio.ensure_future(self.queue.get())
                    if kind == "disconnect":
                        raise ServiceUnavailable(
                            f"the service dropped the session ({self.state}) before sending a result",
                            "This is usually transient; try again.",
                        )
                    event = events.parse_event(payload[0], payload[1])
                    log.debug("event %s", event.name)
                    if event.terminal:
                        assert isinstance(event, (events.SessionResult, events.SessionError))
                        if stream_task is not None:
                            self.mark("audio_done")  # the result can overtake the end of the audio
                        self.mark("finished")
                        self.set_state(DONE, event)
                        return RegisterOutcome(
                            call_id=self.call_id,
                            result=event,
                            audio_seconds_sent=round(self.audio_seconds_sent, 3),
                            timings=dict(self.timings),
                            protocol=self.options.protocol,
                            last_vad=self.last_vad,
                        )
                    if isinstance(event, events.VadStatus):
                        self.last_vad = event
                    if isinstance(event, events.ConsumerReady) and stream_task is None:
                        self.mark("consumer_ready")
                        stream_task = asyncio.create_task(self.stream(http))
                        last_sent_at = time.monotonic()
                        self.set_state(STREAMING, event)
                        continue
                    self.report(event)
                    continue

                if stream_task is not None and stream_task in done:
                    self.mark("audio_done")
                    error = stream_task.exception()
                    if error is None:
                        deadline = time.monotonic() + timeout
                    elif isinstance(error, (AuthError, AudioError)):
                        raise error
                    elif isinstance(error, ServiceUnavailable):
                        # a cut audio channel is often followed by the service's own explanation
                        channel_failure = error
                        deadline = time.monotonic() + min(CHANNEL_FAILURE_GRACE, timeout)
                    else:
                        raise error
                    self.set_state(WAITING)
                    continue

                now = time.monotonic()
                if self.state in (STREAMING, PAUSED):
                    # a pause is the service's own choice, never a stall
                    if self.audio_seconds_sent > last_sent or self.state == PAUSED:
                        last_sent, last_sent_at = self.audio_seconds_sent, now
                    elif now - last_sent_at > timeout:
                        raise ServiceUnavailable(
                            f"the audio channel stalled: no audio accepted for {timeout:g} s",
                            "The service stopped reading; try again later.",
                        )
                    self.report()
                    continue
                if now >= deadline:
                    if channel_failure is not None:
                        raise channel_failure
                    raise self.timeout_error()
        finally:
            getter.cancel()
            if stream_task is not None and not stream_task.done():
                stream_task.cancel()
                # the channel closes itself politely on cancel; never wait for that long
                await asyncio.wait({stream_task}, timeout=2.0)
            elif stream_task is not None and stream_task.done() and not stream_task.cancelled():
                stream_task.exception()  # retrieved, so asyncio does not log it as never retrieved

    def timeout_error(self) -> ServiceUnavailable:
        timeout = self.options.timeout
        if self.state == INITIALIZING:
            return ServiceUnavailable(
                f"the service did not get its audio consumer ready within {timeout:g} s",
                "The service is slow or stalled; try again later, or raise --timeout.",
            )
        return ServiceUnavailable(
            f"no result from the service within {timeout:g} s after the audio ended",
            "The service is slow or stalled; try again later, or raise --timeout.",
        )

    async def stream(self, http: aiohttp.ClientSession) -> bool:
        """Open the profile's audio channel for the chosen protocol and send the audio, paced."""
        from dasctl.audio import Pacer

        pacer = Pacer(self.options.speed)
        url = self.profile.audio_url(self.options.protocol)

        def on_sent(seconds: float) -> None:
            self.audio_seconds_sent = seconds

        def on_pause(paused: bool) -> None:
            if self.state in (STREAMING, PAUSED):
                self.set_state(PAUSED if paused else STREAMING)

        if self.options.protocol == "audiohook":
            from dasctl.auth import audiohook_secret
            from dasctl.channels.audiohook import stream_audiohook

            api_key = self.profile.audiohook_api_key
            if not api_key:
                raise AuthError(
                    f"profile '{self.profile.name}' has no AudioHook API key",
                    f"Run `dasctl config set audiohook_api_key KEY --profile {self.profile.name}`, "
                    "or set DASCTL_AUDIOHOOK_API_KEY.",
                )
            secret = await asyncio.to_thread(audiohook_secret, self.profile)
            from dasctl import logs

            logs.register_secret(api_key)
            logs.register_secret(secret)
            return await stream_audiohook(
                http,
                url,
                self.call_id,
                self.frames(self.options.audiohook_frame_ms),
                pacer,
                on_sent,
                api_key=api_key,
                secret=secret,
                connect_timeout=self.options.timeout,
                on_pause=on_pause,
            )
        from dasctl.channels.twilio import stream_twilio

        return await stream_twilio(
            http,
            url,
            self.call_id,
            self.frames(self.options.frame_ms),
            pacer,
            on_sent,
            connect_timeout=self.options.timeout,
        )

    async def frames(self, frame_ms: int) -> AsyncIterator[bytes]:
        """The audio's frames; stdin is read in a thread so a slow writer never blocks the sockets."""
        iterator = iter(self.audio.frames(frame_ms))
        in_thread = getattr(self.audio, "duration", None) is None
        while True:
            frame = await asyncio.to_thread(next, iterator, None) if in_thread else next(iterator, None)
            if frame is None:
                return
            yield frame

    async def close(self, sio: Any, http: aiohttp.ClientSession) -> None:
        """Leave the namespace and close the HTTP session, bounded: a dead peer must not hang the exit."""
        if sio is not None:
            await _quietly_disconnect(sio)
        try:
            await asyncio.wait_for(http.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            pass


def _socketio_path() -> str:
    from dasctl.config import SOCKETIO_PATH

    return SOCKETIO_PATH


def _unreachable(error: BaseException) -> bool:
    """Whether a Socket.IO connect failed because nothing answered at the URL (not a refusal by the service).

    python-socketio reports both as "Connection error"; the aiohttp error underneath tells them apart."""
    import aiohttp

    inner = error.__cause__.__context__ if error.__cause__ is not None else None
    return isinstance(inner, aiohttp.ClientConnectionError)


def _refusal_message(refusals: list[Any]) -> str | None:
    """The message of a connect_error: the server's data ({"message": ...}) or a string."""
    for data in refusals:
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return str(data["message"])
        if isinstance(data, str) and data:
            return data
    return None


async def _quietly_disconnect(sio: Any) -> None:
    try:
        await asyncio.wait_for(sio.disconnect(), 2.0)
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001  (cleanup must never mask the real outcome)
        log.debug("socket.io disconnect did not finish cleanly", exc_info=True)
