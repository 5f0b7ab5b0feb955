"""`dasctl watch -j N --speed 1`: is every session paced in real time, and what does one watch process cost?

Usage: python benchmarks/watch_pacing.py [--sessions 64 128 256] [--emulators 1] [--runs 1] [--check]

For each N: an inbox of N recordings (the 11.7 s speech fixture), one `dasctl watch DIR --once -j N
--speed 1 --duration 60` (a voice target larger than the recording, so the whole file is paced) against
EMULATORS `dasctl serve` processes (several only if one cannot feed N sessions; the watch talks to the
first, so more than one is used by running one watch per emulator with N/EMULATORS sessions each).
Prints per N and run:
- pacing as the service saw it (the figure the target is about): per session, audio seconds received /
  wall seconds between the emulator's consumer taking the first frame and the last (benchmarks/
  receiving_emulator.py notes both), up to the start of the last frame; min, median, max, and how many
  are outside +-2%;
- the client's own figure, for context: audio_seconds_sent / (audio_done - consumer_ready) from the result
  lines, which also counts opening the audio WebSocket and the close handshake;
- the watch process's CPU (user+system seconds / wall seconds, in cores; and the busiest 5 s, sampled
  every second) and peak RSS (wait4); the emulators' CPU over the same run, and the load average;
- how long each event loop (the watch's, the emulator's main thread) was runnable but waited for a CPU
  (/proc/PID/task/PID/schedstat), and the machine's CPU pressure (PSI): on a shared machine a late frame
  is often a loop that had no CPU, not one that was busy;
--check exits 1 when a session is outside +-2% (service side), or the watch uses more than 1 core (over
the run) or 400 MB.
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
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from local_emulator import running_emulator

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech-a-8k-mono.wav"
TOLERANCE = 0.02
MAX_CORES = 1.0
MAX_RSS_MB = 400.0
BYTES_PER_SECOND = 8000  # mu-law 8 kHz
BUSIEST_WINDOW = 5  # seconds


def cpu_seconds(pid: int) -> float:
    """user+system seconds a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait(pid: int) -> float:
    """Seconds the process's main thread (its event loop) has waited, runnable, for a CPU (schedstat)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9


def cpu_pressure() -> float:
    """The machine's CPU pressure so far: seconds some task waited for a CPU (PSI `some` total), or 0."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return 0.0
    return int(some.rsplit("total=", 1)[1]) / 1e6


@dataclass
class WatchRun:
    wall: float
    cpu: float
    rss_mb: float
    busiest_cores: float
    waited: float  # seconds the event loop's thread was runnable but had no CPU
    lines: list[dict] = field(default_factory=list)


def run_watch(inbox: Path, sessions: int, url: str, work: Path) -> WatchRun:
    """One `dasctl watch --once` over the inbox: wall, CPU (total, busiest window), peak RSS, its lines."""
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
        samples: list[float] = []
        waits: list[float] = []
        sampler = threading.Thread(target=_sample_cpu, args=(proc.pid, samples, waits), daemon=True)
        sampler.start()
        assert proc.stderr is not None
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.join()
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 7):
        sys.stderr.write(errors.decode(errors="replace")[-2000:])
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    windows = [(samples[i + BUSIEST_WINDOW] - samples[i]) / BUSIEST_WINDOW
               for i in range(len(samples) - BUSIEST_WINDOW)]
    return WatchRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, max(windows, default=0.0),
                    waits[-1] if waits else 0.0, lines)


def _sample_cpu(pid: int, samples: list[float], waits: list[float]) -> None:
    """The process's CPU seconds (for the busiest window) and its loop's wait for a CPU, once a
    second (and once more just before it exits, at worst a second early) while it lives."""
    while True:
        try:
            samples.append(cpu_seconds(pid))
            waits.append(runqueue_wait(pid))
        except (OSError, IndexError, ValueError):
            return
        time.sleep(1.0 if len(samples) > 1 else 0.1)


def client_ratios(lines: list[dict]) -> list[float]:
    """audio_seconds_sent / (audio_done - consumer_ready): the client's own view, WebSocket open included."""
    ratios = []
    for line in lines:
        timings = line.get("timings") or {}
        if "consumer_ready" in timings and "audio_done" in timings:
            paced = timings["audio_done"] - timings["consumer_ready"]
            if paced > 0:
                ratios.append(line["audio_seconds_sent"] / paced)
    return ratios


def service_receipts(receipts: list[Path]) -> list[dict]:
    return [json.loads(text) for path in receipts if path.exists() for text in path.read_text().splitlines()]


def service_ratios(receipts: list[dict]) -> list[float]:
    """Per call, the audio up to the start of the last frame / the wall time from the first to the last
    frame, as the emulator's consumer took them off the socket."""
    ratios = []
    for receipt in receipts:
        span = receipt["last"] - receipt["first"]
        if span > 0:
            ratios.append((receipt["bytes"] - receipt["last_bytes"]) / BYTES_PER_SECOND / span)
    return ratios


def lags(receipts: list[dict]) -> str:
    """How far behind its real-time schedule (from its first frame) a call's worst frame arrived."""
    worst = sorted(receipt["worst_lag"] * 1000 for receipt in receipts) or [0.0]
    return f"worst lag per call: median {statistics.median(worst):.0f} ms, max {worst[-1]:.0f} ms"


def spread(ratios: list[float]) -> str:
    outside = sum(1 for r in ratios if abs(r - 1) > TOLERANCE)
    return (f"min {min(ratios, default=0):.4f} median {statistics.median(ratios or [0]):.4f} "
            f"max {max(ratios, default=0):.4f}, {outside} outside +-2%")


def load_average() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--emulators", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dasctl-watch-pacing-"))
    missed = False
    print(f"{os.cpu_count()} cores; recording {SPEECH.name}; speed 1; voice target 60 s (whole file paced)")
    try:
        for sessions in args.sessions:
            for run in range(1, args.runs + 1):
                missed |= measure(sessions, max(1, args.emulators), run, work / f"{sessions}-{run}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if (args.check and missed) else 0


def measure(sessions: int, emulators: int, run: int, work: Path) -> bool:
    """One configuration, once: prints its figures; True when a target was missed."""
    work.mkdir(parents=True)
    share = sessions // emulators
    receipts = [work / f"receipts-{n}.ndjson" for n in range(emulators)]
    load_before = load_average()
    with _emulators(receipts, work) as urls:
        inboxes = []
        for n in range(emulators):
            inbox = work / f"inbox-{n}"
            inbox.mkdir()
            for i in range(share):
                shutil.copyfile(SPEECH, inbox / f"call-{i:04d}.wav")
            inboxes.append(inbox)
        emulator_cpu_before = sum(cpu_seconds(pid) for pid in urls.values())
        emulator_wait_before = max(runqueue_wait(pid) for pid in urls.values())
        pressure_before = cpu_pressure()
        results = _run_all(inboxes, share, list(urls), work)
        emulator_cpu = sum(cpu_seconds(pid) for pid in urls.values()) - emulator_cpu_before
        emulator_wait = max(runqueue_wait(pid) for pid in urls.values()) - emulator_wait_before
        pressure = cpu_pressure() - pressure_before
    received = service_receipts(receipts)
    heard = service_ratios(received)
    wall = max(result.wall for result in results)
    print(f"-j {share} x {emulators} emulator(s), run {run} ({load_before} before): "
          f"{len(heard)} sessions heard; pacing at the service {spread(heard)}; {lags(received)}; "
          f"emulator CPU {emulator_cpu / wall:.2f} cores, its loop waited {emulator_wait:.1f} s for a CPU; "
          f"machine: some task waited for a CPU {100 * pressure / wall:.0f}% of the time", flush=True)
    missed = len(heard) < sessions or any(abs(r - 1) > TOLERANCE for r in heard)
    for result in results:
        cores = result.cpu / result.wall
        own = spread(client_ratios(result.lines))
        print(f"    watch: {len(result.lines)} lines; client's own figure {own}; "
              f"CPU {cores:.2f} cores (busiest {BUSIEST_WINDOW} s {result.busiest_cores:.2f}), its loop "
              f"waited {result.waited:.1f} s for a CPU, peak RSS "
              f"{result.rss_mb:.0f} MB; wall {result.wall:.1f} s; {load_average()} after", flush=True)
        missed |= cores > MAX_CORES or result.rss_mb > MAX_RSS_MB
    return missed


def _run_all(inboxes: list[Path], share: int, urls: list[str], work: Path) -> list[WatchRun]:
    if len(inboxes) == 1:
        return [run_watch(inboxes[0], share, urls[0], work)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(inboxes)) as pool:
        pairs = zip(inboxes, urls, strict=True)
        return list(pool.map(lambda pair: run_watch(pair[0], share, pair[1], work), pairs))


@contextmanager
def _emulators(receipts: list[Path], work: Path) -> Iterator[dict[str, int]]:
    """One emulator per receipts file at once: {url: pid}."""
    with ExitStack() as stack:
        urls = {}
        for n, path in enumerate(receipts):
            emulator = stack.enter_context(running_emulator(log=work / f"emulator-{n}.log", receipts=path))
            urls[emulator.url] = emulator.proc.pid
        yield urls


if __name__ == "__main__":
    sys.exit(main())
