"""The `twilio` audio consumer (docs/protocol.md §4.1): Twilio Media Streams JSON frames over a WebSocket."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from dasctl import events
from dasctl.emulator.options import AUDIO_SOCKETS, EmulatorOptions, Handler
from dasctl.emulator.sessions import Session, SessionRegistry, UnclaimableSession

log = logging.getLogger("dasctl.emulator")

#: Seconds to wait for the client's answer to our close frame.
CLOSE_TIMEOUT = 2.0
#: Twilio tracks that carry the caller; `outbound` (what the platform plays) is not the speaker.
INBOUND_TRACKS = (None, "inbound", "inbound_track")


class TwilioProtocolError(Exception):
    """The client broke the Twilio Media Streams subset."""


def twilio_consumer(options: EmulatorOptions, registry: SessionRegistry) -> Handler:
    """The aiohttp handler for the twilio audio WebSocket."""

    async def handle(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        # base64 in JSON: a frame of max_frame_bytes audio bytes fits in twice that
        ws = web.WebSocketResponse(
            timeout=CLOSE_TIMEOUT, max_msg_size=2 * options.max_frame_bytes, heartbeat=None
        )
        await ws.prepare(request)
        request.app[AUDIO_SOCKETS].add(ws)
        session: Session | None = None
        received = 0
        ended = "the client closed the audio WebSocket"

        async def close_audio() -> None:
            await ws.close(code=WSCloseCode.OK)

        start_deadline = time.monotonic() + options.handshake_timeout
        try:
            while True:
                # until `start`, the socket has a bounded time: an idle one must not hold a descriptor
                timeout = None if session is not None else max(0.0, start_deadline - time.monotonic())
                try:
                    message = await ws.receive(timeout=timeout)
                except asyncio.TimeoutError:
                    raise TwilioProtocolError(
                        f"no start message within {options.handshake_timeout:g} s"
                    ) from None
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if message.type == WSMsgType.ERROR:
                    raise TwilioProtocolError(f"unreadable WebSocket frame ({ws.exception()})")
                if message.type == WSMsgType.BINARY:
                    raise TwilioProtocolError(
                        "binary frames are not part of the twilio protocol; send JSON text"
                    )
                if message.type != WSMsgType.TEXT:
                    continue
                frame = _parse(message.data)
                kind = frame.get("event")
                if kind == "start":
                    if session is not None:
                        raise TwilioProtocolError("a second start message")
                    session = _claim(frame, registry)
                    session.attach(close_audio)
                    log.debug("twilio audio channel opened for %s", session.call_id)
                elif kind == "media":
                    if session is None:
                        raise TwilioProtocolError("media before start")
                    media = frame.get("media")
                    if not isinstance(media, dict):
                        raise TwilioProtocolError("media message without a media object")
                    if media.get("track") not in INBOUND_TRACKS:
                        continue
                    audio = _payload(media)
                    received += len(audio)
                    reset_after = options.faults.reset_audio_after
                    if reset_after is not None and received >= reset_after:
                        log.info(
                            "resetting the twilio audio socket of %s after %d bytes (fault injected)",
                            session.call_id,
                            received,
                        )
                        session.detach()
                        session = None
                        if transport is not None:
                            transport.abort()
                        return ws
                    if await session.feed(audio):
                        await ws.close(code=WSCloseCode.OK, message=b"enough voice collected")
                        await session.complete()
                        session = None
                        break
                elif kind == "stop":
                    ended = "the client sent stop"
                    break
                # connected, mark, dtmf and anything newer: tolerated, not needed
        except TwilioProtocolError as error:
            log.info("twilio protocol error: %s", error)
            # detach before anything else: failing the session disconnects the signalling, which
            # would otherwise close this socket through close_audio with 1000 before our 1008
            failing, session = session, None
            if failing is not None:
                failing.detach()
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=str(error)[:120].encode())
            if failing is not None:
                await failing.fail(events.ERROR_AUDIO, f"twilio audio channel: {error}")
        finally:
            if session is not None:
                session.detach()
                await session.audio_ended(ended)
        if not ws.closed:
            await ws.close()
        return ws

    return handle


def _parse(text: str) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except ValueError:
        raise TwilioProtocolError("a text frame that is not JSON") from None
    except RecursionError:
        raise TwilioProtocolError("a JSON message nested too deeply") from None
    if not isinstance(frame, dict):
        raise TwilioProtocolError("a JSON frame that is not an object")
    return frame


def _claim(frame: dict[str, Any], registry: SessionRegistry) -> Session:
    start = frame.get("start")
    call_id = start.get("callSid") if isinstance(start, dict) else None
    if not isinstance(call_id, str):
        raise TwilioProtocolError("start message without start.callSid (the call_id)")
    try:
        return registry.claim(call_id, "twilio")
    except UnclaimableSession as error:
        raise TwilioProtocolError(str(error)) from None


def _payload(media: dict[str, Any]) -> bytes:
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise TwilioProtocolError("media.payload is missing")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TwilioProtocolError("media.payload is not base64") from None
