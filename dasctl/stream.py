"""`dasctl stream`: the platform's part of a live call, the audio of a call id and nothing else.

Opens the profile's audio channel for the protocol, names the call id (twilio `start.callSid`, AudioHook
`conversationId`) and sends the recordings one after another, paced, with everything dasctl's channels
do (AudioHook signatures, pings, pause/resume, startPaused, discardTo, the close transaction). Some other
process drives the signalling for that call id (`dasctl register --attach`, or the integration itself).

A platform does not wait for the integration: its audio may come before the session exists, and the
service refuses it then (docs/protocol.md, the session timeline). With `wait`, a refused open is tried
again until the session appears or the wait runs out; the audio sent in a refused attempt is sent again
from its start.
No Typer or rich here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dasctl.errors import ServiceUnavailable

if TYPE_CHECKING:
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings
    from dasctl.session import AudioSource

#: Between two tries of a refused open (a session that is about to appear).
RETRY_INTERVAL = 0.25
#: Audio kept to send again after a refusal: a refusal comes before the service read any audio, so only
#: the first frames of an attempt can be lost; this is far more than that.
REPLAY_LIMIT_BYTES = 8000 * 30

# StreamProgress.state
OPENING = "opening the audio channel"
REFUSED = "waiting for the session"  # the consumer refused the call id; trying again (wait)
STREAMING = "streaming"
PAUSED = "paused by the service"
DONE = "done"


@dataclass(frozen=True)
class StreamOptions:
    """Which call to feed, how, and how long to keep trying while no session waits for it."""

    call_id: str
    protocol: str = "twilio"  # or "audiohook"
    speed: float = 1.0  # 1 = real time, 0 = as fast as possible
    wait: float = 0.0  # seconds to keep trying a refused open
    timeout: float = 60.0  # bound on opening the channel


@dataclass(frozen=True)
class StreamProgress:
    """A snapshot for the progress line."""

    state: str
    position: float  # stream time sent (AudioHook: including audio skipped at discardTo)
    duration: float | None  # seconds in the recordings, when known
    attempts: int
    refusal: str | None = None  # why the last open was refused (while waiting)


@dataclass(frozen=True)
class StreamOutcome:
    """How the stream ended: the service closed it (it had enough), or the audio ran out first."""

    call_id: str
    protocol: str
    position: float
    closed_by_service: bool
    attempts: int


class ChainedAudio:
    """Several recordings, one after another, as one call's audio."""

    def __init__(self, parts: list[AudioSource]) -> None:
        self.parts = parts
        durations = [part.duration for part in parts]
        self.duration: float | None = (
            None if any(d is None for d in durations) else sum(d for d in durations if d is not None)
        )

    def frames(self, frame_ms: int = 20) -> Iterator[bytes]:
        for part in self.parts:
            yield from part.frames(frame_ms)


class ReplayableAudio:
    """An audio source whose first frames can be sent again: each frames() starts from the beginning,
    as long as no more than limit_bytes were read (rewind() says whether that still holds)."""

    def __init__(self, audio: AudioSource, limit_bytes: int = REPLAY_LIMIT_BYTES) -> None:
        self.audio = audio
        self.duration = audio.duration
        self.limit = limit_bytes
        self.kept: list[bytes] = []
        self.kept_bytes = 0
        self.overflowed = False
        self.source: Iterator[bytes] | None = None

    def frames(self, frame_ms: int = 20) -> Iterator[bytes]:
        if self.source is None:
            self.source = iter(self.audio.frames(frame_ms))
        yield from list(self.kept)
        for frame in self.source:
            if not self.overflowed:
                self.kept.append(frame)
                self.kept_bytes += len(frame)
                self.overflowed = self.kept_bytes > self.limit
            yield frame

    def rewind(self) -> bool:
        """Whether the next frames() can start again from the very first frame."""
        return not self.overflowed


async def stream_call(
    audio: AudioSource,
    options: StreamOptions,
    profile: Profile,
    network: NetworkSettings,
    on_progress: Callable[[StreamProgress], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> StreamOutcome:
    """Send the audio to the profile's audio consumer for options.call_id; retry refused opens (wait).

    Raises AuthError (handshake refused), ServiceUnavailable (unreachable, refused after the wait, cut),
    AudioError (a recording that cannot be decoded)."""
    from dasctl.channels.twilio import AudioRefused
    from dasctl.session import RegisterOptions
    from dasctl.session.audio_channel import send_audio

    replay = ReplayableAudio(audio)
    channel = RegisterOptions(
        protocol=options.protocol, speed=options.speed, timeout=options.timeout, call_id=options.call_id
    )
    deadline = time.monotonic() + options.wait
    attempts = 0
    position = 0.0
    state = OPENING

    def report(new_state: str | None = None, refusal: str | None = None) -> None:
        nonlocal state
        state = new_state or state
        if on_progress is not None:
            on_progress(StreamProgress(state, position, audio.duration, attempts, refusal))

    def on_sent(seconds: float) -> None:
        nonlocal position
        position = seconds
        report(STREAMING if state == OPENING else None)

    def on_pause(paused: bool) -> None:
        report(PAUSED if paused else STREAMING)

    http = network.aiohttp_session()
    try:
        while True:
            attempts += 1
            position = 0.0
            report(OPENING)
            try:
                closed = await send_audio(http, profile, channel, options.call_id, replay, on_sent, on_pause,
                                          env=env)
            except AudioRefused as refusal:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not replay.rewind():
                    raise _refused(refusal, options, attempts) from None
                report(REFUSED, refusal.message)
                await asyncio.sleep(min(RETRY_INTERVAL, remaining))
                continue
            report(DONE)
            return StreamOutcome(options.call_id, options.protocol, round(position, 6), closed, attempts)
    finally:
        try:
            await asyncio.wait_for(http.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            pass


def _refused(refusal: ServiceUnavailable, options: StreamOptions, attempts: int) -> ServiceUnavailable:
    if options.wait > 0:
        hint = (
            f"No session took call {options.call_id} within --wait {options.wait:g} s ({attempts} tries); "
            f"start `dasctl register --attach {options.call_id}` (or your integration) for it."
        )
    else:
        hint = (
            f"Is a session waiting for call {options.call_id}? Start `dasctl register --attach "
            f"{options.call_id}` first, or give --wait SECONDS to keep trying until it appears."
        )
    return ServiceUnavailable(refusal.message, hint)
