"""The audio side of a session: open the profile's audio channel for the protocol and send the audio, paced.

docs/protocol.md, the audio channel: `twilio` (Media Streams JSON frames) or `audiohook` (Genesys
AudioHook v2, API key and optional signature). The channels themselves live in dasctl.channels; this
picks one and feeds it.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from dasctl.errors import AuthError

if TYPE_CHECKING:
    import aiohttp

    from dasctl.config import Profile
    from dasctl.session.records import AudioSource, RegisterOptions


async def send_audio(
    http: aiohttp.ClientSession,
    profile: Profile,
    options: RegisterOptions,
    call_id: str,
    audio: AudioSource,
    on_sent: Callable[[float], None],
    on_pause: Callable[[bool], None],
    env: Mapping[str, str] | None = None,
) -> bool:
    """Open the profile's audio channel for the chosen protocol and send the audio, paced.

    True when the service ended the channel (it had enough), False when the audio ran out first."""
    from dasctl.audio import Pacer

    pacer = Pacer(options.speed)
    url = profile.audio_url(options.protocol)

    if options.protocol != "audiohook":
        from dasctl.channels.twilio import stream_twilio

        async with aclosing(frames(audio, options.frame_ms)) as audio_frames:
            return await stream_twilio(http, url, call_id, audio_frames, pacer, on_sent,
                                       connect_timeout=options.timeout)

    from dasctl.auth import audiohook_secret
    from dasctl.channels.audiohook import stream_audiohook

    api_key = profile.audiohook_api_key
    if not api_key:
        raise AuthError(
            f"profile '{profile.name}' has no AudioHook API key",
            f"Run `dasctl config set audiohook_api_key KEY --profile {profile.name}`, "
            "or set DASCTL_AUDIOHOOK_API_KEY.",
        )
    secret = await asyncio.to_thread(audiohook_secret, profile, env)
    from dasctl import logs

    logs.register_secret(api_key)
    logs.register_secret(secret)
    async with aclosing(frames(audio, options.audiohook_frame_ms)) as audio_frames:
        return await stream_audiohook(http, url, call_id, audio_frames, pacer, on_sent, api_key=api_key,
                                      secret=secret, connect_timeout=options.timeout, on_pause=on_pause)


def frames(audio: AudioSource, frame_ms: int) -> AsyncGenerator[bytes, None]:
    """The audio's frames, never read on the event loop when reading can take time: a recording on disk
    is decoded a block (about two seconds) at a time in a few shared threads, the next block while
    this one is sent; stdin and other pipes frame by frame in a thread, so a slow writer never blocks the
    sockets. Close it (aclosing) before the audio is: a block being read is waited for."""
    if getattr(audio, "seekable", False) is True and hasattr(audio, "frame_blocks"):
        return _decoded_in_workers(audio, frame_ms)  # itself, not re-yielded: 12,800 frames/s at -j 256
    return _frame_by_frame(audio, frame_ms)


async def _frame_by_frame(audio: AudioSource, frame_ms: int) -> AsyncGenerator[bytes, None]:
    iterator = iter(audio.frames(frame_ms))
    in_thread = getattr(audio, "duration", None) is None or getattr(audio, "seekable", None) is False
    while True:
        frame = await asyncio.to_thread(next, iterator, None) if in_thread else next(iterator, None)
        if frame is None:
            return
        yield frame


@functools.cache
def _audio_readers() -> ThreadPoolExecutor:
    """The process's audio-reading threads (dasctl-audio-readers_N): a few, shared by every session. Not
    the loop's default executor, where a burst of name look-ups or token calls at -j 256 would queue
    ahead of the blocks."""
    workers = min(4, os.cpu_count() or 1)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dasctl-audio-readers")


async def _decoded_in_workers(audio: Any, frame_ms: int) -> AsyncGenerator[bytes, None]:
    """An AudioStream of a regular file, block by block from the audio-reading threads, one block ahead:
    no thread of its own per stream, no decoding on the loop."""
    loop = asyncio.get_running_loop()
    readers = _audio_readers()
    blocks = audio.frame_blocks(frame_ms, read_ahead=False)
    pending: asyncio.Future[list[bytes] | None] | None
    pending = loop.run_in_executor(readers, audio.next_block, blocks)
    try:
        while pending is not None:
            block = await pending
            pending = None if block is None else loop.run_in_executor(readers, audio.next_block, blocks)
            for frame in audio.take(block or ()):
                yield frame
    finally:
        if pending is not None:
            pending.cancel()  # a read not started never starts; one under way is waited for by close()
