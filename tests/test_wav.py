"""Real-world WAV headers (tests/data/wav-headers/, made by make-fixtures.sh with ffmpeg and sox), read the
way ffmpeg reads them, on files, stdin pipes, redirected stdin, named pipes and process substitution."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from dasctl.audio import open_audio
from dasctl.mulaw import mulaw_decode
from dasctl.wav import PLACEHOLDER_SIZES, ByteSource, WavReader, parse_header

HEADERS = Path(__file__).parent / "data" / "wav-headers"
SOURCE = HEADERS / "source.wav"  # half a second, 4000 samples, a definite header: the reference
DASCTL = [sys.executable, "-m", "dasctl"]

#: unknown-length (or placeholder) headers that hold the whole of source.wav
UNKNOWN_LENGTH = ["ffmpeg-pipe.wav", "sox-pipe.wav", "data-size-0.wav", "data-size-fffffffe.wav",
                  "riff-size-0.wav", "ffmpeg-rf64-pipe.wav", "ffmpeg-rf64.wav", "two-data-chunks.wav"]
CODECS = ["codec-u8.wav", "codec-s24le.wav", "codec-s32le.wav", "codec-f32le.wav", "codec-f64le.wav",
          "codec-mulaw.wav", "codec-alaw.wav", "codec-s16le-stereo.wav", "alaw-sox.wav"]
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def expected_stream(path: Path = SOURCE) -> bytes:
    with open_audio(path) as stream:
        return b"".join(stream.chunks())


def _feed_fifo(fifo: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(fifo, "wb") as out:  # blocks until dasctl opens the other end
            try:
                out.write(data)
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def run_transcode(path: Path, how: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """`dasctl transcode IN -`, IN a file, a pipe on stdin, a redirected stdin, a FIFO or <(...)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    argv = [*DASCTL, "transcode", "-", "-", *extra]
    where = len(DASCTL) + 1  # IN
    stdin: object = subprocess.DEVNULL
    data = None
    writer = None
    if how == "file":
        argv[where] = str(path)
    elif how == "pipe":
        stdin, data = None, path.read_bytes()
    elif how == "stdin-file":
        stdin = path.open("rb")
    elif how == "fifo":
        fifo = tmp_path / "in.fifo"
        os.mkfifo(fifo)
        writer = _feed_fifo(fifo, path.read_bytes())
        argv[where] = str(fifo)
    else:
        assert how == "process-substitution"
        argv = ["bash", "-c", " ".join([*map(shlex.quote, argv[:where]), f"<(cat {shlex.quote(str(path))})",
                                        *map(shlex.quote, argv[where + 1:])])]
    try:
        return subprocess.run(argv, stdin=stdin, input=data, capture_output=True, timeout=60,  # type: ignore[call-overload]
                              env=env)
    finally:
        if how == "stdin-file":
            stdin.close()  # type: ignore[attr-defined]
        if writer is not None:
            writer.join(10)


def ffmpeg_samples(path: Path, channels: int) -> np.ndarray:
    """ffmpeg's decoding, from a pipe: on a file it reads only the last of two data chunks, on a pipe all."""
    data = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-f", "f32le", "-c:a", "pcm_f32le", "-"],
                          input=path.read_bytes(), capture_output=True, check=True, timeout=30).stdout
    return np.frombuffer(data, dtype="<f4").reshape(-1, channels)


def our_samples(path: Path, *, seekable: bool = True) -> np.ndarray:
    """Every frame our WavReader decodes, as float32 (n, channels); over a real pipe when not seekable."""
    if seekable:
        fd = os.open(path, os.O_RDONLY)
        writer = None
    else:
        fd, write_fd = os.pipe()

        def pump() -> None:
            with os.fdopen(write_fd, "wb") as out:
                out.write(path.read_bytes())

        writer = threading.Thread(target=pump, daemon=True)
        writer.start()
    try:
        source = ByteSource(fd, seekable=seekable)
        parsed = parse_header(source)
        assert parsed is not None, f"{path.name}: not parsed"
        reader = WavReader(source, *parsed)
        blocks = []
        while len(block := reader.read(1000, dtype="float32")):
            blocks.append(block.copy())
        return np.concatenate(blocks) if blocks else np.zeros((0, reader.channels), dtype=np.float32)
    finally:
        os.close(fd)
        if writer is not None:
            writer.join(10)


# --- the fixtures are what the brief says they are ------------------------------------------------
def test_fixtures_carry_the_placeholders_real_writers_use():
    def data_size(name: str) -> int:
        data = (HEADERS / name).read_bytes()
        at = data.index(b"data") + 4
        return int.from_bytes(data[at:at + 4], "little")

    assert data_size("ffmpeg-pipe.wav") == 0xFFFFFFFF
    assert data_size("sox-pipe.wav") == 0x7FFFF000
    assert data_size("data-size-0.wav") == 0
    assert data_size("data-size-fffffffe.wav") == 0xFFFFFFFE
    assert (HEADERS / "riff-size-0.wav").read_bytes()[4:8] == b"\0\0\0\0"
    rf64 = (HEADERS / "ffmpeg-rf64-pipe.wav").read_bytes()
    assert rf64[:4] == b"RF64" and rf64[12:16] == b"ds64" and rf64[20:44] == bytes(24)
    assert (HEADERS / "two-data-chunks.wav").read_bytes().count(b"data") == 2
    assert {0, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFF000} <= PLACEHOLDER_SIZES


# --- item 1: unknown lengths read to the end ------------------------------------------------------
@pytest.mark.parametrize("how", ["file", "pipe", "fifo"])
@pytest.mark.parametrize("name", UNKNOWN_LENGTH)
def test_unknown_length_headers_are_read_to_the_end(name, how, tmp_path):
    result = run_transcode(HEADERS / name, how, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_stream(), f"{name} over {how}: {len(result.stdout)} bytes"
    assert b"4000" not in result.stderr and b"0.5 s of 8 kHz mu-law" in result.stderr


@needs_ffmpeg
@pytest.mark.parametrize("name", [*UNKNOWN_LENGTH, *CODECS, "source.wav"])
def test_decoded_samples_equal_ffmpegs(name):
    path = HEADERS / name
    ours = our_samples(path)
    if name == "ffmpeg-rf64-pipe.wav":
        # ffmpeg reads its own piped RF64 (ds64 sizes 0) as empty; we read it to its end, like data size 0
        assert len(ffmpeg_samples(path, 1)) == 0
        theirs = ffmpeg_samples(SOURCE, 1)
    else:
        theirs = ffmpeg_samples(path, ours.shape[1])
    assert ours.shape == theirs.shape and len(ours) >= 3990
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2.0**-23)


@pytest.mark.parametrize("name", [*UNKNOWN_LENGTH, *CODECS])
def test_a_pipe_decodes_the_same_samples_as_the_file(name):
    np.testing.assert_array_equal(our_samples(HEADERS / name, seekable=False), our_samples(HEADERS / name))


@pytest.mark.parametrize("name", CODECS)
def test_every_codec_transcodes_to_the_sound_of_the_source(name, tmp_path):
    result = run_transcode(HEADERS / name, "pipe", tmp_path)  # files: the sample test above
    assert result.returncode == 0, result.stderr
    if name in ("codec-s24le.wav", "codec-s32le.wav", "codec-f32le.wav", "codec-f64le.wav"):
        assert result.stdout == expected_stream(), name  # lossless: the very same bytes
        return
    # 8-bit PCM, ffmpeg's mu-law, A-law and ffmpeg's -ac 2 (which lowers the level) change the samples a
    # little: the same sound, not the same bytes
    ours = mulaw_decode(result.stdout).astype(float)
    reference = mulaw_decode(expected_stream()).astype(float)
    assert len(ours) == len(reference) == 4000
    assert np.corrcoef(ours, reference)[0, 1] > 0.99


def test_stereo_channels_are_picked_from_a_stream(tmp_path):
    # codec-s16le-stereo.wav is the mono source on both channels
    stereo = HEADERS / "codec-s16le-stereo.wav"
    left, right, mix = (run_transcode(stereo, "pipe", tmp_path, "--channel", which)
                        for which in ("left", "right", "mix"))
    assert left.returncode == right.returncode == mix.returncode == 0
    assert left.stdout == right.stdout == mix.stdout and len(left.stdout) == 4000


@pytest.mark.parametrize("how", ["pipe", "fifo"])
def test_a_codec_we_leave_to_libsndfile_gets_every_byte_from_a_stream(how, tmp_path):
    # ima-adpcm.wav: our parser reads the header, gives up at the codec, and replays what it took
    from_file = run_transcode(HEADERS / "ima-adpcm.wav", "file", tmp_path)
    streamed = run_transcode(HEADERS / "ima-adpcm.wav", how, tmp_path)
    assert from_file.returncode == streamed.returncode == 0, streamed.stderr
    assert b"(WAV IMA_ADPCM, 8000 Hz, 1 ch)" in streamed.stderr
    assert streamed.stdout == from_file.stdout and len(streamed.stdout) > 3900


def test_process_substitution_is_a_stream(tmp_path):
    result = run_transcode(HEADERS / "ffmpeg-pipe.wav", "process-substitution", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_stream()


def test_a_fifo_holding_flac_is_spooled_like_stdin(tmp_path):
    import soundfile as sf

    samples, rate = sf.read(SOURCE, dtype="int16")
    flac = tmp_path / "a.flac"
    sf.write(flac, samples, rate, format="FLAC")
    result = run_transcode(flac, "fifo", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_stream()


# --- a definite length longer than the data stays "truncated" ---------------------------------------
@pytest.mark.parametrize("how", ["file", "pipe", "stdin-file", "fifo"])
def test_a_definite_length_longer_than_the_data_is_truncated(how, tmp_path):
    result = run_transcode(HEADERS / "truncated.wav", how, tmp_path)
    assert result.returncode == 3 and result.stdout in (b"", expected_stream()[:2000])
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 2 and "truncated" in lines[0] and "0.2 s" in lines[0] and "0.5 s" in lines[0]
    assert lines[1] == "  If it is still being written, wait; to use what is there, add --end 0.2."


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_truncated_with_end_inside_the_data_is_accepted(how, tmp_path):
    result = run_transcode(HEADERS / "truncated.wav", how, tmp_path, "--end", "0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_stream()[:1600]


@pytest.mark.parametrize("how", ["file", "pipe", "fifo"])
def test_one_sample_short_says_so_in_samples(how, tmp_path):
    result = run_transcode(HEADERS / "one-sample-short.wav", how, tmp_path)
    assert result.returncode == 3
    first = result.stderr.decode().splitlines()[0]
    assert "(3999 samples)" in first and "4000 samples" in first, first


# --- item 5: clear one-line messages ---------------------------------------------------------------
@pytest.mark.parametrize("how", ["file", "pipe", "fifo"])
@pytest.mark.parametrize(("name", "rate"), [("rate-0.wav", "0"), ("rate-4ghz.wav", "4000000000")])
def test_absurd_rates_get_the_implausible_rate_message(name, rate, how, tmp_path):
    result = run_transcode(HEADERS / name, how, tmp_path)
    assert result.returncode == 3 and result.stdout == b""
    shown = {"file": str(HEADERS / name), "pipe": "<stdin>", "fifo": str(tmp_path / "in.fifo")}[how]
    assert result.stderr.decode().splitlines() == [
        f"dasctl: error: {shown}: implausible sample rate {rate} Hz (expected 2000 to 768000 Hz); "
        "the header is probably corrupt"
    ]


@pytest.mark.parametrize("how", ["file", "pipe", "fifo"])
def test_utf16_text_is_named_text_and_no_library_noise_reaches_the_terminal(how, tmp_path):
    result = run_transcode(HEADERS / "utf16.txt", how, tmp_path)
    assert result.returncode == 3 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 2 and lines[0].endswith(": is a text file, not a recording"), lines
    assert b"mpg123" not in result.stderr


def test_sf_info_incomplete_never_reaches_the_user(tmp_path):
    # AU is libsndfile's to read: a sample rate of 0 there is its "SF_INFO struct incomplete"
    import soundfile as sf

    samples, rate = sf.read(SOURCE, dtype="int16")
    au = tmp_path / "zero.au"
    sf.write(au, samples, rate, format="AU")
    data = bytearray(au.read_bytes())
    data[16:20] = bytes(4)  # the big-endian sample rate
    au.write_bytes(bytes(data))
    result = run_transcode(au, "file", tmp_path)
    assert result.returncode == 3
    lines = result.stderr.decode().splitlines()
    assert lines[0] == f"dasctl: error: {au}: corrupt header: no usable sample rate, channel count or format"
    assert len(lines) == 2 and b"SF_INFO" not in result.stderr


def _mpeg_sync_then_garbage(path: Path) -> Path:
    """An MPEG frame-sync word, then noise: libsndfile hands it to libmpg123, which prints 'Note: ...'."""
    rng = np.random.default_rng(1)
    path.write_bytes(b"\xff\xfb\x90\x00" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_no_libmpg123_noise_on_garbage_that_looks_like_mp3(how, tmp_path):
    result = run_transcode(_mpeg_sync_then_garbage(tmp_path / "noise.mp3"), how, tmp_path)
    assert result.returncode == 3 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("dasctl: error: "), lines
    assert all(line.startswith(("dasctl: error: ", "  ")) for line in lines), lines


def test_what_the_c_libraries_said_is_in_the_debug_log(tmp_path):
    noise = _mpeg_sync_then_garbage(tmp_path / "noise.mp3")
    # piped, an MP3 goes to libsndfile (libmpg123); from a file with no LAME Info tag, to FFmpeg (mp3.py)
    piped = subprocess.run([*DASCTL, "-vv", "transcode", "-", "-"], capture_output=True, timeout=60,
                           input=noise.read_bytes())
    assert piped.returncode == 3
    said = piped.stderr.split(b"libsndfile (and libmpg123) said: ", 1)
    assert len(said) == 2 and said[1].startswith((b"[src/libmpg123/", b"Note: ")), piped.stderr
    read = subprocess.run([*DASCTL, "-vv", "transcode", str(noise), "-"], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert read.returncode == 3
    assert b"FFmpeg cannot open it: [Errno" in read.stderr, read.stderr
    assert b"Invalid data found" in read.stderr


@needs_ffmpeg
def test_a_real_mp3_still_transcodes_quietly(tmp_path):
    mp3 = tmp_path / "a.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(SOURCE), str(mp3)], check=True, timeout=30)
    result = run_transcode(mp3, "file", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith("transcode: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("how", ["file", "pipe"])
def test_a_sphere_header_is_text_but_not_a_text_file(how, tmp_path):
    # NIST SPHERE (TIMIT and other speech corpora) starts with 1024 bytes of ASCII header, padded with
    # blanks in the corpora (libsndfile pads with NULs: the blanks are patched in)
    import soundfile as sf

    samples, rate = sf.read(SOURCE, dtype="int16")
    sphere = tmp_path / "call.sph"
    sf.write(sphere, samples, rate, format="NIST")
    data = bytearray(sphere.read_bytes())
    end = data.index(b"end_head\n") + len(b"end_head\n")
    data[end:1024] = b" " * (1024 - end)
    sphere.write_bytes(bytes(data))
    result = run_transcode(sphere, how, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_stream()
