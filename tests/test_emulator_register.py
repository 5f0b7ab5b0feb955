"""The emulator against docs/protocol.md: token endpoint, handshake, and the seed run of §7 over twilio."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from tests.emulator_client import (
    DEMO_MODEL_HASH,
    Signalling,
    initialize_payload,
    mulaw_of,
    names,
    socketio_client,
    token,
    twilio_stream,
)


def post_token(emulator, **form):
    return requests.post(emulator.auth_url, data=form, timeout=5)


def test_token_endpoint_issues_bearer_tokens_with_expiry(emulator):
    response = post_token(
        emulator, client_id="dasctl-demo", client_secret="dasctl-demo-secret", grant_type="client_credentials"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert len(body["access_token"]) >= 32
    assert body["expires_in"] == 3600
    assert response.headers["Cache-Control"] == "no-store"


def test_token_endpoint_errors_follow_rfc6749(emulator):
    wrong = post_token(
        emulator, client_id="dasctl-demo", client_secret="nope", grant_type="client_credentials"
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    unknown = post_token(
        emulator, client_id="someone", client_secret="dasctl-demo-secret", grant_type="client_credentials"
    )
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")
    grant = post_token(
        emulator, client_id="dasctl-demo", client_secret="dasctl-demo-secret", grant_type="password"
    )
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    missing = post_token(emulator, client_id="dasctl-demo", client_secret="dasctl-demo-secret")
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    as_json = requests.post(emulator.auth_url, json={"grant_type": "client_credentials"}, timeout=5)
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")


def test_no_expires_in_and_expiring_tokens(start_emulator):
    import time

    server = start_emulator("--token-ttl", "0.5", "--no-expires-in")
    response = post_token(
        server, client_id="dasctl-demo", client_secret="dasctl-demo-secret", grant_type="client_credentials"
    )
    body = response.json()
    assert "expires_in" not in body
    authorization = f"{body['token_type']} {body['access_token']}"
    time.sleep(0.7)
    try:
        Signalling(server, authorization=authorization)
        raise AssertionError("an expired token was accepted")
    except Exception as error:  # socketio.exceptions.ConnectionError
        assert "unauthorized" in str(error) or "namespace" in str(error).lower()


def test_handshake_refuses_missing_and_wrong_tokens(emulator):
    import time

    import socketio

    namespace = "/socket.io/register"
    for authorization in (None, "Bearer not-a-token", token(emulator).replace("Bearer ", "Basic ")):
        client = socketio_client()
        refusals: list = []
        client.on("connect_error", lambda data=None, seen=refusals: seen.append(data), namespace=namespace)
        headers = {} if authorization is None else {"Authorization": authorization}
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(
                emulator.url,
                headers=headers,
                namespaces=[namespace],
                transports=["websocket"],
                socketio_path="socket.io",
                wait_timeout=5,
            )
        deadline = time.monotonic() + 5
        while not refusals and time.monotonic() < deadline:
            time.sleep(0.01)
        client.disconnect()
        # docs/protocol.md §2: a refused token is connect_error with {"message": "unauthorized"}
        assert refusals == [{"message": "unauthorized"}], (authorization, refusals)


def test_connect_error_says_unauthorized(emulator):
    import socketio

    errors = []
    client = socketio_client()

    @client.on("connect_error", namespace="/socket.io/register")
    def on_error(data=None):
        errors.append(data)

    try:
        client.connect(
            emulator.url,
            headers={"Authorization": "Bearer bad"},
            namespaces=["/socket.io/register"],
            transports=["websocket"],
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError:
        pass
    finally:
        client.disconnect()
    assert errors == [{"message": "unauthorized"}]


def test_seed_sequence_for_five_seconds_of_speech(emulator):
    """docs/protocol.md §7, field by field, speech sent as fast as possible."""
    call_id = str(uuid.uuid4())
    client = Signalling(emulator)
    try:
        client.emit("initialize", initialize_payload(call_id))
        name, (ready,) = client.next()
        assert name == "info-consumer-ready"
        assert ready == {
            "event": "info-consumer-ready",
            "content": "Audio consumer for provided audio protocol is ready",
        }
        name, (first,) = client.next()
        assert (name, first) == (
            "info-vad-status",
            {
                "event": "info-vad-status",
                "content": "Voice activity detection percentage",
                "audio_seconds": 0.0,
                "vad_percentage": 0,
            },
        )
        audio = mulaw_of("speech-a-8k-mono.wav")
        sent, close_code = twilio_stream(emulator, call_id, audio)
        assert close_code == 1000  # the server closes when it has enough audio [doc]
        seen = client.until_terminal()
    finally:
        client.close()

    statuses = [args[0] for name, args in seen if name == "info-vad-status"]
    assert names(seen) == ["info-vad-status"] * len(statuses) + ["result-success"]
    for status in statuses:
        assert set(status) == {"event", "content", "audio_seconds", "vad_percentage"}
        assert status["event"] == "info-vad-status"
        assert status["content"] == "Voice activity detection percentage"
        assert status["audio_seconds"] == round(status["audio_seconds"], 2)
        assert status["vad_percentage"] == int(100 * status["audio_seconds"] / 5.0)
    seconds = [status["audio_seconds"] for status in statuses]
    assert seconds == sorted(seconds) and 0 < seconds[0] <= 0.1  # first voice is reported at once
    steps = [b - a for a, b in zip(seconds[1:-2], seconds[2:-1], strict=True)]
    assert all(0.49 <= step <= 0.6 for step in steps), steps  # about every 0.5 s of voice
    assert 5.0 <= seconds[-1] < 5.25 and statuses[-1]["vad_percentage"] >= 100
    assert len(statuses) in range(10, 13)

    result, *extra = seen[-1][1]
    assert set(result) == {"event", "content", "authenticity", "voice_audio_collected", "credential"}
    assert result["event"] == "result-success"
    assert result["content"] == "Registration: approved"
    assert 0.8 <= result["authenticity"] <= 1.0
    assert result["voice_audio_collected"] == seconds[-1]
    credential = json.loads(base64.b64decode(result["credential"]))
    assert credential["model_hash"] == DEMO_MODEL_HASH
    (collected,) = extra  # second argument: the collected audio, raw 8 kHz mu-law
    assert isinstance(collected, bytes) and collected == audio[: len(collected)]
    assert 5.0 <= len(collected) / 8000 <= sent / 8000


def test_every_namespace_alias_registers(emulator):
    for namespace in ("/register", "/"):
        call_id = str(uuid.uuid4())
        client = Signalling(emulator, namespace=namespace)
        try:
            client.emit("initialize", initialize_payload(call_id, duration=1.0))
            assert client.next()[0] == "info-consumer-ready"
            twilio_stream(emulator, call_id, mulaw_of("speech-b-16k-mono.wav"))
            assert names(client.until_terminal())[-1] == "result-success"
        finally:
            client.close()
