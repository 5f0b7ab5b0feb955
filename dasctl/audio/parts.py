"""One part of a recording, decoded from its own start: the piece of work segments.py runs several of at
once, and the seam check that tells whether two parts join.

A part after the first starts earlier and throws away what soxr made of the first _LEAD_SECONDS (the
filter's warm-up), so its samples are the ones one decoder would have made, up to soxr's rounding. The part
before a seam decodes _CHECK_SAMPLES past it, and the two versions must agree (seam_holds).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dasctl.audio.channels import to_mono
from dasctl.audio.frames import SAMPLE_RATE
from dasctl.audio.resample import resampler, to_int16

#: input fed to soxr before a part's first sample, its output dropped: longer than the filter
_LEAD_SECONDS = 0.5
#: output samples (8 kHz) both sides of a seam decode, to check they agree
_CHECK_SAMPLES = 800
#: the seam check: the two versions may differ by soxr's rounding (1 LSB), never by a shifted signal (one
#: input sample of shift is a -17 dB difference on 1 kHz speech)
_MAX_SEAM_DIFFERENCE_DB = -24.0
_SEAM_FLOOR = 64.0  # int16 RMS of near-silence, where a relative difference means nothing


class PartSource(Protocol):
    """A decoder that can start near a given sample: what a part reads."""

    samplerate: int

    @property
    def position(self) -> int:
        """The index of the next input frame blocks() hands out."""
        ...

    def start_near(self, frame: int) -> int | None:
        """Move a reader that has read nothing to `frame` (or before it); returns where blocks() starts,
        None when the decoder cannot say."""
        ...

    def blocks(self) -> Iterator[np.ndarray]:
        """(frames, channels) float32 blocks from the current position to the end."""
        ...


class PreadFile:
    """A regular file read at its own offset (os.pread), so a second decoder of the same descriptor never
    moves the first one's position."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._offset = 0

    def read(self, size: int) -> bytes:
        data = os.pread(self._fd, size, self._offset)
        self._offset += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._offset}.get(whence)
        self._offset = (os.fstat(self._fd).st_size if base is None else base) + offset
        return self._offset

    def tell(self) -> int:
        return self._offset


@dataclass
class Seam:
    """The output samples a part made past its end: the next part must have made the same ones."""

    after: np.ndarray


def decode_part(reader: PartSource, first: int, stop: int | None, channel: str | int
                ) -> Iterator[np.ndarray | Seam]:
    """One part: int16 8 kHz output for input samples [first, stop), then (not for the last part) a Seam,
    then, only if its consumer keeps reading, the rest of the recording as if there were no later part."""
    rate = reader.samplerate
    lead = skip = 0
    if first:
        period = rate // math.gcd(rate, SAMPLE_RATE)
        lead = math.ceil(rate * _LEAD_SECONDS / period) * period
        position = reader.start_near(first - lead)
        if position is None or position > first - lead:  # unknown, or past where we asked: no safe seam
            raise Unaligned
        skip = first - lead - position  # a decoder that starts earlier: what comes before is not ours
    resample = resampler(rate)
    drop = lead * SAMPLE_RATE // rate  # soxr's warm-up
    wanted = None if stop is None else (stop - first) * SAMPLE_RATE // rate
    made = 0  # output samples handed out
    seam: list[np.ndarray] | None = None if stop is None else []
    blocks = reader.blocks()
    finished = False
    while not finished:
        block = next(blocks, None)
        finished = block is None
        if block is None:
            mono = np.zeros(0, dtype=np.float32)
        else:
            if skip:
                cut = min(skip, len(block))
                block, skip = block[cut:], skip - cut
                if not len(block):
                    continue
            mono = to_mono(block, channel, 1.0)
        out = resample(mono, finished)
        if drop:
            cut = min(drop, len(out))
            out, drop = out[cut:], drop - cut
        if not len(out):
            continue
        samples = to_int16(out)
        if seam is not None and wanted is not None:
            room = wanted - made
            if room > 0:
                head = samples[:room]
                made += len(head)
                yield head
                samples = samples[room:]
                if not len(samples):
                    continue
            seam.append(samples)
            if sum(len(piece) for piece in seam) < _CHECK_SAMPLES and not finished:
                continue
            past = np.concatenate(seam)
            seam = None
            yield Seam(past)  # the consumer stops here unless the seam does not hold
            samples = past
        yield samples


class Unaligned(Exception):
    """A later part could not start on its first sample: the part before it goes on instead."""


def seam_holds(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether two versions of the samples past a seam (int16, 8 kHz) are the same signal."""
    count = min(len(ours), len(theirs))
    if count < min(_CHECK_SAMPLES, len(ours)):
        return False
    a = ours[:count].astype(np.float64)
    b = theirs[:count].astype(np.float64)
    signal = max(float(np.sqrt(np.mean(a * a))), _SEAM_FLOOR)
    difference = float(np.sqrt(np.mean((a - b) ** 2)))
    return difference <= signal * 10 ** (_MAX_SEAM_DIFFERENCE_DB / 20)
