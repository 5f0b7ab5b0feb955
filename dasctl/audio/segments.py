"""A long MP3 or AAC recording decoded in two places at once: one core decodes the first half while the
other decodes the second, each through its own resampler, and the halves are handed out in order.

libmpg123 and FFmpeg's AAC decoder each decode on one thread, and that is most of transcode's work (0.6 s
of the 17-minute benchmark call against 0.15 s for soxr); decoding the next part on the second core takes
the wall time under ffmpeg's.
- MP3: the next part decodes on a thread. libsndfile reads each part on its own descriptor and hands over
  65536 frames per call, so the threads hardly ever wait for each other on Python's lock. MP3 seeks to the
  exact sample (libmpg123 keeps a frame index), so the second decoder starts on exactly the sample the
  first stops at.
- AAC in an ISO media file (m4a, mp4, mov): the last part decodes in a forked child process (forked.py;
  PyAV takes Python's lock back several times per 1024-sample frame, so two decoding threads spent more
  time handing it over than they saved). The container times every packet, so the child seeks to the
  packet before its part and counts samples from the first frame's time. There are two parts, the second
  at most MAX_PART_SECONDS long, and only while the process runs no other thread (forked.can_fork).

Each part after the first (parts.py) starts earlier and throws away what soxr made of the first half
second (the filter's warm-up), so the samples sent are the ones one decoder would have made, up to soxr's
rounding (1 LSB, now and then; AAC's noise substitution is drawn afresh by a new decoder, far below the
codec's own noise).

Each seam is checked: the part before it decodes a little past it, and the two versions of those samples
must agree. When they do not (a seek that landed elsewhere, a file whose times lie), the earlier part
simply goes on to the end, as one decoder would have, and the later parts are dropped: the result is
never worse than not splitting.

Not split: the other formats FFmpeg decodes (their containers do not time every packet exactly), inputs
read with --start/--end, pipes, and recordings shorter than MIN_SPLIT_SECONDS.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from dasctl.audio.ffmpeg import FfmpegReader
from dasctl.audio.forked import ForkedPart, can_fork
from dasctl.audio.frames import SAMPLE_RATE
from dasctl.audio.parts import PartSource, PreadFile, Seam, Unaligned, decode_part, seam_holds
from dasctl.audio.read_ahead import ReadAhead
from dasctl.audio.sndfile import c_library_stderr_to_log, libsndfile_message
from dasctl.errors import AudioError

if TYPE_CHECKING:
    import soundfile

log = logging.getLogger(__name__)

#: shorter recordings are decoded in one piece: a split costs a second open and a warm-up
MIN_SPLIT_SECONDS = 120.0
#: at most this much audio per part, so the part decoded ahead (held as 8 kHz int16) stays small: 19 MB
MAX_PART_SECONDS = 1200.0


def split_points(frames: int, rate: int, *, two_parts: bool = False) -> list[int]:
    """Input sample indices where parts start (the first is 0); each a multiple of the resampling period,
    so that every part's first output sample falls on the same instant as in one unbroken stream.
    two_parts: the second half, or the last MAX_PART_SECONDS when that is shorter (a forked child's)."""
    period = rate // math.gcd(rate, SAMPLE_RATE)
    seconds = frames / rate
    if seconds < MIN_SPLIT_SECONDS:
        return [0]
    if two_parts:
        last = min(frames / 2, MAX_PART_SECONDS * rate)
        return [0, round((frames - last) / period) * period]
    parts = max(2, math.ceil(seconds / MAX_PART_SECONDS))
    return [round(frames * k / parts / period) * period for k in range(parts)]


_SOUNDFILE_BLOCK = 1 << 16


class SoundFileParts:
    """libsndfile's MP3 reader as a part's decoder: seek() lands on the exact sample."""

    def __init__(self, sound: soundfile.SoundFile, name: str, fd: int, owned: bool = False) -> None:
        self._sound = sound
        self.name = name
        self.samplerate = int(sound.samplerate)
        self._fd = fd
        self._owned = owned  # a sibling's SoundFile is ours to close; the stream's is the stream's
        self.position = 0

    def sibling(self) -> SoundFileParts:
        """The same file opened again: through /proc a descriptor of its own (libmpg123 reads in small
        pieces, and each would be a call into Python through a file object), else at its own offset."""
        import soundfile

        try:
            target: int | PreadFile = os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY)
        except OSError:  # no /proc (macOS)
            target = PreadFile(self._fd)
        try:
            with c_library_stderr_to_log():
                sound = soundfile.SoundFile(target, closefd=isinstance(target, int))
        except BaseException:
            if isinstance(target, int):
                os.close(target)
            raise
        return SoundFileParts(sound, self.name, self._fd, owned=True)

    def start_near(self, frame: int) -> int:
        """Move a reader that has read nothing to `frame` (or before it); returns where read() starts."""
        with c_library_stderr_to_log():  # libmpg123 may read (and note damaged frames) to get there
            self.position = int(self._sound.seek(frame))
        return self.position

    def blocks(self) -> Iterator[np.ndarray]:
        import soundfile

        while True:
            try:
                with c_library_stderr_to_log():  # libmpg123's notes on a damaged frame: to the debug log
                    block = self._sound.read(_SOUNDFILE_BLOCK, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                at = self.position / self.samplerate
                raise AudioError(f"{self.name}: corrupt audio data at {at:.1f} s: "
                                 f"{libsndfile_message(error)}") from None
            if not len(block):
                return
            self.position += len(block)
            yield block

    def close(self) -> None:
        if self._owned:
            self._sound.close()


def part_source(sound: object, name: str) -> tuple[SoundFileParts | FfmpegReader, int] | None:
    """The decoder of a file that can be split, and its length in frames; None when it cannot."""
    if isinstance(sound, FfmpegReader):
        frames = sound.split_frames()
        return (sound, frames) if frames and can_fork() else None
    fd = getattr(sound, "name", None)  # a SoundFile opened on a descriptor is named by it
    frames = int(getattr(sound, "frames", 0))
    if getattr(sound, "format", None) == "MP3" and isinstance(fd, int) and frames > 0:
        return SoundFileParts(sound, name, fd), frames  # type: ignore[arg-type]
    return None


class _Worker(ReadAhead[np.ndarray | Seam]):
    """A part running on its own thread; what it yields waits in the queue (a part ahead is held whole:
    at most MAX_PART_SECONDS of 8 kHz int16). It closes its own reader (never the stream's)."""

    def __init__(
        self, blocks: Iterator[np.ndarray | Seam], reader: SoundFileParts | FfmpegReader | None, depth: int
    ) -> None:
        super().__init__(blocks, depth, name="dasctl-audio-part")
        self.reader = reader

    def stop(self) -> None:
        super().stop()
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class SplitDecode:
    """The parts of one recording, decoded two at a time, yielded in order as 8 kHz int16 blocks."""

    def __init__(self, reader: SoundFileParts | FfmpegReader, frames: int, channel: str | int) -> None:
        self._reader = reader
        self._channel = channel
        #: FFmpeg's parts: the last is decoded in a child process, forked before any thread of ours starts
        self._forked = isinstance(reader, FfmpegReader)
        self._starts = split_points(frames, reader.samplerate, two_parts=self._forked)
        self._workers: list[ReadAhead[np.ndarray | Seam]] = []
        self._lock = threading.Lock()
        self.position = 0  # input samples the handed-out output stands for
        self._first = self._made = 0  # the part being handed out: its first input sample, its output so far
        self._readers: dict[int, PartSource | ForkedPart] = {}
        #: where the input ended (the frame after the last one decoded), once blocks() is through
        self.end: int | None = None

    def _start(self, index: int) -> ReadAhead[np.ndarray | Seam]:
        starts = self._starts
        worker: ReadAhead[np.ndarray | Seam]
        if index and isinstance(self._reader, FfmpegReader):
            worker = ForkedPart(self._reader, starts[index], self._channel)  # the last part
            self._readers[index] = worker
        else:
            stop = starts[index + 1] if index + 1 < len(starts) else None
            reader = self._reader if index == 0 else self._reader.sibling()
            self._readers[index] = reader
            try:
                worker = _Worker(decode_part(reader, starts[index], stop, self._channel),
                                 None if index == 0 else reader, depth=2 if index == 0 else 0)
            except BaseException:
                if index:
                    reader.close()
                raise
        with self._lock:
            self._workers.append(worker)
        return worker

    def blocks(self) -> Iterator[np.ndarray]:
        name = self._reader.name
        log.debug("%s: decoding in %d parts, two at a time%s", name, len(self._starts),
                  " (the last in a child process)" if self._forked else "")
        following: ReadAhead[np.ndarray | Seam] | None = None
        index = 0
        try:
            if self._forked:
                try:
                    following = self._start(1)  # fork() while this is the process's only thread
                except OSError as error:
                    log.debug("%s: cannot start a process (%s); decoding in one piece", name, error)
                    self._starts = self._starts[:1]
            current = self._start(0)
            while True:
                if following is None and index + 1 < len(self._starts):
                    following = self._start(index + 1)
                for item in current.items():
                    if isinstance(item, Seam):
                        assert following is not None
                        taken = self._take_over(following, item)
                        if taken is not None:
                            break
                        # the seam does not hold: this part goes on (its next item is what it made past
                        # the seam), the later ones are dropped
                        log.debug("%s: the part decoded from %.1f s does not join the one before it; "
                                  "decoding on in one piece", name,
                                  self._starts[index + 1] / self._reader.samplerate)
                        self._drop(following)
                        following = None
                        self._starts = self._starts[: index + 1]
                        continue
                    yield self._count(item)
                else:  # the last part ended, or one that went on to the end
                    self.end = self._readers[index].position
                    return
                self._drop(current)
                assert following is not None
                current, following, index = following, None, index + 1
                self._first, self._made = self._starts[index], 0
                for block in taken:
                    yield self._count(block)
        finally:
            self.stop()

    def _count(self, block: np.ndarray) -> np.ndarray:
        self._made += len(block)
        self.position = self._first + self._made * self._reader.samplerate // SAMPLE_RATE
        return block

    def _take_over(self, following: ReadAhead[np.ndarray | Seam], seam: Seam) -> list[np.ndarray] | None:
        """The next part's first blocks, if they agree with what this part made past the seam."""
        items = following.items()
        taken: list[np.ndarray] = []
        try:
            while sum(len(block) for block in taken) < len(seam.after):
                item = next(items, None)
                if item is None or isinstance(item, Seam):
                    break
                taken.append(item)
        except Unaligned:
            return None
        if not taken or not seam_holds(seam.after, np.concatenate(taken)):
            return None
        return taken

    def _drop(self, worker: ReadAhead[np.ndarray | Seam]) -> None:
        worker.stop()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

    def stop(self) -> None:
        """Stop every part's thread (safe to call twice, from the consumer or from close())."""
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
