"""Every format ffmpeg reads: our decode agrees with ffmpeg's, each enrolls against the emulator, from a
file and from a pipe, and a damaged file gets one clear line and exit 3 (fixtures: tests/data/formats/,
made by tests/data/make-fixtures.sh)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dasctl.audio import open_audio
from dasctl.audio.parts import seam_holds
from dasctl.audio.segments import split_points
from tests.conftest import DATA, Emulator

FORMATS = DATA / "formats"
Run = Callable[..., subprocess.CompletedProcess[Any]]
STEREO = ["call.mp3", "call.m4a", "call-faststart.m4a", "call.aac", "call.opus", "call.ogg", "call.flac",
          "call.wma", "call.mp4", "call.mkv", "call.webm"]
MONO = ["call.amr", "call.gsm"]  # the 8 kHz telephone codecs, speaker A alone
#: Lossy codecs that libsndfile decodes with another decoder than ffmpeg's (Opus: libopus, the reference,
#: against FFmpeg's own): the same speech, not the same samples.
OTHER_DECODER = {"call.opus"}

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is the reference decoder")


def heard(path: Path | str, **options: Any) -> np.ndarray:
    """What the service would hear, just before mu-law: 8 kHz int16."""
    with open_audio(path, **options) as stream:
        return np.concatenate(list(stream.pcm_blocks())).astype(np.float64)


def aligned(ours: np.ndarray, reference: np.ndarray, max_lag: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The two signals shifted onto each other (decoders may drop a codec's priming differently)."""
    n = min(len(ours), len(reference))
    a, b = ours[:n], reference[:n]
    spectrum = np.fft.rfft(a, 2 * n) * np.conj(np.fft.rfft(b, 2 * n))
    correlation = np.fft.irfft(spectrum)
    candidates = np.concatenate([correlation[: max_lag + 1], correlation[-max_lag:]])
    best = int(np.argmax(candidates))
    lag = best if best <= max_lag else best - (2 * max_lag + 1)
    return (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])


@needs_ffmpeg
@pytest.mark.parametrize("name", STEREO + MONO)
def test_our_decode_agrees_with_ffmpegs(name: str, tmp_path: Path) -> None:
    """ffmpeg decodes the file to float WAV; both go through the same resampler: only the decoders differ.
    Tolerance: within 2 LSB of int16 and a correlation of 0.9999 (FFmpeg's decoders, here and in ffmpeg);
    for Opus, decoded by libsndfile's libopus, a correlation of 0.98."""
    source = FORMATS / name
    reference = tmp_path / "ffmpeg.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(source), "-map", "0:a:0", "-c:a",
                    "pcm_f32le", str(reference)], check=True, timeout=60)
    options = {} if name in MONO else {"channel": "left"}
    ours, theirs = aligned(heard(source, **options), heard(reference, **options))
    assert len(ours) > 8000 * 4.5  # nearly all of the five seconds
    correlation = float(np.corrcoef(ours, theirs)[0, 1])
    if name in OTHER_DECODER:
        assert correlation > 0.98
    else:
        assert correlation > 0.9999
        assert np.max(np.abs(ours - theirs)) <= 2


def test_the_left_side_of_a_compressed_call_is_speaker_a_not_the_mix() -> None:
    left, right = heard(FORMATS / "call.m4a", channel="left"), heard(FORMATS / "call.m4a", channel="right")
    speaker_a = heard(DATA / "speech-a-8k-mono.wav", start=1, end=6)
    a_left, ref = aligned(left, speaker_a)
    a_right, ref_right = aligned(right, speaker_a)
    assert np.corrcoef(a_left, ref)[0, 1] > 0.9  # lossy at 48 kbit/s, and resampled twice
    assert abs(np.corrcoef(a_right, ref_right)[0, 1]) < 0.3


@pytest.mark.parametrize("name", STEREO + MONO)
def test_register_enrolls_each_format(name: str, dasctl: Run, emulator: Emulator) -> None:
    channel = [] if name in MONO else ["--channel", "left"]
    done = dasctl("register", "--json", "--speed", "0", "-q", "--no-store", "--duration", "3", *channel,
                  str(FORMATS / name), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["ok"] is True and document["credential"]
    assert document["audio_seconds_sent"] > 3


@pytest.mark.parametrize("name", ["call.mp3", "call.m4a", "call.webm", "call.amr", "call.aac", "call.wma"])
def test_register_reads_each_from_a_pipe(name: str, dasctl: Run, emulator: Emulator) -> None:
    """`cat x.mp3 | dasctl register -`: streamed where the container allows, an m4a spooled to disk."""
    done = dasctl("register", "-", "--speaker", "CUST1", "--json", "--speed", "0", "-q", "--duration", "3",
                  input=(FORMATS / name).read_bytes(), text=False, env=emulator.client_env())
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    assert document["ok"] is True and document["stored"]["speaker"] == "CUST1"


def test_transcode_names_the_container_and_codec(dasctl: Run, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    done = dasctl("transcode", str(FORMATS / "call.mp4"), str(out), "--channel", "left")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"transcode: {FORMATS / 'call.mp4'} (MP4 aac, 44100 Hz, 2 ch, channel left) -> "
                           f"{out}: 5.0 s of 8 kHz mu-law\n")


BAD = {
    "noise.mp3": "noise.mp3: not a recording dasctl can read (unknown or unsupported format)",
    "truncated.m4a": "truncated.m4a: an MP4/M4A file whose index is missing or damaged",
    "truncated-faststart.m4a": "truncated-faststart.m4a: truncated: the data stops at 1.5 s but the header "
                               "announces more (5.0 s)",
    "truncated.mp3": "truncated.mp3: truncated: the audio stops at 1.6 s but the header announces 5.0 s",
    "video-only.mp4": "video-only.mp4: has no audio track (video only)",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_damaged_or_soundless_file_is_one_clear_line_and_exit_3(name: str, dasctl: Run,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    done = dasctl("transcode", str(FORMATS / name), str(out))
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert lines[0] == f"dasctl: error: {FORMATS / BAD[name]}"
    assert len(lines) <= 2 and all(line.startswith("  ") for line in lines[1:])  # the line, and a hint
    assert "Traceback" not in done.stderr and not out.exists() and list(tmp_path.iterdir()) == []


def test_a_cut_off_file_with_end_inside_what_is_there_is_accepted(dasctl: Run, tmp_path: Path) -> None:
    done = dasctl("transcode", str(FORMATS / "truncated.mp3"), str(tmp_path / "out.ul"), "--end", "1.5")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.ul").stat().st_size == 12000


def test_ffmpegs_own_words_are_only_in_the_debug_log(dasctl: Run, tmp_path: Path) -> None:
    quiet = dasctl("transcode", str(FORMATS / "noise.mp3"), str(tmp_path / "out.wav"))
    verbose = dasctl("-vv", "transcode", str(FORMATS / "noise.mp3"), str(tmp_path / "out.wav"))
    assert quiet.returncode == verbose.returncode == 3
    assert "FFmpeg" not in quiet.stderr and "Invalid data" not in quiet.stderr
    assert "FFmpeg cannot open it" in verbose.stderr and "Invalid data found" in verbose.stderr


def test_without_pyav_a_format_that_needs_it_says_what_to_install(dasctl: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    (blocker / "av").mkdir(parents=True)
    (blocker / "av" / "__init__.py").write_text("raise ImportError(\"No module named 'av'\")\n")
    env = {"PYTHONPATH": str(blocker)}
    done = dasctl("transcode", str(FORMATS / "call.m4a"), str(tmp_path / "out.wav"), env=env)
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"dasctl: error: {FORMATS / 'call.m4a'}: reading this format needs FFmpeg's decoders (the Python "
        "package av), which is not installed",
        "  Install it: pip install 'av>=14' (dasctl's own install includes it).",
    ]
    # what libsndfile reads does not need it
    still = dasctl("transcode", str(FORMATS / "call.mp3"), str(tmp_path / "out.wav"), env=env)
    assert still.returncode == 0, still.stderr


# --- a long MP3 is decoded in two parts at once (dasctl/audio/segments.py) --------------------------------


@pytest.fixture(scope="module")
def long_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stereo speech fixture looped to 150 s, as a recorder's MP3 (64 kbit/s): made once for the tests
    below (2 s of CPU each time), which only read it (one that damages it damages a copy)."""
    path = tmp_path_factory.mktemp("mp3") / "long.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-stream_loop", "-1", "-i",
                    str(DATA / "speech-ab-44k-stereo.wav"), "-t", "150", "-c:a", "libmp3lame",
                    "-b:a", "64k", str(path)], check=True, timeout=120)
    return path


@needs_ffmpeg
@pytest.mark.parametrize("channel", ["mix", "right"])
def test_a_long_mp3_decoded_in_two_parts_sends_what_one_decoder_would(
    channel: str, long_mp3: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """150 s of MP3: the second half is decoded on another thread from its own seek point; every sample
    is there, in place (same count, no shift at the seam), as reading it in one piece gives (--end past
    the end reads it in one piece), but for soxr's rounding."""
    source = long_mp3
    caplog.set_level(logging.DEBUG, logger="dasctl.audio.segments")
    ours = heard(source, channel=channel)
    assert "decoding in 2 parts" in caplog.text
    assert "does not join" not in caplog.text
    caplog.clear()
    one_piece = heard(source, channel=channel, end=1000)
    assert "decoding in" not in caplog.text
    assert len(ours) == len(one_piece) == 150 * 8000
    assert np.max(np.abs(ours - one_piece)) <= 2


@needs_ffmpeg
def test_a_damaged_long_mp3_read_in_parts_fails_as_in_one_piece_and_libmpg123_stays_quiet(
    dasctl: Run, long_mp3: Path, tmp_path: Path
) -> None:
    """Both parts decode at once while fd 2 is lent to libmpg123's notes ("Illegal Audio-MPEG-Header",
    "Trying to resync"): one shared redirect, given back when the last decoder is done, so the notes go
    to the debug log and stderr has only our error, the same one reading in one piece gives."""
    source = tmp_path / "long.mp3"
    data = bytearray(long_mp3.read_bytes())
    for at in (len(data) // 4, len(data) * 3 // 4):  # garbage in each half
        data[at:at + 400] = os.urandom(400)
    source.write_bytes(bytes(data))
    parts = dasctl("transcode", str(source), str(tmp_path / "out.wav"))
    one_piece = dasctl("transcode", str(source), str(tmp_path / "out.wav"), "--end", "1000")
    assert parts.returncode == one_piece.returncode == 3
    assert parts.stderr == one_piece.stderr
    assert parts.stderr.startswith("dasctl: error: ") and "Note:" not in parts.stderr, parts.stderr
    assert not (tmp_path / "out.wav").exists()
    verbose = dasctl("-vv", "transcode", str(source), str(tmp_path / "out.wav"))
    assert "decoding in 2 parts" in verbose.stderr and "libmpg123) said: Note: Illegal" in verbose.stderr


@needs_ffmpeg
def test_closing_a_long_mp3_halfway_stops_both_decoders(long_mp3: Path) -> None:
    stream = open_audio(long_mp3)
    blocks = stream.pcm_blocks()
    for _ in range(3):
        next(blocks)
    stream.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "dasctl-audio-part"]
    with pytest.raises(ValueError, match="closed while it was being read"):
        next(blocks)


def test_the_seam_check_takes_rounding_and_refuses_a_shift() -> None:
    speech = heard(DATA / "speech-a-8k-mono.wav")[8000:8800].astype(np.int16)
    assert seam_holds(speech, speech + np.int16(1))  # soxr's rounding
    assert seam_holds(np.zeros(800, np.int16), np.full(800, 3, np.int16))  # near silence
    assert not seam_holds(speech[1:], speech[:-1])  # a seek one sample off
    assert not seam_holds(speech, np.zeros(800, np.int16))


def test_split_points_fall_on_the_resampling_period() -> None:
    assert split_points(44100 * 119, 44100) == [0]
    starts = split_points(44100 * 1020, 44100)
    assert len(starts) == 2 and starts[1] % 441 == 0 and abs(starts[1] - 44100 * 510) <= 441
    assert len(split_points(48000 * 2460, 48000)) == 3  # 41 minutes: parts of at most 20
    assert all(start % 6 == 0 for start in split_points(48000 * 2460, 48000))


@pytest.mark.parametrize("channel", ["mix", "left"])
def test_a_whole_m4a_picked_after_the_decoding_thread_is_what_read_block_by_block_gives(channel: str) -> None:
    """Read whole, FFmpeg's blocks cross to the consumer as decoded and the channel is picked there;
    with --end the reader copies block by block: the same samples either way."""
    whole = heard(FORMATS / "call.m4a", channel=channel)
    by_blocks = heard(FORMATS / "call.m4a", channel=channel, end=1000)
    assert len(whole) > 8000 * 4.5 and np.array_equal(whole, by_blocks)


@pytest.mark.slow
@needs_ffmpeg
@pytest.mark.parametrize("xing", [True, False], ids=["vbr-xing", "vbr-no-header"])
def test_a_vbr_mp3_is_read_whole_and_right(xing: bool, tmp_path: Path) -> None:
    """libsndfile stops a VBR MP3 without a Xing header at its estimate (150 s read as 105.8 s) and
    decodes VBR wrongly here and there depending on where its reads end; such files go to FFmpeg."""
    source = tmp_path / "vbr.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-stream_loop", "-1", "-i",
                    str(DATA / "speech-ab-44k-stereo.wav"), "-t", "150", "-c:a", "libmp3lame", "-q:a", "5",
                    "-write_xing", "1" if xing else "0", str(source)], check=True, timeout=120)
    ours = heard(source, channel="left")
    theirs = heard(_ffmpegs_decode(source, tmp_path), channel="left")
    assert abs(len(ours) - 150 * 8000) < 8000 * 0.1
    assert len(ours) == len(theirs) and np.max(np.abs(ours - theirs)) <= 2


def _ffmpegs_decode(source: Path, tmp_path: Path) -> Path:
    reference = tmp_path / f"{source.stem}-ffmpeg.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(source), "-map", "0:a:0", "-c:a",
                    "pcm_f32le", str(reference)], check=True, timeout=120)
    return reference
