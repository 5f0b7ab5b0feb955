"""The Socket.IO side (docs/protocol.md §3): namespaces, the Authorization check, `initialize` validation."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import socketio

from dasctl import config, events
from dasctl.emulator import voice
from dasctl.emulator.options import EmulatorOptions
from dasctl.emulator.sessions import Session, SessionRegistry, SessionRequest
from dasctl.emulator.tokens import TokenStore

log = logging.getLogger("dasctl.emulator")

#: Longest voice target accepted; the real service documents 3..30 s, far more is a client bug.
MAX_AUDIO_TOTAL_DURATION = 300.0
#: How long an `alive` connection may stay before the server disconnects it.
ALIVE_GRACE = 2.0


def namespaces(kind: str) -> list[str]:
    """The cloud namespace and the emulator's aliases for one kind (docs/protocol.md §3)."""
    names = [f"{config.DEFAULT_NAMESPACE_PREFIX}/{kind}", f"/{kind}"]
    if kind == events.NS_REGISTER:
        names.append("/")
    return names


class BadParameter(Exception):
    """An `initialize` field is missing or wrong; the message names it."""


#: Longest integer literal parsed as an int (python-engineio's own limit: int() of long digit strings
#: is slow, and past 4300 digits an error).
MAX_INTEGER_DIGITS = 100


class TooLongNumber:
    """An integer literal too long to parse: kept as its length, so validation can name the field."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"a {self.digits}-digit number"


def _parse_int(text: str) -> int | TooLongNumber:
    return TooLongNumber(len(text.lstrip("-"))) if len(text) > MAX_INTEGER_DIGITS else int(text)


class PacketJson:
    """The json module python-socketio decodes packets with (`AsyncServer(json=...)`).

    python-engineio's default raises on an integer over 100 digits, and the whole event is dropped
    with nothing sent back: `audio_total_duration: 10**400` got no answer. Here such a number is a
    TooLongNumber and the event reaches `initialize`, which answers error-parameters.
    """

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("parse_int", _parse_int)
        return json.loads(*args, **kwargs)


def _field(container: dict[str, Any], name: str, path: str) -> Any:
    if name not in container:
        raise BadParameter(f"{path}.{name} is missing")
    return container[name]


def _shown(value: Any) -> str:
    """A client's value for an error message: short (a 400-digit number is not repeated back)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {len(str(abs(value)))}-digit number"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(container: dict[str, Any], name: str, path: str, low: float, high: float) -> float:
    value = _field(container, name, path)
    # JSON integers have no size limit: compare them as integers, never through float() (OverflowError)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise BadParameter(f"{path}.{name} must be a number, got {_shown(value)}")
    if not low <= value <= high:
        raise BadParameter(f"{path}.{name} must be between {low:g} and {high:g}, got {_shown(value)}")
    return float(value)


def _numeric_string(container: dict[str, Any], name: str, path: str, expected: int) -> None:
    # strings on the Socket.IO channel [doc], integers on REST: both accepted
    value = _field(container, name, path)
    if isinstance(value, bool) or str(value).strip() != str(expected):
        raise BadParameter(f'{path}.{name} must be "{expected}", got {value!r}')


def parse_initialize(kind: str, args: tuple[Any, ...], options: EmulatorOptions) -> SessionRequest:
    """Validate an `initialize` payload field by field (docs/protocol.md §3.1)."""
    if not args or not isinstance(args[0], dict):
        raise BadParameter("initialize needs one JSON object with metadata and a request")
    data = args[0]
    metadata = _field(data, events.F_METADATA, "initialize")
    if not isinstance(metadata, dict):
        raise BadParameter("metadata must be an object")
    protocol = _field(metadata, events.M_AUDIO_PROTOCOL, "metadata")
    if protocol not in events.AUDIO_PROTOCOLS:
        raise BadParameter(
            f"metadata.audio_protocol must be one of {', '.join(events.AUDIO_PROTOCOLS)}, got {protocol!r}"
        )
    if _field(metadata, events.M_AUDIO_FORMAT, "metadata") != "raw":
        raise BadParameter(f'metadata.audio_format must be "raw", got {metadata[events.M_AUDIO_FORMAT]!r}')
    if _field(metadata, events.M_AUDIO_CODEC, "metadata") != "mulaw":
        raise BadParameter(f'metadata.audio_codec must be "mulaw", got {metadata[events.M_AUDIO_CODEC]!r}')
    if not isinstance(_field(metadata, events.M_SAMPLE_FORMAT, "metadata"), str):
        raise BadParameter('metadata.sample_format must be a string ("" for mu-law)')
    _numeric_string(metadata, events.M_SAMPLE_RATE, "metadata", voice.SAMPLE_RATE)
    _numeric_string(metadata, events.M_CHANNELS, "metadata", 1)
    call_id = _field(metadata, events.M_CALL_ID, "metadata")
    try:
        if not isinstance(call_id, str):
            raise ValueError
        uuid.UUID(call_id)
    except ValueError:
        raise BadParameter(f"metadata.call_id must be a UUID string, got {call_id!r}") from None

    request_key = events.F_REGISTER_REQUEST if kind == events.NS_REGISTER else events.F_VERIFY_REQUEST
    request = _field(data, request_key, "initialize")
    if not isinstance(request, dict):
        raise BadParameter(f"{request_key} must be an object")
    threshold = _number(request, events.R_AUTHENTICITY_THRESHOLD, request_key, 0.0, 1.0)
    duration = _number(request, events.R_AUDIO_TOTAL_DURATION, request_key, 0.0, MAX_AUDIO_TOTAL_DURATION)
    if duration <= 0:
        raise BadParameter(f"{request_key}.audio_total_duration must be above 0")
    if kind == events.NS_REGISTER:
        model_hash = _field(request, events.R_MODEL_HASH, request_key)
        if not isinstance(model_hash, str) or model_hash not in options.model_hashes:
            raise BadParameter(
                f"{request_key}.model_hash {model_hash!r} is not a model this service has "
                f"(available: {', '.join(options.model_hashes)})"
            )
        return SessionRequest(kind, protocol, call_id, threshold, duration, model_hash)
    score_threshold = _number(request, events.R_SCORE_THRESHOLD, request_key, 0.0, 1.0)
    credential = _field(request, events.R_CREDENTIAL, request_key)
    if not isinstance(credential, str):
        raise BadParameter(f"{request_key}.credential must be a string")
    try:
        model_hash, print_ = voice.read_credential(credential)
    except ValueError as error:
        raise BadParameter(f"{request_key}.credential: {error}") from None
    if model_hash not in options.model_hashes:
        raise BadParameter(
            f"{request_key}.credential was made with model {model_hash!r}, which this service no longer has"
        )
    return SessionRequest(kind, protocol, call_id, threshold, duration, model_hash, score_threshold, print_)


@dataclass
class Connection:
    """One namespace connection: at most one session."""

    kind: str
    session: Session | None = None
    initialized: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Signalling:
    """Socket.IO handlers of the emulator, attached to an AsyncServer."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        options: EmulatorOptions,
        tokens: TokenStore,
        registry: SessionRegistry,
    ) -> None:
        self.sio = sio
        self.options = options
        self.tokens = tokens
        self.registry = registry
        self.connections: dict[tuple[str, str], Connection] = {}
        for kind in (events.NS_REGISTER, events.NS_VERIFY, events.NS_ALIVE):
            for namespace in namespaces(kind):
                self._install(kind, namespace)

    def _install(self, kind: str, namespace: str) -> None:
        # python-socketio hands a client EVENT named `connect` or `disconnect` to these same handlers,
        # with whatever arguments the client chose: a forged environ, no reason. Only the server's own
        # calls count: a real connect comes once per sid, a real disconnect after the sid left.
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            if (namespace, sid) in self.connections:
                log.info("ignored a client event named connect on %s", namespace)
                return
            await self.on_connect(kind, namespace, sid, environ)

        async def disconnect(sid: str, reason: Any = None) -> None:
            if self.sio.manager.is_connected(sid, namespace):
                log.info("ignored a client event named disconnect on %s", namespace)
                return
            await self.on_disconnect(namespace, sid)

        self.sio.on("connect", connect, namespace=namespace)
        self.sio.on("disconnect", disconnect, namespace=namespace)
        if kind == events.NS_ALIVE:

            async def alive(sid: str, *args: Any) -> None:
                await self.sio.emit(
                    events.ALIVE,
                    {events.F_EVENT: events.ALIVE, events.F_CONTENT: "alive"},
                    to=sid,
                    namespace=namespace,
                )
                await self.sio.disconnect(sid, namespace=namespace)

            self.sio.on(events.ALIVE, alive, namespace=namespace)
        else:

            async def initialize(sid: str, *args: Any) -> None:
                await self.on_initialize(kind, namespace, sid, args)

            self.sio.on(events.INITIALIZE, initialize, namespace=namespace)

    async def on_connect(self, kind: str, namespace: str, sid: str, environ: dict[str, Any]) -> None:
        if self.options.faults.refuse_tokens:
            log.info("refused a %s connection: every token is refused (fault injected)", kind)
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        if not self.tokens.check_authorization(environ.get("HTTP_AUTHORIZATION")):
            log.info("refused a %s connection: missing, unknown or expired token", kind)
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        connection = Connection(kind)
        self.connections[(namespace, sid)] = connection
        if kind == events.NS_ALIVE:
            connection.tasks.append(asyncio.create_task(self._disconnect_later(namespace, sid, ALIVE_GRACE)))
        drop_after = self.options.faults.drop_signalling_after
        if drop_after is not None:
            connection.tasks.append(asyncio.create_task(self._drop_later(namespace, sid, drop_after)))
        log.debug("%s connection %s on %s", kind, sid, namespace)

    async def close_unattached(self) -> None:
        """Close Engine.IO connections that join no namespace within the handshake timeout (run forever).

        Engine.IO keeps a connection alive as long as it answers pings: one that never connects to a
        namespace would otherwise hold its socket for ever.
        """
        first_seen: dict[str, float] = {}
        limit = self.options.handshake_timeout
        while True:
            await asyncio.sleep(min(1.0, limit / 2))
            now = time.monotonic()
            live = set(self.sio.eio.sockets)
            attached = {
                self.sio.manager.eio_sid_from_sid(sid, namespace) for namespace, sid in self.connections
            }
            for eio_sid in list(first_seen):
                if eio_sid not in live or eio_sid in attached:
                    del first_seen[eio_sid]
            for eio_sid in live - attached:
                if now - first_seen.setdefault(eio_sid, now) >= limit:
                    log.info("closing an Engine.IO connection that joined no namespace in %g s", limit)
                    del first_seen[eio_sid]
                    # Engine.IO's close only sends a CLOSE packet and waits for the client (up to its
                    # ping timeout, 45 s): close the TCP connection of its request as well
                    request = (self.sio.environ.get(eio_sid) or {}).get("aiohttp.request")
                    await self.sio.eio.disconnect(eio_sid)
                    if request is not None and request.transport is not None:
                        request.transport.close()

    async def _disconnect_later(self, namespace: str, sid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.sio.disconnect(sid, namespace=namespace)

    async def _drop_later(self, namespace: str, sid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, namespace)
        log.info("dropping signalling connection %s (fault injected)", sid)
        if eio_sid is not None:
            # the whole Engine.IO connection goes, as when a load balancer cuts it
            await self.sio.eio.disconnect(eio_sid)

    async def on_disconnect(self, namespace: str, sid: str) -> None:
        connection = self.connections.pop((namespace, sid), None)
        if connection is None:
            return
        for task in connection.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        session = connection.session
        if session is not None:
            session.abandon()
            self.registry.remove(session)
            if session.close_audio is not None:
                await session.close_audio()

    async def on_initialize(self, kind: str, namespace: str, sid: str, args: tuple[Any, ...]) -> None:
        connection = self.connections.get((namespace, sid))
        if connection is None:
            return
        if connection.initialized:
            await self._error(
                namespace, sid, connection, "initialize was already received on this connection"
            )
            return
        connection.initialized = True
        try:
            request = parse_initialize(kind, args, self.options)
        except BadParameter as error:
            log.info("%s initialize rejected: %s", kind, error)
            await self._error(namespace, sid, connection, str(error))
            return

        async def emit(name: str, payload: dict[str, Any], extra: bytes | None) -> None:
            data: Any = (payload, extra) if extra is not None else payload
            await self.sio.emit(name, data, to=sid, namespace=namespace)
            if events.is_terminal(name):
                self.registry.remove(session)
                await self.sio.disconnect(sid, namespace=namespace)

        session = Session(request, self.options, emit)
        connection.session = session
        fault = self.options.faults.error_event
        if fault:
            await session.fail(fault, f"{fault} injected by the emulator (--fault-error-event)")
            return
        if not self.registry.add(session):
            connection.session = None
            await self._error(
                namespace,
                sid,
                connection,
                f"metadata.call_id {request.call_id} is already in use by a live session",
            )
            return
        await session.start()

    async def _error(self, namespace: str, sid: str, connection: Connection, content: str) -> None:
        if connection.session is not None:
            await connection.session.fail(events.ERROR_PARAMETERS, content)
            return
        if self.options.faults.delay_events:
            await asyncio.sleep(self.options.faults.delay_events)
        await self.sio.emit(
            events.ERROR_PARAMETERS,
            {events.F_EVENT: events.ERROR_PARAMETERS, events.F_CONTENT: content},
            to=sid,
            namespace=namespace,
        )
        await self.sio.disconnect(sid, namespace=namespace)
