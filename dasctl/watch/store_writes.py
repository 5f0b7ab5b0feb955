"""Every store call of a running watch: off the event loop, and tried again while the store is unreachable.

A database that stops answering must not freeze the sessions in flight (their audio, their sockets): the
calls run on the store's own thread (WatchState.off_loop), each bounded by the store itself, and one that
fails is tried again with backoff until the store has been unreachable for --unreachable-budget; then watch
stops with exit 6. A read is treated as a write is: a long-running watch rides out an outage of its store,
whichever call happened to meet it. A final outcome is reported only once its write has landed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from dasctl.errors import DasctlError
from dasctl.store import StoreError
from dasctl.watch.retries import RetryPolicy, ServiceHealth

T = TypeVar("T")


class StoreGaveUp(Exception):
    """A store call could not be made within the budget (or was refused for good); `fatal` was told."""


class StoreWrites:
    """The writes under way, their retries, and the store's health (the same budget as the service's)."""

    def __init__(
        self,
        budget: float,
        retry: RetryPolicy,
        status: Callable[[str], None],
        fatal: Callable[[DasctlError], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = ServiceHealth(budget, clock)
        self.retry = retry
        self.status = status
        self.fatal = fatal
        self.tasks: set[asyncio.Task[Any]] = set()

    async def keep(self, name: str, write: Callable[[], Awaitable[None]]) -> bool:
        """One write, tried again with backoff while the store stays unreachable within the budget;
        False (after telling `fatal`) once it cannot be kept."""
        try:
            await self._retried(name, write, "not kept yet")
        except StoreGaveUp:
            return False
        return True

    async def read(self, name: str, read: Callable[[], Awaitable[T]]) -> T:
        """One read, tried again as a write is; StoreGaveUp (after telling `fatal`) once it cannot be
        answered within the budget."""
        return await self._retried(name, read, "not read yet")

    async def _retried(self, name: str, call: Callable[[], Awaitable[T]], pending: str) -> T:
        failures = 0
        while True:
            try:
                answer = await call()
            except StoreError as error:
                failures += 1
                if self.health.unreachable(error.message):
                    self.fatal(error)
                    raise StoreGaveUp() from error
                delay = self.retry.delay(failures)
                self.status(f"{name}: {pending} ({error.message}); trying again in {delay:.1f} s")
                await asyncio.sleep(delay)
            except DasctlError as error:
                self.fatal(error)
                raise StoreGaveUp() from error
            else:
                self.health.reached()
                return answer

    def spawn(self, name: str, write: Callable[[], Awaitable[None]]) -> asyncio.Task[bool]:
        """`keep` in the background; the task says whether the write landed."""
        return self.track(self.keep(name, write))

    def track(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Other work that waits on writes (a line printed, then marked): settled and cancelled with them."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    async def settle(self, grace: float) -> None:
        """Let the writes under way land within `grace` seconds; give up the rest (their files are not
        reported, and the next run does them again)."""
        deadline = asyncio.get_running_loop().time() + grace
        # a landed write may start another (an outcome kept, then its line printed and marked)
        while self.tasks and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)
            await asyncio.sleep(0)  # the done callbacks of the writes that landed run now
        self.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
