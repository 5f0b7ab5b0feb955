"""The socket driver as a library: register_audio against the real emulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dasctl import events, session
from dasctl.errors import AuthError, ExitCode, ServiceUnavailable
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"


class Parts:
    """Profile, network and tokens for an emulator, as the CLI builds them."""

    def __init__(self, emulator: Emulator) -> None:
        from dasctl.auth import TokenProvider
        from dasctl.config import load_profile
        from dasctl.net import NetworkSettings

        env = {**os.environ, **emulator.client_env()}
        self.profile = load_profile("local", env=env)
        self.network = NetworkSettings.from_profile(self.profile)
        self.tokens = TokenProvider(self.profile, self.network, env=env)


def run(
    emulator: Emulator,
    options: session.RegisterOptions,
    path: Any = SPEECH,
    tokens: Any = None,
    progress: list[session.Progress] | None = None,
) -> session.RegisterOutcome:
    from dasctl.audio import open_audio

    parts = Parts(emulator)
    on_progress = progress.append if progress is not None else None

    async def main() -> session.RegisterOutcome:
        with open_audio(path) as audio:
            return await session.register_audio(
                audio, options, parts.profile, tokens or parts.tokens, parts.network, on_progress
            )

    return asyncio.run(main())


def fast(**changes: Any) -> session.RegisterOptions:
    from dasctl.config import DEMO_MODEL_HASH

    return session.RegisterOptions(**{"speed": 0, "model_hash": DEMO_MODEL_HASH, "timeout": 10, **changes})


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_success_returns_what_the_service_sent(emulator: Emulator, protocol: str) -> None:
    progress: list[session.Progress] = []
    call_id = "0b6c8a54-2c1b-4c43-9f43-6f1e1f2b8a11"
    outcome = run(emulator, fast(protocol=protocol, call_id=call_id), progress=progress)
    result = outcome.result
    assert isinstance(result, events.SessionResult)
    assert result.name == events.RESULT_SUCCESS and outcome.exit_code == ExitCode.OK
    assert result.credential and result.content == events.REGISTRATION_APPROVED_CONTENT
    assert result.raw[events.F_CREDENTIAL] == result.credential
    assert result.authenticity == result.raw[events.F_AUTHENTICITY]
    assert result.voice_audio_collected is not None and result.voice_audio_collected >= 5.0
    assert result.collected_audio and len(result.collected_audio) > 5 * 8000 * 0.9
    assert outcome.call_id == call_id and outcome.protocol == protocol
    assert 5.0 <= outcome.audio_seconds_sent <= 11.7
    assert set(outcome.timings) == {"connected", "consumer_ready", "audio_done", "finished"}
    states = [p.state for p in progress]
    seen = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
    assert seen[:3] == [session.CONNECTING, session.INITIALIZING, session.STREAMING]
    assert seen[-1] == session.DONE and progress[-1].event is result
    vad = [p.event.audio_seconds for p in progress if isinstance(p.event, events.VadStatus)]
    assert vad[0] == 0.0 and vad == sorted(vad) and vad[-1] >= 5.0
    assert all(p.call_id == call_id for p in progress)


def test_not_enough_voice_is_returned_as_error_audio(emulator: Emulator) -> None:
    outcome = run(emulator, fast(), path=DATA / "speech-short-16k-mono.wav")
    assert outcome.result.name == events.ERROR_AUDIO
    assert outcome.exit_code == ExitCode.REJECTED
    assert "voice" in outcome.result.content


def test_a_tone_is_a_spoof(emulator: Emulator) -> None:
    outcome = run(emulator, fast(), path=DATA / "tone-440-8k-mono.wav")
    assert outcome.result.name == events.RESULT_FAIL_SPOOF
    assert outcome.exit_code == ExitCode.REJECTED


class FirstTokenRefused:
    """A token source whose first token the service refuses; then the real provider's."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[tuple[bool, str | None]] = []

    def token(self, force_refresh: bool = False, refused: str | None = None) -> Any:
        from dasctl.auth import Token

        self.calls.append((force_refresh, refused))
        if not force_refresh:
            return Token("not-a-valid-token", "Bearer", time.time() + 3600, "cache")
        return self.real.token(force_refresh=True, refused=refused)


def test_a_refused_token_is_refreshed_once_and_the_session_goes_on(emulator: Emulator) -> None:
    tokens = FirstTokenRefused(Parts(emulator).tokens)
    outcome = run(emulator, fast(), tokens=tokens)
    assert outcome.exit_code == ExitCode.OK
    # the refresh names the refused token, so sessions refused together share one new token
    assert tokens.calls == [(False, None), (True, "not-a-valid-token")]


def test_a_token_refused_twice_is_an_auth_error(start_emulator: Any) -> None:
    emulator = start_emulator("--fault-refuse-tokens")
    with pytest.raises(AuthError, match="refused the access token"):
        run(emulator, fast())


@pytest.fixture
def bounded() -> Iterator[None]:
    started = time.monotonic()
    yield
    # a fault must end the session promptly, not hang: generous bound, not a benchmark
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (("--fault-drop-signalling-after", "0.3"), "dropped the session"),
        (("--fault-reset-audio-after", "4000"), "audio channel was cut"),
        (("--fault-no-consumer-ready",), "audio consumer ready within 2 s"),
        (("--fault-token-5xx",), "token endpoint"),
    ],
)
def test_faults_raise_service_unavailable(
    start_emulator: Any, bounded: None, flags: tuple[str, ...], match: str
) -> None:
    emulator = start_emulator(*flags)
    with pytest.raises(ServiceUnavailable, match=match) as caught:
        run(emulator, fast(speed=1, timeout=2))
    assert caught.value.exit_code == ExitCode.UNAVAILABLE


def test_a_transient_error_event_is_returned_with_exit_6(start_emulator: Any) -> None:
    emulator = start_emulator("--fault-error-event", "error-das-Peak")
    outcome = run(emulator, fast())
    assert outcome.result.name == events.ERROR_DAS_PEAK and outcome.exit_code == ExitCode.UNAVAILABLE


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_cancelling_closes_both_channels_promptly(emulator: Emulator, protocol: str) -> None:
    from dasctl.audio import open_audio

    parts = Parts(emulator)

    async def main() -> float:
        streaming = asyncio.Event()

        def on_progress(progress: session.Progress) -> None:
            if progress.state == session.STREAMING and progress.audio_seconds_sent > 0.5:
                streaming.set()

        with open_audio(SPEECH) as audio:
            task = asyncio.create_task(
                session.register_audio(
                    audio,
                    fast(speed=1, protocol=protocol),
                    parts.profile,
                    parts.tokens,
                    parts.network,
                    on_progress,
                )
            )
            await asyncio.wait_for(streaming.wait(), 10)
            cancelled_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert left == [], left
            return time.monotonic() - cancelled_at

    assert asyncio.run(main()) < 5


@pytest.mark.parametrize("ours", [True, False])
def test_an_attachment_in_flight_at_disconnect_is_dropped_not_raised(ours: bool) -> None:
    """A binary event cut by the disconnect (CI once printed this as an unretrieved task's traceback)."""
    import socketio

    async def scenario() -> None:
        client = session._async_client_class()() if ours else socketio.AsyncClient()
        client.connected, client.eio.state = True, "connected"
        client.namespaces = {"/socket.io/register": "sid"}
        # result-success as python-socketio sends it: a placeholder packet, then its attachment
        placeholder = '51-/socket.io/register,["result-success",{"_placeholder":true,"num":0}]'
        await client._handle_eio_message(placeholder)
        assert client._binary_packet is not None  # waiting for its attachment
        client.eio.state = "disconnecting"
        await client._handle_eio_disconnect("client disconnect")  # what closing the connection does
        await client._handle_eio_message(b"}\x7f\x7f audio the disconnect cut off")

    if ours:
        asyncio.run(scenario())  # dropped: nothing raised, nothing for asyncio to print at exit
    else:
        with pytest.raises(ValueError):  # python-socketio's own client, as it is
            asyncio.run(scenario())

    async def connected_garbage() -> None:  # while connected, a bad message still fails loudly
        client = session._async_client_class()()
        client.connected, client.eio.state = True, "connected"
        await client._handle_eio_message(b"}")

    with pytest.raises(ValueError):
        asyncio.run(connected_garbage())
