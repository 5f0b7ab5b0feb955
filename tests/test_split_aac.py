"""A long AAC (m4a) recording read whole is decoded in two parts at once, the second in a forked child
process (dasctl/audio/forked.py, segments.py): every sample in place, the child reaped, errors as one
decoder gives them, and no fork in a process that runs other threads.

The decoding runs in a fresh Python process (a script, or `dasctl transcode`), as a user's would: a pytest
worker runs threads of its own, and a process with threads is never forked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dasctl.audio.output import read_mulaw_wav
from dasctl.audio.segments import split_points
from tests.conftest import DATA

Run = Callable[..., subprocess.CompletedProcess[Any]]
SECONDS = 130  # over the 120 s below which a recording is decoded in one piece
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the AAC recordings")

#: decode argv[1] (channel argv[2]) whole and with --end past the end (one piece); save both as int16
HEARD = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
from dasctl.audio import open_audio
def heard(**options):
    with open_audio(sys.argv[1], channel=sys.argv[2], **options) as stream:
        return np.concatenate(list(stream.pcm_blocks()))
np.save(sys.argv[3], heard())
np.save(sys.argv[4], heard(end=100000))
"""


def _m4a(path: Path, *extra: str) -> Path:
    """The stereo speech fixture looped to SECONDS, as a recorder's AAC file (64 kbit/s; FFmpeg's fast
    coder: a quarter of the default one's CPU, and as much AAC for the decoder)."""
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-stream_loop", "-1", "-i",
                    str(DATA / "speech-ab-44k-stereo.wav"), "-t", str(SECONDS), *extra, "-c:a", "aac",
                    "-aac_coder", "fast", "-b:a", "64k", str(path)], check=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def long_m4a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _m4a(tmp_path_factory.mktemp("aac") / "long.m4a")


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _snr_db(ours: np.ndarray, reference: np.ndarray) -> float:
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    noise = float(np.sum((ours - reference) ** 2))
    return 10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-9))


@pytest.mark.parametrize("channel", ["mix", "right"])
def test_the_two_parts_send_what_one_decoder_would(channel: str, long_m4a: Path, tmp_path: Path) -> None:
    """Every sample there and in place (same count, no shift at the seam), equal to one decoder's but for
    soxr's rounding and AAC's noise substitution (perceptual noise in place of a noisy band), which a
    fresh decoder draws afresh."""
    split, whole = tmp_path / "split.npy", tmp_path / "whole.npy"
    done = _python(HEARD, str(long_m4a), channel, str(split), str(whole))
    assert done.returncode == 0, done.stderr
    assert "decoding in 2 parts, two at a time (the last in a child process)" in done.stderr
    assert "does not join" not in done.stderr
    ours, theirs = np.load(split), np.load(whole)
    assert len(ours) == len(theirs) and abs(len(ours) - SECONDS * 8000) < 800  # + the encoder's padding
    seam = split_points(SECONDS * 44100, 44100, two_parts=True)[1] * 8000 // 44100
    assert np.array_equal(ours[:seam], theirs[:seam])  # the first part is the same decoder
    # the second: a sample's shift at the seam would be a -17 dB difference; noise substitution, drawn
    # afresh, is some 70 dB below the signal (the codec's own noise at 64 kbit/s is nearer 20 dB below)
    assert _snr_db(ours[seam:], theirs[seam:]) > 60
    around = slice(seam, seam + 4000)  # the half second after the seam
    assert _snr_db(ours[around], theirs[around]) > 50


def test_transcode_writes_the_same_file_split_or_not(long_m4a: Path, dasctl: Run, tmp_path: Path) -> None:
    split = dasctl("-vv", "transcode", str(long_m4a), str(tmp_path / "split.wav"))
    assert split.returncode == 0, split.stderr
    assert "the last in a child process" in split.stderr
    whole = dasctl("transcode", str(long_m4a), str(tmp_path / "whole.wav"), "--end", "1000")
    assert whole.returncode == 0, whole.stderr
    ours = np.frombuffer(read_mulaw_wav(tmp_path / "split.wav"), np.uint8)
    theirs = np.frombuffer(read_mulaw_wav(tmp_path / "whole.wav"), np.uint8)
    assert len(ours) == len(theirs) and abs(len(ours) - SECONDS * 8000) < 800
    # a sample's shift at the seam would change most bytes after it; noise substitution changes a few
    assert np.mean(ours == theirs) > 0.99


def test_a_recording_whose_times_lie_is_decoded_on_in_one_piece(dasctl: Run, tmp_path: Path) -> None:
    """Its timestamps jump by a second at 40 s (the sample table says so; the samples run on): the child
    starts a second off, the seam check sees it, and the first part goes on alone, as one decoder would."""
    source = _m4a(tmp_path / "jump.m4a", "-af", "asetpts='PTS+if(gte(T,40),44100,0)'")
    split = dasctl("-vv", "transcode", str(source), str(tmp_path / "split.wav"))
    assert split.returncode == 0, split.stderr
    assert "does not join the one before it; decoding on in one piece" in split.stderr
    whole = dasctl("transcode", str(source), str(tmp_path / "whole.wav"), "--end", "1000")
    assert whole.returncode == 0, whole.stderr
    assert (tmp_path / "split.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()


def test_damage_in_the_second_half_is_the_error_one_decoder_gives(
    long_m4a: Path, dasctl: Run, tmp_path: Path
) -> None:
    """The child's error reaches the user as the same one line, naming the same place; nothing written."""
    data = bytearray(long_m4a.read_bytes())
    at = len(data) * 3 // 4
    rng = np.random.default_rng(5)
    for k in range(30):  # more damaged packets than FFmpeg's decoder is allowed to skip
        data[at + k * 3000:at + k * 3000 + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    source = tmp_path / "damaged.m4a"
    source.write_bytes(bytes(data))
    split = dasctl("transcode", str(source), str(tmp_path / "out.wav"))
    whole = dasctl("transcode", str(source), str(tmp_path / "out.wav"), "--end", "1000")
    assert split.returncode == whole.returncode == 3
    assert split.stderr == whole.stderr
    assert split.stderr.startswith(f"dasctl: error: {source}: corrupt audio data at "), split.stderr
    assert len(split.stderr.strip().splitlines()) == 2  # the line and its hint, no traceback
    assert not (tmp_path / "out.wav").exists()


def test_closing_halfway_ends_the_child_and_reaps_it(long_m4a: Path) -> None:
    code = """
import os, sys, threading
from pathlib import Path
from dasctl.audio import open_audio
def children():
    return [pid for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()]
stream = open_audio(sys.argv[1])
blocks = stream.pcm_blocks()
for _ in range(3):
    next(blocks)
print("before", len(children()))
stream.close()
print("after", len(children()), [t.name for t in threading.enumerate() if t.name == "dasctl-audio-part"])
try:
    next(blocks)
except ValueError as error:
    print("next:", error)
"""
    done = _python(code, str(long_m4a))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "before 1", "after 0 []", "next: the audio stream was closed while it was being read"]


def test_a_process_that_runs_other_threads_is_never_forked(long_m4a: Path) -> None:
    """fork() copies only the calling thread, so a lock another thread held would stay locked in the
    child: with a second thread running, the file is decoded in one piece, and the result is the same."""
    code = """
import logging, sys, threading, time
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
from dasctl.audio import open_audio
for end in (None, 100000):  # read whole, then in one piece for sure (--end)
    with open_audio(sys.argv[1], end=end) as stream:
        print(sum(len(block) for block in stream.pcm_blocks()))
"""
    done = _python(code, str(long_m4a))
    assert done.returncode == 0, done.stderr
    whole, one_piece = done.stdout.split()
    assert whole == one_piece and abs(int(whole) - SECONDS * 8000) < 800
    assert "decoding in" not in done.stderr


def test_ctrl_c_during_a_split_transcode_leaves_no_process_and_no_file(
    long_m4a: Path, tmp_path: Path
) -> None:
    """SIGINT to the process group, as a terminal sends it: both processes end, exit 130, no output."""
    out = tmp_path / "out.wav"
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dasctl", "-vv", "transcode", str(long_m4a), str(out), "--speed", "20"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ),
            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "decoding in 2 parts" not in log.read_text():  # the child is forked right after this line
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    rest = log.read_text()
    assert process.returncode == 130, rest
    assert "Traceback" not in rest
    assert sorted(path.name for path in tmp_path.iterdir()) == ["stderr.txt"]  # no output, whole or half
    with pytest.raises(ProcessLookupError):  # nobody is left in the group
        os.killpg(process.pid, 0)


def test_when_no_process_can_be_started_the_file_is_decoded_in_one_piece(long_m4a: Path) -> None:
    """fork() failing (EAGAIN: the user's process limit) is no error: the file is decoded in one piece.
    (As root the process limit does not apply, so fork is made to fail as the limit would.)"""
    code = """
import errno, logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
def no_fork():
    raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
os.fork = no_fork
from dasctl.audio import open_audio
descriptors = len(os.listdir("/proc/self/fd"))
for end in (None, 100000):
    with open_audio(sys.argv[1], end=end) as stream:
        print(sum(len(block) for block in stream.pcm_blocks()))
print("pipes closed:", len(os.listdir("/proc/self/fd")) == descriptors)
"""
    done = _python(code, str(long_m4a))
    assert done.returncode == 0, done.stderr
    whole, one_piece, closed = done.stdout.splitlines()
    assert whole == one_piece and abs(int(whole) - SECONDS * 8000) < 800
    assert closed == "pipes closed: True"
    assert "cannot start a process ([Errno 11] Resource temporarily unavailable); decoding in one piece" \
        in done.stderr


def test_a_child_that_dies_midway_is_one_clear_error_not_a_short_file(long_m4a: Path) -> None:
    """The child killed from outside (the OOM killer, a kill of its pid alone) in the middle of its
    output: one line naming the file, no partial part passed off as the whole. (The child is made to die
    after half a message.)"""
    code = """
import os, sys
import dasctl.audio.forked as forked
def dying(write_end, source, first, channel):
    os.write(write_end, forked._HEADER.pack(forked._BLOCK, 16000) + bytes(100))
    os._exit(9)
forked._run_child = dying
from dasctl.audio import open_audio
from dasctl.errors import AudioError
try:
    with open_audio(sys.argv[1]) as stream:
        for block in stream.pcm_blocks():
            pass
except AudioError as error:
    print("error:", error)
"""
    done = _python(code, str(long_m4a))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"error: {long_m4a}: the process decoding its second half stopped before the end\n"
