"""When to try a file again, and when the service counts as gone."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

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
