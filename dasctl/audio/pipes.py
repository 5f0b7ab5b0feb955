"""Pipes: the first bytes of a one-pass input, and the relay that hands libsndfile a pipe that starts
with the bytes already taken."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from dasctl.audio.fingerprint import STDIN_DRAIN_TIMEOUT, StreamDigest


class PipeRelay:
    """Feeds libsndfile a fresh pipe that starts with the bytes we peeked from stdin, then the rest."""

    def __init__(
        self, source_fd: int, head: bytes, digest: StreamDigest, on_finish: Callable[[], None] | None = None
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


def read_head(fd: int, size: int) -> bytes:
    head = b""
    while len(head) < size:
        data = os.read(fd, size - len(head))
        if not data:
            break
        head += data
    return head

