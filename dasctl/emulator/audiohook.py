"""The `audiohook` audio consumer (docs/protocol.md §4.2): the server side of Genesys AudioHook v2."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from decimal import Decimal
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from dasctl import events
from dasctl.emulator.audiohook_handshake import (
    HEADER_ORGANIZATION,
    HEADER_SESSION,
    check_handshake,
)
from dasctl.emulator.options import AUDIO_SOCKETS, EmulatorOptions, Handler
from dasctl.emulator.sessions import Session, SessionRegistry, UnclaimableSession
from dasctl.emulator.voice import SAMPLE_RATE

log = logging.getLogger("dasctl.emulator")

VERSION = "2"
#: Genesys opens a probe session with this conversation id to check that the server is up.
PROBE_CONVERSATION_ID = "00000000-0000-0000-0000-000000000000"
#: How long the client has to answer our `disconnect` with `close` (the reference client's closed timer).
CLOSE_WAIT = 10.0
_POSITION = re.compile(r"^PT\d+(\.\d+)?S$")
#: Client message types of AudioHook v2 that need nothing from this consumer.
_TOLERATED = {
    "update",
    "discarded",
    "error",
    "dtmf",
    "playback_started",
    "playback_completed",
}
class AudioHookProtocolError(Exception):
    """The client broke AudioHook v2; the message becomes `disconnect` info."""


class AudioHookConnection:
    """One AudioHook WebSocket: envelope checks, sequence numbers, and the session it feeds."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        options: EmulatorOptions,
        registry: SessionRegistry,
    ) -> None:
        self.ws = ws
        self.options = options
        self.registry = registry
        self.transport = request.transport
        self.session_id = request.headers[HEADER_SESSION]
        self.organization_id = request.headers[HEADER_ORGANIZATION]
        self.server_seq = 0
        self.client_seq = 0
        self.last_serverseq = 0
        self.opened = False
        self.disconnect_sent = False
        self.close_deadline: float | None = None
        self.session: Session | None = None
        self.received = 0
        self.pause_sent = False  # we asked the client to pause (--pause-at)
        self.client_paused = False  # between the client's `paused` and its `resumed`
        self.resume_task: asyncio.Task[None] | None = None
        self.held_from_start = False  # `opened` said startPaused and the client has not resumed yet
        self.audio_bytes = 0  # every audio byte since `opened` (probe and after-disconnect ones too)
        self.discarded = 0  # samples the client reported in `discarded` (--discard-to)

    async def send(self, kind: str, parameters: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        self.server_seq += 1
        message = {
            "version": VERSION,
            "id": self.session_id,
            "type": kind,
            "seq": self.server_seq,
            "clientseq": self.client_seq,
            "parameters": parameters,
        }
        await self.ws.send_str(json.dumps(message))

    async def disconnect(self, reason: str, info: str | None = None) -> None:
        """Ask the client to close (it answers with `close`; we then send `closed`)."""
        if self.disconnect_sent:
            return
        self.disconnect_sent = True
        self.close_deadline = time.monotonic() + CLOSE_WAIT
        parameters = {"reason": reason}
        if info:
            parameters["info"] = info
        await self.send("disconnect", parameters)

    async def close_audio(self) -> None:
        await self.disconnect("error", "the session ended")

    async def run(self) -> None:
        ended = "the client closed the audio WebSocket"
        open_deadline = time.monotonic() + self.options.handshake_timeout
        try:
            while True:
                timeout = None
                if self.close_deadline is not None:
                    timeout = max(0.0, self.close_deadline - time.monotonic())
                elif not self.opened:
                    timeout = max(0.0, open_deadline - time.monotonic())
                try:
                    message = await self.ws.receive(timeout=timeout)
                except asyncio.TimeoutError:
                    if self.close_deadline is not None:
                        log.info("audiohook client did not close after disconnect; closing")
                        break
                    # a socket that never opens a session must not hold a file descriptor for ever
                    log.info("audiohook client sent no open in %g s; closing", self.options.handshake_timeout)
                    await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no open message in time")
                    break
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                try:
                    if message.type == WSMsgType.ERROR:
                        raise AudioHookProtocolError(f"unreadable WebSocket frame ({self.ws.exception()})")
                    if message.type == WSMsgType.BINARY:
                        if await self.on_audio(message.data):
                            return
                    elif message.type == WSMsgType.TEXT:
                        if await self.on_text(message.data):
                            ended = "the client sent close"
                            break
                except AudioHookProtocolError as error:
                    log.info("audiohook protocol error: %s", error)
                    session, self.session = self.session, None
                    if session is not None:
                        session.detach()
                    await self.disconnect("error", str(error))
                    if session is not None:
                        await session.fail(events.ERROR_AUDIO, f"audiohook audio channel: {error}")
                    if message.type == WSMsgType.ERROR:
                        break
        finally:
            if self.resume_task is not None:
                self.resume_task.cancel()
            if self.session is not None:
                session, self.session = self.session, None
                session.detach()
                await session.audio_ended(ended)
            if not self.ws.closed:
                await self.ws.close()

    async def on_text(self, text: str) -> bool:
        """Handle one JSON message; True when the client closed the session."""
        try:
            message = json.loads(text)
        except ValueError:
            raise AudioHookProtocolError("a text frame that is not JSON") from None
        except RecursionError:
            raise AudioHookProtocolError("a JSON message nested too deeply") from None
        if not isinstance(message, dict):
            raise AudioHookProtocolError("a message that is not a JSON object")
        kind = self._check_envelope(message)
        parameters = message["parameters"]
        if kind == "open":
            if self.opened:
                raise AudioHookProtocolError("a second open")
            await self.on_open(parameters)
        elif not self.opened and kind != "close":
            raise AudioHookProtocolError(f"{kind} before open")
        elif kind == "ping":
            await self.send("pong", {})
        elif kind == "close":
            await self.send("closed", {})
            await self.ws.close()
            return True
        elif kind == "paused":
            self.on_paused()
        elif kind == "resumed":
            self.on_resumed(parameters)
        elif kind == "discarded":
            self.on_discarded(parameters)
        elif kind not in _TOLERATED:
            log.debug("audiohook: ignored a %s message", kind)
        return False

    def _check_envelope(self, message: dict[str, Any]) -> str:
        if message.get("version") != VERSION:
            raise AudioHookProtocolError(f'version must be "2", got {message.get("version")!r}')
        kind = message.get("type")
        if not isinstance(kind, str) or not kind:
            raise AudioHookProtocolError("type is missing")
        if message.get("id") != self.session_id:
            raise AudioHookProtocolError(f"id {message.get('id')!r} is not the Audiohook-Session-Id")
        seq = message.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq != self.client_seq + 1:
            raise AudioHookProtocolError(f"seq {seq!r} should be {self.client_seq + 1}")
        serverseq = message.get("serverseq")
        if (
            isinstance(serverseq, bool)
            or not isinstance(serverseq, int)
            or not self.last_serverseq <= serverseq <= self.server_seq
        ):
            raise AudioHookProtocolError(
                f"serverseq {serverseq!r} should be the last server seq seen "
                f"({self.last_serverseq}..{self.server_seq})"
            )
        position = message.get("position")
        if not isinstance(position, str) or not _POSITION.match(position):
            raise AudioHookProtocolError(f"position {position!r} should look like PT2.8S")
        if not isinstance(message.get("parameters"), dict):
            raise AudioHookProtocolError("parameters must be an object ({} when empty)")
        if self.options.discard_to is not None and self.opened:
            # --discard-to: the client's accounting is checked exactly (audio received + discarded)
            expected = self.audio_bytes + self.discarded
            if kind == "discarded" and isinstance(message.get("parameters"), dict):
                expected += _samples(message["parameters"].get("discarded")) or 0  # its own, included
            if _samples(position) != expected:
                raise AudioHookProtocolError(
                    f"{kind}.position {position} should be {_duration(expected)} "
                    "(audio received plus audio discarded)"
                )
        self.client_seq = seq
        self.last_serverseq = serverseq
        return kind

    async def on_open(self, parameters: dict[str, Any]) -> None:
        if parameters.get("organizationId") != self.organization_id:
            raise AudioHookProtocolError("open.organizationId is not the Audiohook-Organization-Id")
        conversation = parameters.get("conversationId")
        if not isinstance(conversation, str):
            raise AudioHookProtocolError("open.conversationId (the call_id) is missing")
        media = _choose_media(parameters.get("media"))
        if conversation != PROBE_CONVERSATION_ID:
            try:
                session = self.registry.claim(conversation, "audiohook")
            except UnclaimableSession as error:
                raise AudioHookProtocolError(f"open.conversationId: {error}") from None
            self.session = session
            session.attach(self.close_audio)
        self.opened = True
        opened: dict[str, Any] = {"startPaused": self.options.start_paused, "media": [media]}
        if self.options.discard_to is not None:
            opened["discardTo"] = _duration(round(self.options.discard_to * SAMPLE_RATE))
        if self.options.start_paused:
            # as if we had sent `pause`: the client's `paused` starts the --resume-after timer
            self.held_from_start = self.pause_sent = True
        await self.send("opened", opened)
        log.debug("audiohook audio channel opened for %s", conversation)

    def on_paused(self) -> None:
        """The client paused its audio (our `pause`, or a call on hold): not idle until `resumed`."""
        self.client_paused = True
        if self.session is not None:
            self.session.hold(True)
        if self.pause_sent and self.resume_task is None:
            self.resume_task = asyncio.create_task(self._resume_later(self.options.resume_after))

    def on_resumed(self, parameters: dict[str, Any]) -> None:
        for name in ("start", "discarded"):
            value = parameters.get(name)
            if value is not None and not (isinstance(value, str) and _POSITION.match(value)):
                raise AudioHookProtocolError(f"resumed.{name} {value!r} should look like PT2.8S")
        self.client_paused = False
        self.held_from_start = False
        if self.session is not None:
            self.session.hold(False)

    def on_discarded(self, parameters: dict[str, Any]) -> None:
        """The client skipped audio (our discardTo): it must be where we asked, before any audio."""
        start, discarded = _samples(parameters.get("start")), _samples(parameters.get("discarded"))
        if start is None or discarded is None:
            raise AudioHookProtocolError("discarded.start and discarded.discarded should look like PT2.8S")
        limit = self.options.discard_to
        if limit is not None and start + discarded > round(limit * SAMPLE_RATE):
            raise AudioHookProtocolError(
                f"discarded up to {_duration(start + discarded)}, past the discardTo of {limit:g} s"
            )
        self.discarded += discarded

    async def _resume_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self.disconnect_sent and not self.ws.closed:
            log.debug("audiohook: resuming the client after %g s", delay)
            await self.send("resume", {})

    async def on_audio(self, data: bytes) -> bool:
        """Feed one binary frame; True when the socket was reset (fault injection)."""
        if not self.opened:
            raise AudioHookProtocolError("audio before opened")
        if self.client_paused:
            raise AudioHookProtocolError("audio after paused, before resumed")
        if self.held_from_start:
            raise AudioHookProtocolError("audio before resumed, and opened said startPaused")
        self._check_discard(len(data))
        self.audio_bytes += len(data)
        if len(data) > self.options.max_frame_bytes:
            raise AudioHookProtocolError(
                f"audio frame of {len(data)} bytes is over the {self.options.max_frame_bytes} byte limit"
            )
        if self.disconnect_sent or self.session is None:
            return False  # audio in flight after disconnect, or a probe: dropped
        self.received += len(data)
        reset_after = self.options.faults.reset_audio_after
        if reset_after is not None and self.received >= reset_after:
            log.info(
                "resetting the audiohook socket of %s after %d bytes (fault injected)",
                self.session.call_id,
                self.received,
            )
            self.session.detach()
            self.session = None
            if self.transport is not None:
                self.transport.abort()
            return True
        if await self.session.feed(data):
            session, self.session = self.session, None
            session.detach()
            await self.disconnect("completed")
            await session.complete()
            return False
        pause_at = self.options.pause_at
        if pause_at is not None and not self.pause_sent and self.received >= pause_at * SAMPLE_RATE:
            self.pause_sent = True
            log.debug("audiohook: pausing the client at %.3f s of audio", self.received / SAMPLE_RATE)
            await self.send("pause", {})
        return False


    def _check_discard(self, frame: int) -> None:
        """The first audio after discardTo: a client that skipped nothing, where a whole frame of this
        size fitted before the discard point, streams audio we asked not to receive."""
        limit = self.options.discard_to
        if limit is None or self.audio_bytes or self.discarded:
            return
        if frame and round(limit * SAMPLE_RATE) // frame >= 1:
            raise AudioHookProtocolError(
                f"audio from PT0S, and opened said discardTo {_duration(round(limit * SAMPLE_RATE))}"
            )


def _samples(text: Any) -> int | None:
    """Samples in an AudioHook duration `PT2.5S` (None when it is not one)."""
    if not isinstance(text, str) or not _POSITION.match(text):
        return None
    return int(Decimal(text[2:-1]) * SAMPLE_RATE)


def _duration(samples: int) -> str:
    """`PT<seconds>S` for a sample count, exact."""
    seconds = Decimal(samples) / SAMPLE_RATE
    return f"PT{seconds.normalize():f}S" if samples else "PT0S"


def _choose_media(offered: Any) -> dict[str, Any]:
    if not isinstance(offered, list) or not offered:
        raise AudioHookProtocolError("open.media must be a non-empty list")
    for media in offered:
        if (
            isinstance(media, dict)
            and media.get("type") == "audio"
            and media.get("format") == "PCMU"
            and media.get("rate") == 8000
            and isinstance(media.get("channels"), list)
            and len(media["channels"]) == 1
        ):
            return {"type": "audio", "format": "PCMU", "channels": list(media["channels"]), "rate": 8000}
    raise AudioHookProtocolError("open.media offers no PCMU 8000 Hz single-channel audio")


def audiohook_consumer(options: EmulatorOptions, registry: SessionRegistry) -> Handler:
    """The aiohttp handler for the audiohook WebSocket."""

    async def handle(request: web.Request) -> web.StreamResponse:
        refusal = check_handshake(request, options)
        if refusal is not None:
            return refusal
        # oversize frames get AudioHook's own error (disconnect); only absurd ones hit aiohttp's limit
        ws = web.WebSocketResponse(
            timeout=2.0, max_msg_size=4 * options.max_frame_bytes + 65536, heartbeat=None
        )
        await ws.prepare(request)
        request.app[AUDIO_SOCKETS].add(ws)
        await AudioHookConnection(ws, request, options, registry).run()
        return ws

    return handle
