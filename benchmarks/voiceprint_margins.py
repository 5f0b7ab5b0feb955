"""The emulator's stand-in voiceprint on the committed fixtures: genuine and impostor verify scores.

Each fixture voice is enrolled from its first 5 s of voice (as `register` does by default); probes of
3 s of voice (verify's default) start at several offsets into every recording, and each probe is scored
against every enrollment with the emulator's own code (dasctl/emulator/voice.py). The two stereo
channels of speech-ab-44k-stereo.wav are the A and B voices again, through another rate and file.
Prints, per probe offset, the genuine and impostor score ranges (docs/emulator.md, "measured margins").

    .venv/bin/python benchmarks/voiceprint_margins.py
"""

from __future__ import annotations

from pathlib import Path

from dasctl.audio import open_audio
from dasctl.emulator import voice

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
#: name -> (file, channel); the first letter is the voice
SOURCES = {
    "A": ("speech-a-8k-mono.wav", "mix"),
    "B": ("speech-b-16k-mono.wav", "mix"),
    "C": ("speech-c-22k-mono.wav", "mix"),
    "D": ("speech-d-16k-mono.wav", "mix"),  # another voice reading A's very words
    "A (stereo left)": ("speech-ab-44k-stereo.wav", "left"),
    "B (stereo right)": ("speech-ab-44k-stereo.wav", "right"),
}
ENROLL_SECONDS = 5.0
PROBE_SECONDS = 3.0
STARTS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def voiceprint_of(file: str, channel: str, start: float, seconds: float) -> list[float] | None:
    """The voiceprint of the first `seconds` of voice from `start`, or None when there is not that much."""
    with open_audio(DATA / file, channel=channel, start=start) as audio:
        data = b"".join(audio.chunks())
    collector = voice.VoiceCollector()
    for offset in range(0, len(data), voice.FRAME_SAMPLES):
        if collector.feed(data[offset : offset + voice.FRAME_SAMPLES]) >= seconds - 1e-9:
            return voice.voiceprint(collector.voiced_signal())
    return None


def main() -> None:
    enrolled = {
        name: voiceprint_of(file, channel, 0.0, ENROLL_SECONDS) for name, (file, channel) in SOURCES.items()
    }
    print(f"probe start  genuine (same voice)  impostor (other voice)  margin   ({PROBE_SECONDS:g} s probes)")
    for start in STARTS:
        genuine: list[float] = []
        impostor: list[float] = []
        for name, (file, channel) in SOURCES.items():
            probe = voiceprint_of(file, channel, start, PROBE_SECONDS)
            if probe is None:
                continue
            for target, print_ in enrolled.items():
                assert print_ is not None
                score = voice.similarity(print_, probe)
                (genuine if target[0] == name[0] else impostor).append(score)
        print(
            f"{start:8.1f} s   {min(genuine):.2f} .. {max(genuine):.2f}          "
            f"{min(impostor):.2f} .. {max(impostor):.2f}            {min(genuine) - max(impostor):+.2f}"
        )


if __name__ == "__main__":
    main()
