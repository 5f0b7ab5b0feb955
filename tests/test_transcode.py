"""`dasctl transcode` as a user runs it: real files in, real files out, stdout/stderr/exit code checked."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dasctl.audio import open_audio
from dasctl.mulaw import mulaw_decode

DATA = Path(__file__).parent / "data"
STEREO = DATA / "speech-ab-44k-stereo.wav"
SPEECH_A = DATA / "speech-a-8k-mono.wav"


def stream_bytes(path: Path, **options: object) -> bytes:
    with open_audio(path, **options) as stream:  # type: ignore[arg-type]
        return b"".join(stream.chunks())


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_transcode_to_wav_writes_a_playable_8k_mulaw_file(dasctl, tmp_path):
    out = tmp_path / "call.wav"
    result = dasctl("transcode", str(STEREO), str(out), "--channel", "left")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        f"transcode: {STEREO} (WAV PCM_16, 44100 Hz, 2 ch, channel left) -> {out}: 11.7 s of 8 kHz mu-law\n"
    )
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "ULAW", 8000, 1)
    data, _ = sf.read(out, dtype="int16")
    assert np.array_equal(data, mulaw_decode(stream_bytes(STEREO, channel="left")))
    if shutil.which("ffmpeg"):
        probe = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"],
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0 and probe.stderr == ""
    assert listing(tmp_path) == ["call.wav"]


def test_raw_output_and_stdout_carry_exactly_what_register_sends(dasctl, tmp_path):
    expected = stream_bytes(STEREO, channel="right", start=1.5, end=4.0)
    raw = tmp_path / "call.ul"
    result = dasctl("transcode", str(STEREO), str(raw), "--channel", "right", "--start", "1.5", "--end", "4")
    assert result.returncode == 0, result.stderr
    assert raw.read_bytes() == expected
    assert len(expected) == 20000
    piped = dasctl("transcode", str(STEREO), "-", "-c", "right", "--start", "1.5", "--end", "4", text=False)
    assert piped.returncode == 0
    assert piped.stdout == expected
    assert b"-> stdout: 2.5 s of 8 kHz mu-law" in piped.stderr


def test_stdin_input_streams_like_a_file(dasctl, tmp_path):
    out = tmp_path / "from-stdin.wav"
    result = dasctl("transcode", "-", str(out), input=STEREO.read_bytes(), text=False)
    assert result.returncode == 0, result.stderr
    # a stereo call sent unasked is both sides mixed: the line says so
    assert result.stderr.startswith(b"transcode: <stdin> (WAV PCM_16, 44100 Hz, 2 ch, mixed) ->")
    data, _ = sf.read(out, dtype="int16")
    assert np.array_equal(data, mulaw_decode(stream_bytes(STEREO)))


def test_paced_output_is_the_same_stream(dasctl, tmp_path):
    out = tmp_path / "paced.ul"
    short = DATA / "speech-short-16k-mono.wav"
    result = dasctl("transcode", str(short), str(out), "--speed", "50", "--frame-ms", "30")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == stream_bytes(short)


def test_quiet_prints_nothing(dasctl, tmp_path):
    result = dasctl("--quiet", "transcode", str(SPEECH_A), str(tmp_path / "a.ul"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def _bad_wav(kind: str) -> bytes:
    data = SPEECH_A.read_bytes()
    return {
        "empty": b"",
        "truncated-header": data[:30],
        "truncated-data": data[:90_000],
        "garbage": bytes(range(256)) * 40,
        "text": b"Dear customer,\nthis is not a recording.\n" * 10,
        "zero-channels": data[:22] + b"\x00\x00" + data[24:],
        "absurd-rate": data[:24] + (3).to_bytes(4, "little") + data[28:],
    }[kind]


@pytest.mark.parametrize("kind", ["empty", "truncated-header", "truncated-data", "garbage", "text",
                                  "zero-channels", "absurd-rate", "directory"])
def test_bad_input_exits_3_with_one_line_and_leaves_no_output(dasctl, tmp_path, kind):
    source = tmp_path / "in.wav"
    if kind == "directory":
        source.mkdir()
    else:
        source.write_bytes(_bad_wav(kind))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = dasctl("transcode", str(source), str(out_dir / "out.wav"))
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    first, *rest = result.stderr.splitlines()
    assert first.startswith(f"dasctl: error: {source}: ")
    assert len(rest) <= 1 and "Traceback" not in result.stderr
    assert listing(out_dir) == []


def test_truncated_stdin_fails_midway_and_removes_the_partial_file(dasctl, tmp_path):
    out = tmp_path / "out.wav"
    result = dasctl("transcode", "-", str(out), input=STEREO.read_bytes()[:900_000], text=False)
    assert result.returncode == 3
    assert b"dasctl: error: <stdin>: truncated: the audio stops at 5.1 s but the header announces 11.7 s" \
        in result.stderr
    assert listing(tmp_path) == []


def test_truncated_file_with_end_inside_the_data_succeeds(dasctl, tmp_path):
    source = tmp_path / "cut.wav"
    source.write_bytes(_bad_wav("truncated-data"))
    result = dasctl("transcode", str(source), str(tmp_path / "ok.ul"), "--end", "5")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ok.ul").stat().st_size == 40000


@pytest.mark.parametrize(("args", "message"), [
    (["missing.wav", "out.wav"], "missing.wav: no such file"),
    ([str(SPEECH_A), "out.mp3"], "out.mp3: cannot tell the output format from the name"),
    ([str(SPEECH_A), "out.wav", "--channel", "right"], "--channel right"),
    ([str(SPEECH_A), "out.wav", "--channel", "centre"], "use mix, left, right, or a channel number"),
    ([str(SPEECH_A), "out.wav", "--start", "3", "--end", "2"], "--start 3 must be before --end 2"),
    ([str(SPEECH_A), "out.wav", "--start", "99"], "--start 99 s is past the end"),
    ([str(SPEECH_A), "out.wav", "--speed", "-1"], "--speed -1"),
    ([str(SPEECH_A), "out.wav", "--frame-ms", "0"], "--frame-ms 0"),
    ([str(SPEECH_A), "nowhere/out.wav"], "does not exist"),
])
def test_usage_errors_exit_2_and_write_nothing(dasctl, tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "dasctl", "transcode", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("dasctl: error: ")
    assert message in result.stderr.splitlines()[0]
    assert listing(tmp_path) == []


def test_refuses_to_write_binary_to_a_terminal(tmp_path):
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "dasctl", "transcode", str(SPEECH_A), "-"],
                                stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert "refusing to write binary audio to a terminal" in result.stderr
    assert "> call.ul" in result.stderr
