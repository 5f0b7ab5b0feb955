"""The last part of a long AAC (m4a, mp4) recording decoded in a forked child process.

FFmpeg's AAC decoder is one thread and most of transcode's work. A second thread cannot share it out:
PyAV gives Python's lock back and takes it again several times per 1024-sample frame, and two threads
doing that spent more time handing the lock over than they saved. A child made by fork() has a lock of its
own and starts at once with everything already imported, and what it sends back is small: the part's
output, 8 kHz int16 (16 kB a second).

fork() copies only the thread that calls it, so a lock another thread held at that moment (logging's,
an allocator's) would stay locked in the child for ever: a child is made only while the process runs no
other thread (can_fork), which is the case for `dasctl transcode` and for a script reading a file; a
program with threads gets the file decoded in one piece, as before. The child resets the signals to
their defaults (Ctrl-C in a terminal reaches the whole process group and ends it at once), never returns
into the caller's code (os._exit), and dies on its next write if its parent is gone (SIGPIPE).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from dasctl.audio.parts import Seam, Unaligned, decode_part
from dasctl.audio.read_ahead import ReadAhead
from dasctl.errors import AudioError

if TYPE_CHECKING:
    from dasctl.audio.ffmpeg import FfmpegReader

log = logging.getLogger(__name__)

#: message kinds, child to parent; each is _HEADER then `length` bytes
_BLOCK, _SEAM, _END, _UNALIGNED, _ERROR = range(5)
_HEADER = struct.Struct("<BQ")
_POSITION = struct.Struct("<q")


def can_fork() -> bool:
    """Whether a part may be decoded in a child process: Linux (fork() is what it is there), and no
    thread but this one in the process."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


class ForkedPart(ReadAhead[np.ndarray | Seam]):
    """The part of `source` from input frame `first` to the end, decoded in a child process, its blocks
    read from a pipe by a thread of ours (a part ahead is held whole: at most a part of 8 kHz int16)."""

    def __init__(self, source: FfmpegReader, first: int, channel: str | int) -> None:
        self.name = source.name
        #: where the input ended (the frame after the last one decoded), once the child said so
        self.position = first
        read_end, write_end = os.pipe()
        try:
            self._pid = os.fork()
        except OSError:  # no memory or no process left: the caller decodes in one piece
            os.close(read_end)
            os.close(write_end)
            raise
        if self._pid == 0:  # the child: never returns
            os.close(read_end)
            _run_child(write_end, source, first, channel)
        os.close(write_end)
        self._pipe: BinaryIO = os.fdopen(read_end, "rb")
        super().__init__(self._received(), depth=0, name="dasctl-audio-part")

    def _received(self) -> Iterator[np.ndarray | Seam]:
        read = self._pipe.read
        while True:
            header = read(_HEADER.size)
            kind, length = _HEADER.unpack(header) if len(header) == _HEADER.size else (None, 0)
            payload = read(length) if kind is not None else b""
            if kind is None or len(payload) < length:  # killed (out of memory, a signal to it alone)
                raise AudioError(f"{self.name}: the process decoding its second half stopped before the end")
            if kind == _BLOCK:
                yield np.frombuffer(payload, dtype=np.int16)
            elif kind == _SEAM:
                yield Seam(np.frombuffer(payload, dtype=np.int16))
            elif kind == _END:
                (self.position,) = _POSITION.unpack(payload)
                return
            elif kind == _UNALIGNED:
                raise Unaligned
            else:
                message, hint = json.loads(payload)
                raise AudioError(message, hint)

    def stop(self) -> None:
        """End the child (if it still runs), the reading thread, and reap the child (safe to call twice)."""
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)  # a zombie until reaped below: the pid is still ours
            except ProcessLookupError:
                pass
        super().stop()  # the thread's read ends: the pipe's only writer is gone
        if self._pid:
            os.waitpid(self._pid, 0)
            self._pid = 0
            self._pipe.close()


def _run_child(write_end: int, source: FfmpegReader, first: int, channel: str | int) -> None:
    """In the child: decode the part, send what it makes, exit. Nothing here returns."""
    status = 0
    try:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        with os.fdopen(write_end, "wb") as pipe:

            def send(kind: int, payload: bytes) -> None:
                pipe.write(_HEADER.pack(kind, len(payload)))
                pipe.write(payload)
                pipe.flush()

            try:
                reader = source.sibling()
                for item in decode_part(reader, first, None, channel):
                    if isinstance(item, Seam):
                        send(_SEAM, item.after.astype(np.int16, copy=False).tobytes())
                    else:
                        send(_BLOCK, item.astype(np.int16, copy=False).tobytes())
                send(_END, _POSITION.pack(reader.position))
            except Unaligned:
                send(_UNALIGNED, b"")
            except AudioError as error:
                send(_ERROR, json.dumps([error.message, error.hint]).encode())
            except Exception as error:  # noqa: BLE001 - a bug: the parent shows it as the file's error
                log.debug("%s: decoding the second half failed", source.name, exc_info=True)
                send(_ERROR, json.dumps([f"{source.name}: decoding failed: {error}", None]).encode())
    except BaseException:  # noqa: BLE001 - the parent is gone (a broken pipe) or we were told to stop
        status = 1
    finally:
        os._exit(status)
