"""Decode: open a recording ('-', a file, a FIFO) with the decoder that reads it best, and check it.

Plain WAV and RF64 go to our own reader (dasctl/wav.py), the same way on files and pipes; containers
only FFmpeg reads (mp4/m4a, AMR, Matroska/WebM, ASF, ADTS) to FFmpeg (ffmpeg.py); everything else to
libsndfile, and to FFmpeg when libsndfile cannot open a file. A pipe reaches libsndfile or FFmpeg
through a relay; FLAC and mp4 from a pipe are first spooled to a file on disk (both are read out of order).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dasctl.audio.channels import ChannelChoice, resolve_channel
from dasctl.audio.ffmpeg import FfmpegReader, has_av, is_ffmpeg_only, is_mp4, open_ffmpeg
from dasctl.audio.fingerprint import STDIN_DRAIN_TIMEOUT, StreamDigest, fd_fingerprint, path_fingerprint
from dasctl.audio.mp3 import is_mp3_without_exact_length
from dasctl.audio.pipes import PipeRelay, read_head
from dasctl.audio.sndfile import check_truncated_header, declared_frames, looks_like_text, open_sound
from dasctl.audio.stream import AudioStream, check_range
from dasctl.audio.truncation import refuse_truncated
from dasctl.errors import AudioError, UsageError
from dasctl.wav import ByteSource, WavReader, parse_header

if TYPE_CHECKING:
    import soundfile

log = logging.getLogger(__name__)

STDIN_NAME = "<stdin>"
#: Input rates outside this range are treated as a broken header, not as audio.
MIN_INPUT_RATE = 2000
MAX_INPUT_RATE = 768_000


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
        stream._fingerprint = lambda: fd_fingerprint(fd)
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
        parsed = parse_header(source) if not looks_like_text(head) else None
        sound: soundfile.SoundFile | WavReader | FfmpegReader
        if parsed is not None:
            sound = WavReader(source, *parsed)
        else:
            sound = _open_file_decoder(fd, name, head, end)
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
    digest = StreamDigest(fd)
    try:
        try:
            head = read_head(fd, 512)
        except OSError as error:
            raise AudioError(f"{name}: cannot read: {error.strerror or error}") from None
        if not head:
            raise AudioError(f"{name}: empty input (0 bytes)")
        digest.update(head)
        source = ByteSource(fd, seekable=False, prefix=head, on_read=digest.update)
        spool = head.startswith(b"fLaC") or is_mp4(head)
        parsed = parse_header(source) if not spool and not looks_like_text(head) else None
    except BaseException:
        if on_close is not None:
            on_close()
        raise
    if spool:
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
    # not a WAV we decode: libsndfile (or FFmpeg) gets every byte taken so far, then the rest of the stream;
    # the relay thread reads fd, so it is the one that calls on_close (never close an fd under a read)
    relay = PipeRelay(fd, source.replay(), digest, on_finish=on_close)
    try:
        sound: soundfile.SoundFile | FfmpegReader
        if is_ffmpeg_only(head):
            sound = open_ffmpeg(relay.read_fd, name, seekable=False, end=end)
        else:
            sound = open_sound(relay.read_fd, name, head)
    except BaseException:
        relay.close()
        raise
    stream = _finish_open(sound, name, channel, start, end, seekable=False, on_close=relay.close,
                          channel_text=channel_text)
    stream._fingerprint = relay.fingerprint
    return stream


def _open_spooled(
    fd: int, head: bytes, name: str, channel: str | int, start: float, end: float | None, channel_text: str,
    on_close: Callable[[], None] | None, digest: StreamDigest,
) -> AudioStream:
    """FLAC or mp4 from a pipe: libsndfile seeks back in FLAC, and an mp4's index may come after its data,
    so copy it to an unlinked temporary file (disk, not memory)."""
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
        sound = _open_file_decoder(spool.fileno(), name, head, end)
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


def _open_file_decoder(
    fd: int, name: str, head: bytes, end: float | None
) -> soundfile.SoundFile | FfmpegReader:
    """A regular file that is not a WAV we decode: FFmpeg for what only it reads, else libsndfile, and
    FFmpeg again when libsndfile refuses it (then libsndfile's refusal is the one reported)."""
    if is_ffmpeg_only(head) and not looks_like_text(head):
        return open_ffmpeg(fd, name, seekable=True, end=end)
    if is_mp3_without_exact_length(fd, head) and has_av():
        return open_ffmpeg(fd, name, seekable=True, end=end)
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return open_sound(fd, name, head)
    except AudioError as refused:
        if looks_like_text(head):
            raise
        try:
            return open_ffmpeg(fd, name, seekable=True, end=end)
        except AudioError as error:
            log.debug("%s: FFmpeg cannot read it either: %s", name, error.message)
            raise refused from None


def _finish_open(
    sound: soundfile.SoundFile | WavReader | FfmpegReader,
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
        if channels == 1 and channel_text.split(" ")[0] == "customer":
            # a mono recording has one side: the customer's is the only one to send, whichever side
            # customer_channel names (a folder mixes the platform's stereo calls with mono ones)
            channel = 0
        if isinstance(channel, int) and channel >= channels:
            layout = "mono (1 channel)" if channels == 1 else f"{channels} channels (0 to {channels - 1})"
            raise UsageError(f"--channel {channel_text or channel}: {name} is {layout}",
                             "Use --channel mix" + (", left or right" if channels == 2 else "")
                             + (f", or a number from 0 to {channels - 1}" if channels > 2 else "") + ".")
        expected: int | None
        if isinstance(sound, WavReader):
            if sound.truncated:
                assert sound.frames is not None and sound.declared_frames is not None
                refuse_truncated(name, sound.frames, sound.declared_frames, rate, end)
            expected = (sound.frames or None) if seekable else sound.declared_frames
        elif isinstance(sound, FfmpegReader):
            expected = None  # a compressed stream's length is known once decoded (ffmpeg.py checks it)
        else:
            if seekable:
                check_truncated_header(sound, name, end)
            expected = declared_frames(sound, seekable)
        if seekable and expected is None and not isinstance(sound, FfmpegReader):
            raise AudioError(f"{name}: no audio (0 samples)", "The file holds a header and no sound.")
        if expected is not None and round(start * rate) >= expected:
            raise UsageError(f"--start {start:g} s is past the end of {name} ({expected / rate:.1f} s)")
        stream = AudioStream(sound, name, channel=channel, start=start, end=end, seekable=seekable,
                             expected_frames=expected, on_close=on_close)
        if isinstance(sound, FfmpegReader) and sound.duration is not None:
            stop = sound.duration if end is None else min(end, sound.duration)
            stream.duration = max(0.0, stop - start)  # what the container announces: for progress only
        return stream
    except BaseException:
        try:
            sound.close()
        finally:
            if on_close is not None:
                on_close()
        raise


def open_audio(
    source: str | os.PathLike[str], *, channel: str | ChannelChoice | None = "mix", start: float = 0.0,
    end: float | None = None,
) -> AudioStream:
    """Open a recording ('-' = stdin) for streaming; AudioError (exit 3) names the file and the problem.

    `channel` is --channel's text (None: nothing chosen, the mix), or a ChannelChoice (channels.py) that
    names the side by role and says once when a multi-channel recording is mixed."""
    choice = channel if isinstance(channel, ChannelChoice) else resolve_channel(channel)
    check_range(start, end)
    if str(source) == "-":
        stream = _open_stdin(choice.index, start, end, choice.text)
    else:
        stream = _open_path(Path(source), choice.index, start, end, choice.text)
    if choice.side == "agent" and stream.input_channels != 2:
        stream.close()
        raise UsageError(f"--channel {choice.text}: {stream.name} has {stream.input_channels} channels; the "
                         "agent is the other side of a 2-channel recording only",
                         "Name the agent's channel by its number instead (--channel N).")
    stream.side = choice.side
    if not choice.chosen and choice.mixed is not None and stream.input_channels > 1:
        choice.mixed(stream.input_channels)
    return stream

