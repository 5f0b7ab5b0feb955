"""One register or verify session: voice collection, timers, and its single terminal event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dasctl import events
from dasctl.emulator import voice
from dasctl.emulator.options import EmulatorOptions

log = logging.getLogger("dasctl.emulator")

#: A new info-vad-status each time collected voice grows by this much (docs/protocol.md §3.2).
VAD_STATUS_STEP = 0.5
#: How often the timers are checked.
WATCH_INTERVAL = 0.1
#: A timer check this much later than due means this process did not run (SIGSTOP, a frozen VM).
STALL_TOLERANCE = 0.5

Emit = Callable[[str, dict[str, Any], bytes | None], Awaitable[None]]


@dataclass(frozen=True)
class SessionRequest:
    """A validated `initialize`."""

    kind: str  # events.NS_REGISTER or events.NS_VERIFY
    audio_protocol: str
    call_id: str
    authenticity_threshold: float
    audio_total_duration: float
    model_hash: str
    score_threshold: float | None = None
    voiceprint: list[float] | None = None  # from the verify credential


class Session:
    """The state of one call: fed by an audio consumer, reported on the signalling connection."""

    def __init__(self, request: SessionRequest, options: EmulatorOptions, emit: Emit) -> None:
        self.request = request
        self.options = options
        self._emit = emit
        self.voice = voice.VoiceCollector()
        self.finished = asyncio.Event()
        self.outcome: str | None = None
        self.consumer_attached = False
        self.audio_complete = False  # enough voice: consumers close their channel
        self._last_reported = 0.0
        self._last_audio = time.monotonic()  # when the consumer last READ a frame
        self._held = False  # the client paused its audio (AudioHook `paused` .. `resumed`)
        self._ready_at: float | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.close_audio: Callable[[], Awaitable[None]] | None = None  # set by the consumer

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def attach(self, close_audio: Callable[[], Awaitable[None]]) -> None:
        """An audio consumer took this call; the idle timer starts now."""
        self.consumer_attached = True
        self.close_audio = close_audio
        self._last_audio = time.monotonic()

    def detach(self) -> None:
        self.consumer_attached = False
        self.close_audio = None

    def hold(self, held: bool) -> None:
        """The client paused (True) or resumed (False) its audio: a call on hold is not idle."""
        self._held = held
        self._last_audio = time.monotonic()  # idleness counts again from the resume

    async def start(self) -> None:
        """Announce the consumer (unless faulted) and start the consumer and idle timers."""
        if not self.options.faults.no_consumer_ready:
            await self._send(
                events.INFO_CONSUMER_READY,
                {events.F_EVENT: events.INFO_CONSUMER_READY, events.F_CONTENT: events.CONSUMER_READY_CONTENT},
            )
            await self._send_vad_status()
            self._ready_at = time.monotonic()
            self._watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        last_check = time.monotonic()
        while not self.finished.is_set():
            await asyncio.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            stalled = now - last_check - WATCH_INTERVAL
            last_check = now
            if stalled > STALL_TOLERANCE:
                # This process did not run (stopped, or starved): that time is nobody's idleness, and
                # frames the client sent meanwhile wait in our socket. Move the timers by the stall and
                # let the consumer read them before anything is judged idle.
                log.info("session %s: the emulator stalled for %.1f s; timers moved", self.call_id, stalled)
                self._last_audio += stalled
                if self._ready_at is not None:
                    self._ready_at += stalled
                continue
            if not self.consumer_attached and self.voice.audio_seconds == 0:
                assert self._ready_at is not None
                if now - self._ready_at >= self.options.consumer_timeout:
                    await self.fail(
                        events.ERROR_CONSUMER_NOT_READY,
                        f"no audio channel opened for call_id {self.call_id} within "
                        f"{self.options.consumer_timeout:g} s of info-consumer-ready",
                    )
            elif (
                not self.audio_complete
                and not self._held
                and now - self._last_audio >= self.options.idle_timeout
            ):
                await self.fail(
                    events.ERROR_AUDIO,
                    f"no audio for {self.options.idle_timeout:g} s; {self._voice_text()}",
                )
                if self.close_audio is not None:
                    await self.close_audio()

    def _voice_text(self) -> str:
        return (
            f"voice collected {self.voice.voice_seconds:.2f} s of {self.request.audio_total_duration:g} s "
            f"needed (audio received {self.voice.audio_seconds:.2f} s)"
        )

    async def _send(self, name: str, payload: dict[str, Any], extra: bytes | None = None) -> None:
        if self.options.faults.delay_events:
            await asyncio.sleep(self.options.faults.delay_events)
        await self._emit(name, payload, extra)

    async def _send_vad_status(self) -> None:
        seconds = round(self.voice.voice_seconds, 2)
        self._last_reported = seconds
        percentage = int(100 * seconds / self.request.audio_total_duration + 1e-9)
        await self._send(
            events.INFO_VAD_STATUS,
            {
                events.F_EVENT: events.INFO_VAD_STATUS,
                events.F_CONTENT: events.VAD_STATUS_CONTENT,
                events.F_AUDIO_SECONDS: seconds,
                events.F_VAD_PERCENTAGE: percentage,
            },
        )

    async def feed(self, mulaw: bytes) -> bool:
        """Take audio from the consumer; True once enough voice is in (the consumer closes then)."""
        if self.finished.is_set() or self.audio_complete:
            return True
        self._last_audio = time.monotonic()
        before = self.voice.voice_seconds
        seconds = self.voice.feed(mulaw)
        target = self.request.audio_total_duration
        if seconds >= target - 1e-9:
            self.audio_complete = True
            await self._send_vad_status()
            return True
        if seconds > before and (
            self._last_reported == 0 or seconds - self._last_reported >= VAD_STATUS_STEP - 1e-9
        ):
            await self._send_vad_status()
        return False

    async def complete(self) -> None:
        """Run the biometric stand-in on the collected voice and send the result."""
        try:
            name, payload = await asyncio.to_thread(self._decide)
        except Exception:  # a failing backend is a protocol event, not a crash
            log.exception("biometric stand-in failed for %s", self.call_id)
            await self.fail(events.ERROR_DAS_PEAK, "the biometric engine failed; try again")
            return
        extra = bytes(self.voice.audio) if name == events.RESULT_SUCCESS else None
        await self.finish(name, payload, extra)

    def _decide(self) -> tuple[str, dict[str, Any]]:
        signal = self.voice.voiced_signal()
        authenticity = round(voice.authenticity(signal), 2)
        collected = round(self.voice.voice_seconds, 2)
        base = {events.F_AUTHENTICITY: authenticity, events.F_VOICE_AUDIO_COLLECTED: collected}
        if authenticity < self.request.authenticity_threshold:
            return events.RESULT_FAIL_SPOOF, {
                events.F_EVENT: events.RESULT_FAIL_SPOOF,
                events.F_CONTENT: f"{self._noun()}: rejected, the audio does not look like live speech "
                f"(authenticity {authenticity:.2f} < {self.request.authenticity_threshold:g})",
                **base,
            }
        print_ = voice.voiceprint(signal)
        if self.request.kind == events.NS_REGISTER:
            return events.RESULT_SUCCESS, {
                events.F_EVENT: events.RESULT_SUCCESS,
                events.F_CONTENT: events.REGISTRATION_APPROVED_CONTENT,
                **base,
                events.F_CREDENTIAL: voice.make_credential(self.request.model_hash, print_),
            }
        assert self.request.voiceprint is not None and self.request.score_threshold is not None
        score = round(voice.similarity(self.request.voiceprint, print_), 2)
        if score < self.request.score_threshold:
            return events.RESULT_FAIL_SCORE, {
                events.F_EVENT: events.RESULT_FAIL_SCORE,
                events.F_CONTENT: "Verification: rejected "
                f"(score {score:.2f} < {self.request.score_threshold:g})",
                events.F_SCORE: score,
                **base,
            }
        return events.RESULT_SUCCESS, {
            events.F_EVENT: events.RESULT_SUCCESS,
            events.F_CONTENT: events.VERIFICATION_APPROVED_CONTENT,
            events.F_SCORE: score,
            **base,
        }

    def _noun(self) -> str:
        return "Registration" if self.request.kind == events.NS_REGISTER else "Verification"

    async def audio_ended(self, why: str) -> None:
        """The consumer's channel ended (closed, stop, close message) before the result."""
        if self.audio_complete or self.finished.is_set():
            return
        await self.fail(events.ERROR_AUDIO, f"audio ended ({why}) before enough voice; {self._voice_text()}")

    async def fail(self, name: str, content: str) -> None:
        await self.finish(name, {events.F_EVENT: name, events.F_CONTENT: content})

    async def finish(self, name: str, payload: dict[str, Any], extra: bytes | None = None) -> None:
        """Send the one terminal event (later calls do nothing)."""
        async with self._lock:
            if self.finished.is_set():
                return
            self.outcome = name
            self.finished.set()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        log.info(
            "session %s %s %s: %s, voice %.2f s, audio %.2f s",
            self.request.kind,
            self.request.audio_protocol,
            self.call_id,
            name,
            self.voice.voice_seconds,
            self.voice.audio_seconds,
        )
        await self._send(name, payload, extra)

    def abandon(self) -> None:
        """The signalling client went away: stop the timers, no event can be delivered."""
        if not self.finished.is_set():
            self.outcome = "abandoned"
            self.finished.set()
            log.info(
                "session %s %s: client disconnected, voice %.2f s",
                self.request.kind,
                self.call_id,
                self.voice.voice_seconds,
            )
        if self._watchdog is not None:
            self._watchdog.cancel()


class UnclaimableSession(Exception):
    """An audio channel named a call that has no session waiting for it (the message says why)."""


class SessionRegistry:
    """Live sessions by call_id, so an audio consumer finds the session its call belongs to."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> bool:
        existing = self._sessions.get(session.call_id)
        if existing is not None and not existing.finished.is_set():
            return False
        self._sessions[session.call_id] = session
        return True

    def get(self, call_id: str) -> Session | None:
        session = self._sessions.get(call_id)
        return session if session is not None and not session.finished.is_set() else None

    def claim(self, call_id: str, audio_protocol: str) -> Session:
        """The live session an audio channel of this protocol belongs to; UnclaimableSession otherwise."""
        session = self.get(call_id)
        if session is None:
            raise UnclaimableSession(f"no session is waiting for call_id {call_id}")
        if session.request.audio_protocol != audio_protocol:
            raise UnclaimableSession(
                f"call_id {call_id} declared audio_protocol {session.request.audio_protocol}"
            )
        if session.consumer_attached:
            raise UnclaimableSession(f"call_id {call_id} already has an audio channel")
        return session

    def remove(self, session: Session) -> None:
        if self._sessions.get(session.call_id) is session:
            del self._sessions[session.call_id]

    def __len__(self) -> int:
        return len(self._sessions)
