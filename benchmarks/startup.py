"""Startup time of `dasctl --version` and `dasctl --help`, against `python -c pass` in the same run.

Usage: python benchmarks/startup.py [--runs N] [--check]
Prints the median wall time of each and its ratio to the bare interpreter; with --check, exits 1 when a
median misses its target (docs/contributing.md) (--version <= 0.10 s, --help <= 0.20 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGETS = {"dasctl --version": 0.10, "dasctl --help": 0.20}


def dasctl_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m dasctl`."""
    script = Path(sys.executable).with_name("dasctl")
    if script.exists():
        return [str(script)]
    found = shutil.which("dasctl")
    return [found] if found else [sys.executable, "-m", "dasctl"]


def wall_times(command: list[str], runs: int) -> list[float]:
    env = {**os.environ, "NO_COLOR": "1"}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    dasctl = dasctl_command()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dasctl --version": [*dasctl, "--version"],
        "dasctl --help": [*dasctl, "--help"],
    }
    for command in cases.values():  # warm the OS page cache and .pyc files
        wall_times(command, 2)
    # interleave the cases so load on the machine hits them all alike
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, command in cases.items():
            samples[name].extend(wall_times(command, 1))

    baseline = statistics.median(samples["python -c pass"])
    print(f"startup, median of {args.runs} runs ({' '.join(dasctl)}; {sys.version.split()[0]})")
    print(f"{'command':<20} {'median s':>9} {'vs python':>10} {'target s':>9}  verdict")
    missed = False
    for name, times in samples.items():
        median = statistics.median(times)
        target = TARGETS.get(name)
        verdict = "" if target is None else ("ok" if median <= target else "MISSED")
        missed |= verdict == "MISSED"
        target_text = f"{target:.2f}" if target is not None else "-"
        print(f"{name:<20} {median:>9.3f} {median / baseline:>9.1f}x {target_text:>9}  {verdict}")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
