"""The store's key on every command that opens the store (`--store-key-file` on register, verify, watch,
reenroll and watch status), the Python client's use of the profile's store_key_file, and a `credentials
rekey` while a `watch` keeps enrolling into the same store. Real emulator, real SQLite and PostgreSQL,
the real CLI and the real Python API."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dasctl.client import Client
from dasctl.errors import DasctlError, UsageError
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
Run = Callable[..., subprocess.CompletedProcess[Any]]


def _sessions(emulator: Emulator, since: int = 0) -> int:
    """How many register and verify sessions the emulator ran after `since`."""
    return len(re.findall(r"session (?:register|verify) \S+ \S+:", emulator.output(since)))


@pytest.fixture
def no_ambient_key(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Neither DASCTL_STORE_KEY nor the local key file: a key comes only from where the test says."""
    (isolated_config / "store.key").unlink()
    monkeypatch.delenv("DASCTL_STORE_KEY")
    return {"DASCTL_STORE_KEY": ""}


def _new_key(dasctl: Run, path: Path) -> Path:
    made = dasctl("credentials", "key", "new", str(path))
    assert made.returncode == 0, made.stderr
    return path


@pytest.mark.slow
def test_every_command_that_opens_the_store_takes_store_key_file(
    dasctl: Run, module_emulator: Emulator, tmp_path: Path, no_ambient_key: dict[str, str]
) -> None:
    emulator, since = module_emulator, module_emulator.mark()
    key, wrong = _new_key(dasctl, tmp_path / "store.key"), _new_key(dasctl, tmp_path / "wrong.key")
    path = str(tmp_path / "s.db")
    recording = tmp_path / "CUST1.wav"
    shutil.copy(SPEECH, recording)
    env = {**emulator.client_env(), **no_ambient_key}
    common = ["--speed", "0", "--store", path]

    done = dasctl("register", *common, "-q", "--json", "--store-key-file", str(key), str(recording), env=env)
    assert done.returncode == 0, done.stderr
    credential = json.loads(done.stdout)["credential"]
    assert credential.encode() not in Path(path).read_bytes()  # sealed, not in the clear
    shown = dasctl("credentials", "show", "CUST1", "--show-credential", "--json", "--store", path,
                   "--store-key-file", str(key), env=env)
    assert json.loads(shown.stdout)["credential"] == credential
    assert _sessions(emulator, since) == 1

    # the wrong key or none: refused before any session, naming the key
    for extra, said in ((["--store-key-file", str(wrong)], f"the store key from {wrong}"),
                        ([], "no key for the encrypted credential store")):
        for command in (["register", *common, str(recording)],
                        ["verify", "--speaker", "CUST1", *common, str(recording)],
                        ["reenroll", "--model-hash", "dasctl-emulator-model-v1", "--store", path],
                        ["watch", str(tmp_path / "in"), "--once", "--store", path]):
            (tmp_path / "in").mkdir(exist_ok=True)
            refused = dasctl(*command, *extra, env=env)
            assert refused.returncode == 4, (command, extra, refused.stderr)
            assert said in refused.stderr and refused.stdout == "", refused.stderr
    assert _sessions(emulator, since) == 1

    # the right key: each command works
    verified = dasctl("verify", "--speaker", "CUST1", *common, "-q", "--store-key-file", str(key),
                      str(recording), env=env)
    assert verified.returncode == 0, verified.stderr
    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "CUST2.wav")
    watched = dasctl("watch", str(inbox), "--once", "--settle", "0", "--json", *common,
                     "--store-key-file", str(key), env=env)
    assert watched.returncode == 0, watched.stderr
    reenrolled = dasctl("reenroll", "--model-hash", "dasctl-emulator-model-v1", "--store", path,
                        "--store-key-file", str(key), env=env)
    assert reenrolled.returncode == 0, reenrolled.stderr
    status = dasctl("watch", "status", str(inbox), "--json", "--store", path, "--store-key-file", str(key),
                    env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["done"] == 1, status.stderr
    assert _sessions(emulator, since) == 3
    history = dasctl("credentials", "history", "CUST1", "--json", "--store", path, env=env)
    assert [line["schema"] for line in map(json.loads, history.stdout.splitlines())] == [
        "dasctl.credential/1", "dasctl.verification/1"]


def test_a_team_store_takes_its_key_from_register_store_key_file(
    dasctl: Run, emulator: Emulator, tmp_path: Path, postgres_store_url: str, no_ambient_key: dict[str, str]
) -> None:
    key = _new_key(dasctl, tmp_path / "team.key")
    env = {**emulator.client_env(), **no_ambient_key}
    base = ["register", "--speed", "0", "-q", "--speaker", "T1", "--store", postgres_store_url, str(SPEECH)]
    keyless = dasctl(*base, env=env)
    assert keyless.returncode == 4 and "--store-key-file" in keyless.stderr, keyless.stderr
    done = dasctl(*base, "--json", "--store-key-file", str(key), env=env)
    assert done.returncode == 0, done.stderr
    shown = dasctl("credentials", "show", "T1", "--show-credential", "--json", "--store", postgres_store_url,
                   "--store-key-file", str(key), env=env)
    assert json.loads(shown.stdout)["credential"] == json.loads(done.stdout)["credential"]


def test_the_python_client_uses_the_profiles_store_key_file(
    dasctl: Run, module_emulator: Emulator, tmp_path: Path, no_ambient_key: dict[str, str]
) -> None:
    emulator, since = module_emulator, module_emulator.mark()
    key = _new_key(dasctl, tmp_path / "store.key")
    path = str(tmp_path / "s.db")
    env = {**emulator.client_env(), **no_ambient_key}
    first = dasctl("register", "--speed", "0", "-q", "--speaker", "P1", "--store", path,
                   "--store-key-file", str(key), str(SPEECH), env=env)
    assert first.returncode == 0, first.stderr
    assert dasctl("config", "set", "store_key_file", str(key), "--profile", "local").returncode == 0

    client = Client(profile="local", url=emulator.url, store=path)
    assert client.store.current("P1") is not None and client.store.current("P1").credential  # type: ignore
    result = client.register(SPEECH, speaker="P2", consent="FORM-9", speed=0)
    assert result.ok and result.document["stored"]["consent"] == "FORM-9"
    shown = dasctl("credentials", "show", "P2", "--show-credential", "--json", "--store", path, env=env)
    document = json.loads(shown.stdout)
    assert document["credential"] == result.credential and document["consent"] == "FORM-9"

    # as the command: an opted-out customer is refused before any audio, and a bad consent at once
    assert dasctl("credentials", "optout", "P3", "--store", path, env=env).returncode == 0
    sessions = _sessions(emulator, since)
    with pytest.raises(DasctlError) as refused:
        client.register(SPEECH, speaker="P3", speed=0)
    assert refused.value.exit_code == 5 and "opted out" in refused.value.message
    with pytest.raises(DasctlError) as unverified:
        client.verify(SPEECH, speaker="P3", speed=0)
    assert unverified.value.exit_code == 5
    with pytest.raises(UsageError, match="consent is empty"):
        client.register(SPEECH, speaker="P4", consent=" ", speed=0)
    with pytest.raises(UsageError, match="store=False"):
        client.register(SPEECH, speaker="P4", consent="F", store=False, speed=0)
    assert _sessions(emulator, since) == sessions
    # the wrong key in the profile: refused before any session (exit 4), nothing kept
    wrong = _new_key(dasctl, tmp_path / "wrong.key")
    assert dasctl("config", "set", "store_key_file", str(wrong), "--profile", "local").returncode == 0
    with pytest.raises(DasctlError) as keyless:
        client.register(SPEECH, speaker="P5", speed=0)
    assert keyless.value.exit_code == 4 and str(wrong) in keyless.value.message
    assert _sessions(emulator, since) == sessions


class _Lines:
    """A process's stdout lines, read on a thread, waited for with a bound."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self.queue.put(line) for line in stdout], daemon=True).start()

    def take(self, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        lines = []
        while len(lines) < count:
            lines.append(json.loads(self.queue.get(timeout=max(0.1, deadline - time.monotonic()))))
        return lines


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rekey_while_a_watch_keeps_enrolling_loses_nothing(
    dasctl: Run, emulator: Emulator, tmp_path: Path, no_ambient_key: dict[str, str],
    running: list[subprocess.Popen[str]],
) -> None:
    old, new = _new_key(dasctl, tmp_path / "old.key"), _new_key(dasctl, tmp_path / "new.key")
    path = str(tmp_path / "s.db")
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for name in ("CUST1.wav", "CUST2.wav"):
        shutil.copy(SPEECH, inbox / name)
    env = {**os.environ, **emulator.client_env(), **no_ambient_key, "DASCTL_STORE_KEY_FILE": str(old)}
    watch = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "watch", str(inbox), "--json", "--speed", "0", "--settle", "0",
         "--store", path],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    running.append(watch)
    lines = _Lines(watch)
    before = lines.take(2)
    rekeyed = dasctl("credentials", "rekey", "--new-key-file", str(new), "--store", path,
                     "--store-key-file", str(old), env=no_ambient_key)
    assert rekeyed.returncode == 0, rekeyed.stderr
    for name in ("CUST3.wav", "CUST4.wav"):  # the watch, holding the old key, keeps enrolling
        shutil.copy(SPEECH, inbox / f".{name}")
        (inbox / f".{name}").rename(inbox / name)
    after = lines.take(2)
    watch.send_signal(signal.SIGTERM)
    _, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 130, stderr
    assert all(line["ok"] for line in [*before, *after]), [*before, *after]
    assert "error" not in stderr.lower(), stderr

    # every record is under the new key; the old one opens nothing any more
    status = dasctl("credentials", "key", "status", "--json", "--store", path, "--store-key-file", str(new))
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert len(document["data_keys"]) == 1 and document["plaintext"] == {}, document
    (data_key,) = document["data_keys"]
    assert document["key"]["opens"] and data_key["kek_id"] == document["key"]["id"], document
    assert data_key["records"]["enrollments"] == 4 and data_key["records"]["audio"] == 4, document
    exported = dasctl("credentials", "export", "--with-credential", "--store", path,
                      "--store-key-file", str(new))
    assert exported.returncode == 0, exported.stderr
    kept = {line["speaker"]: line["credential"] for line in map(json.loads, exported.stdout.splitlines())
            if line["schema"] == "dasctl.credential/1"}
    assert kept == {line["speaker"]: line["credential"] for line in [*before, *after]}
    stale = dasctl("credentials", "export", "--with-credential", "--store", path,
                   "--store-key-file", str(old))
    assert stale.returncode == 4 and "does not open" in stale.stderr, stale.stderr


def test_the_python_store_reader_audits_every_credential_it_returns(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    path = str(tmp_path / "s.db")
    done = dasctl("register", "--speed", "0", "-q", "--speaker", "R1", "--store", path, str(SPEECH),
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    store = Client(profile="local", url=emulator.url, store=path).store
    assert store.current("R1").credential  # type: ignore[union-attr]
    assert [r.speaker for r in store.list()] == ["R1"] and len(store.history("R1")) == 1
    assert store.current("NOBODY") is None
    audited = dasctl("credentials", "audit", "--json", "--store", path)
    rows = [json.loads(line) for line in audited.stdout.splitlines()]
    assert [(r["command"], r["speakers"], r["count"]) for r in rows] == [
        ("python current", ["R1"], 1), ("python list", ["R1"], 1), ("python history", ["R1"], 1)]
    # without the key: metadata, and nothing to audit
    keyless = Client(profile="local", url=emulator.url, store=path,
                     env={"DASCTL_STORE_KEY": "", "DASCTL_CONFIG_DIR": str(tmp_path / "other")}).store
    record = keyless.current("R1")
    assert record is not None and record.credential is None and record.model_hash
    assert len(dasctl("credentials", "audit", "--json", "--store", path).stdout.splitlines()) == 3


def test_looks_at_watch_state_need_no_key_and_create_no_store(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    """`watch status` and `watch --dry-run` read metadata: no key needed (the kept reports, which hold
    credentials, stay sealed), and a store that is not there is an error naming it, not a new file."""
    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "CUST1.wav")
    path = str(tmp_path / "s.db")
    done = dasctl("watch", str(inbox), "--once", "--speed", "0", "--settle", "0", "--store", path,
                  env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    shutil.copy(SPEECH, inbox / "CUST2.wav")
    keyless = {"DASCTL_STORE_KEY": "", "DASCTL_CONFIG_DIR": str(tmp_path / "elsewhere")}
    status = dasctl("watch", "status", str(inbox), "--json", "--store", path, env=keyless)
    assert status.returncode == 0, status.stderr
    assert (json.loads(status.stdout)["done"], json.loads(status.stdout)["not_seen_yet"]) == (1, 1)
    plan = dasctl("watch", str(inbox), "--dry-run", "--json", "--store", path, env=keyless)
    assert plan.returncode == 0, plan.stderr
    actions = {line["file"]: line["action"] for line in map(json.loads, plan.stdout.splitlines())}
    assert actions == {"CUST1.wav": "done", "CUST2.wav": "enroll"}
    for command in (["watch", "status", str(inbox)], ["watch", str(inbox), "--dry-run"]):
        typo = dasctl(*command, "--store", str(tmp_path / "typo.db"))
        assert typo.returncode == 2 and f"no credential store at {tmp_path / 'typo.db'}" in typo.stderr
    assert not (tmp_path / "typo.db").exists()
