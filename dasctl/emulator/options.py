"""Everything `dasctl serve` can be told: limits, credentials, and the faults it can inject."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from dasctl import config, events

#: The open audio WebSockets of an app, closed first on shutdown (weak: finished ones drop out).
AUDIO_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("audio_sockets")
#: An aiohttp request handler.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Faults:
    """Misbehaviour on demand, for testing clients (all off by default)."""

    refuse_tokens: bool = False  # the Socket.IO handshake refuses every token ("unauthorized")
    token_5xx: bool = False  # the token endpoint answers 503
    drop_signalling_after: float | None = None  # close the Engine.IO connection N s after connect
    reset_audio_after: int | None = None  # abort the audio TCP connection after N audio bytes
    no_consumer_ready: bool = False  # never send info-consumer-ready
    error_event: str | None = None  # sent instead of the normal flow, right after a valid initialize
    delay_events: float = 0.0  # wait this long before every server event

    def describe(self) -> list[str]:
        """Human names of the faults that are on."""
        on = []
        if self.refuse_tokens:
            on.append("refuse tokens")
        if self.token_5xx:
            on.append("token endpoint 503")
        if self.drop_signalling_after is not None:
            on.append(f"drop signalling after {self.drop_signalling_after:g} s")
        if self.reset_audio_after is not None:
            on.append(f"reset audio after {self.reset_audio_after} bytes")
        if self.no_consumer_ready:
            on.append("no info-consumer-ready")
        if self.error_event:
            on.append(f"send {self.error_event}")
        if self.delay_events:
            on.append(f"delay events {self.delay_events:g} s")
        return on


@dataclass
class EmulatorOptions:
    host: str = config.DEFAULT_EMULATOR_HOST
    port: int = config.DEFAULT_EMULATOR_PORT
    client_id: str = config.DEMO_CLIENT_ID
    client_secret: str = config.DEMO_CLIENT_SECRET
    token_ttl: float = 3600.0
    send_expires_in: bool = True
    model_hashes: tuple[str, ...] = (config.DEMO_MODEL_HASH,)
    consumer_timeout: float = 10.0  # audio channel must open this soon after info-consumer-ready
    idle_timeout: float = 10.0  # audio that stops this long before enough voice -> error-audio
    audiohook_api_key: str = config.DEMO_AUDIOHOOK_API_KEY
    audiohook_secret: bytes | None = None  # HMAC key; when set, AudioHook signatures are required
    max_frame_bytes: int = 65536
    # a connection must send its HTTP request, and an audio socket its first message, this soon
    handshake_timeout: float = 10.0
    # AudioHook: send `pause` once this much audio (stream seconds) arrived, `resume` resume_after s
    # after the client's `paused` (docs/protocol.md §4.2: lets clients test their pause handling)
    pause_at: float | None = None
    resume_after: float = 2.0
    # AudioHook: answer `open` with `opened` asking the client to start paused (`resume` comes
    # resume_after s after its `paused`), and to skip the audio up to this stream position (seconds)
    start_paused: bool = False
    discard_to: float | None = None
    faults: Faults = field(default_factory=Faults)


def valid_fault_event(name: str) -> bool:
    """An injectable terminal event: any error-* (known or not) or a result-fail-*."""
    return (
        name.startswith("error-")
        and len(name) > len("error-")
        or name
        in (
            events.RESULT_FAIL_SPOOF,
            events.RESULT_FAIL_SCORE,
        )
    )
