"""A store that cannot be written is found before the session, not after the service enrolled the voice:
a read-only store file, a read-only directory (existing store or new), a full disk. Exit 6, one line, and
the emulator never saw a session.

The tests run as root, which ignores file modes, so dasctl runs here as `nobody` (setpriv); the full disk
is a small tmpfs mounted in a private mount namespace (unshare -m) that ends with the process. Each test
skips, saying why, where the mechanism is not available.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, TEST_STORE_KEY, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _sessions(emulator: Emulator, since: int = 0) -> list[str]:
    return re.findall(r"session register \S+ (\S+):", emulator.output(since))


def _runs(command: list[str]) -> str | None:
    """Why `command` cannot be used here, or None."""
    if shutil.which(command[0]) is None:
        return f"{command[0]} is not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError as error:
        return f"{command[0]}: {error}"
    return None if done.returncode == 0 else f"{' '.join(command[:2])}: {done.stderr.strip()[:200]}"


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A directory tree `nobody` owns (pytest's own tmp dirs are root's, 0700), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run dasctl as another user (as an ordinary user, modes apply anyway)")
    why = _runs([*AS_NOBODY, sys.executable, "-c", "import dasctl"])
    if why:
        pytest.skip(f"cannot run dasctl as nobody: {why}")
    home = Path(tempfile.mkdtemp(prefix="dasctl-unwritable-"))
    home.chmod(0o755)
    try:
        for name in ("config", "store-dir", "new-dir"):
            (home / name).mkdir()
        shutil.copy(SPEECH, home / "CUST1.wav")
        (home / "store.key").write_text(TEST_STORE_KEY + "\n")
        (home / "store.key").chmod(0o600)
        shutil.chown(home, "nobody", "nogroup")
        for path in home.rglob("*"):
            shutil.chown(path, "nobody", "nogroup")
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _as_nobody(home: Path, emulator: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DASCTL_")}
    env.update(emulator.client_env())
    env.update({"DASCTL_CONFIG_DIR": str(home / "config"), "DASCTL_STORE_KEY_FILE": str(home / "store.key"),
                "HOME": str(home)})
    return subprocess.run([*AS_NOBODY, sys.executable, "-m", "dasctl", *args], env=env, cwd=home,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_a_read_only_store_or_directory_is_exit_6_before_any_audio_is_sent(
    nobody_home: Path, module_emulator: Emulator
) -> None:
    emulator, since = module_emulator, module_emulator.mark()
    home = nobody_home
    recording = str(home / "CUST1.wav")
    store_dir, new_dir = home / "store-dir", home / "new-dir"
    for store in (store_dir / "s.db", home / "ro.db"):  # made by nobody, as a user's own store is
        made = _as_nobody(home, emulator, "credentials", "optout", "SOMEONE", "--store", str(store))
        assert made.returncode == 0, made.stderr
    (home / "ro.db").chmod(0o400)
    store_dir.chmod(0o555)
    new_dir.chmod(0o555)
    inbox = home / "calls"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "CUST2.wav")
    shutil.chown(inbox, "nobody", "nogroup")

    cases = [
        (str(home / "ro.db"), f"the store file {home / 'ro.db'} is read-only"),
        (str(store_dir / "s.db"), f"the store's directory {store_dir} is read-only"),
        (str(new_dir / "new.db"), f"cannot create the store {new_dir / 'new.db'}: Permission denied"),
    ]
    for store, said in cases:
        for command in (["register", "--speed", "0", "--json", "--store", store, recording],
                        ["watch", str(inbox), "--once", "--speed", "0", "--settle", "0", "--store", store]):
            refused = _as_nobody(home, emulator, *command)
            assert refused.returncode == 6, (command, refused.stderr)
            assert said in refused.stderr, (command, refused.stderr)
            assert refused.stderr.count("dasctl: error:") == 1 and "Traceback" not in refused.stderr
            assert refused.stdout == ""
    assert not (new_dir / "new.db").exists()  # nothing half-made
    assert (inbox / "CUST2.wav").exists()
    # the control: the same recording, a store nobody can write, and the emulator sees that one session
    done = _as_nobody(home, emulator, "register", "--speed", "0", "--json", "-q", "--store",
                      str(home / "ok.db"), recording)
    assert done.returncode == 0, done.stderr
    assert len(_sessions(emulator, since)) == 1, emulator.output()


def test_a_full_disk_is_exit_6_before_any_audio_is_sent(
    tmp_path: Path, module_emulator: Emulator, dasctl: Callable[..., Any]
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    why = _runs(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"])
    if why:
        pytest.skip(f"cannot mount a small tmpfs in a private mount namespace here: {why}")
    emulator, since = module_emulator, module_emulator.mark()
    store = tmp_path / "made.db"
    assert dasctl("credentials", "optout", "SOMEONE", "--store", str(store)).returncode == 0
    # in its own mount namespace: a 2 MB tmpfs over `small`, the store copied in, the disk filled to the
    # last byte, then dasctl (the mount goes with the process)
    script = (
        f'mount -t tmpfs -o size=2m tmpfs "{mount}" && cp "{store}" "{mount}/s.db" && '
        f'(cat /dev/zero > "{mount}/fill" 2>/dev/null; true) && '
        f'exec "{sys.executable}" -m dasctl "$@"'
    )
    env = {**os.environ, **emulator.client_env()}

    def on_full_disk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *args], env=env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "CUST2.wav")
    for command in (["register", "--speed", "0", "--json", "--store", f"{mount}/s.db", str(SPEECH)],
                    ["watch", str(inbox), "--once", "--speed", "0", "--settle", "0", "--store",
                     f"{mount}/s.db"]):
        refused = on_full_disk(*command)
        assert refused.returncode == 6, (command, refused.stderr)
        assert f"the disk of {mount}/s.db is full" in refused.stderr, refused.stderr
        assert "Nothing was sent" in refused.stderr and refused.stdout == ""
        assert refused.stderr.count("dasctl: error:") == 1 and "Traceback" not in refused.stderr
    assert not list(mount.iterdir())  # the tmpfs was the private namespace's alone
    # the control: the same command on a disk with room reaches the service
    done = dasctl("register", "--speed", "0", "-q", "--store", str(store), str(SPEECH), env=env)
    assert done.returncode == 0, done.stderr
    assert len(_sessions(emulator, since)) == 1, emulator.output()


def test_a_store_on_read_only_media_reads_its_metadata_and_refuses_its_secrets(
    tmp_path: Path, dasctl: Callable[..., Any]
) -> None:
    """A store on read-only media (a snapshot, a read-only mount of a team's old store): SQLite cannot
    make its WAL index there, so it is read as immutable. What needs no audit row reads; a secret, whose
    every read is audited in the store, is refused with one line saying why; a write is exit 6."""
    source, mount = tmp_path / "source", tmp_path / "media"
    source.mkdir()
    mount.mkdir()
    why = _runs(["unshare", "-m", "sh", "-c", f"mount --bind {source} {mount} && "
                 f"mount -o remount,ro,bind {mount} && touch {mount}/x"])
    if why is None or "Read-only file system" not in why:
        pytest.skip(f"cannot make a read-only bind mount in a private mount namespace here: {why}")
    for speaker in ("CUST1", "CUST2"):
        made = dasctl("credentials", "import", "--store", str(source / "s.db"), "-", input=json.dumps({
            "schema": "dasctl.credential/1", "speaker": speaker, "ok": True, "current": True,
            "credential": f"secret-of-{speaker}", "model_hash": "m1", "created_at": "2026-12-01T10:00:00Z"}))
        assert made.returncode == 0, made.stderr
    assert sorted(path.name for path in source.iterdir()) == ["s.db"]  # closed: no -wal, no -shm
    store = f"{mount}/s.db"

    def on_read_only_media(*args: str) -> subprocess.CompletedProcess[str]:
        script = (f'mount --bind "{source}" "{mount}" && mount -o remount,ro,bind "{mount}" && '
                  f'exec "{sys.executable}" -m dasctl "$@"')
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *args, "--store", store],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    listed = on_read_only_media("credentials", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    documents = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(d["speaker"], d["model_hash"], d["credential"]) for d in documents] == [
        ("CUST1", "m1", None), ("CUST2", "m1", None)]
    for command in (["show", "CUST1"], ["history", "CUST1"], ["export"], ["audit"], ["key", "status"]):
        done = on_read_only_media("credentials", *command)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stderr == "", (command, done.stderr)
    checked = on_read_only_media("credentials", "check")
    assert (checked.returncode, checked.stderr) == (0, f"{store}: ok (full integrity check)\n")
    assert "CUST2" in on_read_only_media("credentials", "export").stdout
    for command in (["show", "CUST1", "--show-credential"], ["export", "--with-credential"]):
        refused = on_read_only_media("credentials", *command)
        assert refused.returncode == 6, (command, refused.stderr)
        said = f"dasctl: error: the credential store {store} is read-only, and every read of a secret is"
        assert refused.stderr.startswith(said), refused.stderr
        assert refused.stdout == "" and "secret-of" not in refused.stderr
    for command in (["rm", "CUST1", "--yes"], ["optout", "CUST2"]):
        refused = on_read_only_media("credentials", *command)
        assert refused.returncode == 6, (command, refused.stderr)
        assert f"the store file {store} is read-only" in refused.stderr, refused.stderr
    assert sorted(path.name for path in source.iterdir()) == ["s.db"]
    # changes not yet copied in from the -wal file: reading the file alone would miss them, so no read
    connection = sqlite3.connect(source / "s.db")
    try:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute("INSERT INTO audit_log (at, actor, command, speakers, count) "
                           "VALUES ('2026-12-02T00:00:00Z', 'me@here', 'test', '[]', 0)")
        connection.commit()
        for name in ("s.db", "s.db-wal"):  # the files as a copy taken now has them
            shutil.copy(source / name, tmp_path / name)
    finally:
        connection.close()  # (checkpoints and removes the -wal: the copies are put back below)
    for name in ("s.db", "s.db-wal"):
        shutil.copy(tmp_path / name, source / name)
    (source / "s.db-shm").unlink(missing_ok=True)
    assert (source / "s.db-wal").stat().st_size > 0
    waiting = on_read_only_media("credentials", "list")
    assert waiting.returncode == 6
    assert waiting.stderr.startswith(f"dasctl: error: cannot read the store {store}: it is read-only, and "
                                     f"its last changes are still in {store}-wal"), waiting.stderr
