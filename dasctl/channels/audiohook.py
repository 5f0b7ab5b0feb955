"""The `audiohook` audio channel (docs/protocol.md §4.2): dasctl plays the Genesys side of AudioHook v2.

open -> opened -> binary audio (with pings) -> close -> closed. The service sending `disconnect`
(reason `completed`) means it has enough audio: stop sending, run the close transaction, no error.
A `disconnect` in any state, even before `opened`, is answered the same way (close, closed, socket).
`pause` holds the recording where it is (reply `paused`); `resume` goes on from there (`resumed`).
`opened` may ask to start paused (`startPaused`: `paused` at once, nothing until `resume`) and to skip the
audio up to a position (`discardTo`: whole frames skipped, reported in `discarded`, the position moves on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from dasctl.channels import httpsig
from dasctl.channels.audiohook_holds import PING_INTERVAL, hold, skip_to_discard_point
from dasctl.channels.pacing import WakeEvent, pacing_clock
from dasctl.channels.positions import duration_samples, position_text
from dasctl.channels.twilio import (
    BYTES_PER_SECOND,
    CLOSE_TIMEOUT,
    AudioRefused,
    ChannelCut,
    open_websocket,
    wait_event,
)
from dasctl.errors import AuthError, ServiceUnavailable

if TYPE_CHECKING:
    import aiohttp
    import yarl

    from dasctl.audio import Pacer

log = logging.getLogger(__name__)

VERSION = "2"
OPEN_TIMEOUT = 5.0  # the reference client's timer for `opened`
CLOSED_TIMEOUT = 10.0  # the reference client's timer for `closed`
MAX_FRAME_BYTES = 64 * 1024
MEDIA = [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]


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
        self.samples_sent = 0  # the stream position: mu-law at 8 kHz is one byte per sample
        self.samples_discarded = 0  # skipped at the server's `discardTo`: in the position, never sent
        self.start_paused = False  # `opened` said startPaused
        self.discard_to: int | None = None  # `opened` said discardTo (samples)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()  # server `closed`, or the socket went away
        self.disconnect_reason: str | None = None
        self.disconnect_info: str | None = None
        self.disconnected = asyncio.Event()  # server `disconnect`
        self.socket_gone = asyncio.Event()
        # server `pause`, not yet answered by a `resumed` (it also ends a wait for the next frame's deadline)
        self.pause_requested = WakeEvent()
        self.resume_requested = asyncio.Event()  # server `resume` while paused
        self.close_frame = False
        self.pongs = 0
        self.reader: asyncio.Task[None] | None = None

    @property
    def position(self) -> float:
        """Seconds of audio sent so far (for people; the wire gets the exact position_text)."""
        return self.samples_sent / BYTES_PER_SECOND

    def wire_url(self) -> yarl.URL:
        """The URL exactly as aiohttp puts it on the wire (yarl normalises `%7e` to `~`, a space to `+`)."""
        import yarl

        return yarl.URL(self.url)

    def headers(self, url: yarl.URL) -> dict[str, str]:
        """Handshake headers, signed right before connecting (over url as sent) when there is a secret."""
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Session-Id": self.session_id,
            "Audiohook-Correlation-Id": self.correlation_id,
            "X-API-KEY": self.api_key,
        }
        if self.secret:
            headers.update(
                httpsig.audiohook_signature(str(url), headers, api_key=self.api_key, secret=self.secret)
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
            "position": position_text(self.samples_sent),
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
        except (ValueError, RecursionError):
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
            self.start_paused = parameters.get("startPaused") is True
            self.discard_to = duration_samples(parameters.get("discardTo"))
            if self.start_paused:
                self.pause_requested.set()  # held from the start: `paused` goes out before any audio
            self.opened.set()
        elif kind == "pong":
            self.pongs += 1
        elif kind == "disconnect":
            reason, info = parameters.get("reason"), parameters.get("info")
            self.disconnect_reason = reason if isinstance(reason, str) else "unknown"
            self.disconnect_info = info if isinstance(info, str) and info.strip() else None
            self.disconnected.set()
            self.opened.set()
        elif kind == "closed":
            self.closed.set()
        elif kind == "pause":
            # the sender answers `paused` between two frames, so no audio follows the answer
            self.resume_requested.clear()
            self.pause_requested.set()
        elif kind == "resume":
            if self.pause_requested.is_set():
                self.resume_requested.set()
        # updated/event/reconnect and anything newer: nothing dasctl needs (compatibility: ignore)

    async def connect(self) -> None:
        """Open the socket, send `open`, and wait for `opened` (OPEN_TIMEOUT)."""
        url = self.wire_url()
        self.ws = await open_websocket(self.http, url, "audiohook", self.connect_timeout, self.headers(url))
        self.reader = asyncio.create_task(self._read())
        await self.send("open", self.open_parameters())
        await wait_event(self.opened, OPEN_TIMEOUT)
        if self.disconnected.is_set():
            # the server expects the close transaction in every state (docs/protocol.md §4.2)
            await self.close_transaction("disconnect")
            raise self._disconnect_error("before opening the session", refused=True)
        if self.socket_gone.is_set():
            raise ChannelCut("the audiohook audio consumer closed the connection instead of answering `open`")
        if not self.opened.is_set():
            raise ServiceUnavailable(
                f"the audiohook audio consumer did not answer `open` within {OPEN_TIMEOUT:g} s",
                "The service is slow or stalled; try again later.",
            )

    def _disconnect_error(self, when: str, refused: bool = False) -> AuthError | ServiceUnavailable:
        why = str(self.disconnect_reason)
        if self.disconnect_info:
            why = f"{why}: {self.disconnect_info}"
        if self.disconnect_reason == "unauthorized":
            return AuthError(
                f"the audiohook audio consumer refused the session ({when}): {why}",
                "Check the profile's AudioHook API key and secret (dasctl config show).",
            )
        if refused:
            # e.g. no session waits for this call id yet: `dasctl stream --wait` tries again
            return AudioRefused(f"the audiohook audio consumer refused the stream {when} ({why})")
        return ChannelCut(f"the audiohook audio consumer disconnected {when} ({why})")

    async def stream(
        self,
        frames: AsyncIterator[bytes],
        pacer: Pacer,
        on_sent: Callable[[float], None],
        on_pause: Callable[[bool], None] | None = None,
    ) -> bool:
        """Send the frames paced; True when the service said `disconnect` (completed), else False."""
        import aiohttp

        assert self.ws is not None
        last_ping = time.monotonic()
        stopped = WakeEvent()  # disconnect or socket gone: either one ends sending
        watcher = asyncio.create_task(self._watch_stop(stopped))
        try:
            frames = await skip_to_discard_point(self, frames)
            if self.pause_requested.is_set():
                await hold(self, stopped, pacer, on_pause)  # `opened` said startPaused: before any audio
            async for frame in frames:
                try:
                    # pausing sends `paused`/`resumed` and pings: the socket may break there too
                    if not await self._ready_to_send(stopped, pacer, on_pause):
                        break
                    for start in range(0, len(frame), MAX_FRAME_BYTES):
                        await self.ws.send_bytes(frame[start : start + MAX_FRAME_BYTES])
                    self.samples_sent += len(frame)
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

    async def _ready_to_send(
        self, stopped: WakeEvent, pacer: Pacer, on_pause: Callable[[bool], None] | None
    ) -> bool:
        """Wait until the next frame is due (pacing, and any pause); False when the session stopped."""
        clock = pacing_clock()
        while not stopped.is_set():
            if self.pause_requested.is_set():
                await hold(self, stopped, pacer, on_pause)
                continue
            # pacing counts the audio sent: skipped audio (discardTo) is not waited for
            delay = pacer.delay((self.samples_sent - self.samples_discarded) / BYTES_PER_SECOND)
            if not await clock.wait(delay, stopped, self.pause_requested):
                return True  # due, and nothing happened while waiting
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
    on_pause: Callable[[bool], None] | None = None,
) -> bool:
    """Run one AudioHook session; True when the service ended it (it had enough), False at end of audio.

    on_pause(True) when the service pauses the stream, on_pause(False) when it goes on.
    """
    client = AudioHookClient(http, url, call_id, api_key, secret, connect_timeout=connect_timeout)
    try:
        await client.connect()
        return await client.stream(frames, pacer, on_sent, on_pause)
    except asyncio.CancelledError:
        # Ctrl-C or the session ended: close politely, but never for long
        await client.close_transaction("end", timeout=1.0)
        raise
    finally:
        await client.shutdown()
