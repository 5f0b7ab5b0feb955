"""Does a long-running `dasctl watch` keep its memory flat? RSS wave after wave of recordings landing.

Usage: python benchmarks/watch_memory.py [--waves 40] [--files 100] [--concurrency 8] [--check]

A watch service runs for days; its memory must not grow with the files it has seen. This starts
`dasctl serve` on a free port and one `dasctl watch INBOX -j CONCURRENCY --speed 0 --settle 0.2` (no
--once: the service form, taking new files from folder events, keeping each enrollment in its SQLite
store), then drops WAVES waves of FILES recordings (cuts of the committed fixtures, a new name each) into
the inbox. After each wave is reported (its JSON lines on stdout), it reads the watch's RSS from
/proc/PID/status and removes the wave's files.

It does this twice in the same run:
- dasctl as shipped: the program raises the garbage collector's first threshold to 50,000 new objects
  (dasctl/cli/__init__.py GC_THRESHOLD), for start-up speed;
- the baseline: the same program with Python's default threshold (700), the collector at its most eager.

Prints RSS after each wave for both, the growth over the second half of the waves in MB per 1,000 files
(the slope; the first half warms up: RSS rises for the first 1,000-1,500 files, then stays), and the
ratio of the final RSS (shipped / baseline). --check exits 1 when the shipped watch still grows more
than 1.5 MB per 1,000 files in the second half (what is left is glibc keeping freed memory:
malloc_trim(0) gives back 7-13 MB of a 110 MB watch, and what it keeps does not grow), or ends more than
1.25x the baseline's RSS, or any file is not enrolled.
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

from local_emulator import running_emulator, stop
from watch_throughput import make_recordings

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work" / "watch-memory"
GROWTH_TARGET_MB_PER_1000 = 1.5
RATIO_TARGET = 1.25
#: Runs dasctl as its console script does, but with the collector's threshold left at Python's default.
DEFAULT_GC = ("import gc, sys; gc.set_threshold = lambda *a: None; from dasctl.cli import main; "
              "sys.exit(main())")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for process {pid}")


def wait_for_lines(out: Path, count: int, proc: subprocess.Popen[bytes], limit: float) -> list[dict]:
    deadline = time.monotonic() + limit
    while True:
        whole = out.read_text().rpartition("\n")[0]  # a line still being written is not read yet
        lines = [json.loads(text) for text in whole.splitlines() if text.strip()]
        if len(lines) >= count:
            return lines
        if proc.poll() is not None:
            raise SystemExit(f"watch exited with {proc.returncode} after {len(lines)} of {count} files")
        if time.monotonic() > deadline:
            raise SystemExit(f"watch reported {len(lines)} of {count} files within {limit:.0f} s")
        time.sleep(0.2)


def run_watch(name: str, command: list[str], sources: list[Path], args: argparse.Namespace,
              env: dict[str, str]) -> tuple[list[float], int]:
    """One watch through every wave: (RSS in MB after each wave, files enrolled)."""
    inbox = WORK / f"inbox-{name}"
    inbox.mkdir(parents=True)
    out = WORK / f"watch-{name}.out"
    with out.open("wb") as stdout, (WORK / f"watch-{name}.err").open("wb") as stderr:
        proc = subprocess.Popen(
            [*command, "watch", str(inbox), "--concurrency", str(args.concurrency), "--speed", "0",
             "--settle", "0.2", "--store", str(WORK / f"store-{name}.db")],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env)
    samples: list[float] = []
    try:
        lines: list[dict] = []
        for wave in range(args.waves):
            landed = []
            for i, source in enumerate(sources):
                target = inbox / f"w{wave:03}-{i:04}.wav"
                staging = WORK / "staging.wav"  # copied whole, then renamed in: one event per file
                shutil.copyfile(source, staging)
                staging.rename(target)
                landed.append(target)
            lines = wait_for_lines(out, (wave + 1) * len(sources), proc, limit=60 + 2 * len(sources))
            samples.append(rss_mb(proc.pid))
            for path in landed:
                path.unlink()
            print(f"  {name:<9} wave {wave + 1:>3}: {len(lines):>5} files, RSS {samples[-1]:6.1f} MB",
                  flush=True)
        enrolled = sum(1 for line in lines if line.get("ok"))
    finally:
        stop(proc, 30)
    return samples, enrolled


def growth_per_1000(samples: list[float], files: int) -> float:
    """MB per 1,000 files over the second half of the waves: the least-squares slope of RSS against files
    seen. The first half is warming up (the allocator's arenas, SQLite's page cache, aiohttp's pools grow
    for the first 1,000-1,500 files, then stay); a slope after that is memory held per file."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return 0.0
    xs = [i * files / 1000 for i in range(len(half))]
    mean_x, mean_y = sum(xs) / len(xs), sum(half) / len(half)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, half, strict=True)) / spread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=40)
    parser.add_argument("--files", type=int, default=100, help="recordings per wave")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    sources = make_recordings(WORK / "sources", args.files)
    config_dir = WORK / "config"
    config_dir.mkdir(parents=True)
    results: dict[str, tuple[list[float], int]] = {}
    with running_emulator(log=WORK / "emulator.log") as emulator:
        env = {**os.environ, "DASCTL_PROFILE": "local", "DASCTL_URL": emulator.url,
               "DASCTL_CONFIG_DIR": str(config_dir), "NO_COLOR": "1", "OPENBLAS_NUM_THREADS": "1"}
        shipped = [sys.executable, "-m", "dasctl"]
        baseline = [sys.executable, "-c", DEFAULT_GC]
        subprocess.run([*shipped, "login"], env=env, capture_output=True, check=True)
        print(f"{args.waves} waves of {args.files} recordings (6-8 s of speech each), -j {args.concurrency}, "
              f"--speed 0, {os.cpu_count()} CPUs")
        results["shipped"] = run_watch("shipped", shipped, sources, args, env)
        results["gc-700"] = run_watch("gc-700", baseline, sources, args, env)

    total = args.waves * args.files
    print()
    for name, (samples, enrolled) in results.items():
        second = samples[min(1, len(samples) - 1)]
        print(f"{name:<9} RSS after wave 1 {samples[0]:6.1f} MB, wave 2 {second:6.1f} MB, "
              f"last {samples[-1]:6.1f} MB (peak {max(samples):.1f}); second half's slope "
              f"{growth_per_1000(samples, args.files):+.2f} MB per 1,000 files; {enrolled}/{total} enrolled")
    ratio = results["shipped"][0][-1] / results["gc-700"][0][-1]
    growth = growth_per_1000(results["shipped"][0], args.files)
    print(f"ratio:    {ratio:.2f}x final RSS, shipped / Python's default gc threshold "
          f"(target <= {RATIO_TARGET:g}x)")
    print(f"growth:   {growth:+.2f} MB per 1,000 files (target <= {GROWTH_TARGET_MB_PER_1000:g})")
    missed = ratio > RATIO_TARGET or growth > GROWTH_TARGET_MB_PER_1000 or any(
        enrolled != total for _, enrolled in results.values())
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
