"""One pacing clock for every audio channel on an event loop: the frames due in the same tick share a timer.

`watch -j 256` sends 256 x 50 Twilio frames a second. Waiting for each frame's deadline with its own
timer and `asyncio.wait_for(event.wait(), delay)` (a task, a timeout handle and two futures per frame)
cost more CPU than sending the frame. Here a stream waits on one future; the clock rounds its deadline
up to the next tick (TICK) and rings every stream due in that tick from one loop timer. The deadlines
still come from the Pacer (absolute, from the first frame), so the tick moves each frame by less than
TICK and never adds up: the rate is exact.

A stream that must stop waiting early (the service closed the channel, AudioHook asked to pause) passes
WakeEvents: setting one ends the waits that watch it at once, as Event.wait would.
"""

from __future__ import annotations

import asyncio
import math
import weakref

#: The clock's resolution: a frame goes out at most this much after its deadline.
TICK = 0.005


class WakeEvent(asyncio.Event):
    """An asyncio.Event whose set() also ends the PacingClock waits watching it."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: set[asyncio.Future[None]] = set()

    def set(self) -> None:
        super().set()
        sleepers, self._sleepers = self._sleepers, set()
        for sleeper in sleepers:
            if not sleeper.done():
                sleeper.set_result(None)


class PacingClock:
    """Wakes waiting streams on ticks of TICK seconds of the loop's clock (one timer a tick, not a frame)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self._loop = loop
        self._tick = tick
        self._slots: dict[int, list[asyncio.Future[None]]] = {}

    async def wait(self, delay: float, *events: WakeEvent) -> bool:
        """Wait `delay` seconds (to the tick at or after that), or until one of the events is set;
        whether one is. A delay of 0 or less still yields once, so a stream sent as fast as possible
        lets its reader see the service's messages."""
        if delay <= 0:
            await asyncio.sleep(0)
            return any(event.is_set() for event in events)
        if any(event.is_set() for event in events):
            return True
        sleeper = self._sleeper(self._loop.time() + delay)
        for event in events:
            event._sleepers.add(sleeper)
        try:
            await sleeper
        finally:
            for event in events:
                event._sleepers.discard(sleeper)
        return any(event.is_set() for event in events)

    def _sleeper(self, deadline: float) -> asyncio.Future[None]:
        slot = math.ceil(deadline / self._tick)
        sleepers = self._slots.get(slot)
        if sleepers is None:
            sleepers = self._slots[slot] = []
            self._loop.call_at(slot * self._tick, self._ring, slot)
        sleeper: asyncio.Future[None] = self._loop.create_future()
        sleepers.append(sleeper)
        return sleeper

    def _ring(self, slot: int) -> None:
        for sleeper in self._slots.pop(slot, ()):
            if not sleeper.done():  # woken early by an event, or its task was cancelled
                sleeper.set_result(None)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PacingClock] = weakref.WeakKeyDictionary()


def pacing_clock() -> PacingClock:
    """The running loop's clock (one per loop: every session of a `watch` shares it)."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = PacingClock(loop)
    return clock
