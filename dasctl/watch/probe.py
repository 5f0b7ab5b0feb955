"""Is a file whose name says nothing (`call.dat`, `20261201-0915`) a recording? Open its header the way
`register` would (dasctl.audio.open_audio), bounded in time, and read nothing more."""

from __future__ import annotations

import asyncio
from pathlib import Path

#: seconds a probe may take (a file on a stalled network share must not hold the folder up)
PROBE_TIMEOUT_S = 10.0


def opens_as_audio(path: Path) -> bool:
    """Whether dasctl can decode this file (its header is read; no sample is)."""
    from dasctl.audio import open_audio
    from dasctl.errors import DasctlError

    try:
        with open_audio(path):
            return True
    except (DasctlError, OSError, ValueError, RuntimeError):
        return False


async def probe(path: Path, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """opens_as_audio off the event loop; False when it takes longer than `timeout`."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(opens_as_audio, path), timeout)
    except asyncio.TimeoutError:
        return False
