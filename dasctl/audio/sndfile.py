"""libsndfile: opening what our WAV reader does not take (FLAC, OGG, AIFF, MP3, ADPCM WAV, ...), its
messages turned into one clear line, and what its C libraries print kept off the terminal."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from dasctl.audio.truncation import refuse_truncated
from dasctl.errors import AudioError
from dasctl.wav import PLACEHOLDER_SIZES

if TYPE_CHECKING:
    import soundfile

log = logging.getLogger(__name__)

# libsndfile hands these over as int16 without losing anything
INT16_EXACT_SUBTYPES = frozenset({"PCM_16", "PCM_S8", "PCM_U8", "ULAW", "ALAW", "DWVW_12", "DWVW_16"})
SUPPORTED = (
    "WAV (PCM, float, mu-law, A-law, extensible), RF64, W64, FLAC, OGG (Vorbis, Opus), AIFF, MP3, "
    "AAC/m4a, AMR, GSM, WMA, and the audio of mp4/mkv/webm videos"
)
# libsndfile's log says "data : 186814 (should be 99956)" when the header promises more than the file holds.
_TRUNCATED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_BYTES_PER_SECOND = re.compile(r"^\s*Bytes/sec\s*:\s*(\d+)", re.MULTILINE)
_DATA_LENGTH = re.compile(r"^data\s*:\s*(\d+)", re.MULTILINE)


def libsndfile_message(error: BaseException) -> str:
    text = str(error)
    # soundfile says "Error opening '<path>': <what libsndfile said>"; keep what libsndfile said.
    if ": " in text and text.startswith("Error"):
        text = text.split(": ", 1)[1]
    return text.rstrip(".") or type(error).__name__


def looks_like_text(head: bytes) -> bool:
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
    message = libsndfile_message(error)
    hint = f"dasctl reads {SUPPORTED}."
    if looks_like_text(head):
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


class _Fd2Redirect:
    """fd 2 pointed at a temporary file while any thread is inside a C library that may print on it."""

    users = 0
    saved = -1
    sink: BinaryIO | None = None


@contextmanager
def c_library_stderr_to_log() -> Iterator[None]:
    """Point fd 2 at a temporary file while libsndfile guesses at an input of unknown format, or
    libmpg123 decodes; what the C libraries said goes to the debug log (-vv). Only then: a live display
    on stderr would pause meanwhile. Threads decoding at once (segments.py) share one redirect: the last
    one out points fd 2 back."""
    state = _Fd2Redirect
    with _FD2_LOCK:
        if not state.users:
            sys.stderr.flush()
            sink = tempfile.TemporaryFile(prefix="dasctl-stderr-")
            state.saved, state.sink = os.dup(2), sink
            os.dup2(sink.fileno(), 2)
        state.users += 1
    try:
        yield
    finally:
        with _FD2_LOCK:
            state.users -= 1
            if not state.users and state.sink is not None:
                os.dup2(state.saved, 2)
                os.close(state.saved)
                kept, state.sink = state.sink, None
                with kept:
                    kept.seek(0)
                    said = kept.read(4096).decode(errors="replace").strip()
                if said:
                    log.debug("libsndfile (and libmpg123) said: %s", said)


def open_sound(target: int | BinaryIO, name: str, head: bytes) -> soundfile.SoundFile:
    import soundfile

    if looks_like_text(head):
        # refused before libsndfile sees it: its MP3 decoder (libmpg123) prints noise to fd 2 on text
        raise AudioError(f"{name}: is a text file, not a recording", f"dasctl reads {SUPPORTED}.")
    try:
        if head.startswith(_CONTAINER_MAGIC):
            return soundfile.SoundFile(target, closefd=False)
        with c_library_stderr_to_log():
            return soundfile.SoundFile(target, closefd=False)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise _unreadable_format(name, error, head) from None


def declared_frames(sound: soundfile.SoundFile, seekable: bool) -> int | None:
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


def check_truncated_header(sound: soundfile.SoundFile, name: str, end: float | None) -> None:
    """libsndfile's log says when a data chunk is shorter than its header says."""
    match = _TRUNCATED_DATA.search(sound.extra_info)
    if match is None:
        return
    rate_match = _BYTES_PER_SECOND.search(sound.extra_info)
    if not rate_match or int(rate_match.group(1)) <= 0:
        announced = int(sound.frames) + 1  # more than there is, by an unknown amount
    else:
        announced = round(int(match.group(1)) / int(rate_match.group(1)) * sound.samplerate)
    refuse_truncated(name, int(sound.frames), announced, int(sound.samplerate), end)

