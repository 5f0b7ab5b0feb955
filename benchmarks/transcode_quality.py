"""SNR of dasctl's, ffmpeg's and sox's 8 kHz mu-law against an ideal reference, on the same input (same run).

The input is a 44.1 kHz stereo call (the speech fixtures) plus a quiet 3-20 kHz sweep, which a weak
anti-aliasing filter folds back into the band. The ideal reference mixes to mono in float64 and
resamples by exact band-limiting in the frequency domain (an infinitely long sinc filter: nothing
above 4 kHz survives, nothing below is touched), then rounds to int16 and applies mu-law (audioop's
table). Each tool's output is decoded, aligned (best lag within +-64 samples) and compared on the
middle of the signal. Target (docs/contributing.md): dasctl's SNR >= ffmpeg's.

Run: .venv/bin/python benchmarks/transcode_quality.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transcode_speed import DASCTL, WORK, make_recording  # noqa: E402

from dasctl.mulaw import mulaw_decode, mulaw_encode  # noqa: E402

RATE = 44100
OUT_RATE = 8000


def make_input(seconds: int) -> Path:
    speech = make_recording(WORK / f"quality-speech-{seconds}s.wav", seconds)
    path = WORK / f"quality-{seconds}s-44k-stereo.wav"
    data, _ = sf.read(speech, dtype="float64")
    t = np.arange(len(data)) / RATE
    # logarithmic sweep 3 kHz -> 20 kHz over the whole input, -26 dBFS, on both channels
    f0, f1 = 3000.0, 20000.0
    k = np.log(f1 / f0) / t[-1]
    sweep = 0.05 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    data = np.clip(data * 0.8 + sweep[:, None], -1, 1)
    sf.write(path, data, RATE, subtype="PCM_16")
    return path


def ideal_reference(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float64")
    mono = data.mean(axis=1)
    n_in = len(mono) - len(mono) % 441  # 441 input samples = 80 output samples exactly
    mono = mono[:n_in]
    n_out = n_in * OUT_RATE // rate
    spectrum = np.fft.rfft(mono)
    kept = spectrum[: n_out // 2 + 1] * (n_out / n_in)
    kept[-1] *= 0.5  # split the Nyquist bin between its two aliases
    resampled = np.fft.irfft(kept, n=n_out)
    pcm = np.clip(np.rint(resampled * 32768), -32768, 32767).astype(np.int16)
    return mulaw_decode(mulaw_encode(pcm)).astype(np.float64)


def snr(reference: np.ndarray, signal: np.ndarray) -> tuple[float, int]:
    edge = OUT_RATE // 2  # the periodic reference wraps around at the ends: compare the middle
    best = (-np.inf, 0)
    for lag in range(-64, 65):
        start = edge + lag
        if start < 0 or edge >= len(reference) - edge:
            continue
        stop = min(len(reference) - edge, len(signal) - lag - edge)
        ref = reference[edge:stop]
        sig = signal[start : start + len(ref)]
        if len(sig) < len(ref):
            continue
        err = np.sum((ref - sig) ** 2)
        value = 10 * np.log10(np.sum(ref**2) / max(err, 1e-12))
        if value > best[0]:
            best = (float(value), lag)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=120)
    args = parser.parse_args()
    source = make_input(args.seconds)
    outputs = {
        "dasctl": (WORK / "quality-dasctl.ul",
                   [str(DASCTL), "--quiet", "transcode", str(source), str(WORK / "quality-dasctl.ul")]),
        "ffmpeg": (WORK / "quality-ffmpeg.ul",
                   ["ffmpeg", "-y", "-v", "error", "-i", str(source), "-ar", "8000", "-ac", "1",
                    "-f", "mulaw", str(WORK / "quality-ffmpeg.ul")]),
        "sox": (WORK / "quality-sox.ul",
                ["sox", str(source), "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul",
                 str(WORK / "quality-sox.ul")]),
    }
    reference = ideal_reference(source)
    print(f"input: {source.name} ({args.seconds} s speech + 3-20 kHz sweep, 44.1 kHz stereo)")
    results: dict[str, float] = {}
    for name, (out, command) in outputs.items():
        if not shutil.which(command[0]):
            continue
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
        decoded = mulaw_decode(out.read_bytes()).astype(np.float64)
        results[name], lag = snr(reference, decoded)
        print(f"  {name:7s} SNR {results[name]:6.2f} dB  (lag {lag:+d} samples, {len(decoded)} samples)")
    if "ffmpeg" in results:
        diff = results["dasctl"] - results["ffmpeg"]
        verdict = "met" if diff >= 0 else "NOT met"
        print(f"dasctl - ffmpeg: {diff:+.2f} dB (target >= 0: {verdict})")
    if "sox" in results:
        print(f"dasctl - sox: {results['dasctl'] - results['sox']:+.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
