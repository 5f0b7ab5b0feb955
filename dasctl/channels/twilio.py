"""The `twilio` audio channel (docs/protocol.md §4.1): a Twilio Media Streams subset over one WebSocket.

`start` with the call id, then `media` frames of base64 mu-law. The service closing the socket means it
has enough audio: that is normal completion. When the audio runs out first we close the socket, so the
service answers (with error-audio when it did not get enough voice).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from dasctl.errors import ServiceUnavailable

if TYPE_CHECKING:
    import aiohttp
    import yarl

    from dasctl.audio import Pacer

log = logging.getLogger(__name__)

BYTES_PER_SECOND = 8000  # G.711 mu-law, 8 kHz mono: one byte per sample
CLOSE_TIMEOUT = 2.0


class ChannelCut(ServiceUnavailable):
    """The audio channel ended abnormally (reset, no close frame): the service may still explain why."""


class AudioRefused(ChannelCut):
    """The audio consumer refused the stream (twilio: a close code that is not a normal one; audiohook:
    `disconnect` before `opened`), e.g. because no session waits for the call id yet."""


#: Close codes of a consumer that ended the stream normally (it had enough); anything else is a refusal.
NORMAL_CLOSE_CODES = (1000, 1001, 1005, None)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for the event at most timeout seconds; whether it is set."""
    if timeout <= 0:
        # Still yield once: sending as fast as possible must let the reader see the service's close.
        await asyncio.sleep(0)
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    return event.is_set()


async def open_websocket(
    http: aiohttp.ClientSession,
    url: str | yarl.URL,
    protocol: str,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Open an audio WebSocket, turning every connection failure into one clear error.

    A yarl.URL is sent as it is (a signed AudioHook handshake signs exactly its raw_path_qs).
    """
    import aiohttp

    from dasctl.errors import AuthError

    try:

        async def connect() -> Any:
            return await http.ws_connect(
                url,
                headers=headers,
                autoclose=True,
                autoping=True,
                heartbeat=None,
                max_msg_size=1 << 20,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
            )

        return await asyncio.wait_for(connect(), timeout)
    except aiohttp.WSServerHandshakeError as error:
        if error.status in (401, 403):
            raise AuthError(
                f"the {protocol} audio consumer at {url} refused the connection (HTTP {error.status})",
                "Check the profile's AudioHook API key and secret (dasctl config show)."
                if protocol == "audiohook"
                else "Check that the token and audio URL belong to the same service.",
            ) from None
        raise ServiceUnavailable(
            f"the {protocol} audio consumer at {url} refused the WebSocket (HTTP {error.status})",
            f"Check the audio URL (DASCTL_AUDIO_URL_{protocol.upper()}), or try again later.",
        ) from None
    except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as error:
        reason = (
            "timed out" if isinstance(error, asyncio.TimeoutError) else str(error) or type(error).__name__
        )
        raise ServiceUnavailable(
            f"cannot open the {protocol} audio channel at {url}: {reason}",
            f"Check the audio URL (DASCTL_AUDIO_URL_{protocol.upper()}) and the network, then try again.",
        ) from None


def media_message(frame: bytes) -> str:
    """The `media` message of a frame: what json.dumps makes of {"event": "media", "media": {"payload": ...}},
    written out (base64 needs no JSON escaping), because it is built 12,800 times a second at -j 256."""
    return _MEDIA_HEAD + base64.b64encode(frame).decode("ascii") + _MEDIA_TAIL


_MEDIA_HEAD, _MEDIA_TAIL = json.dumps({"event": "media", "media": {"payload": "|"}}).split("|")


async def stream_twilio(
    http: aiohttp.ClientSession,
    url: str,
    call_id: str,
    frames: AsyncIterator[bytes],
    pacer: Pacer,
    on_sent: Callable[[float], None],
    *,
    connect_timeout: float = 10.0,
) -> bool:
    """Stream the frames; True when the service closed the channel (it had enough), False at end of audio."""
    import aiohttp

    from dasctl.channels.pacing import WakeEvent, pacing_clock

    ws = await open_websocket(http, url, "twilio", connect_timeout)
    clock = pacing_clock()
    service_closed = WakeEvent()
    close_frame: list[tuple[int | None, str]] = []

    async def read() -> None:
        # Twilio consumers send nothing we need; we only watch for the close.
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.CLOSE:
                close_frame.append((ws.close_code, str(message.extra or "")))
                break
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                break
        service_closed.set()

    reader = asyncio.create_task(read())
    sent_bytes = 0
    try:
        await ws.send_str(json.dumps({"event": "start", "start": {"callSid": call_id}}))
        async for frame in frames:
            if service_closed.is_set():
                break
            if await clock.wait(pacer.delay(sent_bytes / BYTES_PER_SECOND), service_closed):
                break
            try:
                await ws.send_str(media_message(frame))
            except (ConnectionError, aiohttp.ClientError):
                await wait_event(service_closed, CLOSE_TIMEOUT)
                break
            sent_bytes += len(frame)
            on_sent(sent_bytes / BYTES_PER_SECOND)
        else:
            if not service_closed.is_set():
                log.debug(
                    "twilio: audio ended after %.2f s, closing so the service answers", sent_bytes / 8000
                )
                await ws.close()
                return False
        if close_frame and close_frame[0][0] in NORMAL_CLOSE_CODES:
            log.debug("twilio: the service closed the audio channel (code %s): enough", close_frame[0][0])
            return True
        if close_frame:
            code, reason = close_frame[0]
            raise AudioRefused(
                f"the twilio audio consumer refused the stream for call {call_id} (close code {code}"
                + (f": {reason})" if reason else ")")
            )
        raise ChannelCut(
            f"the twilio audio channel was cut after {sent_bytes / BYTES_PER_SECOND:.1f} s of audio",
            "The connection to the audio consumer broke; try again.",
        )
    finally:
        reader.cancel()
        if not ws.closed:
            try:
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
