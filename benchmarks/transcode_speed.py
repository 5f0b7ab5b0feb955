"""Wall time of `dasctl transcode` against ffmpeg and sox on a 17-minute 44.1 kHz stereo call (same run).

Target (DESIGN.md): dasctl's median wall time <= ffmpeg's. Run: .venv/bin/python benchmarks/transcode_speed.py
Inputs are made under benchmarks/.work/ (gitignored) from the committed speech fixtures.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / ".work"
FIXTURE = ROOT / "tests" / "data" / "speech-ab-44k-stereo.wav"
DASCTL = Path(sys.executable).parent / "dasctl"


def make_recording(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> Path:
    """A long call: the stereo speech fixture repeated, with a little noise so no two blocks are equal."""
    if path.exists() and sf.info(path).frames == int(seconds * rate):
        return path
    speech, speech_rate = sf.read(FIXTURE, dtype="float32")
    if speech_rate != rate:
        speech = soxr.resample(speech, speech_rate, rate, quality="VHQ")
    if channels == 1:
        speech = speech.mean(axis=1, keepdims=True)
    rng = np.random.default_rng(7)
    total = int(seconds * rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.wav")
    with sf.SoundFile(partial, "w", rate, channels, subtype="PCM_16", format="WAV") as out:
        written = 0
        while written < total:
            block = speech[: total - written]
            noise = rng.normal(0, 0.003, block.shape).astype(np.float32)
            out.write(np.clip(block + noise, -1, 1))
            written += len(block)
    partial.replace(path)
    return path


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=17.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    source = make_recording(WORK / f"call-{args.minutes:g}m-44k-stereo.wav", args.minutes * 60)
    commands = {
        "dasctl": [str(DASCTL), "--quiet", "transcode", str(source), str(WORK / "speed-dasctl.wav")],
        "ffmpeg": ["ffmpeg", "-y", "-v", "error", "-i", str(source), "-ar", "8000", "-ac", "1", "-f", "mulaw",
                   str(WORK / "speed-ffmpeg.ul")],
        "sox": ["sox", str(source), "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul",
                str(WORK / "speed-sox.ul")],
    }
    commands = {name: cmd for name, cmd in commands.items() if shutil.which(cmd[0])}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        timed(command)  # warm the page cache and the import caches
    for _ in range(args.runs):
        for name, command in commands.items():  # interleaved, so load on the machine hits all alike
            times[name].append(timed(command))
    print(f"input: {source.name} ({args.minutes:g} min, 44.1 kHz stereo, 16-bit); median of {args.runs} runs")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        spread = f"min {min(times[name]):.3f} max {max(times[name]):.3f}"
        print(f"  {name:7s} {median:.3f} s  ({spread})")
    if "ffmpeg" in medians:
        ratio = medians["dasctl"] / medians["ffmpeg"]
        print(f"dasctl/ffmpeg wall ratio: {ratio:.2f} (target <= 1.00: {'met' if ratio <= 1 else 'NOT met'})")
    if "sox" in medians:
        print(f"dasctl/sox wall ratio: {medians['dasctl'] / medians['sox']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
