"""Real-time pacing of a register session (--speed 1): live-bar update rate and audio-vs-wall drift.

Usage: python benchmarks/register_pacing.py [--seconds 30] [--check]
Streams a recording of about --seconds (speech fixture repeated) to `dasctl serve` at speed 1 with a voice
target larger than the recording, so the whole file is paced. Measures, while streaming:
  - progress updates per second reaching the display, and redraws of the rich live bar (target >= 5/s);
  - drift of audio sent against wall-clock time since the first frame (target within +-2%).
With --check, exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from local_emulator import running_emulator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


ENDED: list[str] = []


def make_recording(path: Path, seconds: float) -> None:
    import numpy as np
    import soundfile

    speech, rate = soundfile.read(str(ROOT / "tests/data/speech-a-8k-mono.wav"), dtype="int16")
    repeats = int(seconds * rate // len(speech)) + 1
    soundfile.write(str(path), np.tile(speech, repeats)[: int(seconds * rate)], rate, subtype="PCM_16")


async def measure(url: str, recording: Path, seconds: float) -> dict[str, float]:
    from dasctl import session
    from dasctl.audio import open_audio
    from dasctl.auth import TokenProvider
    from dasctl.config import load_profile
    from dasctl.display import register as display
    from dasctl.net import NetworkSettings

    profile = load_profile("local", env={**os.environ, "DASCTL_URL": url})
    network = NetworkSettings.from_profile(profile)
    tokens = TokenProvider(profile, network)
    bar = display.LiveBar(io.StringIO(), color=False)
    samples: list[tuple[float, float]] = []  # (wall since first frame, audio sent) while streaming
    redraws: list[float] = []
    first_frame: list[float] = []

    def on_progress(progress: session.Progress) -> None:
        now = time.monotonic()
        if progress.state == session.STREAMING and progress.audio_seconds_sent > 0:
            if not first_frame:
                # the first frame goes out at stream time 0, one frame before this first report
                first_frame.append(now - progress.audio_seconds_sent)
            samples.append((now - first_frame[0], progress.audio_seconds_sent))
        bar.update(progress)

    options = session.RegisterOptions(
        speed=1.0, model_hash=profile.model_hash or "", audio_total_duration=seconds * 2, timeout=30
    )
    bar.begin(recording.name, 0, 1)
    original_refresh = bar.progress.refresh

    def counting_refresh() -> None:
        redraws.append(time.monotonic())
        original_refresh()

    bar.progress.refresh = counting_refresh
    with open_audio(recording) as audio:
        outcome = await session.register_audio(audio, options, profile, tokens, network, on_progress)
    bar.end()

    start, stop = first_frame[0], first_frame[0] + samples[-1][0]
    streaming_redraws = [t for t in redraws if start <= t <= stop]
    gaps = [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)]
    steady = [(wall, sent) for wall, sent in samples if wall >= 1.0]
    drifts = [100.0 * (sent - wall) / wall for wall, sent in steady]
    ENDED.append(outcome.result.name)
    return {
        "streamed_seconds": samples[-1][0],
        "audio_seconds": samples[-1][1],
        "updates_per_second": len(samples) / samples[-1][0],
        "redraws_per_second": len(streaming_redraws) / samples[-1][0],
        "max_gap": max(gaps),
        "median_gap": statistics.median(gaps),
        "max_abs_drift_pct": max(abs(d) for d in drifts),
        "final_drift_pct": drifts[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        os.environ["DASCTL_CONFIG_DIR"] = work
        recording = Path(work) / "long.wav"
        make_recording(recording, args.seconds)
        with running_emulator("--idle-timeout", "30") as emulator:
            figures = asyncio.run(measure(emulator.url, recording, args.seconds))
            ended = ENDED[-1]
    print(f"session ended with {ended}")
    print(
        f"streamed {figures['audio_seconds']:.2f} s of audio in {figures['streamed_seconds']:.2f} s of wall"
    )
    print(
        f"progress updates : {figures['updates_per_second']:.1f}/s "
        f"(median gap {figures['median_gap'] * 1000:.0f} ms, "
        f"max {figures['max_gap'] * 1000:.0f} ms)  target >= 5/s"
    )
    print(f"live bar redraws : {figures['redraws_per_second']:.1f}/s  target >= 5/s")
    print(
        f"audio vs wall    : max |drift| {figures['max_abs_drift_pct']:.2f}% after the first second, final "
        f"{figures['final_drift_pct']:+.2f}%  target within +-2%"
    )
    ok = (
        figures["updates_per_second"] >= 5
        and figures["redraws_per_second"] >= 5
        and figures["max_abs_drift_pct"] <= 2.0
    )
    if args.check and not ok:
        print("FAIL: a pacing target was missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
