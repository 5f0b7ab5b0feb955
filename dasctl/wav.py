"""Our own reader for plain WAV and RF64 (PCM 8/16/24/32, float 32/64, mu-law, A-law, extensible).

libsndfile gets the recordings that streaming writers produce wrong: a data chunk size of 0 reads as
empty, ffmpeg's RF64 to a pipe (ds64 sizes of 0) reads as empty, a second data chunk is ignored, and a
rate of 0 Hz is "SF_INFO struct incomplete". These codecs are simple enough to decode here, the same way
on files, pipes and FIFOs; everything else (ADPCM, GSM, RIFX, W64, FLAC, ...) still goes to libsndfile.

How the length is decided (docs/audio.md, "Unknown length"):
- a data chunk size in PLACEHOLDER_SIZES (or an RF64 ds64 data size of 0) means "unknown": the audio
  runs to the end of the input, as ffmpeg reads it;
- any other size is a promise: a file (or stream) that ends before it is truncated, and is refused;
- after a data chunk of definite size, a later data chunk is read too (ffmpeg does the same); other
  chunks are skipped. The RIFF size is never trusted (writers leave placeholders there too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dasctl.mulaw import decode_table as mulaw_decode_table

#: Data chunk sizes streaming writers leave when they cannot go back and fill in the length:
#: 0 (call recorders, ffmpeg's RF64), 0xFFFFFFFF (ffmpeg to a pipe), 0xFFFFFFFE, 0x7FFFF000 (sox to a pipe),
#: 0x7FFFFFFF (libsndfile and others: "the largest signed 32-bit size").
PLACEHOLDER_SIZES = frozenset({0, 0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF})

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_ALAW = 0x0006
_FORMAT_MULAW = 0x0007
_FORMAT_EXTENSIBLE = 0xFFFE
_SUBTYPES = {
    (_FORMAT_PCM, 8): "PCM_U8",
    (_FORMAT_PCM, 16): "PCM_16",
    (_FORMAT_PCM, 24): "PCM_24",
    (_FORMAT_PCM, 32): "PCM_32",
    (_FORMAT_FLOAT, 32): "FLOAT",
    (_FORMAT_FLOAT, 64): "DOUBLE",
    (_FORMAT_ALAW, 8): "ALAW",
    (_FORMAT_MULAW, 8): "ULAW",
}
#: Chunks before the data bigger than this are not a header we understand (libsndfile gets the file).
_MAX_HEADER_CHUNK = 16 << 20


class ByteSource:
    """An fd read from a position of our own; on a pipe, the bytes already taken from it come first."""

    def __init__(
        self, fd: int, *, seekable: bool, prefix: bytes = b"", on_read: Callable[[bytes], None] | None = None
    ) -> None:
        self.fd = fd
        #: sees every byte read from a pipe's fd (b"" at its end): how a pipe is hashed as it passes
        self.on_read = on_read
        self.seekable = seekable
        self.position = 0
        self._prefix = memoryview(prefix)
        self.size = os.fstat(fd).st_size if seekable else None
        #: every byte read from a pipe so far, while the header is parsed (handed to libsndfile if we pass)
        self.recorded: bytearray | None = None if seekable else bytearray()

    def readinto(self, view: memoryview) -> int:
        """Fill view as far as the input goes; fewer bytes only at its end."""
        filled = 0
        while filled < len(view):
            if self._prefix:
                count = min(len(self._prefix), len(view) - filled)
                view[filled:filled + count] = self._prefix[:count]
                self._prefix = self._prefix[count:]
            elif self.seekable:
                count = os.preadv(self.fd, [view[filled:]], self.position + filled)
            else:
                count = os.readv(self.fd, [view[filled:]])
                if self.on_read is not None:
                    self.on_read(bytes(view[filled:filled + count]))
            if count == 0:
                break
            filled += count
        if self.recorded is not None:
            self.recorded += view[:filled]
        self.position += filled
        return filled

    def read(self, size: int) -> bytes:
        buffer = bytearray(size)
        return bytes(buffer[: self.readinto(memoryview(buffer))])

    def skip(self, size: int) -> int:
        """Move on size bytes (seek on a file, read and drop on a pipe); the bytes actually passed."""
        if self.seekable and not self._prefix:
            assert self.size is not None
            passed = max(0, min(size, self.size - self.position))
            self.position += passed
            return passed
        passed = 0
        while passed < size:
            got = len(self.read(min(1 << 16, size - passed)))
            if got == 0:
                break
            passed += got
        return passed

    def replay(self) -> bytes:
        """Every byte taken from the pipe so far (read, or still in the prefix): what libsndfile must see."""
        return bytes(self.recorded or b"") + bytes(self._prefix)

    def stop_recording(self) -> None:
        self.recorded = None


@dataclass(frozen=True)
class WavFormat:
    """What a WAV header says about its audio."""

    container: str  # "WAV", "WAVEX" or "RF64": libsndfile's names, shown in transcode's summary
    subtype: str  # "PCM_16", "ULAW", ...: libsndfile's names
    rate: int
    channels: int
    block_align: int


@dataclass
class DataChunk:
    """A data chunk: where it starts and how long it says it is (None: unknown, to the end of the input)."""

    offset: int
    size: int | None


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "little")


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 4], "little")


def _parse_fmt(body: bytes, container: str) -> WavFormat | None:
    if len(body) < 16:
        return None
    tag, channels, rate = _u16(body, 0), _u16(body, 2), _u32(body, 4)
    block_align, bits = _u16(body, 12), _u16(body, 14)
    if tag == _FORMAT_EXTENSIBLE:
        if len(body) < 40:
            return None
        tag = _u16(body, 24)  # the sub-format GUID starts with the format tag
        if container == "WAV":
            container = "WAVEX"
    subtype = _SUBTYPES.get((tag, bits))
    if subtype is None or block_align != channels * (bits // 8):
        return None  # a codec (or a layout) we leave to libsndfile
    return WavFormat(container, subtype, rate, channels, block_align)


def parse_header(source: ByteSource) -> tuple[WavFormat, DataChunk] | None:
    """Read up to the first data chunk; None when this is not a WAV we decode (libsndfile's turn)."""
    head = source.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    container = "WAV" if head[:4] == b"RIFF" else "RF64"
    ds64_data: int | None = None
    found: WavFormat | None = None
    while True:
        header = source.read(8)
        if len(header) < 8:
            return None  # no data chunk: libsndfile says what is wrong
        chunk_id, size = header[:4], _u32(header, 4)
        if chunk_id == b"data":
            break
        if size > _MAX_HEADER_CHUNK:
            return None
        body = source.read(size + (size & 1))
        if len(body) < size:
            return None
        if chunk_id == b"ds64" and size >= 24:
            ds64_data = int.from_bytes(body[8:16], "little")
        elif chunk_id == b"fmt ":
            found = _parse_fmt(body[:size], container)
            if found is None:
                return None
    if found is None:
        return None
    declared: int | None = size
    if container == "RF64" and size == 0xFFFFFFFF:
        declared = ds64_data or None  # a ds64 size of 0 is ffmpeg's "unknown" on a pipe
    elif size in PLACEHOLDER_SIZES:
        declared = None
    return found, DataChunk(source.position, declared)


@lru_cache(maxsize=1)
def _alaw_decode_table() -> np.ndarray:
    """256 int16 samples indexed by A-law byte (G.711, Sun g711.c alaw2linear)."""
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    magnitude = (code & 0x0F) << 4
    magnitude = np.where(segment == 0, magnitude + 8,
                         np.where(segment == 1, magnitude + 0x108, (magnitude + 0x108) << (segment - 1)))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


class WavReader:
    """Reads a WAV's frames the way libsndfile's SoundFile.read does, over every data chunk in turn.

    Attributes mirror soundfile.SoundFile's (samplerate, channels, format, subtype, frames) so that
    dasctl.audio drives both the same way. On a file, `frames` is what the data chunks hold,
    `declared_frames` what their headers promise (a placeholder promises what is there) and `truncated`
    whether a definite promise is not kept. On a stream, `frames` is None and `declared_frames` is the
    first data chunk's definite size, or None when it is a placeholder.
    """

    def __init__(self, source: ByteSource, wav_format: WavFormat, first: DataChunk) -> None:
        self._source = source
        self.samplerate = wav_format.rate
        self.channels = wav_format.channels
        self.format = wav_format.container
        self.subtype = wav_format.subtype
        self._align = wav_format.block_align
        self._first = first
        self._chunk: DataChunk | None = first
        self._left: int | None = first.size  # bytes left in the current data chunk (None: to the end)
        self._buffer = bytearray()
        self.declared_frames: int | None = None if first.size is None else first.size // max(1, self._align)
        self.frames: int | None = None
        self.truncated = False
        if source.seekable:
            self._measure()
        source.stop_recording()

    def _measure(self) -> None:
        """On a file: the frames really there (all data chunks), and whether a promised size is missing."""
        total = 0
        declared = 0
        while self._chunk is not None:
            want = self._left
            passed = self._source.skip(want if want is not None else 1 << 62)
            total += passed
            declared += passed if want is None else want
            if want is None or passed < want:
                self.truncated = want is not None
                break
            self._next_chunk()
        self.frames = total // self._align if self._align else 0
        self.declared_frames = declared // self._align if self._align else 0
        self.seek(0)

    def _next_chunk(self) -> None:
        """After a data chunk of definite size: find the next data chunk (skipping others) or the end."""
        assert self._chunk is not None and self._chunk.size is not None
        self._source.skip(self._chunk.size & 1)  # chunks are word-aligned
        self._chunk, self._left = None, 0
        while True:
            header = self._source.read(8)
            if len(header) < 8:
                return
            size = _u32(header, 4)
            if header[:4] == b"data":
                declared = None if size in PLACEHOLDER_SIZES else size
                self._chunk, self._left = DataChunk(self._source.position, declared), declared
                return
            if self._source.skip(size + (size & 1)) < size:
                return

    def seek(self, frame: int) -> int:
        """Go to a frame (files only), across data chunks."""
        if not self._source.seekable:
            raise OSError("cannot seek in a stream")
        self._source.position = self._first.offset
        self._chunk, self._left = self._first, self._first.size
        todo = frame * self._align
        while todo and self._chunk is not None:
            step = todo if self._left is None else min(todo, self._left)
            passed = self._source.skip(step)
            todo -= passed
            if self._left is not None:
                self._left -= passed
                if self._left == 0:
                    self._next_chunk()
            if passed < step:
                break
        return frame

    def _read_bytes(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view) and self._chunk is not None:
            want = len(view) - filled if self._left is None else min(len(view) - filled, self._left)
            got = self._source.readinto(view[filled:filled + want])
            filled += got
            if self._left is not None:
                self._left -= got
                if self._left == 0:
                    self._next_chunk()
                    continue
            if got < want:
                self._chunk = None  # the input ended
        return filled

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True,
             out: np.ndarray | None = None) -> np.ndarray:
        """Up to `frames` frames as (n, channels) int16 or float32, like SoundFile.read (fewer at the end)."""
        size = frames * self._align
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        view = memoryview(self._buffer)[:size]
        got = self._read_bytes(view) // self._align  # a partial last frame is dropped, as ffmpeg does
        raw = np.frombuffer(self._buffer, dtype=np.uint8, count=got * self._align)
        samples = self._decode(raw, dtype).reshape(got, self.channels)
        if out is None:
            return samples.copy()  # it may be a view of our buffer, which the next read overwrites
        out[:got] = samples
        return out[:got]

    def _decode(self, raw: np.ndarray, dtype: str) -> np.ndarray:
        subtype = self.subtype
        if subtype == "PCM_16":
            ints = raw.view("<i2")
        elif subtype == "PCM_U8":
            ints = ((raw.astype(np.int16) - 128) << 8).astype(np.int16)
        elif subtype == "ULAW":
            ints = mulaw_decode_table()[raw]
        elif subtype == "ALAW":
            ints = _alaw_decode_table()[raw]
        else:
            if dtype == "int16":
                raise ValueError(f"{subtype} is not read as int16")
            if subtype == "FLOAT":
                return raw.view("<f4").astype(np.float32)
            if subtype == "DOUBLE":
                return raw.view("<f8").astype(np.float32)
            if subtype == "PCM_32":
                return raw.view("<i4").astype(np.float32) * np.float32(1 / 2**31)
            triples = raw.reshape(-1, 3).astype(np.int32)  # PCM_24
            value = (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
            return (value >> 8).astype(np.float32) * np.float32(1 / 2**23)
        if dtype == "int16":
            return ints
        return ints.astype(np.float32) * np.float32(1 / 32768)

    def close(self) -> None:
        """Nothing to release: the fd belongs to whoever opened it."""

