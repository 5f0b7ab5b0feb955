"""Peak RSS of `dasctl transcode` on a 1-hour 48 kHz stereo WAV, from a file and from a pipe; then the same
hour as AAC/m4a (FFmpeg's decoder, through PyAV) from a file and from a pipe (spooled to disk, not memory),
and as MP3 (from a file: decoded in three parts, two at a time, the part ahead held as 8 kHz int16).

docs/contributing.md: <= 120 MB; the audio is streamed in blocks, never loaded whole (the input is 660 MB).
The baseline printed beside it is the same interpreter importing numpy, soundfile and soxr and doing
nothing: what the pipeline adds is the difference. Run: .venv/bin/python benchmarks/transcode_memory.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transcode_speed import DASCTL, WORK, make_compressed, make_recording  # noqa: E402

TARGET_MB = 120


# A small launcher forks and execs the command and reports the child's ru_maxrss. Measuring from this
# process would count the copy of its own memory (numpy loaded) that fork makes before exec.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_mb(command: list[str], stdin: int | IO[bytes] | None = None) -> float:
    """Peak RSS of one run of command, in MiB."""
    result = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *command],
                            stdin=subprocess.DEVNULL if stdin is None else stdin,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{command} failed: {result.stderr.strip()}")
    return int(result.stdout.split()[-1]) / 1024  # KiB on Linux


def file_and_pipe(source: Path) -> tuple[float, float]:
    """Peak RSS (MiB) of transcoding source from its path, and from `cat source |`."""
    from_file = peak_rss_mb([str(DASCTL), "-q", "transcode", str(source), str(WORK / "memory-file.wav")])
    cat = subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE)
    assert cat.stdout is not None
    from_pipe = peak_rss_mb([str(DASCTL), "-q", "transcode", "-", str(WORK / "memory-pipe.wav")], cat.stdout)
    cat.stdout.close()
    cat.wait()
    return from_file, from_pipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--no-m4a", action="store_true", help="only the WAV (no m4a, no mp3)")
    args = parser.parse_args()
    source = make_recording(WORK / f"call-{args.minutes:g}m-48k-stereo.wav", args.minutes * 60, rate=48000)
    size_mb = source.stat().st_size / 2**20
    baseline = peak_rss_mb([sys.executable, "-c", "import numpy, soundfile, soxr"])
    from_file, from_pipe = file_and_pipe(source)
    rows = [("from a file", from_file), ("from a pipe (cat |)", from_pipe)]
    if not args.no_m4a:
        m4a = make_compressed(source, "m4a")
        m4a_file, m4a_pipe = file_and_pipe(m4a)
        rows += [("of the m4a, from a file", m4a_file), ("of the m4a, from a pipe", m4a_pipe)]
        mp3 = make_compressed(source, "mp3")
        mp3_file, mp3_pipe = file_and_pipe(mp3)
        rows += [("of the mp3, from a file", mp3_file), ("of the mp3, from a pipe", mp3_pipe)]
    print(f"input: {source.name} ({args.minutes:g} min, 48 kHz stereo 16-bit, {size_mb:.0f} MB)")
    print(f"  baseline (python + numpy, soundfile, soxr imported): {baseline:.1f} MB")
    for label, value in rows:
        verdict = "met" if value <= TARGET_MB else "NOT met"
        print(f"  dasctl transcode {label}: peak RSS {value:.1f} MB "
              f"({value / TARGET_MB:.2f} of the {TARGET_MB} MB target: {verdict}; {value - baseline:+.1f} MB"
              " over the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
