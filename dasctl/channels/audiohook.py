"""The `audiohook` audio channel (PROTOCOL.md §4.2): dasctl plays the Genesys side of AudioHook v2.

open -> opened -> binary audio (with pings) -> close -> closed. The service sending `disconnect`
(reason `completed`) means it has enough audio: stop sending, run the close transaction, no error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dasctl.channels import httpsig
from dasctl.channels.twilio import BYTES_PER_SECOND, CLOSE_TIMEOUT, ChannelCut, open_websocket, wait_event
from dasctl.errors import AuthError, ServiceUnavailable

if TYPE_CHECKING:
    import aiohttp

    from dasctl.audio import Pacer

log = logging.getLogger(__name__)

VERSION = "2"
OPEN_TIMEOUT = 5.0  # the reference client's timer for `opened`
CLOSED_TIMEOUT = 10.0  # the reference client's timer for `closed`
PING_INTERVAL = 5.0
MAX_FRAME_BYTES = 64 * 1024
MEDIA = [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]


def duration(seconds: float) -> str:
    """An AudioHook position: ISO 8601 `PT<seconds>S`, never in exponent form (PT2.8S, PT0S)."""
    text = format(Decimal(str(round(max(seconds, 0.0), 3))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"PT{text}S"


class AudioHookClient:
    """One AudioHook session: the envelope bookkeeping (seq, serverseq, position) and the message flow."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        call_id: str,
        api_key: str,
        secret: str | None,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        self.http = http
        self.url = url
        self.call_id = call_id
        self.api_key = api_key
        self.secret = secret
        self.connect_timeout = connect_timeout
        self.organization_id = str(uuid.uuid4())
        self.session_id = str(uuid.uuid4())
        self.correlation_id = str(uuid.uuid4())
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()  # server `closed`, or the socket went away
        self.disconnect_reason: str | None = None
        self.disconnected = asyncio.Event()  # server `disconnect`
        self.socket_gone = asyncio.Event()
        self.close_frame = False
        self.pongs = 0
        self.reader: asyncio.Task[None] | None = None

    def headers(self) -> dict[str, str]:
        """Handshake headers, signed right before connecting when there is a client secret."""
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Session-Id": self.session_id,
            "Audiohook-Correlation-Id": self.correlation_id,
            "X-API-KEY": self.api_key,
        }
        if self.secret:
            headers.update(
                httpsig.audiohook_signature(self.url, headers, api_key=self.api_key, secret=self.secret)
            )
        return headers

    def message(self, type_: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """The next client message: numbered without gaps, with the last server seq and the position."""
        self.seq += 1
        return {
            "version": VERSION,
            "id": self.session_id,
            "type": type_,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": duration(self.position),
            "parameters": parameters or {},
        }

    async def send(self, type_: str, parameters: dict[str, Any] | None = None) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(self.message(type_, parameters)))

    def open_parameters(self) -> dict[str, Any]:
        return {
            "organizationId": self.organization_id,
            "conversationId": self.call_id,
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": MEDIA,
        }

    async def _read(self) -> None:
        import aiohttp

        assert self.ws is not None
        try:
            while True:
                frame = await self.ws.receive()
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(frame.data)
                elif frame.type == aiohttp.WSMsgType.CLOSE:
                    self.close_frame = True
                    break
                elif frame.type in (
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
        finally:
            self.socket_gone.set()
            self.closed.set()
            self.opened.set()  # wake a waiter; it checks what happened

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            log.debug("audiohook: ignoring a text frame that is not JSON")
            return
        if not isinstance(message, dict):
            return
        seq = message.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > self.serverseq:
            self.serverseq = seq
        kind = message.get("type")
        raw_parameters = message.get("parameters")
        parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
        log.debug("audiohook: server %s seq=%s", kind, seq)
        if kind == "opened":
            self.opened.set()
        elif kind == "pong":
            self.pongs += 1
        elif kind == "disconnect":
            reason = parameters.get("reason")
            self.disconnect_reason = reason if isinstance(reason, str) else "unknown"
            self.disconnected.set()
            self.opened.set()
        elif kind == "closed":
            self.closed.set()
        # paused/resumed/updated/event/reconnect: nothing dasctl needs (compatibility: ignore)

    async def connect(self) -> None:
        """Open the socket, send `open`, and wait for `opened` (OPEN_TIMEOUT)."""
        self.ws = await open_websocket(self.http, self.url, "audiohook", self.connect_timeout, self.headers())
        self.reader = asyncio.create_task(self._read())
        await self.send("open", self.open_parameters())
        await wait_event(self.opened, OPEN_TIMEOUT)
        if self.disconnected.is_set():
            raise self._disconnect_error("before opening the session")
        if self.socket_gone.is_set():
            raise ChannelCut("the audiohook audio consumer closed the connection instead of answering `open`")
        if not self.opened.is_set():
            raise ServiceUnavailable(
                f"the audiohook audio consumer did not answer `open` within {OPEN_TIMEOUT:g} s",
                "The service is slow or stalled; try again later.",
            )

    def _disconnect_error(self, when: str) -> AuthError | ServiceUnavailable:
        if self.disconnect_reason == "unauthorized":
            return AuthError(
                f"the audiohook audio consumer refused the session ({when}): unauthorized",
                "Check the profile's AudioHook API key and secret (dasctl config show).",
            )
        return ChannelCut(
            f"the audiohook audio consumer disconnected {when} (reason: {self.disconnect_reason})"
        )

    async def stream(
        self, frames: AsyncIterator[bytes], pacer: Pacer, on_sent: Callable[[float], None]
    ) -> bool:
        """Send the frames paced; True when the service said `disconnect` (completed), else False."""
        import aiohttp

        assert self.ws is not None
        sent_bytes = 0
        last_ping = time.monotonic()
        stopped = asyncio.Event()  # disconnect or socket gone: either one ends sending
        watcher = asyncio.create_task(self._watch_stop(stopped))
        try:
            async for frame in frames:
                if stopped.is_set():
                    break
                delay = pacer.delay(sent_bytes / BYTES_PER_SECOND)
                if await wait_event(stopped, delay):
                    break
                try:
                    for start in range(0, len(frame), MAX_FRAME_BYTES):
                        await self.ws.send_bytes(frame[start : start + MAX_FRAME_BYTES])
                    sent_bytes += len(frame)
                    self.position = sent_bytes / BYTES_PER_SECOND
                    if time.monotonic() - last_ping >= PING_INTERVAL:
                        last_ping = time.monotonic()
                        await self.send("ping")
                except (ConnectionError, aiohttp.ClientError):
                    await wait_event(self.socket_gone, CLOSE_TIMEOUT)
                    break
                on_sent(self.position)
        finally:
            watcher.cancel()
        if self.disconnected.is_set():
            await self.close_transaction("disconnect")
            if self.disconnect_reason == "completed":
                return True
            raise self._disconnect_error(f"after {self.position:.1f} s of audio")
        if self.socket_gone.is_set():
            raise ChannelCut(
                f"the audiohook audio channel was cut after {self.position:.1f} s of audio",
                "The connection to the audio consumer broke; try again.",
            )
        log.debug("audiohook: audio ended after %.2f s, closing with reason end", self.position)
        await self.close_transaction("end")
        return False

    async def _watch_stop(self, stopped: asyncio.Event) -> None:
        waits = [
            asyncio.ensure_future(self.disconnected.wait()),
            asyncio.ensure_future(self.socket_gone.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stopped.set()
        finally:
            for waiter in waits:
                waiter.cancel()

    async def close_transaction(self, reason: str, timeout: float = CLOSED_TIMEOUT) -> None:
        """Send `close` with this reason, wait for `closed` (bounded), then close the socket."""
        import aiohttp

        if self.ws is None:
            return
        try:
            if not self.ws.closed and not self.socket_gone.is_set():
                await self.send("close", {"reason": reason})
                if not await wait_event(self.closed, timeout):
                    log.warning("audiohook: no `closed` within %g s; closing the socket anyway", timeout)
        except (ConnectionError, aiohttp.ClientError):
            pass
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Close the socket and stop the reader, whatever state the session is in."""
        import aiohttp

        if self.ws is not None and not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
                pass
        if self.reader is not None:
            self.reader.cancel()


async def stream_audiohook(
    http: aiohttp.ClientSession,
    url: str,
    call_id: str,
    frames: AsyncIterator[bytes],
    pacer: Pacer,
    on_sent: Callable[[float], None],
    *,
    api_key: str,
    secret: str | None,
    connect_timeout: float = 10.0,
) -> bool:
    """Run one AudioHook session; True when the service ended it (it had enough), False at end of audio."""
    client = AudioHookClient(http, url, call_id, api_key, secret, connect_timeout=connect_timeout)
    try:
        await client.connect()
        return await client.stream(frames, pacer, on_sent)
    except asyncio.CancelledError:
        # Ctrl-C or the session ended: close politely, but never for long
        await client.close_transaction("end", timeout=1.0)
        raise
    finally:
        await client.shutdown()
