"""Each injected fault of `dasctl serve`, seen from a raw-protocol client; and fuzzed input."""

from __future__ import annotations

import json
import queue
import random
import time
import uuid

import pytest
import requests
import socketio
import websocket

from tests.emulator_client import (
    AudioHookClient,
    Signalling,
    initialize_payload,
    mulaw_of,
    names,
    socketio_client,
    token,
    token_response,
    twilio_stream,
)

SPEECH = "speech-a-8k-mono.wav"


def test_refuse_tokens(start_emulator):
    server = start_emulator("--fault-refuse-tokens")
    authorization = token(server)  # the token endpoint still works
    errors = []
    client = socketio_client()
    client.on("connect_error", lambda data=None: errors.append(data), namespace="/socket.io/register")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            server.url,
            headers={"Authorization": authorization},
            namespaces=["/socket.io/register"],
            transports=["websocket"],
            wait_timeout=5,
        )
    client.disconnect()
    assert errors == [{"message": "unauthorized"}]
    assert "FAULTS INJECTED  refuse tokens" in server.output()


def test_token_endpoint_5xx(start_emulator):
    server = start_emulator("--fault-token-5xx")
    response = token_response(server)
    assert response.status_code == 503


def test_drop_signalling_after(start_emulator):
    server = start_emulator("--fault-drop-signalling-after", "0.3")
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload())
        seen = [client.next(5) for _ in range(3)]
    finally:
        client.close()
    assert names(seen) == ["info-consumer-ready", "info-vad-status", "<disconnect>"]


def test_reset_audio_after_bytes(start_emulator):
    server = start_emulator("--fault-reset-audio-after", "4000", "--idle-timeout", "0.5")
    call_id = str(uuid.uuid4())
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload(call_id))
        assert client.next()[0] == "info-consumer-ready"
        sent, close_code = twilio_stream(server, call_id, mulaw_of(SPEECH), stop=True)
        assert close_code is None  # no close frame: the TCP connection was aborted
        seen = client.until_terminal(timeout=5)
    finally:
        client.close()
    assert names(seen)[-1] == "error-audio"
    assert "no audio for 0.5 s" in seen[-1][1][0]["content"]

    call_id = str(uuid.uuid4())
    client = Signalling(server)
    hook = AudioHookClient(server)
    try:
        client.emit("initialize", initialize_payload(call_id, protocol="audiohook"))
        assert client.next()[0] == "info-consumer-ready"
        hook.open(call_id)
        with pytest.raises((ConnectionError, OSError, websocket.WebSocketException)):
            hook.stream(mulaw_of(SPEECH))
            hook.receive(timeout=5)
    finally:
        hook.shutdown()
        client.close()


def test_no_consumer_ready(start_emulator):
    server = start_emulator("--fault-no-consumer-ready")
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload())
        with pytest.raises(queue.Empty):  # the service stays silent
            client.next(1.0)
    finally:
        client.close()


@pytest.mark.parametrize(
    "event",
    ["error-das-Peak", "error-consumer-not-ready", "error-audio", "error-new-kind", "result-fail-spoof"],
)
def test_error_event_instead_of_the_flow(start_emulator, event):
    server = start_emulator("--fault-error-event", event)
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload())
        seen = client.until_terminal(timeout=5)
    finally:
        client.close()
    assert names(seen) == [event]
    assert seen[0][1][0]["event"] == event and "injected" in seen[0][1][0]["content"]


def test_fault_error_event_must_be_terminal(dasctl):
    result = dasctl("serve", "--port", "0", "--fault-error-event", "info-vad-status")
    assert result.returncode == 2
    assert "not a terminal event" in result.stderr and "Traceback" not in result.stderr


def test_delay_events(start_emulator):
    server = start_emulator("--fault-delay-events", "0.4")
    client = Signalling(server)
    try:
        started = time.monotonic()
        client.emit("initialize", initialize_payload())
        assert client.next(5)[0] == "info-consumer-ready"
        assert client.next(5)[0] == "info-vad-status"
        assert time.monotonic() - started >= 0.8  # two events, each held back 0.4 s
    finally:
        client.close()


def fuzz_values(rng: random.Random):
    atoms = [None, True, 0, -1, 1e308, "", "x" * 5000, "8000", [], {}, [1, "a"], {"event": "start"}]
    return rng.choice(atoms)


def test_fuzzed_messages_never_take_the_server_down(start_emulator):
    server = start_emulator("--consumer-timeout", "0.5")
    rng = random.Random(7)
    # signalling: random initialize payloads
    for _ in range(15):
        payload = initialize_payload()
        section = rng.choice(["metadata", "register_request"])
        key = rng.choice(list(payload[section]))
        payload[section][key] = fuzz_values(rng)
        client = Signalling(server)
        try:
            client.emit("initialize", payload)
            assert client.next(5)[0] in ("error-parameters", "info-consumer-ready")
        finally:
            client.close()
    # twilio: random frames
    for _ in range(10):
        ws = websocket.create_connection(server.twilio_url, timeout=5)
        frames = [
            json.dumps({"event": fuzz_values(rng), "start": fuzz_values(rng), "media": fuzz_values(rng)}),
            "{",
            bytes(rng.randrange(256) for _ in range(50)).decode("latin-1"),
            json.dumps(fuzz_values(rng)),
        ]
        try:
            for frame in frames:
                ws.send(frame)
            ws.send_binary(bytes(rng.randrange(256) for _ in range(300)))
        except (websocket.WebSocketException, OSError):
            pass
        ws.close()
    # audiohook: random JSON envelopes and frames
    for _ in range(10):
        hook = AudioHookClient(server)
        try:
            hook.ws.send(
                json.dumps(
                    {
                        "version": fuzz_values(rng),
                        "type": fuzz_values(rng),
                        "seq": fuzz_values(rng),
                        "id": hook.session_id,
                        "parameters": fuzz_values(rng),
                    }
                )
            )
            hook.ws.send_binary(bytes(rng.randrange(256) for _ in range(70000)))
        except (websocket.WebSocketException, OSError):
            pass
        hook.shutdown()
    # raw garbage on the Engine.IO path
    for body in (b"\x00\xff", b"4" * 1000, b'42["initialize",{'):
        requests.post(f"{server.url}/socket.io/?EIO=4&transport=polling", data=body, timeout=5)
    # still serving, end to end
    call_id = str(uuid.uuid4())
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload(call_id, duration=1.0))
        assert client.next()[0] == "info-consumer-ready"
        twilio_stream(server, call_id, mulaw_of(SPEECH))
        assert names(client.until_terminal())[-1] == "result-success"
    finally:
        client.close()
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


def test_sigint_and_sigterm_shut_down_cleanly(start_emulator):
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        idle = start_emulator()  # nobody connected
        idle.proc.send_signal(signum)
        assert idle.proc.wait(timeout=10) == 0
        assert "emulator stopped" in idle.output() and "error" not in idle.output()
        server = start_emulator()
        client = Signalling(server)  # a live connection does not hold the shutdown
        client.emit("initialize", initialize_payload())
        assert client.next()[0] == "info-consumer-ready"
        server.proc.send_signal(signum)
        assert server.proc.wait(timeout=10) == 0
        client.close()
        assert "emulator stopped" in server.output() and "Traceback" not in server.output()
