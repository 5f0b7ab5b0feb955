"""The AudioHook v2 consumer, driven by a client written from the protocol (websocket-client)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import pytest
import websocket

from tests.conftest import DATA, launch_emulator
from tests.emulator_client import (
    AudioHookClient,
    mulaw_of,
    names,
    start_session,
)

SPEECH = "speech-a-8k-mono.wav"
PAUSED = ("--start-paused", "--resume-after", "0.2")
DISCARD = ("--discard-to", "1.3")


# Sessions are told apart by call id and AudioHook session id, never by the emulator's log: the tests
# that need the same `opened` options share one emulator (each start costs a process's imports).
@pytest.fixture(scope="module")
def paused_server(tmp_path_factory):
    server = launch_emulator(tmp_path_factory.mktemp("emulator"), *PAUSED)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def discard_server(tmp_path_factory):
    server = launch_emulator(tmp_path_factory.mktemp("emulator"), *DISCARD)
    yield server
    server.stop()


def test_register_over_audiohook_open_opened_disconnect_close_closed(emulator):
    call_id, signalling = start_session(emulator)
    hook = AudioHookClient(emulator)
    try:
        opened = hook.open(call_id)
        assert opened == {
            "version": "2",
            "id": hook.session_id,
            "type": "opened",
            "seq": 1,
            "clientseq": 1,
            "parameters": {
                "startPaused": False,
                "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
            },
        }
        hook.send("ping")
        pong = hook.receive()
        assert (pong["type"], pong["seq"], pong["clientseq"], pong["parameters"]) == ("pong", 2, 2, {})
        disconnect = hook.stream(mulaw_of(SPEECH))
        assert disconnect is not None and disconnect["parameters"] == {"reason": "completed"}
        closed = hook.close()
        assert closed["type"] == "closed" and closed["clientseq"] == hook.seq
    finally:
        hook.shutdown()
    seen = signalling.until_terminal()
    assert names(seen)[-1] == "result-success"
    result = seen[-1][1][0]
    assert 2.0 <= result["voice_audio_collected"] < 2.3  # 200 ms frames may pass the target
    assert seen[-2][1][0]["vad_percentage"] >= 100


def test_client_close_before_enough_voice_is_error_audio(emulator):
    call_id, signalling = start_session(emulator, duration=5.0)
    hook = AudioHookClient(emulator)
    try:
        hook.open(call_id)
        assert hook.stream(mulaw_of(SPEECH)[:8000], wait=0.2) is None
        assert hook.close()["type"] == "closed"
    finally:
        hook.shutdown()
    seen = signalling.until_terminal()
    assert names(seen)[-1] == "error-audio"
    assert "voice collected" in seen[-1][1][0]["content"]


@pytest.mark.parametrize(
    ("override", "info"),
    [
        ({"seq": 5}, "seq 5 should be 2"),
        ({"serverseq": 9}, "serverseq 9"),
        ({"id": "00000000-1111-2222-3333-444444444444"}, "Audiohook-Session-Id"),
        ({"version": "1"}, "version"),
        ({"position": "PT1e-05S"}, "position"),
        ({"parameters": []}, "parameters"),
    ],
)
def test_envelope_violations_get_disconnect_error(emulator, override, info):
    call_id, signalling = start_session(emulator)
    hook = AudioHookClient(emulator)
    try:
        hook.open(call_id)
        hook.send("ping", **override)
        message = hook.receive()
        assert message["type"] == "disconnect"
        assert message["parameters"]["reason"] == "error"
        assert info in message["parameters"]["info"]
    finally:
        hook.shutdown()
    assert names(signalling.until_terminal())[-1] == "error-audio"


def test_malformed_and_oversize_frames_get_disconnect_error(start_emulator):
    server = start_emulator("--max-frame-bytes", "4000")
    for bad in ("{not json", b"\xff" * 4001):
        call_id, signalling = start_session(server)
        hook = AudioHookClient(server)
        try:
            hook.open(call_id)
            hook.ws.send(bad) if isinstance(bad, str) else hook.ws.send_binary(bad)
            message = hook.receive()
            assert (message["type"], message["parameters"]["reason"]) == ("disconnect", "error")
            assert hook.close()["type"] == "closed"
        finally:
            hook.shutdown()
        assert names(signalling.until_terminal())[-1] == "error-audio"
    # the server is still serving
    call_id, signalling = start_session(server)
    hook = AudioHookClient(server)
    try:
        hook.open(call_id)
        assert hook.stream(mulaw_of(SPEECH))["parameters"]["reason"] == "completed"
    finally:
        hook.shutdown()
    assert names(signalling.until_terminal())[-1] == "result-success"


def test_audio_before_open_and_unknown_conversation(emulator):
    hook = AudioHookClient(emulator)
    try:
        hook.ws.send_binary(b"\xff" * 160)
        message = hook.receive()
        assert message["type"] == "disconnect" and "audio before opened" in message["parameters"]["info"]
    finally:
        hook.shutdown()
    hook = AudioHookClient(emulator)
    try:
        message = hook.open(str(uuid.uuid4()))
        assert message["type"] == "disconnect" and "no session" in message["parameters"]["info"]
    finally:
        hook.shutdown()


def test_unsupported_media_is_refused(emulator):
    call_id, signalling = start_session(emulator)
    hook = AudioHookClient(emulator)
    try:
        message = hook.open(
            call_id, media=[{"type": "audio", "format": "L16", "channels": ["external"], "rate": 16000}]
        )
        assert message["type"] == "disconnect" and "PCMU" in message["parameters"]["info"]
    finally:
        hook.shutdown()
        signalling.close()


def test_probe_connection_is_opened(emulator):
    hook = AudioHookClient(emulator)
    try:
        assert hook.open("00000000-0000-0000-0000-000000000000")["type"] == "opened"
        assert hook.close()["type"] == "closed"
    finally:
        hook.shutdown()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-API-KEY": "wrong"}, 401),
        ({"X-API-KEY": None}, 401),
        ({"Audiohook-Session-Id": "not-a-uuid"}, 400),
        ({"Audiohook-Organization-Id": None}, 400),
    ],
)
def test_handshake_header_checks(emulator, headers, status):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        AudioHookClient(emulator, headers=headers)
    assert refused.value.status_code == status


SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"


def signed_headers(port, secret=SECRET, expires_in=60):
    """Sign like a Genesys client, for this emulator's path and authority."""
    organization, session, correlation = (str(uuid.uuid4()) for _ in range(3))
    created = int(time.time())
    nonce = base64.b64encode(uuid.uuid4().bytes).decode()
    params = (
        '("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
        f'"audiohook-correlation-id" "x-api-key");keyid="{API_KEY}";nonce="{nonce}";'
        f'alg="hmac-sha256";created={created};expires={created + expires_in}'
    )
    base = "\n".join(
        [
            '"@request-target": /audio/audiohook',
            f'"@authority": 127.0.0.1:{port}',
            f'"audiohook-organization-id": {organization}',
            f'"audiohook-session-id": {session}',
            f'"audiohook-correlation-id": {correlation}',
            f'"x-api-key": {API_KEY}',
            f'"@signature-params": {params}',
        ]
    )
    signature = base64.b64encode(hmac.new(base64.b64decode(secret), base.encode(), hashlib.sha256).digest())
    return {
        "Audiohook-Organization-Id": organization,
        "Audiohook-Session-Id": session,
        "Audiohook-Correlation-Id": correlation,
        "X-API-KEY": API_KEY,
        "Signature-Input": f"sig1={params}",
        "Signature": f"sig1=:{signature.decode()}:",
    }


def test_signatures_required_when_a_secret_is_configured(start_emulator, monkeypatch):
    monkeypatch.setenv("DASCTL_SERVE_AUDIOHOOK_SECRET", SECRET)
    server = start_emulator("--audiohook-api-key", API_KEY)
    assert SECRET not in server.output()
    headers = signed_headers(server.port)
    hook = AudioHookClient(
        server,
        headers=headers,
        session_id=headers["Audiohook-Session-Id"],
        organization_id=headers["Audiohook-Organization-Id"],
    )
    try:
        assert hook.open("00000000-0000-0000-0000-000000000000")["type"] == "opened"
    finally:
        hook.shutdown()
    unsigned = {"X-API-KEY": API_KEY}
    wrong_secret = signed_headers(server.port, secret=base64.b64encode(b"another secret").decode())
    expired = signed_headers(server.port, expires_in=-1)
    for headers in (unsigned, wrong_secret, expired):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            AudioHookClient(server, headers=headers)
        assert refused.value.status_code == 401


# --- `opened` with startPaused and discardTo (serve --start-paused, --discard-to) -----------------------
def test_start_paused_is_announced_and_audio_before_resumed_is_refused(paused_server):
    server = paused_server
    call_id, signalling = start_session(server)
    hook = AudioHookClient(server)
    try:
        assert hook.open(call_id)["parameters"]["startPaused"] is True
        disconnect = hook.stream(mulaw_of(SPEECH)[:1600], wait=5)  # a client that ignores startPaused
        assert disconnect is not None and disconnect["parameters"]["reason"] == "error"
        assert "opened said startPaused" in disconnect["parameters"]["info"]
    finally:
        hook.shutdown()
    assert names(signalling.until_terminal())[-1] == "error-audio"


def test_start_paused_client_is_resumed_after_its_paused(paused_server):
    server = paused_server
    call_id, signalling = start_session(server)
    hook = AudioHookClient(server)
    try:
        hook.open(call_id)
        hook.send("paused")
        assert hook.receive()["type"] == "resume"
        hook.send("resumed", {"start": "PT0S", "discarded": "PT0S"})
        disconnect = hook.stream(mulaw_of(SPEECH))
        assert disconnect is not None and disconnect["parameters"]["reason"] == "completed"
        hook.close()
    finally:
        hook.shutdown()
    assert names(signalling.until_terminal())[-1] == "result-success"


def test_discard_to_is_announced_and_checked(discard_server):
    server = discard_server
    audio = mulaw_of(SPEECH)
    # a client that ignores discardTo sends audio from PT0S
    call_id, signalling = start_session(server)
    hook = AudioHookClient(server)
    try:
        assert hook.open(call_id)["parameters"]["discardTo"] == "PT1.3S"
        disconnect = hook.stream(audio[:1600], wait=5)
        assert disconnect is not None and "discardTo PT1.3S" in disconnect["parameters"]["info"]
    finally:
        hook.shutdown()
    assert names(signalling.until_terminal())[-1] == "error-audio"
    # one that skips six 200 ms frames, says so, and counts them in every position is served
    call_id, signalling = start_session(server)
    hook = AudioHookClient(server)
    try:
        hook.open(call_id)
        hook.position = 1.2
        hook.send("discarded", {"start": "PT0S", "discarded": "PT1.2S"})
        whole_frames = audio[9600 : 9600 + 1600 * ((len(audio) - 9600) // 1600)]  # .2f positions stay exact
        disconnect = hook.stream(whole_frames)
        assert disconnect is not None and disconnect["parameters"]["reason"] == "completed"
        assert hook.close()["type"] == "closed"
    finally:
        hook.shutdown()
    assert names(signalling.until_terminal())[-1] == "result-success"


def test_discard_to_a_position_that_forgets_the_discarded_audio_is_refused(discard_server):
    server = discard_server
    call_id, signalling = start_session(server)
    hook = AudioHookClient(server)
    try:
        hook.open(call_id)
        hook.send("discarded", {"start": "PT0S", "discarded": "PT1.2S"})  # position still PT0S
        disconnect = hook.receive()
        assert disconnect["type"] == "disconnect"
        assert "should be PT1.2S" in disconnect["parameters"]["info"]
    finally:
        hook.shutdown()


@pytest.mark.parametrize("flags", [PAUSED, DISCARD])
def test_dasctl_honours_what_opened_asks(request, dasctl, flags):
    server = request.getfixturevalue("paused_server" if flags == PAUSED else "discard_server")
    run = dasctl(
        "register", str(DATA / SPEECH), "--protocol", "audiohook", "--speed", "0", "--no-store", "--json",
        env=server.client_env(),
    )
    assert run.returncode == 0, run.stderr
    assert '"result-success"' in run.stdout
    if "--start-paused" in flags:
        assert "paused by the service" in run.stderr
