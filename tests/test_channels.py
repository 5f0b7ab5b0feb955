"""The audio-channel clients: the AudioHook signature, its envelope, and the channels against the emulator."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator

import pytest

from dasctl.channels import audiohook, httpsig
from dasctl.errors import ExitCode
from tests.conftest import DATA, Emulator, launch_emulator

# The vector published with Genesys' AudioHook reference implementation (signature-builder test).
VECTOR_COMPONENTS = [
    ("@request-target", "/api/v1/voicebiometrics/ws"),
    ("host", "audiohook.example.com"),
    ("audiohook-organization-id", "d7934305-0972-4844-938e-9060eef73d05"),
    ("audiohook-session-id", "30b0e395-84d3-4570-ac13-9a62d8f514c0"),
    ("audiohook-correlation-id", "e160e428-53e2-487c-977d-96989bf5c99d"),
    ("x-api-key", "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"),
]


def test_signature_matches_the_published_audiohook_vector() -> None:
    headers = httpsig.sign(
        VECTOR_COMPONENTS,
        keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
        key=httpsig.secret_key("TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="),
        created=1641013200,
        expires=3282026430,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
    )
    assert headers["Signature"] == "sig1=:zupMJUMfd/kMuvKc5zhRyfJPE3jTROuz1S1hn8SCTpE=:"
    assert headers["Signature-Input"] == (
        'sig1=("@request-target" "host" "audiohook-organization-id" "audiohook-session-id" '
        '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
        'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430'
    )


def test_a_different_secret_gives_a_different_signature() -> None:
    common = {"keyid": "k", "created": 1, "expires": 31, "nonce": "n" * 24}
    one = httpsig.sign(VECTOR_COMPONENTS, key=b"one", **common)  # type: ignore[arg-type]
    two = httpsig.sign(VECTOR_COMPONENTS, key=b"two", **common)  # type: ignore[arg-type]
    assert one["Signature"] != two["Signature"]
    assert one["Signature-Input"] == two["Signature-Input"]


def test_fresh_signatures_have_a_long_nonce_and_a_30_second_lifetime() -> None:
    headers = httpsig.audiohook_signature(
        "wss://Example.COM:443/audio/audiohook?x=1",
        {
            "Audiohook-Organization-Id": "o",
            "Audiohook-Session-Id": "s",
            "Audiohook-Correlation-Id": "c",
            "X-API-KEY": "key",
        },
        api_key="key",
        secret=base64.b64encode(b"secret").decode(),
    )
    params = headers["Signature-Input"]
    assert params.startswith('sig1=("@request-target" "@authority" "audiohook-organization-id"')
    nonce = re.search(r';nonce="([^"]+)"', params)
    created = re.search(r";created=(\d+)", params)
    expires = re.search(r";expires=(\d+)", params)
    assert nonce and created and expires
    assert len(nonce.group(1)) >= 22
    assert int(expires.group(1)) - int(created.group(1)) == 30


@pytest.mark.parametrize(
    ("url", "target", "authority"),
    [
        ("ws://127.0.0.1:7272/audio/audiohook", "/audio/audiohook", "127.0.0.1:7272"),
        ("wss://Host.example:443/a?b=c", "/a?b=c", "host.example"),
        ("ws://host:80", "/", "host"),
    ],
)
def test_request_target_and_authority(url: str, target: str, authority: str) -> None:
    assert httpsig.request_target(url) == target
    assert httpsig.authority(url) == authority


def test_secret_key_is_base64_decoded_when_it_is_base64() -> None:
    assert httpsig.secret_key(base64.b64encode(b"\x00\x01key").decode()) == b"\x00\x01key"
    assert httpsig.secret_key("not base64!") == b"not base64!"


@pytest.mark.parametrize(
    ("samples", "text"),
    [
        (0, "PT0S"),
        (22400, "PT2.8S"),
        (1, "PT0.000125S"),
        (8, "PT0.001S"),
        (93407, "PT11.675875S"),  # not rounded to milliseconds
        (98_764_800, "PT12345.6S"),
        (40000, "PT5S"),
        (8000 * 10**7 + 3, "PT10000000.000375S"),  # never in exponent form
    ],
)
def test_positions_are_exact_iso_durations_from_the_sample_count(samples: int, text: str) -> None:
    assert audiohook.position_text(samples) == text


def test_client_messages_are_numbered_without_gaps_and_carry_serverseq_and_position() -> None:
    client = audiohook.AudioHookClient(None, "ws://h/a", "call", "key", None)  # type: ignore[arg-type]
    first = client.message("open", {"x": 1})
    client.serverseq, client.samples_sent = 3, 93407
    second = client.message("ping")
    assert [first["seq"], second["seq"]] == [1, 2]
    assert first["version"] == "2" and first["id"] == client.session_id
    assert second["serverseq"] == 3 and second["position"] == "PT11.675875S"
    assert second["parameters"] == {}


# --- against the emulator's AudioHook consumer, with signatures required ------------------------------
SECRET = base64.b64encode(b"an audiohook client secret, 32 b").decode()


@pytest.fixture(scope="module")
def signing_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One for the module: each test's verdict is its own command's exit code, not the emulator's log."""
    secret_file = tmp_path_factory.mktemp("audiohook") / "audiohook-secret"
    secret_file.write_text(SECRET + "\n")
    emulator = launch_emulator(secret_file.parent, "--audiohook-secret-file", str(secret_file))
    yield emulator
    emulator.stop()


def test_register_over_audiohook_with_a_signed_handshake(signing_emulator: Emulator, dasctl) -> None:  # type: ignore[no-untyped-def]
    env = {**signing_emulator.client_env(), "DASCTL_AUDIOHOOK_SECRET": SECRET}
    run = dasctl(
        "register",
        str(DATA / "speech-a-8k-mono.wav"),
        "--protocol",
        "audiohook",
        "--speed",
        "0",
        "--json",
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert '"event":"result-success"' in run.stdout
    assert '"protocol":"audiohook"' in run.stdout


def test_a_wrong_audiohook_secret_is_an_authentication_error(signing_emulator: Emulator, dasctl) -> None:  # type: ignore[no-untyped-def]
    wrong = base64.b64encode(b"some other secret").decode()
    env = {**signing_emulator.client_env(), "DASCTL_AUDIOHOOK_SECRET": wrong}
    run = dasctl(
        "register",
        str(DATA / "speech-a-8k-mono.wav"),
        "--protocol",
        "audiohook",
        "--speed",
        "0",
        env=env,
        timeout=60,
    )
    assert run.returncode == ExitCode.AUTH, run.stderr
    assert "refused the connection (HTTP 401)" in run.stderr
    assert "Traceback" not in run.stderr
    assert wrong not in run.stderr


def test_a_missing_audiohook_secret_is_refused_too(signing_emulator: Emulator, dasctl) -> None:  # type: ignore[no-untyped-def]
    run = dasctl(
        "register",
        str(DATA / "speech-a-8k-mono.wav"),
        "--protocol",
        "audiohook",
        "--speed",
        "0",
        env=signing_emulator.client_env(),
        timeout=60,
    )
    assert run.returncode == ExitCode.AUTH, run.stderr


def test_open_websocket_names_the_url_when_nothing_listens() -> None:
    import aiohttp

    from dasctl.channels.twilio import open_websocket
    from dasctl.errors import ServiceUnavailable
    from tests.conftest import free_port

    async def attempt() -> None:
        async with aiohttp.ClientSession() as http:
            await open_websocket(http, f"ws://127.0.0.1:{free_port()}/audio/twilio", "twilio", 5.0)

    with pytest.raises(ServiceUnavailable, match="cannot open the twilio audio channel at ws://127.0.0.1"):
        asyncio.run(attempt())


def test_a_pause_moves_later_deadlines_so_nothing_bursts_after_resume() -> None:
    from dasctl.audio import Pacer

    now = [100.0]
    pacer = Pacer(1.0, clock=lambda: now[0])
    assert pacer.delay(0.0) == 0.0
    now[0] = 101.0  # 1 s of audio sent in 1 s, then held for 3 s
    now[0] = 104.0
    pacer.shift(3.0)
    assert pacer.delay(1.0) == 0.0
    assert pacer.delay(1.2) == pytest.approx(0.2)  # without the shift: 0, a burst to catch up
    assert pacer.delay(3.0) == pytest.approx(2.0)


def test_a_disconnect_before_opened_from_the_emulator_gets_the_close_transaction(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The emulator refuses `open` for an unknown call: dasctl closes, waits for `closed`, says why."""
    import logging
    import uuid

    import aiohttp

    from dasctl.errors import ServiceUnavailable

    unknown_call = str(uuid.uuid4())

    async def attempt() -> audiohook.AudioHookClient:
        async with aiohttp.ClientSession() as http:
            client = audiohook.AudioHookClient(
                http, emulator.audiohook_url, unknown_call, "dasctl-demo-audiohook-key", None
            )
            with pytest.raises(ServiceUnavailable) as refused:
                await client.connect()
            assert "before opening the session" in str(refused.value)
            assert f"no session is waiting for call_id {unknown_call}" in str(refused.value)  # the info
            return client

    with caplog.at_level(logging.DEBUG, logger="dasctl.channels.audiohook"):
        client = asyncio.run(attempt())
    server_said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("audiohook: server")]
    assert [line.split()[2] for line in server_said] == ["disconnect", "closed"]  # it answered our close
    assert client.seq == 2  # open, then close
    assert client.ws is not None and client.ws.closed


@pytest.mark.parametrize(
    ("text", "samples"),
    [
        ("PT2.5S", 20000),
        ("PT0S", 0),
        ("PT1M2.5S", 500000),
        ("PT1H", 28800000),
        ("PT0.0000625S", 1),  # half a sample rounds up, as the reference client's Math.round does
        ("PT11.675875S", 93407),
        ("2.5", None),
        ("PT", None),
        ("PT-1S", None),
        (2.5, None),
    ],
)
def test_audiohook_durations_are_read_to_the_nearest_sample(text: object, samples: int | None) -> None:
    from dasctl.channels.positions import duration_samples

    assert duration_samples(text) == samples


def test_replayable_audio_sends_the_first_frames_again_until_its_limit() -> None:
    from dasctl.stream import ChainedAudio, ReplayableAudio

    class Frames:
        duration = 1.0

        def frames(self, frame_ms: int = 20) -> list[bytes]:
            return [bytes([i]) * 160 for i in range(10)]

    replay = ReplayableAudio(ChainedAudio([Frames(), Frames()]), limit_bytes=800)
    first = replay.frames(20)
    assert [next(first) for _ in range(3)] == [bytes([i]) * 160 for i in range(3)]
    assert replay.rewind()  # 480 bytes read: all kept
    again = list(replay.frames(20))
    assert again == [bytes([i]) * 160 for i in range(10)] * 2  # from the very start, nothing lost
    assert not replay.rewind()  # past 800 bytes: a third try could not start from the start
    assert ChainedAudio([Frames(), Frames()]).duration == 2.0
