"""Many sessions in one process (watch -j up to 256): one pacing clock, a few reading threads, one TLS
context; real sessions against the emulator on 127.0.0.1, real WAV files."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from dasctl import events, session
from dasctl.errors import ExitCode
from tests.conftest import DATA, Emulator
from tests.test_session import Parts, fast

SPEECH = DATA / "speech-a-8k-mono.wav"
SESSIONS = 12


def transcoded(path: Path) -> bytes:
    """What dasctl sends of the whole recording (the synchronous path, with its read-ahead thread)."""
    from dasctl.audio import open_audio

    with open_audio(path) as audio:
        return b"".join(audio.frames())


@pytest.mark.parametrize("protocol", ["twilio", "audiohook"])
def test_sessions_at_once_read_on_a_few_shared_threads_and_keep_exactly_what_they_sent(
    emulator: Emulator, protocol: str
) -> None:
    """12 sessions in one loop (two of them paced at 8x, through the pacing clock): each gets its result,
    keeps the mu-law it sent, and no session starts a reading thread of its own."""
    from dasctl.audio import open_audio

    parts = Parts(emulator)
    threads_seen: set[str] = set()

    async def one(index: int) -> tuple[session.RegisterOutcome, bytes]:
        with open_audio(SPEECH) as audio:
            kept = audio.keep_frames(1 << 20)
            options = fast(protocol=protocol, speed=8 if index < 2 else 0)
            outcome = await session.register_audio(audio, options, parts.profile, parts.tokens, parts.network)
            return outcome, bytes(kept)

    async def watch_threads(stop: asyncio.Event) -> None:
        while not stop.is_set():
            threads_seen.update(thread.name for thread in threading.enumerate())
            await asyncio.sleep(0.01)

    async def main() -> list[tuple[session.RegisterOutcome, bytes]]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_threads(stop))
        try:
            return await asyncio.gather(*(one(index) for index in range(SESSIONS)))
        finally:
            stop.set()
            await watcher

    results = asyncio.run(main())
    whole = transcoded(SPEECH)
    for outcome, kept in results:
        assert outcome.result.name == events.RESULT_SUCCESS and outcome.exit_code == ExitCode.OK
        # at speed 0 the result can overtake the last frames sent, so the outcome may count fewer (and
        # it counts in milliseconds: 4 bytes of rounding)
        assert len(kept) >= outcome.audio_seconds_sent * 8000 - 4 > 0
        assert kept == whole[: len(kept)]  # the frames, in order, as the synchronous path makes them
    assert "dasctl-audio-read" not in threads_seen  # the per-stream read-ahead thread of transcode
    readers = {name for name in threads_seen if name.startswith("dasctl-audio-readers")}
    assert 1 <= len(readers) <= 4


def test_a_recording_read_block_by_block_gives_the_frames_of_frames(tmp_path: Path) -> None:
    """frame_blocks + next_block (the sessions' way) and frames() (transcode's) send the same bytes in
    the same frames; a stream closed under a reader says so instead of reading a closed file."""
    from dasctl.audio import open_audio

    recording = tmp_path / "call.wav"
    shutil.copyfile(SPEECH, recording)
    with open_audio(recording) as audio:
        expected = list(audio.frames(20))
    with open_audio(recording) as audio:
        blocks = audio.frame_blocks(20, read_ahead=False)
        got: list[bytes] = []
        while (block := audio.next_block(blocks)) is not None:
            got.extend(audio.take(block))
    assert got == expected and all(len(frame) == 160 for frame in got[:-1])
    audio = open_audio(recording)
    blocks = audio.frame_blocks(20, read_ahead=False)
    assert audio.next_block(blocks)
    audio.close()
    with pytest.raises(ValueError, match="closed while it was being read"):
        audio.next_block(blocks)


def test_a_wake_event_ends_a_long_pacing_wait_at_once() -> None:
    """The service closing the channel (or AudioHook's pause) ends the wait for an 8 s frame's deadline."""
    from dasctl.channels.pacing import WakeEvent, pacing_clock

    async def main() -> tuple[bool, bool, bool]:
        clock = pacing_clock()
        assert clock is pacing_clock()  # one per loop, shared by every session
        closed, paused = WakeEvent(), WakeEvent()
        asyncio.get_running_loop().call_later(0.05, closed.set)
        woken = await asyncio.wait_for(clock.wait(3600.0, closed, paused), 30)
        due = await clock.wait(0.01, paused)  # nothing set: the deadline came
        at_once = await clock.wait(3600.0, closed)  # already set: no wait at all
        return woken, due, at_once

    assert asyncio.run(main()) == (True, False, True)


def test_every_session_shares_one_tls_context_until_the_ca_bundle_changes(tmp_path: Path) -> None:
    import certifi

    from dasctl.net import NetworkSettings

    assert NetworkSettings().ssl_context() is NetworkSettings().ssl_context()
    bundle = tmp_path / "ca.pem"
    pem = Path(certifi.where()).read_text()
    bundle.write_text(pem)
    settings = NetworkSettings(ca_bundle=str(bundle), ca_bundle_source="flag")
    first = settings.ssl_context()
    assert settings.ssl_context() is first
    first.load_trust()  # what the first handshake does (tests/test_auth.py)
    certificates = first.cert_store_stats()["x509_ca"]
    bundle.write_text(pem.split("-----END CERTIFICATE-----", 1)[0] + "-----END CERTIFICATE-----\n")
    rotated = settings.ssl_context()
    assert rotated is not first
    rotated.load_trust()
    assert rotated.cert_store_stats()["x509_ca"] == 1 < certificates
