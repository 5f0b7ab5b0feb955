"""FFmpeg's decoders (through PyAV) for what our WAV reader and libsndfile do not read: AAC (m4a, ADTS),
AMR-NB/WB, raw GSM, G.729, WMA, and the audio track of a video (mp4, mkv, webm); Opus, Vorbis and MP3
when libsndfile cannot open them.

Decoded packet by packet, so memory stays flat and a pipe is read once, front to back. FFmpeg's own
messages never reach the terminal: PyAV does not hand them to its log unless asked, and the errors it
raises go to the debug log (-vv); the user gets one line naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dasctl.audio.sndfile import SUPPORTED
from dasctl.audio.truncation import refuse_truncated
from dasctl.errors import AudioError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

#: what to install when PyAV is missing
AV_REQUIREMENT = "av>=14"
#: Containers known by their first bytes that only FFmpeg reads here (libsndfile would guess, and fail).
_FFMPEG_MAGIC = (
    b"#!AMR",  # AMR-NB and AMR-WB storage format (RFC 4867)
    b"\x1a\x45\xdf\xa3",  # EBML: Matroska, WebM
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF: WMA, WMV
    b"FLV",
)
#: Boxes an ISO media file (mp4, m4a, 3gp, mov) starts with, at offset 4.
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
#: Raw streams with no header FFmpeg can probe from the bytes alone: the file name says what they are.
RAW_FORMAT_BY_SUFFIX = {".gsm": "gsm", ".g729": "g729", ".amr": "amr", ".awb": "amr", ".aac": "aac"}
#: Containers whose header states the length exactly: a shorter decode means the file was cut off.
_EXACT_LENGTH_FORMATS = ("mov", "mp4", "matroska", "webm", "ogg", "mp3")
#: A decode this much shorter than the header's length (and by more than _SHORT_BY_SECONDS) is truncated.
_SHORT_FRACTION = 0.9
_SHORT_BY_SECONDS = 1.0
#: Seconds of audio handed over at a time (FFmpeg's FIFO gathers the codec's small frames into these).
_FIFO_SECONDS = 1.0
#: Packets the decoder may refuse (a damaged frame, skipped as ffmpeg skips it) before the file is corrupt.
_MAX_BAD_PACKETS = 20


def is_mp4(head: bytes) -> bool:
    """An ISO media file (mp4, m4a, 3gp, mov): its index may come last, so a pipe must be spooled first."""
    return head[4:8] in _MP4_BOXES


def is_ffmpeg_only(head: bytes) -> bool:
    """Whether the first bytes name a container that goes straight to FFmpeg."""
    if head.startswith(_FFMPEG_MAGIC) or is_mp4(head):
        return True
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return True
    # ADTS (raw AAC): a 12-bit sync word like MP3's, but with the layer bits 00 (MP3's are 01)
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0


def has_av() -> bool:
    """Whether PyAV can be imported (it is dasctl's dependency; a hand-made install may lack it)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def import_av(name: str) -> Any:
    """The av module, or an AudioError (exit 3) that says what to install."""
    try:
        import av
    except ImportError as error:
        log.debug("import av failed: %s", error)
        raise AudioError(
            f"{name}: reading this format needs FFmpeg's decoders (the Python package av), "
            "which is not installed",
            f"Install it: pip install '{AV_REQUIREMENT}' (dasctl's own install includes it).",
        ) from None
    return av


class _PipeFile:
    """A one-pass input as PyAV reads it: read() only (no seek(): FFmpeg then never tries to)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, size: int) -> bytes:
        return os.read(self._fd, size)


class FfmpegReader:
    """One audio track decoded by FFmpeg, read as libsndfile's SoundFile is (read, seek, close)."""

    def __init__(
        self, container: Any, name: str, end: float | None, file: Any, fd: int | None = None
    ) -> None:
        self._container = container
        self._file = file
        self._fd = fd  # a regular file's descriptor (None for a pipe): sibling() opens it again
        self.name = name
        self._end = end
        stream = container.streams.audio[0]
        self._stream = stream
        context = stream.codec_context
        self.samplerate = int(context.sample_rate or 0)
        self.channels = int(context.layout.nb_channels if context.layout else 0)
        self._layout = context.layout.name if context.layout else ""
        short = self._short = str(container.format.name).split(",")[0]
        self.format = {"mov": "MP4", "matroska": "MKV"}.get(short, short.upper())
        self.subtype = str(context.name)
        self.duration = _announced_seconds(container, stream)
        self._exact_length = short in _EXACT_LENGTH_FORMATS
        self._frames = self._decoded_frames()
        self._pending: list[np.ndarray] = []  # (channels, n) float32 arrays not yet handed out
        self._planar: np.ndarray | None = None  # read()'s output, reused: (channels, frames)
        self._offset = 0  # into _pending[0]
        self._position = 0  # frames handed out
        self._decoded = 0  # frames decoded
        self._sought = False  # start_near() moved the decoder: the first frame's time says where it is

    @property
    def position(self) -> int:
        """The index of the next frame read() or blocks() hands out."""
        return self._position

    def split_frames(self) -> int | None:
        """The stream's length in frames when its container times every packet exactly (the ISO media
        family: mp4, m4a, mov), so that a second decoder can start on a known sample (segments.py)."""
        if self._short != "mov" or self.duration is None or self._fd is None:
            return None
        return round(self.duration * self.samplerate)

    def sibling(self) -> FfmpegReader:
        """A second decoder of the same file: through /proc a descriptor of its own (FFmpeg then reads it
        without calling into Python), else at its own offset on this one."""
        import av

        from dasctl.audio.parts import PreadFile

        assert self._fd is not None
        source: Any = f"/proc/self/fd/{self._fd}"
        if not os.path.exists(source):  # no /proc
            source = PreadFile(self._fd)
        container = av.open(source, mode="r")
        try:
            return FfmpegReader(container, self.name, self._end, None, self._fd)
        except BaseException:
            container.close()
            raise

    def start_near(self, frame: int) -> int | None:
        """Move a reader that has read nothing to the packet at or before `frame`; returns where blocks()
        now starts (the first decoded frame's time), or None when the container gives no time."""
        self._container.seek(max(0, round(frame / self.samplerate / self._stream.time_base)),
                             stream=self._stream, backward=True)
        self._sought = True
        block = next(self._frames, None)
        if block is None or self._sought:  # nothing decoded, or a frame without a time
            return None
        self._pending.append(block)
        self._offset = 0
        return self._position

    def _decoded_frames(self) -> Iterator[np.ndarray]:
        """(channels, n) float32 blocks of about _FIFO_SECONDS, decoded packet by packet, with FFmpeg's
        errors turned into AudioError. Frames gather in FFmpeg's own FIFO, so that numpy sees one array
        per block instead of one per codec frame (1024 samples of AAC): half the CPU time."""
        import av

        # a pass-through when the decoder already gives planar float at the stream's rate and layout
        resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self.samplerate)
        fifo = av.AudioFifo()
        block_samples = max(1024, int(self.samplerate * _FIFO_SECONDS))
        bad_packets = 0
        while True:
            try:
                for frame in self._container.decode(self._stream):
                    if self._sought:  # the first frame after start_near(): count from its time
                        if frame.pts is None or frame.time_base is None:
                            return  # start_near() sees _sought still set: no known position
                        self._sought = False
                        since = frame.pts - (self._stream.start_time or 0)  # the first frame's time is 0
                        self._position = self._decoded = round(since * frame.time_base * self.samplerate)
                    for piece in resampler.resample(frame):
                        piece.pts = None  # the FIFO checks timestamps run on; gaps are not ours to judge
                        fifo.write(piece)
                    while fifo.samples >= block_samples and (gathered := fifo.read(block_samples)):
                        yield self._counted(gathered.to_ndarray())
                break
            except av.FFmpegError as error:  # a damaged packet: skipped, as ffmpeg skips it
                bad_packets += 1
                log.debug("%s: FFmpeg could not decode a packet: %s", self.name, error)
                if bad_packets > _MAX_BAD_PACKETS:
                    raise self._corrupt(error, self._decoded + fifo.samples) from None
        try:
            for piece in resampler.resample(None):
                piece.pts = None
                fifo.write(piece)
        except av.FFmpegError as error:
            raise self._corrupt(error, self._decoded + fifo.samples) from None
        if fifo.samples and (rest := fifo.read()):
            yield self._counted(rest.to_ndarray())
        self._check_length()

    def _counted(self, block: np.ndarray) -> np.ndarray:
        self._decoded += block.shape[1]
        return block

    def _corrupt(self, error: BaseException, at_frame: int) -> AudioError:
        """The error for damage after `at_frame` frames decoded: where the decoder is, not where the
        reader's consumer is (a part decoded from a seek point names the same place one decoder does)."""
        log.debug("%s: FFmpeg said: %s", self.name, error)
        return AudioError(f"{self.name}: corrupt audio data at {at_frame / self.samplerate:.1f} s",
                          "FFmpeg could not decode it (details with -vv); check that the file is complete.")

    def _check_length(self) -> None:
        """At the end: refuse a file whose container promised clearly more than there was."""
        announced = self.duration
        if not self._exact_length or announced is None:
            return
        there = self._decoded
        seconds = there / self.samplerate
        if seconds < announced * _SHORT_FRACTION and announced - seconds > _SHORT_BY_SECONDS:
            refuse_truncated(self.name, there, round(announced * self.samplerate), self.samplerate, self._end)

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True,
             out: np.ndarray | None = None) -> np.ndarray:
        """Up to `frames` frames as (frames, channels) float32, fewer only at the end.

        The result is a transposed view of a planar buffer that the next read() reuses (`out` is not
        used): each channel stays contiguous, so picking one costs no strided copy. Callers copy what
        they keep, as AudioStream does (channels.to_mono)."""
        import numpy as np

        planar = self._planar
        if planar is None or planar.shape[1] < frames:
            planar = self._planar = np.empty((self.channels, frames), dtype=np.float32)
        filled = 0
        while filled < frames:
            if not self._pending:
                block = next(self._frames, None)
                if block is None:
                    break
                self._pending.append(block)
                self._offset = 0
            block = self._pending[0]
            count = min(frames - filled, block.shape[1] - self._offset)
            planar[:, filled:filled + count] = block[:, self._offset:self._offset + count]
            filled += count
            self._offset += count
            if self._offset == block.shape[1]:
                self._pending.pop(0)
                self._offset = 0
        self._position += filled
        return planar[:, :filled].T

    def blocks(self) -> Iterator[np.ndarray]:
        """The rest of the stream as FFmpeg's FIFO gathers it (about _FIFO_SECONDS each): (frames, channels)
        float32 views of fresh planar arrays, without read()'s copy into its reused buffer, so they can be
        handed to another thread. Do not mix with read()."""
        while self._pending:
            block = self._pending.pop(0)[:, self._offset:]
            self._offset = 0
            self._position += block.shape[1]
            yield block.T
        for block in self._frames:
            self._position += block.shape[1]
            yield block.T

    def seek(self, frame: int) -> int:
        """Move to `frame` by decoding and dropping what comes before (exact, whatever the codec)."""

        while self._position < frame:
            if not len(self.read(min(1 << 16, frame - self._position))):
                break
        return self._position

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            if self._file is not None:
                self._file.close()


def _announced_seconds(container: Any, stream: Any) -> float | None:
    """The length the container states (the stream's own, else the container's), or None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:  # else it may be the video's
        return float(container.duration) / 1_000_000
    return None


def open_ffmpeg(fd: int, name: str, *, seekable: bool, end: float | None) -> FfmpegReader:
    """Open the input on fd (a regular file at offset 0, or a pipe) with FFmpeg; AudioError when it has no
    audio FFmpeg can decode. The fd stays open (its owner closes it)."""
    av = import_av(name)
    if seekable:
        os.lseek(fd, 0, os.SEEK_SET)  # libsndfile may have read some of it first
    file: Any = os.fdopen(fd, "rb", closefd=False) if seekable else _PipeFile(fd)
    suffix = os.path.splitext(name)[1].lower()
    try:
        try:
            container = av.open(file, mode="r", format=RAW_FORMAT_BY_SUFFIX.get(suffix))
        except av.FFmpegError as error:
            log.debug("%s: FFmpeg cannot open it: %s", name, error)
            head = os.pread(fd, 12, 0) if seekable else b""
            if is_mp4(head):
                raise AudioError(f"{name}: an MP4/M4A file whose index is missing or damaged",
                                 "It was probably cut off while being written (the index comes last); "
                                 "wait for the recorder to finish, or copy it again.") from None
            raise AudioError(f"{name}: not a recording dasctl can read (unknown or unsupported format)",
                             f"dasctl reads {SUPPORTED}.") from None
        try:
            if not container.streams.audio:
                kinds = "video only" if container.streams.video else "no streams"
                raise AudioError(f"{name}: has no audio track ({kinds})",
                                 "Give a recording with sound, or the file the audio was saved to.")
            reader = FfmpegReader(container, name, end, file if seekable else None, fd if seekable else None)
            if reader.channels < 1 or reader.samplerate <= 0:
                raise AudioError(f"{name}: corrupt header: no usable sample rate or channel count")
        except BaseException:
            container.close()
            raise
    except BaseException:
        if seekable:
            file.close()
        raise
    return reader

