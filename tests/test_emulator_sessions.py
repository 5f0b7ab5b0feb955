"""Verify sessions, biometric answers, and every error event of docs/protocol.md §3.2/§3.3."""

from __future__ import annotations

import json
import uuid

import pytest
import websocket

from tests.emulator_client import (
    Signalling,
    initialize_payload,
    mulaw_of,
    names,
    twilio_stream,
    verify_payload,
)


def run_session(server, payload, audio, namespace="/socket.io/register", **stream):
    client = Signalling(server, namespace=namespace)
    try:
        client.emit("initialize", payload)
        first = client.next()
        if first[0] == "info-consumer-ready":
            twilio_stream(server, payload["metadata"]["call_id"], audio, **stream)
            return [first, *client.until_terminal()]
        assert client.next()[0] == "<disconnect>"
        return [first]
    finally:
        client.close()


def enroll(server, name="speech-a-8k-mono.wav", **kw):
    seen = run_session(server, initialize_payload(), mulaw_of(name, **kw))
    assert names(seen)[-1] == "result-success"
    return seen[-1][1][0]["credential"]


def test_verify_same_recording_succeeds(emulator):
    credential = enroll(emulator)
    seen = run_session(
        emulator, verify_payload(credential), mulaw_of("speech-a-8k-mono.wav"), namespace="/socket.io/verify"
    )
    name, (result, *extra) = seen[-1]
    assert name == "result-success"
    assert set(result) == {"event", "content", "score", "authenticity", "voice_audio_collected"}
    assert result["content"] == "Verification: approved"
    assert result["score"] >= 0.6 and result["authenticity"] >= 0.8
    assert 3.0 <= result["voice_audio_collected"] < 3.1


def test_verify_another_voice_fails_on_score(emulator):
    credential = enroll(emulator, "speech-ab-44k-stereo.wav", channel=0)
    seen = run_session(
        emulator,
        verify_payload(credential),
        mulaw_of("speech-ab-44k-stereo.wav", channel=1),
        namespace="/verify",
    )
    name, (result,) = seen[-1]
    assert name == "result-fail-score"
    assert set(result) == {"event", "content", "score", "authenticity", "voice_audio_collected"}
    assert result["score"] < 0.6


def test_pure_tone_fails_as_spoof(emulator):
    seen = run_session(emulator, initialize_payload(), mulaw_of("tone-440-8k-mono.wav"))
    name, (result,) = seen[-1]
    assert name == "result-fail-spoof"
    assert set(result) == {"event", "content", "authenticity", "voice_audio_collected"}
    assert result["authenticity"] < 0.8


def test_silence_then_stop_is_error_audio_naming_the_voice_collected(emulator):
    seen = run_session(emulator, initialize_payload(), mulaw_of("silence-8k-mono.wav"))
    name, (error,) = seen[-1]
    assert name == "error-audio"
    assert set(error) == {"event", "content"}
    assert "voice collected 0.00 s of 5 s" in error["content"]


def test_closing_the_twilio_socket_early_is_error_audio(emulator):
    seen = run_session(emulator, initialize_payload(), mulaw_of("speech-short-16k-mono.wav"), stop=False)
    assert names(seen)[-1] == "error-audio"
    assert "closed the audio WebSocket" in seen[-1][1][0]["content"]


def test_undecodable_twilio_audio_is_error_audio(emulator):
    call_id = str(uuid.uuid4())
    client = Signalling(emulator)
    try:
        client.emit("initialize", initialize_payload(call_id))
        assert client.next()[0] == "info-consumer-ready"
        ws = websocket.create_connection(emulator.twilio_url, timeout=5)
        ws.send(json.dumps({"event": "start", "start": {"callSid": call_id}}))
        ws.send(json.dumps({"event": "media", "media": {"payload": "***not base64***"}}))
        ws.close()
        seen = client.until_terminal()
    finally:
        client.close()
    assert names(seen)[-1] == "error-audio" and "base64" in seen[-1][1][0]["content"]


def bad(payload, path, value):
    section, field = path
    if value is KeyError:
        del payload[section][field]
    else:
        payload[section][field] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("metadata", "audio_protocol"), "rtp", "metadata.audio_protocol"),
        (("metadata", "audio_codec"), "pcm", "metadata.audio_codec"),
        (("metadata", "audio_format"), "wav", "metadata.audio_format"),
        (("metadata", "sample_rate"), "16000", "metadata.sample_rate"),
        (("metadata", "channels"), "2", "metadata.channels"),
        (("metadata", "call_id"), "call-1", "metadata.call_id"),
        (("metadata", "sample_format"), KeyError, "metadata.sample_format"),
        (("register_request", "model_hash"), "other-model", "register_request.model_hash"),
        (("register_request", "authenticity_threshold"), 1.5, "register_request.authenticity_threshold"),
        (("register_request", "audio_total_duration"), "5", "register_request.audio_total_duration"),
        (("register_request", "audio_total_duration"), KeyError, "register_request.audio_total_duration"),
    ],
)
def test_error_parameters_names_the_field(emulator, path, value, named):
    seen = run_session(emulator, bad(initialize_payload(), path, value), b"")
    name, (error,) = seen[0]
    assert name == "error-parameters"
    assert error["event"] == "error-parameters" and named in error["content"]


def test_integer_sample_rate_and_channels_are_accepted(emulator):
    payload = initialize_payload(duration=1.0)
    payload["metadata"].update(sample_rate=8000, channels=1)
    assert names(run_session(emulator, payload, mulaw_of("speech-a-8k-mono.wav")))[-1] == "result-success"


@pytest.mark.parametrize("payload", [None, "initialize", [1, 2], {"metadata": {}}, {"metadata": "x"}])
def test_garbage_initialize_is_error_parameters(emulator, payload):
    assert names(run_session(emulator, payload, b"")) == ["error-parameters"]


def test_verify_with_a_foreign_credential_is_error_parameters(emulator):
    seen = run_session(emulator, verify_payload("bm90IG91cnM="), b"", namespace="/verify")
    assert seen[0][0] == "error-parameters" and "verify_request.credential" in seen[0][1][0]["content"]


def test_call_id_in_use_is_error_parameters(emulator):
    call_id = str(uuid.uuid4())
    first = Signalling(emulator)
    second = Signalling(emulator)
    try:
        first.emit("initialize", initialize_payload(call_id))
        assert first.next()[0] == "info-consumer-ready"
        second.emit("initialize", initialize_payload(call_id))
        name, (error,) = second.next()
        assert name == "error-parameters" and "call_id" in error["content"]
    finally:
        first.close()
        second.close()


def test_second_initialize_ends_the_session(emulator):
    client = Signalling(emulator)
    try:
        client.emit("initialize", initialize_payload())
        client.emit("initialize", initialize_payload())
        seen = client.until_terminal()
    finally:
        client.close()
    assert names(seen)[-1] == "error-parameters" and "already" in seen[-1][1][0]["content"]


def test_consumer_not_ready_and_idle_timeouts(start_emulator):
    server = start_emulator("--consumer-timeout", "0.3", "--idle-timeout", "0.3")
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload())
        seen = client.until_terminal(timeout=5)
    finally:
        client.close()
    assert names(seen) == ["info-consumer-ready", "info-vad-status", "error-consumer-not-ready"]

    # the idle timeout on its own emulator: opening the audio channel within 0.3 s of consumer-ready is
    # not what this half tests, and a loaded machine can take longer
    server = start_emulator("--consumer-timeout", "30", "--idle-timeout", "0.3")
    call_id = str(uuid.uuid4())
    client = Signalling(server)
    try:
        client.emit("initialize", initialize_payload(call_id))
        assert client.next()[0] == "info-consumer-ready"
        ws = websocket.create_connection(server.twilio_url, timeout=5)
        ws.send(json.dumps({"event": "start", "start": {"callSid": call_id}}))
        seen = client.until_terminal(timeout=5)
        ws.close()
    finally:
        client.close()
    assert names(seen)[-1] == "error-audio" and "no audio for 0.3 s" in seen[-1][1][0]["content"]


def test_alive_namespace(emulator):
    client = Signalling(emulator, namespace="/socket.io/alive")
    client.emit("alive", {})
    name, (payload,) = client.next()
    assert name == "alive" and payload["event"] == "alive"
    assert client.next()[0] == "<disconnect>"


def test_an_audio_channel_claims_only_a_waiting_session_of_its_own_protocol():
    # The registry in isolation: both consumers rely on it to refuse a wrong call_id, a session that
    # declared the other protocol, and a second channel for the same call.
    import asyncio
    from types import SimpleNamespace

    from dasctl.emulator.sessions import SessionRegistry, UnclaimableSession

    registry = SessionRegistry()
    session = SimpleNamespace(
        call_id="c1",
        finished=asyncio.Event(),
        consumer_attached=False,
        request=SimpleNamespace(audio_protocol="twilio"),
    )
    registry.add(session)
    with pytest.raises(UnclaimableSession, match="no session is waiting for call_id c2"):
        registry.claim("c2", "twilio")
    with pytest.raises(UnclaimableSession, match="declared audio_protocol twilio"):
        registry.claim("c1", "audiohook")
    assert registry.claim("c1", "twilio") is session
    session.consumer_attached = True
    with pytest.raises(UnclaimableSession, match="already has an audio channel"):
        registry.claim("c1", "twilio")
    session.finished.set()
    with pytest.raises(UnclaimableSession, match="no session is waiting"):
        registry.claim("c1", "twilio")
