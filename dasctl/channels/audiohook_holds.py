"""What an AudioHook server may ask of the stream (docs/protocol.md, AudioHook): hold it, and skip part of it.

`pause` (or `opened` with `startPaused`): say `paused`, send nothing, keep pinging, and on `resume` say
`resumed` (the recording is held in place: `discarded` PT0S). `opened` with `discardTo`: skip whole frames
up to that position (rounded down to a frame, as the reference client does) and say so in `discarded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from dasctl.channels.positions import position_text

if TYPE_CHECKING:
    from dasctl.audio import Pacer
    from dasctl.channels.audiohook import AudioHookClient

log = logging.getLogger("dasctl.channels.audiohook")

#: Pings go on while the stream is held, as often as while it flows.
PING_INTERVAL = 5.0


async def skip_to_discard_point(
    client: AudioHookClient, frames: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """Skip the audio up to `discardTo`, in whole frames (rounded down to a frame, as the reference
    client does), and report it in `discarded`; the frames still to send."""
    if not client.discard_to:
        return frames
    iterator = aiter(frames)
    first = await anext(iterator, None)
    if first is None:
        return prepend(None, iterator)
    target = client.discard_to // len(first) * len(first)
    start = client.samples_sent
    while first is not None and client.samples_sent + len(first) <= target:
        client.samples_sent += len(first)
        client.samples_discarded += len(first)
        first = await anext(iterator, None)
    if client.samples_sent > start:
        discarded = {"start": position_text(start), "discarded": position_text(client.samples_sent - start)}
        await client.send("discarded", discarded)
        log.debug("audiohook: discarded %s from %s", discarded["discarded"], discarded["start"])
    return prepend(first, iterator)


async def hold(
    client: AudioHookClient, stopped: asyncio.Event, pacer: Pacer, on_pause: Callable[[bool], None] | None
) -> None:
    """The service paused us: say `paused`, keep pinging, and on `resume` say `resumed` (PT0S skipped)."""
    held_since = time.monotonic()
    await client.send("paused")
    log.debug("audiohook: paused by the service at %s", position_text(client.samples_sent))
    if on_pause is not None:
        on_pause(True)
    try:
        while not stopped.is_set() and not client.resume_requested.is_set():
            if not await wait_any((stopped, client.resume_requested), PING_INTERVAL):
                await client.send("ping")
    finally:
        # the recording was held in place: later frames are due as much later as the pause lasted
        pacer.shift(time.monotonic() - held_since)
        client.pause_requested.clear()
        client.resume_requested.clear()
        if on_pause is not None:
            on_pause(False)
    if not stopped.is_set():
        start = position_text(client.samples_sent)
        await client.send("resumed", {"start": start, "discarded": "PT0S"})
        log.debug("audiohook: resumed at %s", start)


async def prepend(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for frame in rest:
        yield frame


async def wait_any(events: tuple[asyncio.Event, ...], timeout: float) -> bool:
    """Wait at most timeout seconds for any of the events; whether one is set."""
    if any(event.is_set() for event in events):
        return True
    if timeout <= 0:
        # still yield once: sending as fast as possible must let the reader see the service's messages
        await asyncio.sleep(0)
        return any(event.is_set() for event in events)
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return any(event.is_set() for event in events)
