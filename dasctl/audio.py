"""Recordings -> what the service hears: decode, pick a channel, resample to 8 kHz, mu-law, frames, pacing.

Everything streams: the input is read in blocks of about two seconds, so memory stays flat whatever the
length of the recording, and stdin works as well as a file.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from dasctl.errors import AudioError, UsageError
from dasctl.mulaw import mulaw_decode, mulaw_encode, mulaw_encode_array
from dasctl.wav import PLACEHOLDER_SIZES, ByteSource, WavReader, parse_header

if TYPE_CHECKING:
    import soundfile

log = logging.getLogger(__name__)

__all__ = [
    "SAMPLE_RATE",
    "AudioStream",
    "MulawAudio",
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
        # libmpg123 prints notes on fd 2 as it decodes a damaged MP3: they go to the debug log instead
        quiet = sound.format == "MP3"
        position = 0
        if self._start_frame:
            position = self._skip_to_start(buffer)
        stop = self._end_frame
        while stop is None or position < stop:
            wanted = block_frames if stop is None else min(block_frames, stop - position)
            try:
                if quiet:
                    with _c_library_stderr_to_log():
                        block = sound.read(wanted, dtype=dtype, always_2d=True, out=buffer[:wanted])
                else:
                    block = sound.read(wanted, dtype=dtype, always_2d=True, out=buffer[:wanted])
            except OSError as error:
                raise AudioError(f"{self.name}: cannot read at {position / self.input_rate:.1f} s: "
                                 f"{error.strerror or error}") from None
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
            shown, promised = _two_figures(position, expected, rate)
            raise AudioError(
                f"{self.name}: truncated: the audio stops at {shown} but the header announces {promised}",
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
    """UTF-8 (or ASCII) text, or UTF-16/32 text that starts with its byte-order mark; never a container
    libsndfile knows by its first bytes (a NIST SPHERE header is 1024 bytes of text, maybe space-padded)."""
    if head.startswith(_CONTAINER_MAGIC):
        return False
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        decoded = head[: len(head) // 4 * 4].decode("utf-32", errors="ignore")
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        decoded = head[: len(head) // 2 * 2].decode("utf-16", errors="ignore")
    else:
        try:
            decoded = head.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.start < len(head) - 3:  # not merely a character cut off at the end of the sample
                return False
            decoded = head[: error.start].decode("utf-8")
    if not decoded:
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
    if "SF_INFO struct incomplete" in message:
        return AudioError(f"{name}: corrupt header: no usable sample rate, channel count or format", hint)
    if any(text in message for text in _UNKNOWN_FORMAT_MESSAGES):
        return AudioError(f"{name}: not a recording dasctl can read (unknown or unsupported format)", hint)
    return AudioError(f"{name}: corrupt or unsupported audio: {message}", hint)


# First bytes of the containers libsndfile recognises by their header. Anything else ends in its format
# guessing, the last step of which is libmpg123, which prints notes on fd 2 ("Trying to resync...").
_CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b".snd", b"dns.", b"fLaC", b"OggS", b"caff",
                    b"riff", b"NIST", b"Creative Voice", b"PVF1", b"2BIT", b"MATLAB", b"Extended Instrument",
                    b"fap ", b" paf", b"ALaw")
_FD2_LOCK = threading.Lock()


@contextmanager
def _c_library_stderr_to_log() -> Iterator[None]:
    """Point fd 2 at a temporary file while libsndfile guesses at an input of unknown format; what the C
    libraries said goes to the debug log (-vv). Only then: a live display on stderr would pause meanwhile."""
    with _FD2_LOCK, tempfile.TemporaryFile(prefix="dasctl-stderr-") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said = sink.read(4096).decode(errors="replace").strip()
            if said:
                log.debug("libsndfile (and libmpg123) said: %s", said)


def _open_sound(target: int | BinaryIO, name: str, head: bytes) -> soundfile.SoundFile:
    import soundfile

    if _looks_like_text(head):
        # refused before libsndfile sees it: its MP3 decoder (libmpg123) prints noise to fd 2 on text
        raise AudioError(f"{name}: is a text file, not a recording", f"dasctl reads {_SUPPORTED}.")
    try:
        if head.startswith(_CONTAINER_MAGIC):
            return soundfile.SoundFile(target, closefd=False)
        with _c_library_stderr_to_log():
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
    if match is None or int(match.group(1)) in PLACEHOLDER_SIZES:
        return None
    return frames


def _two_figures(there: int, announced: int, rate: int) -> tuple[str, str]:
    """'6.2 s' and '11.7 s'; with the sample counts too when a tenth of a second cannot tell them apart."""
    first, second = f"{there / rate:.1f} s", f"{announced / rate:.1f} s"
    if first == second:
        return f"{first} ({there} samples)", f"{second}, {announced} samples"
    return first, second


def _refuse_truncated(name: str, there: int, announced: int, rate: int, end: float | None) -> None:
    """A file whose data stops before its header's definite length: an error unless --end stays inside."""
    if end is not None and end <= there / rate:
        return
    if there == 0:
        raise AudioError(f"{name}: no audio: the file ends right after its header ({announced / rate:.1f} s)",
                         "The recording was probably cut off while it was being written.")
    shown, promised = _two_figures(there, announced, rate)
    usable = math.floor(there / rate * 10) / 10
    raise AudioError(
        f"{name}: truncated: the data stops at {shown} but the header announces more ({promised})",
        f"If it is still being written, wait; to use what is there, add --end {usable:.1f}.",
    )


def _check_truncated_header(sound: soundfile.SoundFile, name: str, end: float | None) -> None:
    """libsndfile's log says when a data chunk is shorter than its header says."""
    match = _TRUNCATED_DATA.search(sound.extra_info)
    if match is None:
        return
    rate_match = _BYTES_PER_SECOND.search(sound.extra_info)
    if not rate_match or int(rate_match.group(1)) <= 0:
        announced = int(sound.frames) + 1  # more than there is, by an unknown amount
    else:
        announced = round(int(match.group(1)) / int(rate_match.group(1)) * sound.samplerate)
    _refuse_truncated(name, int(sound.frames), announced, int(sound.samplerate), end)


class _StreamDigest:
    """Size and sha256 of every byte taken from a one-pass input (a pipe, a FIFO), so that its digest
    is known without keeping a copy; `complete` once the input's end was seen."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.complete = False
        self.readable = True  # False once the fd is closed (a FIFO's, at the stream's close)

    def update(self, data: bytes) -> None:
        """Count bytes read from the input; b"" marks its end."""
        if data:
            self._sha256.update(data)
            self.size += len(data)
        else:
            self.complete = True

    def result(self) -> tuple[int, str] | None:
        return (self.size, self._sha256.hexdigest()) if self.complete else None

    def drain(self, timeout: float) -> tuple[int, str] | None:
        """Read and hash what is left of the input (the session may stop before its end), for at most
        `timeout` seconds: an endless stream gives no digest."""
        import select

        deadline = time.monotonic() + timeout
        try:
            while not self.complete and self.readable:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    break
                self.update(os.read(self.fd, 1 << 16))
        except OSError:
            pass
        return self.result()


class _PipeRelay:
    """Feeds libsndfile a fresh pipe that starts with the bytes we peeked from stdin, then the rest."""

    def __init__(
        self, source_fd: int, head: bytes, digest: _StreamDigest, on_finish: Callable[[], None] | None = None
    ) -> None:
        self.read_fd, self._write_fd = os.pipe()
        self._source_fd = source_fd
        self._head = head  # already counted in digest
        self._digest = digest
        self._on_finish = on_finish  # runs in the relay thread once it no longer reads source_fd
        self._thread = threading.Thread(target=self._run, name="dasctl-stdin-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            data = self._head
            forwarding = True
            while data:
                view = memoryview(data)
                while view and forwarding:
                    try:
                        written = os.write(self._write_fd, view)
                    except OSError:
                        # the reader closed its end (--end reached, the session over): the rest of the
                        # input is only hashed, so that its sha256 is the whole input's
                        forwarding = False
                        os.close(self._write_fd)
                        self._write_fd = -1
                        break
                    view = view[written:]
                data = os.read(self._source_fd, 1 << 16)
                self._digest.update(data)
        except OSError:
            pass  # the input itself failed: its digest stays unknown
        finally:
            if self._write_fd >= 0:
                os.close(self._write_fd)
            if self._on_finish is not None:
                self._on_finish()

    def close(self) -> None:
        try:
            os.close(self.read_fd)
        except OSError:
            pass

    def fingerprint(self) -> tuple[int, str] | None:
        # after close(): the relay drains what is left of the input; an endless stream gives no digest
        self._thread.join(timeout=STDIN_DRAIN_TIMEOUT)
        return self._digest.result()


#: seconds fingerprint() waits for the rest of a piped input to be hashed
STDIN_DRAIN_TIMEOUT = 30.0


def _fd_fingerprint(fd: int) -> tuple[int, str]:
    """(size, sha256) of a regular file's bytes, read in blocks (a 1-hour WAV is never held whole)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return offset, digest.hexdigest()


def path_fingerprint(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of a file, read in blocks; None when it cannot be read."""
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
    if stat.S_ISREG(os.fstat(fd).st_mode):
        # `< call.wav`: a real file, seekable, opened in place
        stream = _open_seekable(fd, STDIN_NAME, channel, start, end, channel_text, on_close=None)
        stream._fingerprint = lambda: _fd_fingerprint(fd)
        return stream
    return _open_stream(fd, STDIN_NAME, channel, start, end, channel_text, on_close=None)


def _open_seekable(
    fd: int, name: str, channel: str | int, start: float, end: float | None, channel_text: str,
    on_close: Callable[[], None] | None,
) -> AudioStream:
    """A regular file (a path, or stdin redirected from one). on_close runs once, on failure or at close."""
    try:
        if os.fstat(fd).st_size == 0:
            what = "input" if name == STDIN_NAME else "file"
            raise AudioError(f"{name}: empty {what} (0 bytes)")
        try:
            head = os.pread(fd, 512, 0)
        except OSError as error:
            raise AudioError(f"{name}: cannot read the file: {error.strerror or error}") from None
        source = ByteSource(fd, seekable=True)
        parsed = parse_header(source) if not _looks_like_text(head) else None
        sound: soundfile.SoundFile | WavReader
        if parsed is not None:
            sound = WavReader(source, *parsed)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            sound = _open_sound(fd, name, head)
    except BaseException:
        if on_close is not None:
            on_close()
        raise
    return _finish_open(sound, name, channel, start, end, seekable=True, on_close=on_close,
                        channel_text=channel_text)


def _open_stream(
    fd: int, name: str, channel: str | int, start: float, end: float | None, channel_text: str,
    on_close: Callable[[], None] | None,
) -> AudioStream:
    """A pipe, a FIFO, `<(...)`, a device: read once, front to back. on_close runs once (failure or close)."""
    digest = _StreamDigest(fd)
    try:
        try:
            head = _read_head(fd, 512)
        except OSError as error:
            raise AudioError(f"{name}: cannot read: {error.strerror or error}") from None
        if not head:
            raise AudioError(f"{name}: empty input (0 bytes)")
        digest.update(head)
        source = ByteSource(fd, seekable=False, prefix=head, on_read=digest.update)
        flac = head.startswith(b"fLaC")
        parsed = parse_header(source) if not flac and not _looks_like_text(head) else None
    except BaseException:
        if on_close is not None:
            on_close()
        raise
    if flac:
        return _open_spooled(fd, head, name, channel, start, end, channel_text, on_close, digest)
    if parsed is not None:
        def close_input() -> None:
            digest.readable = on_close is None  # stdin stays open to be drained; a FIFO's fd is closed
            if on_close is not None:
                on_close()

        stream = _finish_open(WavReader(source, *parsed), name, channel, start, end, seekable=False,
                              on_close=close_input, channel_text=channel_text)
        stream._fingerprint = lambda: digest.drain(STDIN_DRAIN_TIMEOUT)
        return stream
    # not a WAV we decode: libsndfile gets every byte taken so far, then the rest of the stream; the relay
    # thread reads fd, so it is the one that calls on_close (never close an fd under a read in progress)
    relay = _PipeRelay(fd, source.replay(), digest, on_finish=on_close)
    try:
        sound = _open_sound(relay.read_fd, name, head)
    except BaseException:
        relay.close()
        raise
    stream = _finish_open(sound, name, channel, start, end, seekable=False, on_close=relay.close,
                          channel_text=channel_text)
    stream._fingerprint = relay.fingerprint
    return stream


def _open_spooled(
    fd: int, head: bytes, name: str, channel: str | int, start: float, end: float | None, channel_text: str,
    on_close: Callable[[], None] | None, digest: _StreamDigest,
) -> AudioStream:
    """FLAC from a pipe: libsndfile seeks back in it, so copy it to an unlinked temporary file (disk)."""
    spool = tempfile.TemporaryFile(prefix="dasctl-stdin-")
    try:
        spool.write(head)
        while data := os.read(fd, 1 << 20):
            spool.write(data)
            digest.update(data)
        digest.update(b"")
        spool.flush()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    finally:
        if on_close is not None:
            on_close()  # everything is in the spool now (or never will be)
    try:
        sound = _open_sound(spool.fileno(), name, head)
    except BaseException:
        spool.close()
        raise
    stream = _finish_open(sound, name, channel, start, end, seekable=True, on_close=spool.close,
                          channel_text=channel_text)
    stream._fingerprint = digest.result
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
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise AudioError(f"{name}: is a directory, not a recording")
    except BaseException:
        os.close(fd)
        raise

    def close_fd() -> None:
        os.close(fd)

    if stat.S_ISREG(mode):
        stream = _open_seekable(fd, name, channel, start, end, channel_text, on_close=close_fd)
        stream._fingerprint = lambda: path_fingerprint(path)
        return stream
    # a named pipe, `<(...)` (/dev/fd/N), a device: a stream, like stdin
    return _open_stream(fd, name, channel, start, end, channel_text, on_close=close_fd)


def _finish_open(
    sound: soundfile.SoundFile | WavReader,
    name: str,
    channel: str | int,
    start: float,
    end: float | None,
    *,
    seekable: bool,
    on_close: Callable[[], None] | None = None,
    channel_text: str = "",
) -> AudioStream:
    """Validate what the decoder found (rate, channels, truncation, range) and build the stream."""
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
        expected: int | None
        if isinstance(sound, WavReader):
            if sound.truncated:
                assert sound.frames is not None and sound.declared_frames is not None
                _refuse_truncated(name, sound.frames, sound.declared_frames, rate, end)
            expected = (sound.frames or None) if seekable else sound.declared_frames
        else:
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


def mulaw_wav_bytes(audio: bytes) -> bytes:
    """A whole 8 kHz mono mu-law WAV in memory (for stdout, where the header cannot be rewritten)."""
    if len(audio) > _MAX_WAV_DATA:
        raise UsageError(f"{len(audio)} bytes of audio do not fit a WAV file")
    return _wav_header(len(audio)) + audio + (b"\0" if len(audio) & 1 else b"")


def write_mulaw_wav(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> int:
    """Write 8 kHz mono mu-law chunks as a playable WAV, atomically; return the bytes of audio."""
    return _write_atomically(path, chunks, wav=True)


def read_mulaw_wav(path: str | os.PathLike[str]) -> bytes:
    """The audio of an 8 kHz mono mu-law WAV (what write_mulaw_wav writes), as the bytes the service hears.

    Raises AudioError for anything else: kept enrollment audio is never transcoded on the way back in.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise AudioError(f"{path}: cannot read it: {error.strerror}") from None
    try:
        source = ByteSource(fd, seekable=True)
        parsed = parse_header(source)
        shape = None if parsed is None else (parsed[0].subtype, parsed[0].rate, parsed[0].channels)
        if parsed is None or shape != ("ULAW", SAMPLE_RATE, 1):
            raise AudioError(f"{path}: not an 8 kHz mono mu-law WAV (what `credentials export --audio-dir` "
                             "writes)")
        chunk = parsed[1]
        source.position = chunk.offset
        available = (source.size or 0) - chunk.offset
        size = available if chunk.size is None else chunk.size
        if size > available:
            raise AudioError(f"{path}: truncated: the header announces {size} bytes of audio, "
                             f"the file holds {available}")
        return source.read(size)
    finally:
        os.close(fd)


def write_mulaw_raw(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> int:
    """Write 8 kHz mono mu-law chunks as raw bytes (.ul), atomically; return the bytes written."""
    return _write_atomically(path, chunks, wav=False)


class MulawAudio:
    """Audio that is already what the service hears (8 kHz mono mu-law bytes, e.g. kept enrollment
    audio): framed as AudioStream frames it, with nothing decoded or resampled."""

    def __init__(self, data: bytes, name: str = "<mu-law>") -> None:
        self.data = bytes(data)
        self.name = name
        self.duration: float | None = len(self.data) / SAMPLE_RATE

    def frames(self, frame_ms: int = 20) -> Iterator[bytes]:
        check_frame_ms(frame_ms)
        size = SAMPLE_RATE * frame_ms // 1000
        view = memoryview(self.data)
        for offset in range(0, len(view), size):
            yield bytes(view[offset : offset + size])


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

    def shift(self, seconds: float) -> None:
        """The stream was held this long (AudioHook pause): later deadlines move as much, no burst after."""
        if self._started_at is not None:
            self._started_at += max(seconds, 0.0)


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
