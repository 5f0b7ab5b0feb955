"""Recordings -> what the service hears: decode, pick a channel, resample to 8 kHz, mu-law, frames, pacing.

Everything streams: the input is read in blocks of about two seconds, so memory stays flat whatever the
length of the recording, and stdin works as well as a file.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from dasctl.errors import AudioError, UsageError
from dasctl.mulaw import mulaw_decode, mulaw_encode, mulaw_encode_array

if TYPE_CHECKING:
    import soundfile

__all__ = [
    "SAMPLE_RATE",
    "AudioStream",
    "Pacer",
    "check_range",
    "mulaw_decode",
    "mulaw_encode",
    "open_audio",
    "parse_channel",
    "write_mulaw_raw",
    "write_mulaw_wav",
]

SAMPLE_RATE = 8000
STDIN_NAME = "<stdin>"
CHANNEL_CHOICES = "mix, left, right, or a channel number counted from 0"
#: Input rates outside this range are treated as a broken header, not as audio.
MIN_INPUT_RATE = 2000
MAX_INPUT_RATE = 768_000
MIN_FRAME_MS = 1
MAX_FRAME_MS = 8000  # AudioHook caps a binary frame at 64 KiB

_BLOCK_SECONDS = 2.0
# libsndfile hands these over as int16 without losing anything
_INT16_EXACT_SUBTYPES = frozenset({"PCM_16", "PCM_S8", "PCM_U8", "ULAW", "ALAW", "DWVW_12", "DWVW_16"})
_BLOCK_MAX_BYTES = 8 << 20  # bounds a block when a file has very many channels
_SUPPORTED = (
    "WAV (PCM, float, mu-law, A-law, extensible), RF64, W64, FLAC, OGG, AIFF and what else libsndfile reads"
)
# libsndfile's log says "data : 186814 (should be 99956)" when the header promises more than the file holds.
_TRUNCATED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_BYTES_PER_SECOND = re.compile(r"^\s*Bytes/sec\s*:\s*(\d+)", re.MULTILINE)
_DATA_LENGTH = re.compile(r"^data\s*:\s*(\d+)", re.MULTILINE)
# Streaming writers (ffmpeg to a pipe) leave the data length at one of these: "unknown length".
_UNKNOWN_DATA_LENGTHS = (0, 0xFFFFFFFF, 0xFFFFFFFF - 1)


def parse_channel(channel: str) -> str | int:
    """'mix' stays 'mix'; 'left', 'right' and 'N' become a 0-based index; anything else is a UsageError."""
    text = str(channel).strip().lower()
    if text == "mix":
        return "mix"
    if text == "left":
        return 0
    if text == "right":
        return 1
    if text.isdigit():
        return int(text)
    raise UsageError(f"--channel {channel!r} is not a channel: use {CHANNEL_CHOICES}")


def check_range(start: float = 0.0, end: float | None = None) -> None:
    """Validate --start/--end (seconds of the input); raise UsageError when they select nothing."""
    if not math.isfinite(start) or start < 0:
        raise UsageError(f"--start {start:g} must be zero or more seconds")
    if end is not None:
        if not math.isfinite(end) or end <= 0:
            raise UsageError(f"--end {end:g} must be more than zero seconds")
        if start >= end:
            raise UsageError(f"--start {start:g} must be before --end {end:g}")


def check_frame_ms(frame_ms: int) -> None:
    """Validate a frame length in milliseconds."""
    if not MIN_FRAME_MS <= frame_ms <= MAX_FRAME_MS:
        raise UsageError(f"--frame-ms {frame_ms} must be between {MIN_FRAME_MS} and {MAX_FRAME_MS}")


class AudioStream:
    """An open recording that yields 8 kHz mono G.711 mu-law, block by block (a context manager)."""

    name: str
    input_rate: int
    input_channels: int
    input_format: str
    duration: float | None

    def __init__(
        self,
        sound: soundfile.SoundFile,
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
        self._start_frame = int(round(start * self.input_rate))
        self._end_frame = None if end is None else int(round(end * self.input_rate))
        self._seekable = seekable
        self._expected_frames = expected_frames
        self._frames_read = 0
        self._read_ahead: _ReadAhead | None = None
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
            self._sound.close()
        finally:
            if self._on_close is not None:
                self._on_close()

    # --- what the stream was ------------------------------------------------------------------------
    def fingerprint(self) -> tuple[int, str] | None:
        """(size in bytes, sha256) of the whole input, never held in memory: a file is read again; a pipe
        was hashed as it passed (call after close(): the rest of the pipe is drained, up to a bound)."""
        return self._fingerprint() if self._fingerprint is not None else None

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

    def frames(self, frame_ms: int = 20) -> Iterator[bytes]:
        """8 kHz mono mu-law in frames of exactly frame_ms (the last may be shorter); streaming."""
        check_frame_ms(frame_ms)
        frame_bytes = SAMPLE_RATE * frame_ms // 1000
        pending = bytearray()
        kept = self.kept
        if kept is not None:  # the tap copies each frame as it is handed to the audio channel
            yield from self._keeping(self._frames(frame_bytes, pending), kept)
            return
        yield from self._frames(frame_bytes, pending)

    def _keeping(self, frames: Iterator[bytes], kept: bytearray) -> Iterator[bytes]:
        for frame in frames:
            room = self._keep_limit - len(kept)
            if room > 0:
                kept += frame[:room]
            yield frame

    def _frames(self, frame_bytes: int, pending: bytearray) -> Iterator[bytes]:
        for chunk in self.chunks():
            pending += chunk
            usable = len(pending) - len(pending) % frame_bytes
            if usable:
                view = memoryview(pending)
                for offset in range(0, usable, frame_bytes):
                    yield bytes(view[offset : offset + frame_bytes])
                view.release()
                del pending[:usable]
        if pending:
            yield bytes(pending)

    def chunks(self) -> Iterator[bytes]:
        """8 kHz mono mu-law in blocks of about two seconds (the same bytes as frames(), fewer pieces)."""
        for block in self.pcm_blocks():
            if len(block):
                yield mulaw_encode_array(block).tobytes()

    def pcm_blocks(self) -> Iterator[np.ndarray]:
        """8 kHz mono int16 in blocks: the signal just before mu-law encoding."""
        if self._started:
            raise RuntimeError("an AudioStream can be read only once")
        self._started = True
        resample = _resampler(self.input_rate) if self.input_rate != SAMPLE_RATE else None
        produced = False
        blocks = self._input_blocks()
        if self._seekable:
            # decode the next block on a second core while this one is resampled and encoded
            self._read_ahead = _ReadAhead(blocks)
            blocks = iter(self._read_ahead)
        for mono in blocks:
            out = resample(mono, False) if resample is not None else mono
            if len(out):
                produced = True
                yield _to_int16(out)
        if resample is not None:
            tail = resample(np.zeros(0, dtype=np.float32), True)
            if len(tail):
                produced = True
                yield _to_int16(tail)
        if not produced:
            raise AudioError(f"{self.name}: no audio in the selected range (0 samples)",
                             "Check --start/--end, or that the recording is not empty.")

    def _input_blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks of the input at its own rate, between --start and --end."""
        import soundfile

        sound = self._sound
        channels = self.input_channels
        # 16-bit-or-narrower sources are read as int16 (a copy, no conversion in libsndfile): twice as fast
        as_int16 = sound.subtype in _INT16_EXACT_SUBTYPES
        dtype = "int16" if as_int16 else "float32"
        scale = 1.0 / 32768 if as_int16 else 1.0
        block_frames = int(self.input_rate * _BLOCK_SECONDS)
        block_frames = max(1024, min(block_frames, _BLOCK_MAX_BYTES // (4 * channels)))
        buffer = np.empty((block_frames, channels), dtype=dtype)
        position = 0
        if self._start_frame:
            position = self._skip_to_start(buffer)
        stop = self._end_frame
        while stop is None or position < stop:
            wanted = block_frames if stop is None else min(block_frames, stop - position)
            try:
                block = sound.read(wanted, dtype=dtype, always_2d=True, out=buffer[:wanted])
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioError(
                    f"{self.name}: corrupt audio data at {position / self.input_rate:.1f} s: "
                    f"{_libsndfile_message(error)}"
                ) from None
            got = len(block)
            if got == 0:
                break
            position += got
            self._frames_read = position - self._start_frame
            if channels == 1 or self._channel != "mix":
                index = 0 if channels == 1 else int(self._channel)
                mono = block[:, index].astype(np.float32)
                if as_int16:
                    mono *= scale
            else:
                # column by column: numpy's mean(axis=1) over two columns is several times slower
                mono = block[:, 0].astype(np.float32)
                for column in range(1, channels):
                    mono += block[:, column]
                mono *= np.float32(scale / channels)
            yield mono
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
            raise AudioError(
                f"{self.name}: truncated: the audio stops at {position / rate:.1f} s "
                f"but the header announces {expected / rate:.1f} s",
                f"If it is still being written, wait; to use what is there, add --end {position / rate:.1f}.",
            )


_END = object()
_SOXR_STEEP_FILTER = 0x40  # libsoxr recipe flag: passband to 0.995 of Nyquist instead of 0.913


def _resampler(input_rate: int) -> Callable[[np.ndarray, bool], np.ndarray]:
    """A streaming soxr resampler to 8 kHz: (mono float32 block, last) -> resampled block.

    HQ (20-bit) is far below mu-law's own noise. The steep filter keeps 3.7-3.95 kHz, which the default
    HQ filter rolls off, and still rejects everything above 4.02 kHz by 138 dB (no aliasing). The Python
    wrapper only takes the five presets, so the flag goes through its extension class when it is there.
    """
    import soxr

    try:
        from soxr import soxr_ext

        engine = soxr_ext.CSoxr(input_rate, SAMPLE_RATE, 1, soxr_ext.SOXR_FLOAT32_I,
                                soxr.HQ | _SOXR_STEEP_FILTER, False)

        def steep(block: np.ndarray, last: bool) -> np.ndarray:
            return engine.process_float32(block[:, np.newaxis], last)[:, 0]  # type: ignore[no-any-return]

        return steep
    except (ImportError, AttributeError, TypeError):  # another python-soxr: its plain HQ preset
        stream = soxr.ResampleStream(input_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        return stream.resample_chunk


class _ReadAhead:
    """Runs a block producer in a thread, `depth` blocks ahead; errors surface in the consumer.

    Only for regular files: a read from one never blocks for long, so stop() can wait for the thread
    to finish its current block, and the file is never closed under a read in progress.
    """

    def __init__(self, blocks: Iterator[np.ndarray], depth: int = 2) -> None:
        import queue

        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._blocks = blocks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="dasctl-audio-read", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        import queue

        try:
            for block in self._blocks:
                while not self._stop.is_set():
                    try:
                        self._queue.put(block, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            self._queue.put(error)

    def __iter__(self) -> Iterator[np.ndarray]:
        import queue

        try:
            while True:
                if self._stop.is_set():
                    raise ValueError("the audio stream was closed while it was being read")
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the thread and wait for it (safe to call twice, from the consumer or from close())."""
        import queue

        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()  # unblock a producer waiting on a full queue
            except queue.Empty:
                self._thread.join(0.05)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1) -> int16, rounded to nearest and clipped (resampling can overshoot 1.0)."""
    scaled = np.multiply(samples, 32768.0, dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    return scaled.astype(np.int16)


def _libsndfile_message(error: BaseException) -> str:
    text = str(error)
    # soundfile says "Error opening '<path>': <what libsndfile said>"; keep what libsndfile said.
    if ": " in text and text.startswith("Error"):
        text = text.split(": ", 1)[1]
    return text.rstrip(".") or type(error).__name__


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return printable >= 0.95 * len(decoded)


# What libsndfile says when nothing in the first bytes looks like a format it knows.
_UNKNOWN_FORMAT_MESSAGES = ("Format not recognised", "unimplemented format", "not a regular file")


def _unreadable_format(name: str, error: BaseException, head: bytes) -> AudioError:
    message = _libsndfile_message(error)
    hint = f"dasctl reads {_SUPPORTED}."
    if _looks_like_text(head):
        return AudioError(f"{name}: is a text file, not a recording", hint)
    if any(text in message for text in _UNKNOWN_FORMAT_MESSAGES):
        return AudioError(f"{name}: not a recording dasctl can read (unknown or unsupported format)", hint)
    return AudioError(f"{name}: corrupt or unsupported audio: {message}", hint)


def _open_sound(target: int | BinaryIO, name: str, head: bytes) -> soundfile.SoundFile:
    import soundfile

    try:
        return soundfile.SoundFile(target, closefd=False)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise _unreadable_format(name, error, head) from None


def _declared_frames(sound: soundfile.SoundFile, seekable: bool) -> int | None:
    """Frames the header promises, or None when the input cannot tell (streamed WAV, OGG on a pipe)."""
    frames = int(sound.frames)
    if frames <= 0 or frames >= 1 << 62:
        return None
    if seekable:
        return frames
    if sound.format not in ("WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "CAF"):
        return None
    match = _DATA_LENGTH.search(sound.extra_info)
    if match is None or int(match.group(1)) in _UNKNOWN_DATA_LENGTHS:
        return None
    return frames


def _check_truncated_header(sound: soundfile.SoundFile, name: str, end: float | None) -> None:
    """A file whose data chunk is shorter than its header says: an error unless --end stays inside it."""
    match = _TRUNCATED_DATA.search(sound.extra_info)
    if match is None:
        return
    available = sound.frames / sound.samplerate
    if end is not None and end <= available:
        return
    rate_match = _BYTES_PER_SECOND.search(sound.extra_info)
    announced = ""
    if rate_match and int(rate_match.group(1)) > 0:
        announced = f" ({int(match.group(1)) / int(rate_match.group(1)):.1f} s)"
    if sound.frames == 0:
        raise AudioError(f"{name}: no audio: the file ends right after its header{announced}",
                         "The recording was probably cut off while it was being written.")
    usable = math.floor(available * 10) / 10
    raise AudioError(
        f"{name}: truncated: the data stops at {available:.1f} s but the header announces more{announced}",
        f"If it is still being written, wait; to use what is there, add --end {usable:.1f}.",
    )


class _PipeRelay:
    """Feeds libsndfile a fresh pipe that starts with the bytes we peeked from stdin, then the rest."""

    def __init__(self, source_fd: int, head: bytes) -> None:
        self.read_fd, self._write_fd = os.pipe()
        self._source_fd = source_fd
        self._head = head
        # what passed through, so that stdin's sha256 is known without keeping the input
        self._digest = hashlib.sha256()
        self._size = 0
        self._complete = False
        self._thread = threading.Thread(target=self._run, name="dasctl-stdin-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            data = self._head
            forwarding = True
            while data:
                self._digest.update(data)
                self._size += len(data)
                view = memoryview(data)
                while view and forwarding:
                    try:
                        written = os.write(self._write_fd, view)
                    except OSError:
                        # the reader closed its end (--end reached, the session over): the rest of the
                        # input is only hashed, so that stdin's sha256 is the whole input's
                        forwarding = False
                        break
                    view = view[written:]
                data = os.read(self._source_fd, 1 << 16)
            self._complete = True
        except OSError:
            pass  # stdin itself failed: the input's digest stays unknown
        finally:
            os.close(self._write_fd)

    def close(self) -> None:
        try:
            os.close(self.read_fd)
        except OSError:
            pass

    def fingerprint(self) -> tuple[int, str] | None:
        # after close(): the relay drains what is left of stdin; an endless stream gives no digest
        self._thread.join(timeout=STDIN_DRAIN_TIMEOUT)
        return (self._size, self._digest.hexdigest()) if self._complete else None


#: seconds fingerprint() waits for the rest of a piped stdin to be hashed
STDIN_DRAIN_TIMEOUT = 30.0


def _fd_fingerprint(fd: int) -> tuple[int, str]:
    """(size, sha256) of a regular file's bytes, read in blocks (a 1-hour WAV is never held whole)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return offset, digest.hexdigest()


def _path_fingerprint(path: Path) -> tuple[int, str] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _fd_fingerprint(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_head(fd: int, size: int) -> bytes:
    head = b""
    while len(head) < size:
        data = os.read(fd, size - len(head))
        if not data:
            break
        head += data
    return head


def _open_stdin(channel: str | int, start: float, end: float | None, channel_text: str) -> AudioStream:
    try:
        fd = sys.stdin.buffer.fileno()
    except (AttributeError, ValueError, OSError):
        raise UsageError("'-' means a recording on stdin, but there is no stdin") from None
    if os.isatty(fd):
        raise UsageError("'-' reads a recording from stdin, and stdin is a terminal",
                         "Pipe one in: cat call.wav | dasctl ... -")
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode):
        # `< call.wav`: a real file, seekable, opened in place
        if info.st_size == 0:
            raise AudioError(f"{STDIN_NAME}: empty input (0 bytes)")
        os.lseek(fd, 0, os.SEEK_SET)
        head = os.pread(fd, 512, 0)
        sound = _open_sound(fd, STDIN_NAME, head)
        stream = _finish_open(sound, STDIN_NAME, channel, start, end, seekable=True,
                              channel_text=channel_text)
        stream._fingerprint = lambda: _fd_fingerprint(fd)
        return stream
    head = _read_head(fd, 512)
    if not head:
        raise AudioError(f"{STDIN_NAME}: empty input (0 bytes)")
    if head.startswith(b"fLaC"):
        # libsndfile cannot decode FLAC from a pipe (it seeks back); spool to an unlinked temp file (disk)
        spool = tempfile.TemporaryFile(prefix="dasctl-stdin-")
        digest, size = hashlib.sha256(head), len(head)
        try:
            spool.write(head)
            while data := os.read(fd, 1 << 20):
                spool.write(data)
                digest.update(data)
                size += len(data)
            spool.flush()
            spool.seek(0)
            sound = _open_sound(spool.fileno(), STDIN_NAME, head)
        except BaseException:
            spool.close()
            raise
        stream = _finish_open(sound, STDIN_NAME, channel, start, end, seekable=True, on_close=spool.close,
                              channel_text=channel_text)
        stream._fingerprint = lambda: (size, digest.hexdigest())
        return stream
    relay = _PipeRelay(fd, head)
    try:
        sound = _open_sound(relay.read_fd, STDIN_NAME, head)
    except BaseException:
        relay.close()
        raise
    stream = _finish_open(sound, STDIN_NAME, channel, start, end, seekable=False, on_close=relay.close,
                          channel_text=channel_text)
    stream._fingerprint = relay.fingerprint
    return stream


def _open_path(
    path: Path, channel: str | int, start: float, end: float | None, channel_text: str
) -> AudioStream:
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except PermissionError:
        raise AudioError(f"{name}: cannot read the file (permission denied)",
                         "Check the file's permissions, or run as a user who can read it.") from None
    except IsADirectoryError:
        raise AudioError(f"{name}: is a directory, not a recording") from None
    except OSError as error:
        raise AudioError(f"{name}: cannot open the file: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise AudioError(f"{name}: is a directory, not a recording")
        if stat.S_ISREG(info.st_mode) and info.st_size == 0:
            raise AudioError(f"{name}: empty file (0 bytes)")
        try:
            head = os.pread(fd, 512, 0)
        except OSError as error:
            raise AudioError(f"{name}: cannot read the file: {error.strerror or error}") from None
        sound = _open_sound(fd, name, head)
    except BaseException:
        os.close(fd)
        raise
    seekable = stat.S_ISREG(info.st_mode)
    stream = _finish_open(sound, name, channel, start, end, seekable=seekable, on_close=lambda: os.close(fd),
                          channel_text=channel_text)
    if seekable:
        stream._fingerprint = lambda: _path_fingerprint(path)
    return stream


def _finish_open(
    sound: soundfile.SoundFile,
    name: str,
    channel: str | int,
    start: float,
    end: float | None,
    *,
    seekable: bool,
    on_close: Callable[[], None] | None = None,
    channel_text: str = "",
) -> AudioStream:
    """Validate what libsndfile found (rate, channels, truncation, range) and build the stream."""
    try:
        rate, channels = int(sound.samplerate), int(sound.channels)
        if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
            raise AudioError(
                f"{name}: implausible sample rate {rate} Hz "
                f"(expected {MIN_INPUT_RATE} to {MAX_INPUT_RATE} Hz); the header is probably corrupt"
            )
        if channels < 1:
            raise AudioError(f"{name}: the header says it has {channels} channels")
        if isinstance(channel, int) and channel >= channels:
            layout = "mono (1 channel)" if channels == 1 else f"{channels} channels (0 to {channels - 1})"
            raise UsageError(f"--channel {channel_text or channel}: {name} is {layout}",
                             "Use --channel mix" + (", left or right" if channels == 2 else "")
                             + (f", or a number from 0 to {channels - 1}" if channels > 2 else "") + ".")
        if seekable:
            _check_truncated_header(sound, name, end)
        expected = _declared_frames(sound, seekable)
        if seekable and expected is None:
            raise AudioError(f"{name}: no audio (0 samples)", "The file holds a header and no sound.")
        if expected is not None and round(start * rate) >= expected:
            raise UsageError(f"--start {start:g} s is past the end of {name} ({expected / rate:.1f} s)")
        return AudioStream(sound, name, channel=channel, start=start, end=end, seekable=seekable,
                           expected_frames=expected, on_close=on_close)
    except BaseException:
        try:
            sound.close()
        finally:
            if on_close is not None:
                on_close()
        raise


def open_audio(
    source: str | os.PathLike[str], *, channel: str = "mix", start: float = 0.0, end: float | None = None
) -> AudioStream:
    """Open a recording ('-' = stdin) for streaming; AudioError (exit 3) names the file and the problem."""
    choice = parse_channel(channel)
    check_range(start, end)
    if str(source) == "-":
        return _open_stdin(choice, start, end, channel)
    return _open_path(Path(source), choice, start, end, channel)


# --- output ----------------------------------------------------------------------------------------
def _wav_header(data_bytes: int) -> bytes:
    """RIFF/WAVE header for 8 kHz mono WAVE_FORMAT_MULAW (fmt of 18 bytes and a fact chunk, as sox writes)."""
    pad = data_bytes & 1
    fmt = (
        (7).to_bytes(2, "little")  # WAVE_FORMAT_MULAW
        + (1).to_bytes(2, "little")
        + SAMPLE_RATE.to_bytes(4, "little")
        + SAMPLE_RATE.to_bytes(4, "little")  # bytes per second: one byte a sample
        + (1).to_bytes(2, "little")  # block align
        + (8).to_bytes(2, "little")  # bits per sample
        + (0).to_bytes(2, "little")  # cbSize
    )
    riff_size = 4 + (8 + len(fmt)) + (8 + 4) + (8 + data_bytes + pad)
    return (
        b"RIFF" + riff_size.to_bytes(4, "little") + b"WAVE"
        + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
        + b"fact" + (4).to_bytes(4, "little") + data_bytes.to_bytes(4, "little")
        + b"data" + data_bytes.to_bytes(4, "little")
    )


WAV_HEADER_BYTES = len(_wav_header(0))
_MAX_WAV_DATA = 0xFFFFFFFF - WAV_HEADER_BYTES  # RIFF sizes are 32-bit: about 149 hours at 8 kHz


def _write_atomically(path: str | os.PathLike[str], chunks: Iterable[bytes], wav: bool) -> int:
    from dasctl.atomic_file import PUBLIC, atomic_file

    total = 0
    with atomic_file(path, PUBLIC) as out:  # a user's file: 0666 & ~umask, like any new file
        if wav:
            out.write(_wav_header(0))
        for chunk in chunks:
            out.write(chunk)
            total += len(chunk)
        if wav:
            if total > _MAX_WAV_DATA:
                raise UsageError(f"{path}: {total} bytes of audio do not fit a WAV file",
                                 "Write raw mu-law instead (.ul).")
            if total & 1:
                out.write(b"\0")  # RIFF chunks are word-aligned
            out.seek(0)
            out.write(_wav_header(total))
    return total


def write_mulaw_wav(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> int:
    """Write 8 kHz mono mu-law chunks as a playable WAV, atomically; return the bytes of audio."""
    return _write_atomically(path, chunks, wav=True)


def write_mulaw_raw(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> int:
    """Write 8 kHz mono mu-law chunks as raw bytes (.ul), atomically; return the bytes written."""
    return _write_atomically(path, chunks, wav=False)


# --- pacing ----------------------------------------------------------------------------------------
class Pacer:
    """Absolute-deadline pacing: speed 0 = as fast as possible, 1 = real time, N = N times real time."""

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not math.isfinite(speed) or speed < 0:
            raise UsageError(f"--speed {speed:g} must be 0 (as fast as possible) or more (1 = real time)")
        self.speed = float(speed)
        self._clock = clock
        self._started_at: float | None = None

    def delay(self, audio_seconds_sent: float) -> float:
        """Seconds to wait before sending the frame that starts at this stream time (>= 0)."""
        if self.speed == 0:
            return 0.0
        now = self._clock()
        if self._started_at is None:
            self._started_at = now
        # Deadlines come from the start, never from the previous frame, so late frames do not add up to drift.
        return max(0.0, self._started_at + audio_seconds_sent / self.speed - now)


def paced_frames(
    frames: Iterable[bytes], pacer: Pacer, sleep: Callable[[float], None] = time.sleep
) -> Iterator[bytes]:
    """Yield each frame no earlier than its deadline (synchronous writers; asyncio code uses Pacer.delay)."""
    sent = 0.0
    for frame in frames:
        wait = pacer.delay(sent)
        if wait > 0:
            sleep(wait)
        yield frame
        sent += len(frame) / SAMPLE_RATE
