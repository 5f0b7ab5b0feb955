"""`dasctl serve` that also notes, per call, when its audio arrived: the service's side of pacing.

Usage (as benchmarks/watch_pacing.py runs it): python benchmarks/receiving_emulator.py RECEIPTS -- SERVE ARGS

The emulator is the real one; this wraps Session.feed (called by both audio consumers for every frame
they read off the socket, after the JSON/base64 or binary frame is decoded) and, when a session ends,
appends one JSON line to RECEIPTS: {"call_id", "first", "last", "bytes", "frames", "last_bytes"}: first and
last are time.monotonic() when the consumer took the first and the last frame, bytes the mu-law received,
last_bytes the last frame's size; worst_lag how far a frame came behind the real-time schedule that
starts at the first frame (seconds), worst_at at which stream time. Nothing of the emulator's behaviour
changes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

BYTES_PER_SECOND = 8000  # mu-law 8 kHz


def main() -> int:
    receipts_path, separator, *serve_args = sys.argv[1:]
    assert separator == "--", "usage: receiving_emulator.py RECEIPTS -- SERVE ARGS"
    from dasctl.emulator import sessions

    receipts = open(receipts_path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    seen: dict[int, list[Any]] = {}
    feed, finish, abandon = sessions.Session.feed, sessions.Session.finish, sessions.Session.abandon

    async def timed_feed(self: sessions.Session, mulaw: bytes) -> bool:
        now = time.monotonic()
        entry = seen.get(id(self))
        if entry is None:
            seen[id(self)] = [now, now, len(mulaw), 1, len(mulaw), 0.0, 0.0]
        else:
            lag = now - entry[0] - entry[2] / BYTES_PER_SECOND  # behind this frame's real-time schedule
            if lag > entry[5]:
                entry[5], entry[6] = lag, entry[2] / BYTES_PER_SECOND
            entry[1] = now
            entry[2] += len(mulaw)
            entry[3] += 1
            entry[4] = len(mulaw)
        return await feed(self, mulaw)

    def note(self: sessions.Session) -> None:
        entry = seen.pop(id(self), None)
        if entry is not None:
            first, last, size, frames, last_bytes, worst_lag, worst_at = entry
            receipts.write(json.dumps({"call_id": self.call_id, "first": first, "last": last, "bytes": size,
                                       "frames": frames, "last_bytes": last_bytes, "worst_lag": worst_lag,
                                       "worst_at": worst_at}) + "\n")

    async def noted_finish(self: sessions.Session, *args: Any, **kwargs: Any) -> None:
        note(self)
        await finish(self, *args, **kwargs)

    def noted_abandon(self: sessions.Session) -> None:
        note(self)
        abandon(self)

    sessions.Session.feed = timed_feed  # type: ignore[method-assign]
    sessions.Session.finish = noted_finish  # type: ignore[method-assign]
    sessions.Session.abandon = noted_abandon  # type: ignore[method-assign]
    from dasctl.cli import main as dasctl_main

    sys.argv = ["dasctl", *serve_args]
    return int(dasctl_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
