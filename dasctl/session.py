"""The socket driver: one register session (signalling + audio channel) turned into one typed outcome.

No Typer or rich here: `register_audio` is the library entry point that `dasctl register` and
`dasctl watch` both call. PROTOCOL.md §3 is the contract it follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dasctl import events
from dasctl.errors import AudioError, AuthError, DasctlError, ExitCode, ServiceUnavailable, exit_code_for_event

if TYPE_CHECKING:
    import aiohttp

    from dasctl.audio import AudioStream
    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings

log = logging.getLogger(__name__)

# Session states, in the order a session goes through them (Progress.state).
CONNECTING = "connecting"
INITIALIZING = "initializing"
STREAMING = "streaming"
WAITING = "waiting for result"
DONE = "done"
STATES = (CONNECTING, INITIALIZING, STREAMING, WAITING, DONE)

#: Progress is reported at least this often while audio is being sent (DESIGN.md: >= 5 updates/s).
PROGRESS_INTERVAL = 0.1
#: After the audio channel fails abnormally, how long a terminal event that explains it may take.
CHANNEL_FAILURE_GRACE = 0.5


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
    timeout: float = 60.0  # bound on waiting for the service (connect, consumer-ready, result after audio ends)
    audiohook_frame_ms: int = 200  # AudioHook binary frame (the reference client sends 200 ms)


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
    timings: dict[str, float] = field(default_factory=dict)  # seconds since start: connected, consumer_ready, audio_done, finished
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
    audio: AudioStream,
    options: RegisterOptions,
    profile: Profile,
    tokens: TokenProvider,
    network: NetworkSettings,
    on_progress: Callable[[Progress], None] | None = None,
) -> RegisterOutcome:
    """Run one register session for this audio and return its terminal event.

    Terminal service events are returned (even error-*); failures with no terminal event raise
    AuthError / ServiceUnavailable / AudioError. Cancellation closes both channels before propagating.
    """
    session = RegisterSession(audio, options, profile, tokens, network, on_progress)
    return await session.run()


class RegisterSession:
    """One session's state; `register_audio` is the public way in."""

    def __init__(
        self,
        audio: AudioStream,
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
        self.namespace = profile.namespace(events.NS_REGISTER)
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.state = CONNECTING
        self.audio_seconds_sent = 0.0
        self.last_vad: events.VadStatus | None = None
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def run(self) -> RegisterOutcome:
        raise NotImplementedError  # filled in below
