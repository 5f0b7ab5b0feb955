"""Wiring the real register session into watch (imports the heavy modules only when called)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasctl.watch.settings import FileSession, SessionTap

if TYPE_CHECKING:
    from dasctl.audio import ChannelChoice
    from dasctl.session import Progress, RegisterOutcome


def register_file_session(
    profile: Any,
    tokens: Any,
    network: Any,
    options: Any,
    *,
    channel: str | ChannelChoice | None = "mix",
    start: float = 0.0,
    end: float | None = None,
) -> FileSession:
    """A FileSession that decodes the file and runs session.register_audio with the shared token provider."""
    import asyncio
    from dataclasses import replace

    from dasctl import audio, session
    from dasctl.store.records import SENT_AUDIO_LIMIT_BYTES

    async def run(
        path: Path, call_id: str, on_progress: Callable[[Progress], None], tap: SessionTap
    ) -> RegisterOutcome:
        # opened in a thread: with -j 256 a burst of header reads must not hold up the sessions streaming
        opening = asyncio.ensure_future(
            asyncio.to_thread(audio.open_audio, path, channel=channel, start=start, end=end))
        try:
            opened = await asyncio.shield(opening)
        except asyncio.CancelledError:  # a shutdown while the header is read: close what it opens
            opening.add_done_callback(_close_when_opened)
            raise
        with opened as stream:
            tap.channel = stream.channel_fields()
            if tap.keep:  # known before the answer arrives: its record is written the moment it does
                tap.source = await asyncio.to_thread(stream.fingerprint)
                tap.sent = stream.keep_frames(SENT_AUDIO_LIMIT_BYTES)
            return await session.register_audio(
                stream, replace(options, call_id=call_id), profile, tokens, network, on_progress=on_progress
            )

    return run


def _close_when_opened(opening: Any) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()
