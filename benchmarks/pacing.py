"""Real-time pacing: at `--speed 1`, audio sent vs wall-clock time over 60 s (target: within +-2 %).

Runs `dasctl transcode IN - --speed 1` and reads its stdout as it comes, time-stamping every byte count,
so what is measured is what a consumer downstream receives. Prints the end-to-end rate (audio seconds per
wall second), the worst lead or lag of the stream against the clock, and the frames' arrival jitter.
Run: .venv/bin/python benchmarks/pacing.py [--seconds 60] [--speed 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transcode_speed import DASCTL, WORK, make_recording  # noqa: E402

BYTES_PER_SECOND = 8000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--frame-ms", type=int, default=20)
    args = parser.parse_args()
    source = make_recording(WORK / f"pacing-{args.seconds:g}s-16k.wav", args.seconds, rate=16000, channels=1)
    command = [str(DASCTL), "-q", "transcode", str(source), "-", "--speed", f"{args.speed:g}",
               "--frame-ms", str(args.frame_ms)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    received = 0
    samples: list[tuple[float, int]] = []
    first: float | None = None
    while True:
        data = os.read(fd, 65536)
        now = time.monotonic()
        if not data:
            break
        if first is None:
            first = now
        received += len(data)
        samples.append((now - first, received))
    proc.wait()
    if proc.returncode != 0 or first is None:
        raise SystemExit(f"dasctl failed with status {proc.returncode}")
    # the frame that starts at stream time t is due at wall time t / speed; compare when each arrived
    deviations = [wall - (total - len_first(samples)) / BYTES_PER_SECOND / args.speed
                  for wall, total in samples]
    wall_total = samples[-1][0]
    audio_total = (received - len_first(samples)) / BYTES_PER_SECOND
    rate = audio_total / wall_total / args.speed if wall_total else float("inf")
    print(f"input: {args.seconds:g} s at --speed {args.speed:g}, {args.frame_ms} ms frames")
    print(f"  audio {received / BYTES_PER_SECOND:.3f} s received over {wall_total:.3f} s of wall time "
          f"(first frame as time zero)")
    print(f"  rate: {rate:.4f} x the requested speed ({(rate - 1) * 100:+.2f} %; target within +-2 %: "
          f"{'met' if abs(rate - 1) <= 0.02 else 'NOT met'})")
    print(f"  worst lag {max(deviations) * 1000:.1f} ms, worst lead {min(deviations) * 1000:.1f} ms "
          f"against the schedule, over {len(samples)} reads")
    return 0


def len_first(samples: list[tuple[float, int]]) -> int:
    """Bytes in the first read: that frame is sent at time zero, so the schedule starts after it."""
    return samples[0][1]


if __name__ == "__main__":
    sys.exit(main())
