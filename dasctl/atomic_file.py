"""The one way dasctl writes a file: a temp file beside the target, fsynced, then renamed over it.

A reader never sees a half-written file, and an error (or Ctrl-C) leaves the target as it was and no temp
file behind. Used for dasctl's own files (0600: config, tokens, secrets, credential records) and for the
user's outputs (0666 & ~umask, like any new file: transcoded and enrollment audio).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from dasctl.errors import UsageError

PRIVATE = 0o600
#: a new file as the user's umask makes it
PUBLIC = 0o666


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: int = PRIVATE) -> Iterator[IO[bytes]]:
    """A binary file to write; on a clean exit it replaces `path` (fsynced), otherwise it vanishes."""
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise UsageError(f"{target}: cannot write there: directory {directory} does not exist")
    if target.is_dir():
        raise UsageError(f"{target}: is a directory; give a file name")
    # One try from before the temp file exists to its rename: a signal (KeyboardInterrupt) can land at
    # any bytecode, also the one right after os.open, and must never leave the temp file behind.
    temp: Path | None = None
    try:
        for _ in range(100):
            temp = directory / f".{target.name}.{os.urandom(4).hex()}.tmp"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                break
            except FileExistsError:  # another writer's temp file: not ours to remove
                temp = None
                continue
            except OSError as error:
                temp = None
                raise UsageError(f"{target}: cannot write there: {error.strerror or error}") from None
        else:
            temp = None
            raise UsageError(f"{target}: cannot create a temporary file beside it")
        with os.fdopen(fd, "wb") as out:
            if mode == PRIVATE:
                os.fchmod(out.fileno(), PRIVATE)  # whatever the umask: dasctl's files are the owner's only
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike[str], data: bytes, mode: int = PRIVATE) -> None:
    """Write bytes atomically (default mode 0600)."""
    with atomic_file(path, mode) as out:
        out.write(data)
