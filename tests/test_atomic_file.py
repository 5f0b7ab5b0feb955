"""The one atomic writer: all or nothing, the right mode, no temp file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dasctl.atomic_file import PUBLIC, atomic_file, write_atomically
from dasctl.errors import UsageError


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as out:
            out.write(b"half of the new")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["record.json"]


def test_private_by_default_public_follows_the_umask(tmp_path: Path) -> None:
    write_atomically(tmp_path / "private", b"x")
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "public", b"x", PUBLIC)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644


def test_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        write_atomically(tmp_path / "nope" / "f", b"x")
