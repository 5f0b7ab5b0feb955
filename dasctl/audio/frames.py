"""Frames and pacing: the service's rate, frame lengths, and sending each frame on its deadline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

from dasctl.errors import UsageError

SAMPLE_RATE = 8000
MIN_FRAME_MS = 1
MAX_FRAME_MS = 8000  # AudioHook caps a binary frame at 64 KiB


def check_frame_ms(frame_ms: int) -> None:
    """Validate a frame length in milliseconds."""
    if not MIN_FRAME_MS <= frame_ms <= MAX_FRAME_MS:
        raise UsageError(f"--frame-ms {frame_ms} must be between {MIN_FRAME_MS} and {MAX_FRAME_MS}")


class Pacer:
    """Absolute-deadline pacing: speed 0 = as fast as possible, 1 = real time, N = N times real time."""

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not math.isfinite(speed) or speed < 0:
            raise UsageError(f"--speed {speed:g} must be 0 (as fast as possible) or more (1 = real time)")
        self.speed = float(speed)
        self._clock = clock
        self._started_at: float | None = None

    def delay(self, audio_seconds_sent: float) -> float:
        """Seconds to wait before sending the frame that starts at this stream time (>= 0)."""
        if self.speed == 0:
            return 0.0
        now = self._clock()
        if self._started_at is None:
            self._started_at = now
        # Deadlines come from the start, never from the previous frame, so late frames do not add up to drift.
        return max(0.0, self._started_at + audio_seconds_sent / self.speed - now)

    def shift(self, seconds: float) -> None:
        """The stream was held this long (AudioHook pause): later deadlines move as much, no burst after."""
        if self._started_at is not None:
            self._started_at += max(seconds, 0.0)


def paced_frames(
    frames: Iterable[bytes], pacer: Pacer, sleep: Callable[[float], None] = time.sleep
) -> Iterator[bytes]:
    """Yield each frame no earlier than its deadline (synchronous writers; asyncio code uses Pacer.delay)."""
    sent = 0.0
    for frame in frames:
        wait = pacer.delay(sent)
        if wait > 0:
            sleep(wait)
        yield frame
        sent += len(frame) / SAMPLE_RATE
