"""AudioStream: an open recording read block by block, through channel pick, resampling and mu-law."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from dasctl.audio.channels import channel_label, to_mono
from dasctl.audio.ffmpeg import FfmpegReader
from dasctl.audio.frames import SAMPLE_RATE, check_frame_ms
from dasctl.audio.read_ahead import ReadAhead
from dasctl.audio.resample import resampler, to_int16
from dasctl.audio.segments import SplitDecode, part_source, split_points
from dasctl.audio.sndfile import INT16_EXACT_SUBTYPES, c_library_stderr_to_log, libsndfile_message
from dasctl.audio.truncation import two_figures
from dasctl.errors import AudioError, UsageError
from dasctl.mulaw import mulaw_encode_array

if TYPE_CHECKING:
    import soundfile

    from dasctl.wav import WavReader

_BLOCK_SECONDS = 2.0
_BLOCK_MAX_BYTES = 8 << 20  # bounds a block when a file has very many channels


def check_range(start: float = 0.0, end: float | None = None) -> None:
    """Validate --start/--end (seconds of the input); raise UsageError when they select nothing."""
    if not math.isfinite(start) or start < 0:
        raise UsageError(f"--start {start:g} must be zero or more seconds")
    if end is not None:
        if not math.isfinite(end) or end <= 0:
            raise UsageError(f"--end {end:g} must be more than zero seconds")
        if start >= end:
            raise UsageError(f"--start {start:g} must be before --end {end:g}")


class AudioStream:
    """An open recording that yields 8 kHz mono G.711 mu-law, block by block (a context manager)."""

    name: str
    input_rate: int
    input_channels: int
    input_format: str
    duration: float | None

    def __init__(
        self,
        sound: soundfile.SoundFile | WavReader | FfmpegReader,
        name: str,
        *,
        channel: str | int,
        start: float,
        end: float | None,
        seekable: bool,
        expected_frames: int | None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._sound = sound
        self._on_close = on_close
        self._closed = False
        self._started = False
        self.name = name
        self.input_rate = int(sound.samplerate)
        self.input_channels = int(sound.channels)
        self.input_format = f"{sound.format} {sound.subtype}"
        self._channel = channel
        #: the role the channel was chosen by ("customer", "agent"), if any
        self.side: str | None = None
        self._start_frame = int(round(start * self.input_rate))
        self._end_frame = None if end is None else int(round(end * self.input_rate))
        self._seekable = seekable
        self._expected_frames = expected_frames
        self._frames_read = 0
        self._read_ahead: ReadAhead | SplitDecode | None = None
        self._reading = threading.Lock()  # held by next_block while a worker reads a block
        #: (size, sha256) of the input's bytes, when they can be known (see fingerprint)
        self._fingerprint: Callable[[], tuple[int, str] | None] | None = None
        #: a copy of the mu-law frames as they were read (keep_frames), at most _keep_limit bytes
        self.kept: bytearray | None = None
        self._keep_limit = 0
        self.duration = None
        if expected_frames is not None:
            stop = expected_frames if self._end_frame is None else min(expected_frames, self._end_frame)
            self.duration = max(0, stop - self._start_frame) / self.input_rate

    # --- context manager -------------------------------------------------------------------------
    def __enter__(self) -> AudioStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (and the stdin relay); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._read_ahead is not None:
            self._read_ahead.stop()  # never close the file under the reading thread
        try:
            with self._reading:  # nor under a worker's next_block
                self._sound.close()
        finally:
            if self._on_close is not None:
                self._on_close()

    # --- what the stream was ------------------------------------------------------------------------
    def fingerprint(self) -> tuple[int, str] | None:
        """(size in bytes, sha256) of the whole input, never held in memory: a file is read again; a pipe
        was hashed as it passed (call after close(): the rest of the pipe is drained, up to a bound)."""
        return self._fingerprint() if self._fingerprint is not None else None

    def channel_fields(self) -> dict[str, str | int]:
        """What a result records of the channel sent, e.g. {"channel": "left", "side": "customer"}."""
        fields: dict[str, str | int] = {"channel": channel_label(self._channel, self.input_channels)}
        if self.side is not None:
            fields["side"] = self.side
        return fields

    def keep_frames(self, limit_bytes: int) -> bytearray:
        """Keep a copy of the mu-law that frames() yields (the audio sent), up to limit_bytes."""
        self.kept = bytearray()
        self._keep_limit = limit_bytes
        return self.kept

    # --- the stream ------------------------------------------------------------------------------
    @property
    def seconds_read(self) -> float:
        """Seconds of input consumed so far (after --start)."""
        return self._frames_read / self.input_rate

    @property
    def seekable(self) -> bool:
        """A regular file: a block is read from it without waiting on a writer (see next_block)."""
        return self._seekable

    def frames(self, frame_ms: int = 20) -> Iterator[bytes]:
        """8 kHz mono mu-law in frames of exactly frame_ms (the last may be shorter); streaming."""
        for block in self.frame_blocks(frame_ms):
            yield from self.take(block)

    def frame_blocks(self, frame_ms: int = 20, *, read_ahead: bool = True) -> Iterator[list[bytes]]:
        """The frames of frames(), one decoded block (about two seconds) at a time, not yet taken (take).

        read_ahead=False: no thread of its own decodes the next block; the caller fetches each block with
        next_block in a worker (a session does, so that 256 streams do not make 256 threads)."""
        check_frame_ms(frame_ms)
        frame_bytes = SAMPLE_RATE * frame_ms // 1000
        pending = bytearray()
        for chunk in self.chunks(read_ahead=read_ahead):
            pending += chunk
            usable = len(pending) - len(pending) % frame_bytes
            if usable:
                view = memoryview(pending)
                block = [bytes(view[start : start + frame_bytes]) for start in range(0, usable, frame_bytes)]
                view.release()
                del pending[:usable]
                yield block
        if pending:
            yield [bytes(pending)]

    def next_block(self, blocks: Iterator[list[bytes]]) -> list[bytes] | None:
        """The next of frame_blocks(read_ahead=False), None at the end; for a worker thread: close() waits
        for a block being read (a regular file's block: milliseconds) instead of closing the file under it."""
        with self._reading:
            if self._closed:
                raise ValueError("the audio stream was closed while it was being read")
            return next(blocks, None)

    def take(self, block: list[bytes]) -> Iterable[bytes]:
        """A block's frames as they are handed to the audio channel: the keep_frames tap copies each one
        then, so what is kept is what was sent."""
        if self.kept is None:
            return block
        return self._keeping(block, self.kept)

    def _keeping(self, frames: Iterable[bytes], kept: bytearray) -> Iterator[bytes]:
        for frame in frames:
            room = self._keep_limit - len(kept)
            if room > 0:
                kept += frame[:room]
            yield frame

    def chunks(self, *, read_ahead: bool = True) -> Iterator[bytes]:
        """8 kHz mono mu-law in blocks of about two seconds (the same bytes as frames(), fewer pieces)."""
        for block in self.pcm_blocks(read_ahead=read_ahead):
            if len(block):
                yield mulaw_encode_array(block).tobytes()

    def pcm_blocks(self, *, read_ahead: bool = True) -> Iterator[np.ndarray]:
        """8 kHz mono int16 in blocks: the signal just before mu-law encoding."""
        if self._started:
            raise RuntimeError("an AudioStream can be read only once")
        self._started = True
        split = self._split_decode() if read_ahead else None  # read_ahead=False: no threads of its own
        if split is not None:
            yield from self._split_blocks(split)
            return
        resample = resampler(self.input_rate) if self.input_rate != SAMPLE_RATE else None
        produced = False
        blocks: Iterator[np.ndarray]
        if not (self._seekable and read_ahead):
            blocks = self._input_blocks()
        elif self._whole_ffmpeg_file():
            # FFmpeg's decoding is the longest part: its thread does only that, the channel pick is here
            self._read_ahead = ReadAhead(self._sound.blocks())  # type: ignore[union-attr]
            blocks = self._picked(self._read_ahead)
        else:
            # decode the next block on a second core while this one is resampled and encoded
            self._read_ahead = ReadAhead(self._input_blocks())
            blocks = iter(self._read_ahead)
        for mono in blocks:
            out = resample(mono, False) if resample is not None else mono
            if len(out):
                produced = True
                yield to_int16(out)
        if resample is not None:
            tail = resample(np.zeros(0, dtype=np.float32), True)
            if len(tail):
                produced = True
                yield to_int16(tail)
        if not produced:
            raise AudioError(f"{self.name}: no audio in the selected range (0 samples)",
                             "Check --start/--end, or that the recording is not empty.")

    def _whole_ffmpeg_file(self) -> bool:
        return (self._seekable and isinstance(self._sound, FfmpegReader) and self._start_frame == 0
                and self._end_frame is None)

    def _picked(self, planar: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The channel pick (or mix) of decoded (frames, channels) float32 blocks."""
        for block in planar:
            self._frames_read += len(block)
            yield to_mono(block, self._channel, 1.0)

    def _split_decode(self) -> SplitDecode | None:
        """A long MP3 or MP4/M4A file read whole is decoded in parts on both cores (segments.py)."""
        if not (self._seekable and self.input_rate != SAMPLE_RATE and self._start_frame == 0
                and self._end_frame is None):
            return None
        found = part_source(self._sound, self.name)
        if found is None or len(split_points(found[1], self.input_rate)) < 2:
            return None
        return SplitDecode(found[0], found[1], self._channel)

    def _split_blocks(self, split: SplitDecode) -> Iterator[np.ndarray]:
        self._read_ahead = split
        for block in split.blocks():
            self._frames_read = split.position
            yield block
        if split.end is not None:
            self._check_complete(split.end)

    def _input_blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks of the input at its own rate, between --start and --end."""
        sound = self._sound
        channels = self.input_channels
        # 16-bit-or-narrower sources are read as int16 (a copy, no conversion in libsndfile): twice as fast
        as_int16 = sound.subtype in INT16_EXACT_SUBTYPES
        dtype = "int16" if as_int16 else "float32"
        scale = 1.0 / 32768 if as_int16 else 1.0
        block_frames = int(self.input_rate * _BLOCK_SECONDS)
        block_frames = max(1024, min(block_frames, _BLOCK_MAX_BYTES // (4 * channels)))
        buffer = np.empty((block_frames, channels), dtype=dtype)
        # libmpg123 prints notes on fd 2 as it decodes a damaged MP3: they go to the debug log instead
        quiet = sound.format == "MP3" and not isinstance(sound, FfmpegReader)
        position = 0
        if self._start_frame:
            position = self._skip_to_start(buffer)
        stop = self._end_frame
        while stop is None or position < stop:
            wanted = block_frames if stop is None else min(block_frames, stop - position)
            try:
                if quiet:
                    with c_library_stderr_to_log():
                        block = sound.read(wanted, dtype=dtype, always_2d=True, out=buffer[:wanted])
                else:
                    block = sound.read(wanted, dtype=dtype, always_2d=True, out=buffer[:wanted])
            except OSError as error:
                raise AudioError(f"{self.name}: cannot read at {position / self.input_rate:.1f} s: "
                                 f"{error.strerror or error}") from None
            except RuntimeError as error:  # soundfile.LibsndfileError is one: no import of it for a WAV
                raise AudioError(
                    f"{self.name}: corrupt audio data at {position / self.input_rate:.1f} s: "
                    f"{libsndfile_message(error)}"
                ) from None
            got = len(block)
            if got == 0:
                break
            position += got
            self._frames_read = position - self._start_frame
            yield to_mono(block, self._channel, scale)
            if got < wanted:
                break
        self._check_complete(position)

    def _skip_to_start(self, buffer: np.ndarray) -> int:
        """Move to --start: seek when we can, read and drop when the input is a pipe."""
        if self._seekable:
            self._sound.seek(self._start_frame)
            return self._start_frame
        position = 0
        while position < self._start_frame:
            wanted = min(len(buffer), self._start_frame - position)
            got = len(self._sound.read(wanted, dtype=buffer.dtype.name, always_2d=True, out=buffer[:wanted]))
            if got == 0:
                break
            position += got
        if position < self._start_frame:
            raise UsageError(
                f"--start {self._start_frame / self.input_rate:g} s is past the end of {self.name} "
                f"({position / self.input_rate:.1f} s)"
            )
        return position

    def _check_complete(self, position: int) -> None:
        """A recording that ends before its header said is truncated: refuse it rather than send half."""
        expected = self._expected_frames
        if expected is None:
            return
        if self._end_frame is not None:
            expected = min(expected, self._end_frame)
        if position < expected:
            rate = self.input_rate
            shown, promised = two_figures(position, expected, rate)
            raise AudioError(
                f"{self.name}: truncated: the audio stops at {shown} but the header announces {promised}",
                f"If it is still being written, wait; to use what is there, add --end {position / rate:.1f}.",
            )
