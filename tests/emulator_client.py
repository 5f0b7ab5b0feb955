"""Raw-protocol clients for the emulator tests: python-socketio and websocket-client, nothing of dasctl.

The emulator is tested against docs/protocol.md, so these helpers speak the wire protocol directly.
"""

from __future__ import annotations

import base64
import functools
import json
import queue
import select
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import engineio
import numpy as np
import requests
import socketio
import soundfile
import soxr
import websocket

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    # Sun's g711 reference, the encoder docs/protocol.md §5 follows (audioop-lts on Python 3.13+)
    import audioop

DATA = Path(__file__).parent / "data"
DEMO_CLIENT_ID = "dasctl-demo"
DEMO_CLIENT_SECRET = "dasctl-demo-secret"
DEMO_MODEL_HASH = "dasctl-emulator-model-v1"
DEMO_AUDIOHOOK_API_KEY = "dasctl-demo-audiohook-key"


@functools.cache
def mulaw_of(name: str, channel: int | None = None) -> bytes:
    """A fixture WAV as 8 kHz mono mu-law (independent of dasctl's own transcoder)."""
    data, rate = soundfile.read(DATA / name, dtype="float64", always_2d=True)
    mono = data[:, channel] if channel is not None else data.mean(axis=1)
    if rate != 8000:
        mono = soxr.resample(mono, rate, 8000)
    pcm = (np.clip(mono, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return audioop.lin2ulaw(pcm, 2)


def token_response(
    emulator: Any, client_id: str = DEMO_CLIENT_ID, secret: str = DEMO_CLIENT_SECRET
) -> requests.Response:
    """The token endpoint's answer to a client-credentials request (docs/protocol.md §2)."""
    return requests.post(
        emulator.auth_url,
        data={"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"},
        timeout=5,
    )


def token(emulator: Any, client_id: str = DEMO_CLIENT_ID, secret: str = DEMO_CLIENT_SECRET) -> str:
    response = token_response(emulator, client_id, secret)
    response.raise_for_status()
    body = response.json()
    return f"{body['token_type']} {body['access_token']}"


def initialize_payload(
    call_id: str | None = None,
    protocol: str = "twilio",
    duration: float = 5.0,
    threshold: float = 0.8,
    model_hash: str = DEMO_MODEL_HASH,
) -> dict[str, Any]:
    """docs/protocol.md §3.1, field for field."""
    return {
        "metadata": {
            "audio_protocol": protocol,
            "audio_format": "raw",
            "audio_codec": "mulaw",
            "sample_format": "",
            "sample_rate": "8000",
            "channels": "1",
            "call_id": call_id or str(uuid.uuid4()),
        },
        "register_request": {
            "authenticity_threshold": threshold,
            "audio_total_duration": duration,
            "model_hash": model_hash,
        },
    }


def verify_payload(
    credential: str,
    call_id: str | None = None,
    protocol: str = "twilio",
    duration: float = 3.0,
    score_threshold: float = 0.6,
) -> dict[str, Any]:
    payload = initialize_payload(call_id, protocol)
    del payload["register_request"]
    payload["verify_request"] = {
        "credential": credential,
        "authenticity_threshold": 0.8,
        "score_threshold": score_threshold,
        "audio_total_duration": duration,
    }
    return payload


class _EngineIOInOrder(engineio.Client):
    """Engine.IO messages handled one at a time, in the order they arrived, on one worker thread.

    python-socketio's threaded client hands each message to a thread of its own, so a binary event's
    placeholder and its attachment can be handled out of order: "Unexpected binary attachment" in a
    thread, and the event is lost (python-socketio#436; it failed a CI run here). The asyncio client
    that dasctl uses runs them as tasks in arrival order and has no such race. Not on the read thread
    itself: a server's DISCONNECT packet makes the handler join the read thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message" and kwargs.get("run_async"):
            if self._worker is None:
                self._worker = threading.Thread(target=self._handle_in_order, daemon=True)
                self._worker.start()
            self._inbox.put(args)
            return None
        if event == "disconnect":
            self._inbox.put(None)  # the worker ends once the messages before it are handled
        return super()._trigger_event(event, *args, **kwargs)

    def _handle_in_order(self) -> None:
        while (args := self._inbox.get()) is not None:
            super()._trigger_event("message", *args)


class InOrderClient(socketio.Client):
    """socketio.Client whose events arrive in order and whole (see _EngineIOInOrder)."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _EngineIOInOrder


def socketio_client() -> socketio.Client:
    """The Socket.IO client for the emulator tests: no reconnection, events in order."""
    return InOrderClient(reconnection=False)


class Signalling:
    """A Socket.IO client on one namespace that funnels every event into one queue."""

    def __init__(
        self, emulator: Any, namespace: str = "/socket.io/register", authorization: str | None = "token"
    ) -> None:
        self.namespace = namespace
        self.events: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        self.client = socketio_client()
        self.connect_error: Any = None

        @self.client.on("*", namespace=namespace)
        def on_any(event: str, *args: Any) -> None:
            self.events.put((event, args))

        @self.client.on("disconnect", namespace=namespace)
        def on_disconnect(*args: Any) -> None:
            self.events.put(("<disconnect>", args))

        @self.client.on("connect_error", namespace=namespace)
        def on_connect_error(data: Any = None) -> None:
            self.connect_error = data

        headers = {}
        if authorization == "token":
            authorization = token(emulator)
        if authorization is not None:
            headers["Authorization"] = authorization
        self.client.connect(
            emulator.url,
            headers=headers,
            namespaces=[namespace],
            transports=["websocket"],
            socketio_path="socket.io",
            wait_timeout=5,
        )

    def emit(self, event: str, data: Any) -> None:
        self.client.emit(event, data, namespace=self.namespace)

    def next(self, timeout: float = 10.0) -> tuple[str, tuple[Any, ...]]:
        return self.events.get(timeout=timeout)

    def until_terminal(self, timeout: float = 20.0) -> list[tuple[str, tuple[Any, ...]]]:
        """Every event up to and including the terminal one, then the server's disconnect."""
        seen = []
        while True:
            name, args = self.next(timeout)
            seen.append((name, args))
            if name.startswith(("result-", "error-")):
                break
            assert name != "<disconnect>", f"disconnected before a terminal event: {seen}"
        assert self.next(5)[0] == "<disconnect>", "the server did not disconnect after the terminal event"
        return seen

    def close(self) -> None:
        self.client.disconnect()


def twilio_stream(
    emulator: Any,
    call_id: str,
    audio: bytes,
    chunk: int = 160,
    stop: bool = True,
    start_message: dict[str, Any] | None = None,
) -> tuple[int, int | None]:
    """Send audio as fast as possible; returns (bytes sent before the server closed, close code)."""
    ws = websocket.create_connection(emulator.twilio_url, timeout=10)
    sent = 0
    try:
        ws.send(json.dumps(start_message or {"event": "start", "start": {"callSid": call_id}}))
        for offset in range(0, len(audio), chunk):
            payload = base64.b64encode(audio[offset : offset + chunk]).decode()
            try:
                ws.send(json.dumps({"event": "media", "media": {"payload": payload}}))
            except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError):
                break
            sent += len(audio[offset : offset + chunk])
        else:
            if stop:
                try:
                    ws.send(json.dumps({"event": "stop"}))
                except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError):
                    pass
            else:
                return sent, None  # the client just closes its socket
        return sent, wait_close(ws)
    finally:
        ws.close()


def wait_close(ws: websocket.WebSocket, timeout: float = 10.0) -> int | None:
    """Read until the server's close frame; its status code (None if the socket just went away)."""
    ws.settimeout(timeout)
    while True:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            return None
        except (ConnectionResetError, OSError):
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def names(seen: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    return [name for name, _ in seen]


def start_session(server: Any, protocol: str = "audiohook", duration: float = 2.0) -> tuple[str, Signalling]:
    """A register session initialized and waiting for audio: (call id, its signalling)."""
    call_id = str(uuid.uuid4())
    client = Signalling(server)
    client.emit("initialize", initialize_payload(call_id, protocol=protocol, duration=duration))
    assert client.next()[0] == "info-consumer-ready"
    assert client.next()[0] == "info-vad-status"
    return call_id, client


class AudioHookClient:
    """The Genesys side of AudioHook v2, written from the protocol (docs/protocol.md §4.2)."""

    def __init__(
        self,
        emulator: Any,
        headers: dict[str, str] | None = None,
        session_id: str | None = None,
        organization_id: str | None = None,
    ) -> None:
        self.session_id = session_id or str(uuid.uuid4())
        self.organization_id = organization_id or str(uuid.uuid4())
        base = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Session-Id": self.session_id,
            "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "X-API-KEY": DEMO_AUDIOHOOK_API_KEY,
        }
        base.update(headers or {})
        self.headers = base
        self.ws = websocket.create_connection(
            emulator.audiohook_url, timeout=10, header=[f"{k}: {v}" for k, v in base.items() if v is not None]
        )
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0

    def send(self, kind: str, parameters: dict[str, Any] | None = None, **override: Any) -> None:
        self.seq += 1
        message = {
            "version": "2",
            "id": self.session_id,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": f"PT{self.position:.2f}S",
            "parameters": parameters if parameters is not None else {},
        }
        message.update(override)
        self.ws.send(json.dumps(message))

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next JSON message from the server."""
        self.ws.settimeout(timeout)
        while True:
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise ConnectionError("server closed the socket")
            if opcode == websocket.ABNF.OPCODE_TEXT:
                message = json.loads(data)
                self.serverseq = message["seq"]
                return message

    def open(self, call_id: str, media: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        self.send(
            "open",
            {
                "organizationId": self.organization_id,
                "conversationId": call_id,
                "participant": {
                    "id": str(uuid.uuid4()),
                    "ani": "+15551230000",
                    "aniName": "",
                    "dnis": "+15550000",
                },
                "media": media
                or [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
            },
        )
        return self.receive()

    def stream(self, audio: bytes, frame: int = 1600, wait: float = 5.0) -> dict[str, Any] | None:
        """Send 200 ms frames until the server says disconnect (returned), else wait that long for it."""
        for offset in range(0, len(audio), frame):
            self.ws.send_binary(audio[offset : offset + frame])
            self.position += len(audio[offset : offset + frame]) / 8000
            while select.select([self.ws.sock], [], [], 0)[0]:
                message = self.receive()
                if message["type"] == "disconnect":
                    return message
        deadline = time.monotonic() + wait
        while select.select([self.ws.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            message = self.receive()
            if message["type"] == "disconnect":
                return message
        return None

    def close(self, reason: str = "end") -> dict[str, Any]:
        self.send("close", {"reason": reason})
        while True:
            message = self.receive()
            if message["type"] == "closed":
                return message

    def shutdown(self) -> None:
        self.ws.close()
