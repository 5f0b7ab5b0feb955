"""Fingerprint: (size, sha256) of a recording's bytes, a file read again or a pipe hashed as it passes."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

#: seconds fingerprint() waits for the rest of a piped input to be hashed
STDIN_DRAIN_TIMEOUT = 30.0


class StreamDigest:
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


def fd_fingerprint(fd: int) -> tuple[int, str]:
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
        return fd_fingerprint(fd)
    except OSError:
        return None
    finally:
        os.close(fd)

