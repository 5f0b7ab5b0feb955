"""The audio side of a session: open the profile's audio channel for the protocol and send the audio, paced.

docs/protocol.md, the audio channel: `twilio` (Media Streams JSON frames) or `audiohook` (Genesys
AudioHook v2, API key and optional signature). The channels themselves live in dasctl.channels; this
picks one and feeds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

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
) -> bool:
    """Open the profile's audio channel for the chosen protocol and send the audio, paced.

    True when the service ended the channel (it had enough), False when the audio ran out first."""
    from dasctl.audio import Pacer

    pacer = Pacer(options.speed)
    url = profile.audio_url(options.protocol)

    if options.protocol == "audiohook":
        from dasctl.auth import audiohook_secret
        from dasctl.channels.audiohook import stream_audiohook

        api_key = profile.audiohook_api_key
        if not api_key:
            raise AuthError(
                f"profile '{profile.name}' has no AudioHook API key",
                f"Run `dasctl config set audiohook_api_key KEY --profile {profile.name}`, "
                "or set DASCTL_AUDIOHOOK_API_KEY.",
            )
        secret = await asyncio.to_thread(audiohook_secret, profile)
        from dasctl import logs

        logs.register_secret(api_key)
        logs.register_secret(secret)
        return await stream_audiohook(
            http,
            url,
            call_id,
            frames(audio, options.audiohook_frame_ms),
            pacer,
            on_sent,
            api_key=api_key,
            secret=secret,
            connect_timeout=options.timeout,
            on_pause=on_pause,
        )
    from dasctl.channels.twilio import stream_twilio

    return await stream_twilio(
        http,
        url,
        call_id,
        frames(audio, options.frame_ms),
        pacer,
        on_sent,
        connect_timeout=options.timeout,
    )


async def frames(audio: AudioSource, frame_ms: int) -> AsyncIterator[bytes]:
    """The audio's frames; stdin is read in a thread so a slow writer never blocks the sockets."""
    iterator = iter(audio.frames(frame_ms))
    in_thread = getattr(audio, "duration", None) is None
    while True:
        frame = await asyncio.to_thread(next, iterator, None) if in_thread else next(iterator, None)
        if frame is None:
            return
        yield frame
