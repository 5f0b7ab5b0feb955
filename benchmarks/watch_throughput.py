"""`dasctl watch --once --concurrency 8 --speed 0` on 200 recordings against one `dasctl register` per file.

Usage: python benchmarks/watch_throughput.py [--files 200] [--baseline-files 20] [--concurrency 8]
       [--rounds 2] [--check]

Makes FILES recordings of 6-8 s of speech (cuts of the committed fixtures, varied in offset and gain)
under benchmarks/.work/watch/, starts `dasctl serve` on a free port, then in the same run times:
- watch: one `dasctl watch DIR --once` process for all files (peak RSS from wait4), keeping an enrollment
  record per file in a fresh SQLite store, and the same with `--no-store` (watch's own state is still kept,
  in its own fresh store), alternated for ROUNDS rounds, best of each (docs/contributing.md: with the store
  >= 95% of the files/s without it);
- baseline: `dasctl register --speed 0 FILE` once per file, one process each, on the first
  BASELINE_FILES files (sequential, as a shell loop would), scaled per file.
Prints files/s for each, the ratios (docs/contributing.md targets: >= 5x register-per-file; store >= 0.95 of
--no-store) and watch's peak RSS. --check exits 1 when a ratio misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from local_emulator import running_emulator

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
WORK = ROOT / "benchmarks" / ".work" / "watch"
SOURCES = ["speech-a-8k-mono.wav", "speech-b-16k-mono.wav", "speech-c-22k-mono.wav"]
TARGET_RATIO = 5.0
TARGET_STORE_SHARE = 0.95


def make_recordings(folder: Path, count: int) -> list[Path]:
    """COUNT WAV files of 6-8 s of speech each, every one a different cut of a fixture."""
    import numpy as np
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    sources = [soundfile.read(str(DATA / name), dtype="float32") for name in SOURCES]
    paths = []
    for i in range(count):
        samples, rate = sources[i % len(sources)]
        length = 6.0 + (i % 5) * 0.5  # 6.0 .. 8.0 s
        offset = (i * 0.37) % max(0.1, len(samples) / rate - length)
        cut = samples[int(offset * rate): int((offset + length) * rate)] * (0.6 + (i % 4) * 0.1)
        path = folder / f"call-{i:04}.wav"
        soundfile.write(str(path), np.clip(cut, -1, 1), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def run_measured(command: list[str], env: dict[str, str], stdout: Path) -> tuple[float, int, float]:
    """Run a command to completion: (wall seconds, exit code, peak RSS in MB) from wait4."""
    started = time.perf_counter()
    with stdout.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env)
        assert proc.stderr is not None
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 7):
        sys.stderr.write(errors.decode(errors="replace"))
    return wall, proc.returncode, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--baseline-files", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="store / --no-store runs each, alternated")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio misses its target")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    inbox = WORK / "inbox"
    recordings = make_recordings(inbox, args.files)
    config_dir = WORK / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    with running_emulator(log=WORK / "emulator.log") as emulator:
        env = {**os.environ, "DASCTL_PROFILE": "local", "DASCTL_URL": emulator.url,
               "DASCTL_CONFIG_DIR": str(config_dir), "NO_COLOR": "1"}
        dasctl = [sys.executable, "-m", "dasctl"]
        # warm the token cache and the page cache so both sides start equal
        subprocess.run([*dasctl, "register", "--speed", "0", str(recordings[0])], env=env,
                       capture_output=True, check=False)

        walls: dict[str, list[float]] = {"store": [], "no-store": []}
        watch_code, watch_rss, lines = 0, 0.0, []
        for n in range(args.rounds):
            for mode in ("no-store", "store") if n % 2 == 0 else ("store", "no-store"):
                store = WORK / f"store-{mode}-{n}.db"  # fresh each time: no file is already reported
                flags = ["--no-store"] if mode == "no-store" else []
                wall, code, rss = run_measured(
                    [*dasctl, "watch", str(inbox), "--once", "--concurrency", str(args.concurrency),
                     "--speed", "0", "--settle", "0", "--store", str(store), *flags],
                    env, WORK / f"watch-{mode}.out",
                )
                walls[mode].append(wall)
                if mode == "store":
                    watch_code, watch_rss = code, max(watch_rss, rss)
                    out = (WORK / "watch-store.out").read_text().splitlines()
                    lines = [json.loads(line) for line in out if line]
        succeeded = sum(1 for line in lines if line.get("ok"))
        watch_wall = min(walls["store"])
        bare_wall = min(walls["no-store"])

        baseline = recordings[: args.baseline_files]
        loop_started = time.perf_counter()
        loop_failures = 0
        register_rss = 0.0
        for path in baseline:
            command = [*dasctl, "register", "--speed", "0", str(path)]
            _, code, rss = run_measured(command, env, WORK / "register.out")
            loop_failures += code != 0
            register_rss = max(register_rss, rss)
        loop_wall = time.perf_counter() - loop_started

    watch_rate = len(recordings) / watch_wall
    bare_rate = len(recordings) / bare_wall
    loop_rate = len(baseline) / loop_wall
    ratio = watch_rate / loop_rate
    share = watch_rate / bare_rate
    print(f"recordings:          {len(recordings)} x 6-8 s of speech, --speed 0, {os.cpu_count()} CPUs")
    print(f"watch --once -j {args.concurrency}:    {watch_wall:6.2f} s  {watch_rate:6.2f} files/s  "
          f"exit {watch_code}, {succeeded}/{len(lines)} enrolled and kept, peak RSS {watch_rss:.0f} MB "
          f"(best of {args.rounds}: {', '.join(f'{w:.2f}' for w in walls['store'])} s)")
    print(f"  ... --no-store:    {bare_wall:6.2f} s  {bare_rate:6.2f} files/s  "
          f"(best of {args.rounds}: {', '.join(f'{w:.2f}' for w in walls['no-store'])} s)")
    print(f"store / no store:    {share:.2f}  (target >= {TARGET_STORE_SHARE:g})")
    print(f"register per file:   {loop_wall:6.2f} s  {loop_rate:6.2f} files/s  "
          f"({len(baseline)} files, {loop_failures} failed, peak RSS {register_rss:.0f} MB each)")
    print(f"ratio:               {ratio:.1f}x  (target >= {TARGET_RATIO:g}x)")
    if args.check and (ratio < TARGET_RATIO or share < TARGET_STORE_SHARE or succeeded != len(recordings)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
