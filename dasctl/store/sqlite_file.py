"""The SQLite store as a file on disk: what dasctl checks before it trusts one, and before a session.

- A symlink at the store path is followed only to a regular file the user owns (a link planted in a
  shared directory must not redirect the credentials somewhere else).
- A store file others can read is made 0600, with one warning (as ssh refuses a 0644 key).
- `PRAGMA quick_check` runs on open when the file changed since the last good check (a stamp of its size
  and time in the state directory): a scribbled page is refused before any session, nothing written.
- `writable_problem` finds a read-only file or directory, or a full disk, before the service enrolls a
  voice whose credential could then not be kept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from dasctl.store import StoreUnusable

#: free space a write needs, at least: 10 minutes of audio and its record, with room to spare
MIN_FREE_BYTES = 16 * 1024 * 1024


def check_path(path: Path) -> None:
    """Refuse a symlink to anything but the user's own regular file."""
    if path.is_symlink():
        try:
            info = os.stat(path)
        except OSError:
            raise StoreUnusable(f"the store {path} is a symlink to nothing ({os.readlink(path)})",
                                "Nothing was changed. Remove the link or pass --store with a file.") from None
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise StoreUnusable(f"the store {path} is a symlink to {os.readlink(path)}, which is not a "
                                "regular file you own",
                                "Nothing was changed. Pass --store with the file itself.")


def fix_mode(path: Path, warn: Callable[[str], None]) -> None:
    """A dasctl store others can read is made 0600, with one warning (only once it is known to be ours)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISREG(info.st_mode) and mode & 0o077:
        try:
            os.chmod(path, 0o600)
            warn(f"the credential store {path} could be read by others (mode {mode:04o}); made it 0600")
        except OSError as error:
            warn(f"the credential store {path} can be read by others (mode {mode:04o}) and cannot be "
                 f"made 0600: {error.strerror}")


def _stamp_file(path: Path, env: Mapping[str, str] | None) -> Path:
    from dasctl.config import state_dir

    name = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return state_dir(env) / "checks" / f"store-{name}"


def _stamp(path: Path) -> str:
    """The file and its WAL as the last good check saw them; an empty WAL (every open makes one) is none."""
    parts = []
    for file in (path, Path(f"{path}-wal")):
        try:
            info = os.stat(file)
        except FileNotFoundError:
            info = None
        parts.append(f"{info.st_size}:{info.st_mtime_ns}" if info is not None and info.st_size else "-")
    return " ".join(parts)


def quick_check(connection: sqlite3.Connection, path: Path, env: Mapping[str, str] | None) -> None:
    """PRAGMA quick_check, unless the file is as the last good check left it; StoreUnusable (exit 2)
    naming the first problem."""
    stamp_file = _stamp_file(path, env)
    try:
        if stamp_file.read_text() == _stamp(path):
            return
    except OSError:
        pass
    try:
        rows = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as error:
        rows = [str(error)]
    if rows != ["ok"]:
        raise StoreUnusable(f"the credential store {path} is corrupt: {rows[0]}",
                            "Nothing was written. Restore it from a backup; `dasctl credentials check` "
                            "lists every problem.")
    remember_good(path, env)


def remember_good(path: Path, env: Mapping[str, str] | None) -> None:
    """The file as it is now passed (or was written by us after passing): no check next time."""
    from dasctl.config import private_dir

    stamp_file = _stamp_file(path, env)
    try:
        private_dir(stamp_file.parent)
        stamp_file.write_text(_stamp(path))
    except OSError:
        pass  # no stamp: the next open checks again, which is only slower


def integrity_problems(connection: sqlite3.Connection) -> list[str]:
    """PRAGMA integrity_check: every problem (an empty list when the file is sound)."""
    try:
        rows = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        return [str(error)]
    return [] if rows == ["ok"] else rows


def writable_problem(path: Path) -> str | None:
    """Why a write to this store would fail (read-only file or directory, full disk), or None."""
    if not os.access(path, os.W_OK):
        return f"the store file {path} is read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"the store's directory {path.parent} is read-only (SQLite writes its journal there)"
    free = shutil.disk_usage(path.parent).free
    if free < MIN_FREE_BYTES:
        return f"the disk of {path} is full ({free // 1024} KiB free)"
    return None
