"""When to try a file again, and when the service counts as gone."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from dasctl.errors import AudioError, DasctlError, ServiceUnavailable, UsageError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# retry policy and service health


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient (exit-6 class) failures."""

    max_retries: int = 5
    base: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the n-th consecutive failure (n >= 1): half fixed, half random."""
        ceiling = min(self.cap, self.base * (2 ** max(0, failures - 1)))
        return ceiling / 2 + rng() * ceiling / 2

    def gives_up(self, attempts: int) -> bool:
        """Whether a file that has failed transiently `attempts` times has used all its retries."""
        return attempts > self.max_retries


class ServiceHealth:
    """Tracks how long the service has been unreachable; past the budget, watch exits 6."""

    def __init__(self, budget: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self.down_since: float | None = None
        self.failures = 0
        self.last_error: str | None = None

    def reached(self) -> None:
        """The service answered something: the outage (if any) is over."""
        self.down_since = None
        self.failures = 0

    def unreachable(self, message: str) -> bool:
        """Record a failure to reach the service; True when the outage has now lasted past the budget."""
        now = self._clock()
        if self.down_since is None:
            self.down_since = now
        self.failures += 1
        self.last_error = message
        return now - self.down_since >= self.budget

    @property
    def down_for(self) -> float:
        return 0.0 if self.down_since is None else self._clock() - self.down_since

    def outage_error(self, error: DasctlError) -> ServiceUnavailable:
        """What ends watch when the outage has lasted past the budget (exit 6)."""
        return ServiceUnavailable(
            f"service unreachable for {self.down_for:.0f} s: {error.message}",
            "watch stops so that a supervisor can restart it; unfinished files are kept for the next run.",
        )


async def wait_for_service(
    check: Callable[[], Awaitable[object]],
    health: ServiceHealth,
    retry: RetryPolicy,
    stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:
    """Run `check` until it passes or `stop` is set, waiting out an outage within the health budget;
    AuthError at once, ServiceUnavailable once the outage has lasted past the budget."""
    while not stop.is_set():
        try:
            await check()
        except ServiceUnavailable as error:
            if health.unreachable(error.message):
                raise health.outage_error(error) from error
            delay = retry.delay(health.failures)
            say(f"service unreachable ({error.message}); retrying in {delay:.1f} s")
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
        else:
            health.reached()
            return


def failure_of(error: Exception, path: Path) -> DasctlError | None:
    """What an attempt's exception means for its file: None when the file vanished before it could be
    read (skipped, no line); a bug becomes this file's internal error, and the loop goes on."""
    if isinstance(error, (AudioError, UsageError, OSError)) and not path.exists():
        return None
    if isinstance(error, DasctlError):
        return error
    log.error("internal error on %s", path, exc_info=error)
    return DasctlError(f"internal error: {type(error).__name__}: {error}")
