"""Wall time of `dasctl transcode` against ffmpeg and sox on 44.1 kHz stereo calls of 1, 3, 10 and 17 minutes.

One run measures the whole curve (the same load on the machine for every point): dasctl pays Python's
start-up on every file, so short files show it most. docs/contributing.md: dasctl's median wall time <=
ffmpeg's on the 17-minute call. Then the same call compressed as recorders write it (MP3 through libsndfile,
AAC/m4a through FFmpeg's decoder in PyAV), against ffmpeg decoding the same file in the same run.
Run: .venv/bin/python benchmarks/transcode_speed.py [--minutes 1 3 10 17] [--formats mp3 m4a]
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


#: how each compressed input is made from the WAV (ffmpeg's encoders, as a recorder would write it)
ENCODERS = {"mp3": ["-c:a", "libmp3lame", "-b:a", "64k"], "m4a": ["-c:a", "aac", "-b:a", "64k"]}


def make_compressed(wav: Path, suffix: str) -> Path:
    """The WAV encoded by ffmpeg as `suffix` (kept under .work/ for the next run)."""
    path = wav.with_suffix(f".{suffix}")
    if not path.exists():
        partial = wav.with_suffix(f".partial.{suffix}")
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-nostdin", "-i", str(wav), *ENCODERS[suffix],
                        str(partial)], check=True)
        partial.replace(path)
    return path


def cpu_seconds(command: list[str]) -> float:
    """User + system CPU time of one run: what a busy machine (others' load) cannot bend as it bends wall
    time; dasctl decodes on a second thread, so on an idle machine its wall time is below its CPU time."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def commands_for(source: Path) -> dict[str, list[str]]:
    commands = {
        "dasctl": [str(DASCTL), "--quiet", "transcode", str(source), str(WORK / "speed-dasctl.wav")],
        "ffmpeg": ["ffmpeg", "-y", "-v", "error", "-i", str(source), "-ar", "8000", "-ac", "1", "-f", "mulaw",
                   str(WORK / "speed-ffmpeg.ul")],
        "sox": ["sox", str(source), "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul",
                str(WORK / "speed-sox.ul")],
    }
    return {name: cmd for name, cmd in commands.items() if shutil.which(cmd[0])}


def measure(
    source: Path, runs: int, tools: tuple[str, ...] = ("dasctl", "ffmpeg", "sox")
) -> dict[str, list[float]]:
    commands = {name: command for name, command in commands_for(source).items() if name in tools}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        timed(command)  # warm the page cache and the import caches
    for _ in range(runs):
        for name, command in commands.items():  # interleaved, so load on the machine hits all alike
            times[name].append(timed(command))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0, 10.0, 17.0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--formats", nargs="*", default=list(ENCODERS), choices=list(ENCODERS),
                        help="compressed inputs to time at the longest --minutes (none: skip)")
    args = parser.parse_args()
    print(f"44.1 kHz stereo 16-bit WAV -> 8 kHz mu-law; median wall time of {args.runs} runs per point")
    print(f"{'minutes':>7}  {'dasctl':>8}  {'ffmpeg':>8}  {'sox':>8}  dasctl/ffmpeg  dasctl/sox")
    last_ratio = None
    for minutes in args.minutes:
        source = make_recording(WORK / f"call-{minutes:g}m-44k-stereo.wav", minutes * 60)
        medians = {name: statistics.median(values) for name, values in measure(source, args.runs).items()}
        cells = {name: f"{medians[name]:7.3f}s" if name in medians else f"{'-':>8}"
                 for name in ("dasctl", "ffmpeg", "sox")}
        ratios = {name: f"{medians['dasctl'] / medians[name]:.2f}x" if name in medians else "-"
                  for name in ("ffmpeg", "sox")}
        print(f"{minutes:7g}  {cells['dasctl']}  {cells['ffmpeg']}  {cells['sox']}  {ratios['ffmpeg']:>13}  "
              f"{ratios['sox']:>10}", flush=True)
        if "ffmpeg" in medians:
            last_ratio = medians["dasctl"] / medians["ffmpeg"]
    if last_ratio is not None:
        print(f"longest file: dasctl/ffmpeg wall ratio {last_ratio:.2f} "
              f"(target <= 1.00: {'met' if last_ratio <= 1 else 'NOT met'})")
    if args.formats and shutil.which("ffmpeg"):
        minutes = max(args.minutes)
        wav = make_recording(WORK / f"call-{minutes:g}m-44k-stereo.wav", minutes * 60)
        print(f"\n{minutes:g} min compressed (64 kbit/s) -> 8 kHz mu-law; median of {args.runs} runs")
        print(f"{'input':>7}  {'dasctl':>8}  {'ffmpeg':>8}  dasctl/ffmpeg  (CPU: dasctl, ffmpeg, ratio)")
        for suffix in args.formats:
            source = make_compressed(wav, suffix)
            times = measure(source, args.runs, ("dasctl", "ffmpeg"))  # sox reads neither
            dasctl, ffmpeg = statistics.median(times["dasctl"]), statistics.median(times["ffmpeg"])
            ratio = dasctl / ffmpeg
            commands = commands_for(source)
            cpu = {name: statistics.median(cpu_seconds(commands[name]) for _ in range(args.runs))
                   for name in ("dasctl", "ffmpeg")}
            print(f"{suffix:>7}  {dasctl:7.3f}s  {ffmpeg:7.3f}s  {ratio:12.2f}x "
                  f"(target <= 1.00: {'met' if ratio <= 1 else 'NOT met'})  "
                  f"(CPU {cpu['dasctl']:.2f} s, {cpu['ffmpeg']:.2f} s, {cpu['dasctl'] / cpu['ffmpeg']:.2f}x)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
