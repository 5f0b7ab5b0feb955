"""What a session is asked for, what it reports while it runs, and how it ended (no sockets here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dasctl import events
from dasctl.config import DEFAULT_SCORE_THRESHOLD
from dasctl.errors import ExitCode, exit_code_for_event

# Session states, in the order a session goes through them (Progress.state).
CONNECTING = "connecting"
INITIALIZING = "initializing"
STREAMING = "streaming"
PAUSED = "paused"  # the service paused the audio (AudioHook `pause`) and has not resumed it yet
WAITING = "waiting for result"
DONE = "done"
# an attached session (register --attach): the platform sends the audio, the service reports on it
AWAITING_AUDIO = "waiting for the platform's audio"
HEARING = "hearing the call's audio"
STATES = (CONNECTING, INITIALIZING, STREAMING, PAUSED, WAITING, AWAITING_AUDIO, HEARING, DONE)

#: Progress is reported at least this often while audio is being sent (at least 5 updates a second).
PROGRESS_INTERVAL = 0.1
#: After the audio channel fails abnormally, how long a terminal event that explains it may take.
CHANNEL_FAILURE_GRACE = 0.5


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
    # a verify session (docs/protocol.md `initialize`) speaks the same driver: verify namespace and request
    kind: str = events.NS_REGISTER  # or events.NS_VERIFY
    credential: str = ""  # verify: the credential to check the voice against
    score_threshold: float = DEFAULT_SCORE_THRESHOLD  # verify: the lowest score that verifies
    # a live call (register --attach: the platform streams the audio): how long its first audio may
    # take to show after consumer-ready
    audio_wait: float = 60.0


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
