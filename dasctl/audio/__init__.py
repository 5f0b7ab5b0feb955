"""Recordings -> what the service hears: decode, pick a channel, resample to 8 kHz, mu-law, frames, pacing.

Everything streams: the input is read in blocks of about two seconds, so memory stays flat whatever the
length of the recording, and stdin works as well as a file.

One module per stage:
- decode: open_audio, which input goes to which decoder (our WAV reader in dasctl/wav.py, libsndfile in
  sndfile, FFmpeg's in ffmpeg), stdin, FIFOs and spools (pipes); fingerprint hashes what was read;
- channels: which channel is sent (mix, left, right, N, the customer's or the agent's side);
- stream: AudioStream, the read loop; resample: soxr to 8 kHz; mu-law itself is dasctl/mulaw.py;
- frames: frame lengths and pacing; output: mu-law WAV/raw files, and MulawAudio.

The names below are imported lazily (PEP 562), so that `import dasctl.audio.channels` or a CLI that
only names these types does not load numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dasctl.audio.channels import (
        CHANNEL_CHOICES,
        SIDES,
        ChannelChoice,
        MixWarning,
        choose_channel,
        parse_channel,
        resolve_channel,
    )
    from dasctl.audio.decode import MAX_INPUT_RATE, MIN_INPUT_RATE, STDIN_NAME, open_audio
    from dasctl.audio.fingerprint import STDIN_DRAIN_TIMEOUT, path_fingerprint
    from dasctl.audio.frames import (
        MAX_FRAME_MS,
        MIN_FRAME_MS,
        SAMPLE_RATE,
        Pacer,
        check_frame_ms,
        paced_frames,
    )
    from dasctl.audio.output import (
        WAV_HEADER_BYTES,
        MulawAudio,
        mulaw_wav_bytes,
        read_mulaw_wav,
        write_mulaw_raw,
        write_mulaw_wav,
    )
    from dasctl.audio.resample import resampler as _resampler
    from dasctl.audio.stream import AudioStream, check_range
    from dasctl.mulaw import mulaw_decode, mulaw_encode

#: public name -> (module, name there)
_EXPORTS = {
    "CHANNEL_CHOICES": ("dasctl.audio.channels", "CHANNEL_CHOICES"),
    "parse_channel": ("dasctl.audio.channels", "parse_channel"),
    "SIDES": ("dasctl.audio.channels", "SIDES"),
    "ChannelChoice": ("dasctl.audio.channels", "ChannelChoice"),
    "MixWarning": ("dasctl.audio.channels", "MixWarning"),
    "choose_channel": ("dasctl.audio.channels", "choose_channel"),
    "resolve_channel": ("dasctl.audio.channels", "resolve_channel"),
    "MAX_INPUT_RATE": ("dasctl.audio.decode", "MAX_INPUT_RATE"),
    "MIN_INPUT_RATE": ("dasctl.audio.decode", "MIN_INPUT_RATE"),
    "STDIN_NAME": ("dasctl.audio.decode", "STDIN_NAME"),
    "open_audio": ("dasctl.audio.decode", "open_audio"),
    "STDIN_DRAIN_TIMEOUT": ("dasctl.audio.fingerprint", "STDIN_DRAIN_TIMEOUT"),
    "path_fingerprint": ("dasctl.audio.fingerprint", "path_fingerprint"),
    "MAX_FRAME_MS": ("dasctl.audio.frames", "MAX_FRAME_MS"),
    "MIN_FRAME_MS": ("dasctl.audio.frames", "MIN_FRAME_MS"),
    "SAMPLE_RATE": ("dasctl.audio.frames", "SAMPLE_RATE"),
    "Pacer": ("dasctl.audio.frames", "Pacer"),
    "check_frame_ms": ("dasctl.audio.frames", "check_frame_ms"),
    "paced_frames": ("dasctl.audio.frames", "paced_frames"),
    "WAV_HEADER_BYTES": ("dasctl.audio.output", "WAV_HEADER_BYTES"),
    "MulawAudio": ("dasctl.audio.output", "MulawAudio"),
    "mulaw_wav_bytes": ("dasctl.audio.output", "mulaw_wav_bytes"),
    "read_mulaw_wav": ("dasctl.audio.output", "read_mulaw_wav"),
    "write_mulaw_raw": ("dasctl.audio.output", "write_mulaw_raw"),
    "write_mulaw_wav": ("dasctl.audio.output", "write_mulaw_wav"),
    "_resampler": ("dasctl.audio.resample", "resampler"),
    "AudioStream": ("dasctl.audio.stream", "AudioStream"),
    "check_range": ("dasctl.audio.stream", "check_range"),
    "mulaw_decode": ("dasctl.mulaw", "mulaw_decode"),
    "mulaw_encode": ("dasctl.mulaw", "mulaw_encode"),
}

__all__ = [
    "CHANNEL_CHOICES",
    "MAX_FRAME_MS",
    "MAX_INPUT_RATE",
    "MIN_FRAME_MS",
    "MIN_INPUT_RATE",
    "SAMPLE_RATE",
    "STDIN_DRAIN_TIMEOUT",
    "SIDES",
    "STDIN_NAME",
    "WAV_HEADER_BYTES",
    "AudioStream",
    "ChannelChoice",
    "MixWarning",
    "MulawAudio",
    "Pacer",
    "_resampler",
    "check_frame_ms",
    "check_range",
    "choose_channel",
    "mulaw_decode",
    "mulaw_encode",
    "open_audio",
    "paced_frames",
    "parse_channel",
    "path_fingerprint",
    "mulaw_wav_bytes",
    "read_mulaw_wav",
    "resolve_channel",
    "write_mulaw_raw",
    "write_mulaw_wav",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'dasctl.audio' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
