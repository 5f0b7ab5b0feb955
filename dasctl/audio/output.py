"""Output: 8 kHz mono mu-law written as a playable WAV or raw bytes (atomically), read back, or replayed."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from dasctl.audio.frames import SAMPLE_RATE, check_frame_ms
from dasctl.errors import AudioError, UsageError
from dasctl.wav import ByteSource, parse_header


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

