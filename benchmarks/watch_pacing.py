"""`dasctl watch -j N --speed 1`: is every session paced in real time, and what does one watch process cost?

Usage: python benchmarks/watch_pacing.py [--sessions 64 128 256] [--emulators 1] [--check]

For each N: an inbox of N recordings (the 11.7 s speech fixture), one `dasctl watch DIR --once -j N
--speed 1 --duration 60` (a voice target larger than the recording, so the whole file is paced) against
EMULATORS `dasctl serve` processes (several only if one cannot feed N sessions; the watch talks to the
first, so more than one is used by running one watch per emulator with N/EMULATORS sessions each).
Prints per N:
- pacing: per session, audio seconds sent / wall seconds from the first frame to the last (the line's
  timings consumer_ready -> audio_done); min, median, max, and how many are outside +-2%;
- the watch process's CPU (user+system seconds / wall seconds, in cores) and peak RSS (wait4);
- the emulator's CPU over the same run, for context (it shares the 2 cores).
--check exits 1 when a session is outside +-2%, or the watch uses more than 1 core or 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local_emulator import running_emulator

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech-a-8k-mono.wav"
TOLERANCE = 0.02
MAX_CORES = 1.0
MAX_RSS_MB = 400.0


def cpu_seconds(pid: int) -> float:
    """user+system seconds a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_watch(inbox: Path, sessions: int, url: str, work: Path) -> tuple[float, float, float, list[dict]]:
    """(wall s, CPU s, peak RSS MB, lines) of one `dasctl watch --once` over the inbox."""
    env = {**os.environ, "DASCTL_PROFILE": "local", "DASCTL_URL": url, "NO_COLOR": "1",
           "DASCTL_CONFIG_DIR": str(work / "config")}
    out = work / f"watch-{inbox.name}.out"
    command = [sys.executable, "-m", "dasctl", "watch", str(inbox), "--once", "-j", str(sessions),
               "--speed", "1", "--settle", "0", "--duration", "60", "--max-retries", "0",
               "--store", str(work / f"store-{inbox.name}.db")]
    started = time.perf_counter()
    with out.open("wb") as stdout:
        proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env)
        assert proc.stderr is not None
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 7):
        sys.stderr.write(errors.decode(errors="replace")[-2000:])
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, lines


def pacing_ratios(lines: list[dict]) -> list[float]:
    ratios = []
    for line in lines:
        timings = line.get("timings") or {}
        if "consumer_ready" in timings and "audio_done" in timings:
            paced = timings["audio_done"] - timings["consumer_ready"]
            if paced > 0:
                ratios.append(line["audio_seconds_sent"] / paced)
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--emulators", type=int, default=1)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dasctl-watch-pacing-"))
    missed = False
    print(f"{os.cpu_count()} cores; recording {SPEECH.name}; speed 1; voice target 60 s (whole file paced)")
    try:
        for sessions in args.sessions:
            emulators = max(1, args.emulators)
            share = sessions // emulators
            with _emulators(emulators, work) as urls:
                inboxes = []
                for n, _ in enumerate(urls):
                    inbox = work / f"inbox-{sessions}-{n}"
                    inbox.mkdir()
                    for i in range(share):
                        shutil.copyfile(SPEECH, inbox / f"call-{i:04d}.wav")
                    inboxes.append(inbox)
                emulator_cpu_before = sum(cpu_seconds(pid) for pid in urls.values())
                results = _run_all(inboxes, share, list(urls), work)
                emulator_cpu = sum(cpu_seconds(pid) for pid in urls.values()) - emulator_cpu_before
            for wall, cpu, rss, lines in results:
                ratios = pacing_ratios(lines)
                outside = [r for r in ratios if abs(r - 1) > TOLERANCE]
                cores = cpu / wall
                print(f"-j {share:3d} x {emulators} emulator(s): {len(lines)} sessions, "
                      "audio/wall per session "
                      f"min {min(ratios, default=0):.4f} median {statistics.median(ratios or [0]):.4f} "
                      f"max {max(ratios, default=0):.4f}, {len(outside)} outside +-2%; watch CPU "
                      f"{cores:.2f} cores, peak RSS {rss:.0f} MB; wall {wall:.1f} s; emulator CPU "
                      f"{emulator_cpu / wall:.2f} cores", flush=True)
                missed |= bool(outside) or len(ratios) < share or cores > MAX_CORES or rss > MAX_RSS_MB
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if (args.check and missed) else 0


def _run_all(inboxes: list[Path], share: int, urls: list[str], work: Path) -> list[tuple[float, float, float,
                                                                                         list[dict]]]:
    if len(inboxes) == 1:
        return [run_watch(inboxes[0], share, urls[0], work)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(inboxes)) as pool:
        pairs = zip(inboxes, urls, strict=True)
        return list(pool.map(lambda pair: run_watch(pair[0], share, pair[1], work), pairs))


class _emulators:
    """N emulators at once: {url: pid}."""

    def __init__(self, count: int, work: Path) -> None:
        self.count, self.work, self.contexts = count, work, []

    def __enter__(self) -> dict[str, int]:
        urls = {}
        for n in range(self.count):
            context = running_emulator(log=self.work / f"emulator-{n}-{time.monotonic_ns()}.log")
            emulator = context.__enter__()
            self.contexts.append(context)
            urls[emulator.url] = emulator.proc.pid
        return urls

    def __exit__(self, *exc: object) -> None:
        for context in self.contexts:
            context.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
