"""The audio pipeline as a library: formats, channels, ranges, frames, pacing, writers, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dasctl.audio import (
    SAMPLE_RATE,
    Pacer,
    _resampler,
    open_audio,
    paced_frames,
    write_mulaw_raw,
    write_mulaw_wav,
)
from dasctl.errors import AudioError, UsageError
from dasctl.mulaw import mulaw_decode, mulaw_encode

DATA = Path(__file__).parent / "data"
STEREO = DATA / "speech-ab-44k-stereo.wav"
SPEECH_A = DATA / "speech-a-8k-mono.wav"
SPEECH_B = DATA / "speech-b-16k-mono.wav"


def transcode(source: Path | str, **options: object) -> np.ndarray:
    """The int16 signal the service would hear (mu-law decoded)."""
    with open_audio(source, **options) as stream:  # type: ignore[arg-type]
        return mulaw_decode(b"".join(stream.chunks()))


def snr_db(reference: np.ndarray, signal: np.ndarray) -> float:
    n = min(len(reference), len(signal))
    ref = reference[:n].astype(np.float64)
    err = ref - signal[:n].astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9)))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n].astype(np.float64), b[:n].astype(np.float64))[0, 1])


# --- the signal ---------------------------------------------------------------------------------
def test_8k_int16_input_is_encoded_sample_for_sample():
    samples, rate = sf.read(SPEECH_A, dtype="int16")
    assert rate == SAMPLE_RATE
    with open_audio(SPEECH_A) as stream:
        assert (stream.input_rate, stream.input_channels, stream.input_format) == (8000, 1, "WAV PCM_16")
        assert stream.duration == pytest.approx(len(samples) / 8000)
        assert b"".join(stream.chunks()) == mulaw_encode(samples)


def test_resampling_in_blocks_equals_resampling_at_once():
    samples, rate = sf.read(SPEECH_B, dtype="float32")
    resample = _resampler(rate)
    at_once = np.concatenate([resample(samples, False), resample(np.zeros(0, np.float32), True)])
    with open_audio(SPEECH_B) as stream:
        blocks = np.concatenate(list(stream.pcm_blocks()))
    assert abs(len(blocks) - len(samples) * SAMPLE_RATE / rate) <= 1
    reference = np.clip(np.rint(at_once * 32768), -32768, 32767).astype(np.int16)
    # streaming in blocks must not shift or smear the signal
    assert snr_db(reference, blocks) > 60


@pytest.mark.parametrize(("frequency", "low", "high"), [
    (1000, -0.1, 0.1), (3400, -0.1, 0.1), (3900, -0.5, 0.1),  # the telephone band and up to 3.9 kHz kept
    (4100, -200, -90), (6000, -200, -90), (15000, -200, -90),  # above 4 kHz: removed, not folded back
])
def test_frequency_response(frequency, low, high):
    rate = 44100
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    resample = _resampler(rate)
    out = np.concatenate([resample(tone, False), resample(np.zeros(0, np.float32), True)])[1000:-1000]
    gain_db = 20 * np.log10(np.sqrt(2 * np.mean(out.astype(np.float64) ** 2)) / 0.5 + 1e-12)
    assert low <= gain_db <= high


def test_a_tone_above_4khz_is_filtered_out_not_folded_back():
    rate = 44100
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)  # would alias to 2 kHz
    out = _transcode_array(tone, rate)
    assert np.sqrt(np.mean(out[4000:-4000].astype(np.float64) ** 2)) < 20  # about -64 dBFS: mu-law's floor


def _transcode_array(samples: np.ndarray, rate: int, **options: object) -> np.ndarray:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "in.wav"
        sf.write(path, samples, rate, subtype="FLOAT")
        return transcode(path, **options)


def test_full_scale_input_clips_instead_of_wrapping_around():
    rate = 16000
    square = np.where(np.arange(rate) % 80 < 40, 0.999, -0.999).astype(np.float32)  # overshoots when filtered
    out = _transcode_array(square, rate)
    assert out.max() > 30000 and out.min() < -30000
    # a wrap-around would put full-scale samples of the wrong sign next to each other
    assert np.max(np.abs(np.diff(out.astype(np.int32)))) < 65535


def test_silence_is_valid_audio():
    out = transcode(DATA / "silence-8k-mono.wav")
    assert len(out) == 3 * SAMPLE_RATE
    assert np.all(np.abs(out) <= 8)


# --- formats ------------------------------------------------------------------------------------
FORMATS = [
    # (container, subtype, extension, minimum SNR in dB against the PCM_16 transcode)
    ("WAV", "PCM_16", "wav", 99),
    ("WAV", "PCM_24", "wav", 99),
    ("WAV", "PCM_32", "wav", 99),
    ("WAV", "FLOAT", "wav", 99),
    ("WAV", "DOUBLE", "wav", 99),
    ("WAV", "PCM_U8", "wav", 18),
    ("WAV", "ULAW", "wav", 25),
    ("WAV", "ALAW", "wav", 25),
    ("WAVEX", "PCM_16", "wav", 99),
    ("RF64", "PCM_16", "wav", 99),
    ("W64", "PCM_16", "w64", 99),
    ("FLAC", "PCM_16", "flac", 99),
    ("AIFF", "PCM_16", "aiff", 99),
    ("OGG", "VORBIS", "ogg", 8),
]


@pytest.fixture(scope="module")
def speech_16k() -> tuple[np.ndarray, int]:
    samples, rate = sf.read(SPEECH_B, dtype="int16")
    return samples, rate


@pytest.mark.parametrize(("container", "subtype", "extension", "min_snr"), FORMATS,
                         ids=[f"{c}-{s}" for c, s, _, _ in FORMATS])
def test_every_format_round_trips(tmp_path, speech_16k, container, subtype, extension, min_snr):
    samples, rate = speech_16k
    reference = transcode(SPEECH_B)
    path = tmp_path / f"speech.{extension}"
    # float files hold [-1, 1); libsndfile would store int16 values unscaled in them
    data = samples / 32768.0 if subtype in ("FLOAT", "DOUBLE") else samples
    sf.write(path, data, rate, format=container, subtype=subtype)
    with open_audio(path) as stream:
        assert stream.input_format == f"{container} {subtype}"
        out = mulaw_decode(b"".join(stream.chunks()))
    assert abs(len(out) - len(reference)) <= 1
    if min_snr >= 99:  # lossless containers carry the same int16 values: the same bytes come out
        assert np.array_equal(out[: len(reference)], reference[: len(out)])
    else:
        assert snr_db(reference, out) >= min_snr


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_extensible_24bit_wav(tmp_path):
    path = tmp_path / "ext24.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(SPEECH_B), "-c:a", "pcm_s24le", "-ac", "1",
                    "-rf64", "never", "-write_bext", "0", "-f", "wav", str(path)], check=True, timeout=30)
    # ffmpeg writes WAVE_FORMAT_EXTENSIBLE for 24-bit
    assert b"\xfe\xff" in path.read_bytes()[:64]
    assert snr_db(transcode(SPEECH_B), transcode(path)) > 99


# --- channels -----------------------------------------------------------------------------------
def test_stereo_channel_choice_picks_the_right_speaker():
    a, b = transcode(SPEECH_A), transcode(SPEECH_B)
    left, right = transcode(STEREO, channel="left"), transcode(STEREO, channel="right")
    assert correlation(left, a) > 0.9 and abs(correlation(left, b)) < 0.3
    assert correlation(right, b) > 0.9 and abs(correlation(right, a)) < 0.3
    assert np.array_equal(transcode(STEREO, channel="0"), left)
    assert np.array_equal(transcode(STEREO, channel="1"), right)
    mix = transcode(STEREO)
    assert correlation(mix, a) > 0.4 and correlation(mix, b) > 0.4


def test_mix_is_the_average_of_the_channels(tmp_path):
    rate = 8000
    left = np.full(rate, 1000, dtype=np.int16)
    right = np.full(rate, 3000, dtype=np.int16)
    path = tmp_path / "two.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_16")
    expected = mulaw_decode(mulaw_encode(np.array([2000], np.int16)))
    assert set(transcode(path).tolist()) == set(expected.tolist())


@pytest.mark.parametrize("channel", ["right", "1", "7"])
def test_a_channel_the_file_does_not_have_is_a_usage_error(channel):
    with pytest.raises(UsageError, match=r"mono \(1 channel\)"):
        open_audio(SPEECH_A, channel=channel)


@pytest.mark.parametrize("channel", ["centre", "-1", "", "1.5"])
def test_a_bad_channel_names_the_choices(channel):
    with pytest.raises(UsageError, match="mix, left, right"):
        open_audio(SPEECH_A, channel=channel)


# --- range --------------------------------------------------------------------------------------
def test_start_and_end_select_seconds_of_the_input():
    whole = transcode(STEREO, channel="left")
    part = transcode(STEREO, channel="left", start=2.0, end=5.0)
    assert abs(len(part) - 3 * SAMPLE_RATE) <= 1
    # the same audio as the middle of the whole (edges differ by the filter's reach, a few ms)
    assert snr_db(whole[2 * SAMPLE_RATE + 80 : 5 * SAMPLE_RATE - 80], part[80:-80]) > 30


@pytest.mark.parametrize(("start", "end", "message"), [
    (-1.0, None, "--start -1 must be zero or more"),
    (5.0, 3.0, "--start 5 must be before --end 3"),
    (2.0, 2.0, "must be before"),
    (0.0, 0.0, "--end 0 must be more than zero"),
    (float("nan"), None, "--start"),
    (60.0, None, "past the end"),
])
def test_bad_ranges_are_usage_errors(start, end, message):
    with pytest.raises(UsageError, match=message):
        open_audio(SPEECH_A, start=start, end=end)


def test_end_past_the_end_of_the_file_stops_at_the_end():
    with open_audio(SPEECH_A, end=1000.0) as stream:
        assert stream.duration == pytest.approx(93407 / 8000)
        assert len(b"".join(stream.chunks())) == 93407


# --- frames -------------------------------------------------------------------------------------
@pytest.mark.parametrize("frame_ms", [20, 30, 200, 1])
def test_frames_are_exact_and_concatenate_to_the_stream(frame_ms):
    with open_audio(SPEECH_B) as stream:
        frames = list(stream.frames(frame_ms))
    with open_audio(SPEECH_B) as stream:
        whole = b"".join(stream.chunks())
    size = 8 * frame_ms
    assert all(len(frame) == size for frame in frames[:-1])
    assert 0 < len(frames[-1]) <= size
    assert b"".join(frames) == whole


@pytest.mark.parametrize("frame_ms", [0, -20, 9000])
def test_bad_frame_length_is_a_usage_error(frame_ms):
    with open_audio(SPEECH_A) as stream, pytest.raises(UsageError, match="--frame-ms"):
        next(stream.frames(frame_ms))


def test_frames_stream_without_reading_the_whole_file(tmp_path):
    path = tmp_path / "minute.wav"
    sf.write(path, np.zeros((60 * 44100, 2), dtype=np.int16), 44100)
    with open_audio(path) as stream:
        first = next(stream.frames(20))
        assert len(first) == 160
        # the block in hand, two queued and one waiting to be queued: 8 s of the 60 s at most
        assert stream.seconds_read <= 8


# --- stdin ----------------------------------------------------------------------------------------
STDIN_SCRIPT = """
import sys
from dasctl.audio import open_audio
with open_audio("-", channel=sys.argv[1]) as stream:
    print(stream.name, stream.input_format, stream.duration, file=sys.stderr)
    for chunk in stream.chunks():
        sys.stdout.buffer.write(chunk)
"""


def _from_stdin(data: bytes | Path, channel: str = "mix") -> subprocess.CompletedProcess[bytes]:
    stdin = data.open("rb") if isinstance(data, Path) else None
    try:
        return subprocess.run([sys.executable, "-c", STDIN_SCRIPT, channel], stdin=stdin,
                              input=None if isinstance(data, Path) else data, capture_output=True, timeout=30)
    finally:
        if isinstance(data, Path):
            stdin.close()  # type: ignore[union-attr]


def _expected(path: Path, channel: str = "mix") -> bytes:
    with open_audio(path, channel=channel) as stream:
        return b"".join(stream.chunks())


def test_stdin_pipe_gives_the_same_bytes_as_the_file():
    result = _from_stdin(STEREO.read_bytes(), "left")
    assert result.returncode == 0, result.stderr
    assert result.stdout == _expected(STEREO, "left")
    assert result.stderr.decode().startswith("<stdin> WAV PCM_16")


def test_stdin_redirected_from_a_file_is_seekable_and_the_same():
    result = _from_stdin(STEREO, "right")
    assert result.returncode == 0, result.stderr
    assert result.stdout == _expected(STEREO, "right")


@pytest.mark.parametrize("kind", ["flac", "ogg", "ffmpeg-wav"])
def test_stdin_other_formats(tmp_path, kind):
    if kind == "ffmpeg-wav":
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg not installed")
        # ffmpeg writing to a pipe cannot go back to fill in the lengths: "unknown length" header
        data = subprocess.run(["ffmpeg", "-v", "error", "-i", str(SPEECH_B), "-f", "wav", "-"],
                              capture_output=True, check=True, timeout=30).stdout
        assert data[40:44] == b"\xff\xff\xff\xff" or b"data\xff\xff\xff\xff" in data[:200]
        expected = _expected(SPEECH_B)
    else:
        samples, rate = sf.read(SPEECH_B, dtype="int16")
        path = tmp_path / f"b.{kind}"
        sf.write(path, samples, rate, format=kind.upper())
        data = path.read_bytes()
        expected = _expected(path)
    result = _from_stdin(data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_truncated_wav_on_stdin_is_refused_at_the_end():
    data = STEREO.read_bytes()[:300_000]
    result = _from_stdin(data)
    assert result.returncode != 0
    assert b"AudioError" in result.stderr and b"<stdin>: truncated" in result.stderr


# --- bad input ------------------------------------------------------------------------------------
def _wav_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


BAD_INPUTS = {
    "empty": (lambda d: b"", "empty file"),
    "truncated header": (lambda d: d[:20], "corrupt or unsupported audio"),
    "header only": (lambda d: d[:44], "no audio: the file ends right after its header (11.7 s)"),
    "truncated data": (lambda d: d[:100_000],
                       "truncated: the data stops at 6.2 s but the header announces more (11.7 s)"),
    "garbage": (lambda d: bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
                "not a recording dasctl can read"),
    "text": (lambda d: b"this is not audio, it is a text file\n" * 20, "is a text file"),
    "zero channels": (lambda d: _patch(d, 22, b"\x00\x00"), "corrupt or unsupported audio"),
    "absurd rate": (lambda d: _patch(d, 24, (1).to_bytes(4, "little")), "implausible sample rate 1 Hz"),
    "huge rate": (lambda d: _patch(d, 24, (50_000_000).to_bytes(4, "little")), "implausible sample rate"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_audio_error_naming_file_and_problem(tmp_path, case):
    make, problem = BAD_INPUTS[case]
    path = tmp_path / "call.wav"
    path.write_bytes(make(_wav_bytes(SPEECH_A)))
    with pytest.raises(AudioError) as caught:
        with open_audio(path) as stream:
            b"".join(stream.chunks())
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_truncated_data_is_fine_when_end_stays_inside_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(SPEECH_A.read_bytes()[:100_000])
    with open_audio(path, end=6.0) as stream:
        assert len(b"".join(stream.chunks())) == 6 * SAMPLE_RATE


def test_a_directory_is_audio_error(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        open_audio(tmp_path)


def test_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        open_audio(tmp_path / "nope.wav")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_audio_error(tmp_path):
    path = tmp_path / "secret.wav"
    path.write_bytes(SPEECH_A.read_bytes())
    path.chmod(0)
    with pytest.raises(AudioError, match="permission denied"):
        open_audio(path)


def test_an_unreadable_file_is_audio_error_even_as_root(tmp_path):
    # root can read a 0000 file; a FIFO with no writer cannot be opened without blocking, so use a
    # path below a file (ENOTDIR): the same "cannot open" branch the user would meet
    path = tmp_path / "file.wav"
    path.write_bytes(b"x")
    with pytest.raises(AudioError, match="cannot open the file"):
        open_audio(path / "inner.wav")


# --- writers ----------------------------------------------------------------------------------------
def test_wav_writer_makes_a_file_libsndfile_and_sox_read_back(tmp_path):
    payload = mulaw_encode(np.arange(-20000, 20000, 7, dtype=np.int16))
    path = tmp_path / "out.wav"
    assert write_mulaw_wav(path, [payload[:1001], payload[1001:]]) == len(payload)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "WAV", "ULAW", 8000, 1, len(payload))
    data, _ = sf.read(path, dtype="int16")
    assert np.array_equal(data, mulaw_decode(payload))
    if shutil.which("sox"):
        raw = subprocess.run(["sox", str(path), "-t", "ul", "-"], capture_output=True, check=True).stdout
        assert raw == payload


def test_writers_are_atomic_and_clean_up_on_failure(tmp_path):
    path = tmp_path / "out.wav"
    path.write_bytes(b"previous")

    def failing():
        yield b"\xff" * 800
        raise AudioError("in.wav: truncated")

    with pytest.raises(AudioError):
        write_mulaw_wav(path, failing())
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
    raw = tmp_path / "out.ul"
    with pytest.raises(AudioError):
        write_mulaw_raw(raw, failing())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def test_writer_refuses_a_missing_directory(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        write_mulaw_raw(tmp_path / "no" / "out.ul", [b"x"])


def test_new_output_follows_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_mulaw_raw(tmp_path / "out.ul", [b"\xff"])
    finally:
        os.umask(previous)
    assert (tmp_path / "out.ul").stat().st_mode & 0o777 == 0o644


# --- pacing ---------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_schedules_against_absolute_deadlines():
    clock = FakeClock()
    pacer = Pacer(1.0, clock)
    assert pacer.delay(0.0) == 0.0  # starts the clock
    assert pacer.delay(0.02) == pytest.approx(0.02)
    clock.now += 0.5  # a stall: we are late
    assert pacer.delay(0.04) == 0.0  # catch up at once, no waiting
    # the deadline is start + stream time, whatever happened in between: no drift
    assert pacer.delay(1.0) == pytest.approx(0.5)


def test_pacer_speeds():
    clock = FakeClock()
    assert Pacer(0, clock).delay(3600.0) == 0.0
    double = Pacer(2.0, clock)
    double.delay(0.0)
    assert double.delay(10.0) == pytest.approx(5.0)
    half = Pacer(0.5, clock)
    half.delay(0.0)
    assert half.delay(1.0) == pytest.approx(2.0)


@pytest.mark.parametrize("speed", [-1.0, float("inf"), float("nan")])
def test_pacer_rejects_bad_speeds(speed):
    with pytest.raises(UsageError, match="--speed"):
        Pacer(speed)


def test_paced_frames_sleep_until_each_deadline_and_do_not_drift():
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds + 0.003  # every sleep oversleeps by 3 ms

    frames = [b"\x00" * 160] * 3000  # 60 s of audio
    sent = list(paced_frames(frames, Pacer(1.0, clock), sleep=sleep))
    assert len(sent) == 3000
    # after 60 s of audio the clock is within one oversleep of 60 s: the error does not accumulate
    assert clock.now - 100.0 == pytest.approx(59.98, abs=0.01)


def test_closing_mid_stream_stops_the_reader_first():
    for _ in range(20):  # a race would crash libsndfile (use after free), not fail an assert
        stream = open_audio(STEREO)
        frames = stream.frames(20)
        next(frames)
        stream.close()
        stream.close()
        with pytest.raises(ValueError):  # the generator may not be read on after close
            for _ in frames:
                pass


def test_read_mulaw_wav_gives_the_bytes_other_readers_decode(tmp_path: Path) -> None:
    from dasctl.audio import read_mulaw_wav, write_mulaw_wav

    # ffmpeg's streamed mu-law WAV (placeholder sizes): read to its end, samples as libsndfile decodes them
    made_by_ffmpeg = DATA / "wav-headers" / "codec-mulaw.wav"
    kept = read_mulaw_wav(made_by_ffmpeg)
    decoded, rate = sf.read(made_by_ffmpeg, dtype="int16")
    assert rate == 8000 and len(kept) == len(decoded) > 1000
    assert np.array_equal(mulaw_decode(kept), decoded)
    # ours, odd length (a pad byte after the data): back byte for byte
    ours = tmp_path / "odd.wav"
    write_mulaw_wav(ours, [kept[:3001]])
    assert read_mulaw_wav(ours) == kept[:3001]
    with pytest.raises(AudioError, match="not an 8 kHz mono mu-law WAV"):
        read_mulaw_wav(DATA / "speech-a-8k-mono.wav")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(ours.read_bytes()[:2000])
    with pytest.raises(AudioError, match="truncated"):
        read_mulaw_wav(truncated)
