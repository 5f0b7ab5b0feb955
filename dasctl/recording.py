"""One recording to send, whatever holds it: a path, stdin (`-`), bytes in memory, or a binary file object.

The command line gives paths and `-`; the Python API also takes the audio itself (bytes, or a file opened
with `open(path, "rb")`, an upload, a `BytesIO`). The decoder reads files, so audio held in memory is
written to a private temporary file first (removed when the recording is closed); messages still name it
as the caller did. No Typer or rich here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any, Union

from dasctl.errors import DasctlError, UsageError

if TYPE_CHECKING:
    from dasctl.audio import AudioStream

#: What the API accepts as audio: a path (`-` = stdin), the bytes of a recording, or a binary file object.
AudioInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]

STDIN = "-"
STDIN_NAME = "<stdin>"
BYTES_NAME = "<bytes>"
FILE_OBJECT_NAME = "<file>"
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Recording:
    """What a session reads its audio from, and how messages, documents and the store name it."""

    name: str  # the path as given, <stdin>, or the name of audio held in memory
    path: Path | None = None  # a file (or FIFO) on disk; None for stdin and audio in memory
    data: bytes | None = None  # the recording's bytes, when given in memory
    file: IO[bytes] | None = None  # a binary file object, read once from where it stands
    named: bool = False  # whether the name is a file name a speaker id can be taken from

    @classmethod
    def from_argument(cls, argument: str) -> Recording:
        """A command-line argument: a path, or `-` for stdin."""
        if argument == STDIN:
            return cls(STDIN_NAME)
        return cls(argument, path=Path(argument), named=True)

    @classmethod
    def of(cls, audio: AudioInput, name: str | None = None) -> Recording:
        """What the Python API was given; `name` says how to call audio held in memory (e.g. its file
        name, which then also gives the default speaker id)."""
        if isinstance(audio, (bytes, bytearray, memoryview)):
            return cls(name or BYTES_NAME, data=bytes(audio), named=name is not None)
        if isinstance(audio, (str, os.PathLike)):
            return cls.from_argument(os.fspath(audio))
        if callable(getattr(audio, "read", None)):
            if not isinstance(audio.read(0), bytes):
                raise UsageError(
                    "the audio file object is open in text mode", 'Open it in binary mode: open(path, "rb").'
                )
            own_name = getattr(audio, "name", None)
            given = name or (own_name if isinstance(own_name, str) else None)
            return cls(given or FILE_OBJECT_NAME, file=audio, named=given is not None)
        raise UsageError(
            f"cannot read audio from a {type(audio).__name__}",
            "Give a path, the bytes of a recording, or a file opened in binary mode.",
        )

    @property
    def is_stdin(self) -> bool:
        return self.path is None and self.data is None and self.file is None

    @property
    def source_path(self) -> str | None:
        """The absolute path the store keeps; None for stdin and audio held in memory."""
        return str(self.path.resolve()) if self.path is not None else None

    @property
    def stem(self) -> str:
        """The name files written for it (--output DIR) take: the file's stem, `stdin` for stdin."""
        if self.is_stdin:
            return "stdin"
        return PurePath(self.name).stem if self.named else self.name.strip("<>")

    def check_exists(self) -> None:
        """Before any connection: a typo in the last of ten files should not cost nine sessions."""
        if self.path is None:
            return
        if not self.path.exists():
            raise UsageError(f"{self.name}: no such file",
                             "Check the path; use - to read the audio from stdin.")
        if self.path.is_dir():
            raise UsageError(
                f"{self.name} is a directory", "Give recording files; `dasctl watch DIR` enrolls a folder."
            )

    @contextmanager
    def open(self, *, channel: str = "mix", start: float = 0.0, end: float | None = None) -> Iterator[Opened]:
        """The recording opened for streaming, as 8 kHz mu-law frames (AudioError names it as given)."""
        from dasctl.audio import open_audio

        if self.data is None and self.file is None:
            with open_audio(STDIN if self.is_stdin else str(self.path), channel=channel, start=start,
                            end=end) as stream:
                opened = Opened(stream, None)
                yield opened
            return
        with _Spool(self) as spool:
            try:
                stream = open_audio(spool.path, channel=channel, start=start, end=end)
            except DasctlError as error:
                raise _renamed(error, str(spool.path), self.name) from None
            stream.name = self.name  # what reading errors say
            with stream:
                try:
                    yield Opened(stream, spool.fingerprint)
                except DasctlError as error:
                    raise _renamed(error, str(spool.path), self.name) from None


@dataclass
class Opened:
    """An open recording: the stream to send, and the input's (size, sha256) once it is known."""

    stream: AudioStream
    known_fingerprint: tuple[int, str] | None

    def fingerprint(self) -> tuple[int, str] | None:
        """(size, sha256) of the whole input; call after the stream is closed (a pipe is drained then)."""
        return self.known_fingerprint or self.stream.fingerprint()


class _Spool:
    """Audio held in memory, in a private temporary file for the decoder; hashed as it is written."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.fingerprint: tuple[int, str] | None = None
        self.path = Path()

    def __enter__(self) -> _Spool:
        descriptor, name = tempfile.mkstemp(prefix="dasctl-audio-")  # mode 0600: the voice is personal data
        self.path = Path(name)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(descriptor, "wb") as out:
                for chunk in self._chunks():
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        self.fingerprint = (size, digest.hexdigest())
        return self

    def _chunks(self) -> Iterator[bytes]:
        if self.recording.data is not None:
            yield self.recording.data
            return
        assert self.recording.file is not None
        try:
            while chunk := self.recording.file.read(_COPY_CHUNK):
                yield chunk
        except OSError as error:
            from dasctl.errors import AudioError

            raise AudioError(f"{self.recording.name}: cannot read it: {error}") from None

    def __exit__(self, *exc_info: Any) -> None:
        self.path.unlink(missing_ok=True)


def _renamed(error: DasctlError, temporary: str, name: str) -> DasctlError:
    """The error as the caller would have it: naming the audio as given, not the temporary file."""
    error.message = error.message.replace(temporary, name)
    if error.hint:
        error.hint = error.hint.replace(temporary, name)
    error.args = (error.message,)
    return error
