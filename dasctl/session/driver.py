"""The session driver: one register or verify session (signalling + audio channel) turned into one outcome.

No Typer or rich here: `register_audio` is the library entry point that `dasctl register` and
`dasctl watch` both call. docs/protocol.md is the contract it follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import AudioError, AuthError, DasctlError, ServiceUnavailable
from dasctl.session import signalling
from dasctl.session.records import (
    AWAITING_AUDIO,
    CHANNEL_FAILURE_GRACE,
    CONNECTING,
    DONE,
    HEARING,
    INITIALIZING,
    PAUSED,
    PROGRESS_INTERVAL,
    STREAMING,
    WAITING,
    AudioSource,
    Progress,
    RegisterOptions,
    RegisterOutcome,
)

if TYPE_CHECKING:
    import aiohttp

    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings

log = logging.getLogger(__name__)


async def register_audio(
    audio: AudioSource,
    options: RegisterOptions,
    profile: Profile,
    tokens: TokenProvider,
    network: NetworkSettings,
    on_progress: Callable[[Progress], None] | None = None,
) -> RegisterOutcome:
    """Run one register session (or verify, with options.kind) for this audio and return its terminal event.

    Given a live call's CallAudio (dasctl.session.attach), the session drives the signalling only.

    Terminal service events are returned (even error-*); failures with no terminal event raise
    AuthError / ServiceUnavailable / AudioError. Cancellation closes both channels before propagating.
    """
    # a live call's CallAudio (register --attach): the platform sends the audio, no channel is ours
    attached = getattr(audio, "attached", False) is True
    session = RegisterSession(None if attached else audio, options, profile, tokens, network, on_progress)
    return await session.run()


class RegisterSession:
    """One session's state; `register_audio` is the public way in (and `attach_call`, with no audio)."""

    def __init__(
        self,
        audio: AudioSource | None,
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
            sio, self.queue = await signalling.connect(
                http, self.profile, self.namespace, self.tokens, self.options.timeout, self.network
            )
            self.mark("connected")
            self.set_state(INITIALIZING)
            await sio.emit(events.INITIALIZE, self.initialize_payload(), namespace=self.namespace)
            return await self.drive(http)
        finally:
            await self.close(sio, http)

    def initialize_payload(self) -> dict[str, Any]:
        """docs/protocol.md `initialize`, field for field (sample_rate and channels: strings on Socket.IO)."""
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

    async def drive(self, http: aiohttp.ClientSession) -> RegisterOutcome:
        """Funnel service events, the audio task and the clock into one loop until a terminal event."""
        timeout = self.options.timeout
        deadline = time.monotonic() + timeout
        stream_task: asyncio.Task[bool] | None = None
        channel_failure: DasctlError | None = None
        last_sent, last_sent_at = 0.0, time.monotonic()
        audio_ended = False  # the stream task's end (its result or its error) is taken once
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
                    if self.audio is None:
                        deadline = self.on_attached_event(event, deadline)
                        continue
                    if isinstance(event, events.ConsumerReady) and stream_task is None:
                        self.mark("consumer_ready")
                        stream_task = asyncio.create_task(self.stream(http))
                        last_sent_at = time.monotonic()
                        self.set_state(STREAMING, event)
                        continue
                    self.report(event)
                    continue

                # done(), not `in done`: a task that ended while an event was handled is not waited on
                if stream_task is not None and stream_task.done() and not audio_ended:
                    audio_ended = True
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

    def on_attached_event(self, event: events.ServiceEvent, deadline: float) -> float:
        """An attached session's clock: consumer-ready starts the wait for the platform's audio (--wait),
        the first voice the service reports ends it; then any word from the service is a sign of life."""
        now = time.monotonic()
        if isinstance(event, events.ConsumerReady) and self.state == INITIALIZING:
            self.mark("consumer_ready")
            self.set_state(AWAITING_AUDIO, event)
            return now + self.options.audio_wait
        if self.state == AWAITING_AUDIO and isinstance(event, events.VadStatus) and (
            event.audio_seconds > 0 or event.vad_percentage > 0
        ):
            self.mark("audio_arrived")
            self.set_state(HEARING, event)
            return now + self.options.timeout
        self.report(event)
        return now + self.options.timeout if self.state == HEARING else deadline

    def timeout_error(self) -> ServiceUnavailable:
        timeout = self.options.timeout
        if self.state == AWAITING_AUDIO:
            wait = self.options.audio_wait
            return ServiceUnavailable(
                f"no audio for call {self.call_id} reached the service within {wait:g} s",
                "Start the call's AudioHook/Media Stream right after `--attach` (or feed it with "
                f"`dasctl stream FILE --call-id {self.call_id}`), or give it longer with --wait.",
            )
        if self.state == HEARING:
            return ServiceUnavailable(
                f"no word from the service for {timeout:g} s while the call's audio was arriving",
                "The service is slow or stalled, or the call went silent; try again, or raise --timeout.",
            )
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
        from dasctl.session.audio_channel import send_audio

        def on_sent(seconds: float) -> None:
            self.audio_seconds_sent = seconds

        def on_pause(paused: bool) -> None:
            if self.state in (STREAMING, PAUSED):
                self.set_state(PAUSED if paused else STREAMING)

        assert self.audio is not None  # an attached session never opens the audio channel
        return await send_audio(http, self.profile, self.options, self.call_id, self.audio, on_sent, on_pause,
                                env=getattr(self.tokens, "env", None))  # a provider may keep none

    async def close(self, sio: Any, http: aiohttp.ClientSession) -> None:
        """Leave the namespace and close the HTTP session, bounded: a dead peer must not hang the exit."""
        if sio is not None:
            await signalling.quietly_disconnect(sio)
        try:
            await asyncio.wait_for(http.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            pass
