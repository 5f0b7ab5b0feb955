"""A store that cannot be fooled: a corrupt file, a symlink, loose permissions, a typo'd path, hostile
import lines, merged exports in any order. Real files, the real CLI, a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dasctl.store import EnrollmentRecord, open_store
from tests.conftest import DATA, Emulator

Run = Callable[..., subprocess.CompletedProcess[Any]]


def _store_with_records(path: Path, count: int = 60) -> None:
    store = open_store(str(path))
    try:
        for n in range(count):
            store.record_enrollment(EnrollmentRecord(f"CUST{n}", True, credential=f"cred-{n}" * 40,
                                                     audio=bytes(4000), call_id=f"c{n}"))
    finally:
        store.close()


def test_a_scribbled_page_is_refused_before_any_session_and_check_names_it(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    _store_with_records(path)
    assert dasctl("credentials", "check", "--store", str(path)).returncode == 0
    data = bytearray(path.read_bytes())
    data[4096:4112] = b"\xff" * 16  # the header of the second page (a b-tree page), scribbled
    path.write_bytes(bytes(data))
    recording = tmp_path / "CUSTX.wav"
    shutil.copy(DATA / "speech-a-8k-mono.wav", recording)
    register = dasctl("register", "--speed", "0", "--json", "--store", str(path), str(recording),
                      env=emulator.client_env())
    assert register.returncode == 2, register.stderr
    assert "is corrupt" in register.stderr and register.stdout == "" and "Traceback" not in register.stderr
    assert path.read_bytes() == bytes(data)  # nothing written
    check = dasctl("credentials", "check", "--store", str(path))
    assert check.returncode == 2 and "is corrupt" in check.stderr


def test_read_only_commands_never_create_a_store(dasctl: Run, tmp_path: Path, isolated_config: Path) -> None:
    typo = tmp_path / "no" / "such" / "store.db"
    for command in (["list"], ["show", "X"], ["history", "X"], ["export"], ["audit"], ["key", "status"]):
        done = dasctl("credentials", *command, "--store", str(typo))
        assert done.returncode == 2, (command, done.stderr)
        assert f"no credential store at {typo}" in done.stderr
    assert not (tmp_path / "no").exists()
    # the default store, not made yet: empty, and still not made
    listed = dasctl("credentials", "list", "--json")
    assert listed.returncode == 0 and listed.stdout == ""
    assert not (isolated_config / "store.db").exists()
    # key status of it says what will happen, not that a key "does NOT open" a store that is not there
    (isolated_config / "store.key").unlink()  # the test key's copy: no key at all
    status = dasctl("credentials", "key", "status", env={"DASCTL_STORE_KEY": ""})
    assert status.returncode == 0, status.stderr
    assert status.stdout == (
        f"store        {isolated_config / 'store.db'}  (not made yet: the first enrollment makes it)\n"
        "key          (none yet: one is made with the store, in the OS keyring, else in "
        f"{isolated_config / 'store.key'})\n")
    assert not (isolated_config / "store.db").exists()


def test_key_status_names_a_missing_key_and_a_wrong_one(
    dasctl: Run, tmp_path: Path, isolated_config: Path
) -> None:
    path = tmp_path / "s.db"
    _store_with_records(path, 1)  # sealed with the test key (DASCTL_STORE_KEY)
    (isolated_config / "store.key").unlink()  # its copy as the local key file: only the variable now
    opens = dasctl("credentials", "key", "status", "--store", str(path)).stdout.splitlines()
    assert opens[1].endswith("from DASCTL_STORE_KEY") and "NOT" not in opens[1]
    assert opens[2].endswith(": 1 audio, 1 enrollments")
    missing = dasctl("credentials", "key", "status", "--store", str(path), env={"DASCTL_STORE_KEY": ""})
    assert missing.stdout.splitlines()[1] == \
        "key          (none found: give --store-key-file FILE or DASCTL_STORE_KEY)"
    wrong = dasctl("credentials", "key", "status", "--store", str(path),
                   env={"DASCTL_STORE_KEY": "YW5vdGhlci1zdG9yZS1rZXktMzItYnl0ZXMtZXhhY3Q="})
    assert wrong.stdout.splitlines()[1].endswith("from DASCTL_STORE_KEY  (does NOT open this store)"), \
        wrong.stdout


def test_a_symlink_is_followed_only_to_the_users_own_regular_file(dasctl: Run, tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    _store_with_records(real, 2)
    link = tmp_path / "link.db"
    link.symlink_to(real)
    assert dasctl("credentials", "list", "--store", str(link)).returncode == 0
    to_dir = tmp_path / "to-dir.db"
    to_dir.symlink_to(tmp_path)
    refused = dasctl("credentials", "list", "--store", str(to_dir))
    assert refused.returncode == 2 and "not a regular file you own" in refused.stderr
    if os.geteuid() == 0:  # a file another user owns
        theirs = tmp_path / "theirs.db"
        shutil.copy(real, theirs)
        os.chown(theirs, 65534, 65534)
        planted = tmp_path / "planted.db"
        planted.symlink_to(theirs)
        done = dasctl("credentials", "list", "--store", str(planted))
        assert done.returncode == 2 and "not a regular file you own" in done.stderr


def test_a_store_others_can_read_is_made_0600_with_one_warning(dasctl: Run, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store_with_records(path, 1)
    os.chmod(path, 0o644)
    done = dasctl("credentials", "list", "--store", str(path))
    assert done.returncode == 0 and done.stderr.count("warning") == 1 and "made it 0600" in done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = dasctl("credentials", "list", "--store", str(path))
    assert again.stderr == ""


HOSTILE = [
    ({"model_hash": ["a", "b"]}, "model_hash must be a string"),
    ({"source_size": "abc"}, "source_size must be a whole number"),
    ({"call_id": 12}, "call_id must be a string"),
    ({"ok": "false"}, "ok must be true or false"),
    ({"speaker": None}, "it has no speaker"),
    ({"speaker": 42}, "speaker must be a string"),
    ({"speaker": {"a": 1}}, "speaker must be a string"),
    ({"source_size": 10**30}, "source_size must be a whole number"),
    ({"speaker": "A\udc80B"}, "lone surrogate"),
    ({"speaker": "A\u0000B"}, "NUL"),
    ({"schema": "dasctl.credential/9"}, "schema dasctl.credential/9 is newer"),
]


def _hostile_file(tmp_path: Path) -> tuple[Path, list[str]]:
    good = {"schema": "dasctl.credential/1", "speaker": "GOOD", "ok": False, "outcome": "error-audio",
            "created_at": "2026-01-01T00:00:00.000Z"}
    lines = [json.dumps(good)]
    expected = []
    for change, why in HOSTILE:
        lines.append(json.dumps({**good, **change}))
        expected.append(why)
    lines.append('{"schema":"dasctl.credential/1","speaker":"N","ok":false,"authenticity":NaN}')
    expected.append("NaN is not a number JSON allows")
    lines.append('{"schema":"dasctl.credential/1","speaker":"I","ok":false,"voice_seconds":Infinity}')
    expected.append("Infinity is not a number JSON allows")
    lines.append("[" * 100_000 + "]" * 100_000)
    expected.append("nested too deeply")
    (tmp_path / "a-dir.wav").mkdir()
    lines.append(json.dumps({**good, "speaker": "D", "audio_file": str(tmp_path / "a-dir.wav")}))
    expected.append("is not a regular file")
    fifo = tmp_path / "a-fifo.wav"
    os.mkfifo(fifo)
    lines.append(json.dumps({**good, "speaker": "F", "audio_file": str(fifo)}))
    expected.append("is not a regular file")
    path = tmp_path / "hostile.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    return path, expected


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_refuses_each_hostile_line_by_number_and_keeps_the_rest(
    dasctl: Run, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    store = str(tmp_path / "s.db") if backend == "sqlite" else request.getfixturevalue("postgres_store_url")
    listing, expected = _hostile_file(tmp_path)
    done = dasctl("credentials", "import", str(listing), "--json", "--store", store, timeout=120)
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    summary = json.loads(done.stdout)
    assert (summary["new"], summary["refused"]) == (1, len(expected))
    warnings = [line for line in done.stderr.splitlines() if "not imported" in line]
    for number, why in enumerate(expected, 2):
        (line,) = [w for w in warnings if f"hostile.ndjson:{number}: not imported:" in w]
        assert why in line, (number, line)


def test_import_order_never_decides_which_credential_is_current(dasctl: Run, tmp_path: Path) -> None:
    def line(call: str, made: str, current: bool, superseded: str | None) -> str:
        return json.dumps({"schema": "dasctl.credential/1", "speaker": "S", "ok": True, "current": current,
                           "credential": f"cred-{call}", "call_id": call, "created_at": made,
                           "superseded_at": superseded, "origin": "register"})

    old = line("old", "2026-01-01T00:00:00.000Z", False, "2026-02-01T00:00:00.000Z")
    new = line("new", "2026-02-01T00:00:00.000Z", True, None)
    # a host that never saw the newer one: its export says the older one is current
    other_host = line("old", "2026-01-01T00:00:00.000Z", True, None)
    results = []
    for order in ([old, new], [new, old], [new, other_host], [other_host, new]):
        store = str(tmp_path / f"s{len(results)}.db")
        (tmp_path / "in.ndjson").write_text("\n".join(order) + "\n")
        assert dasctl("credentials", "import", str(tmp_path / "in.ndjson"), "--store", store).returncode == 0
        shown = dasctl("credentials", "show", "S", "--show-credential", "--json", "--store", store)
        document = json.loads(shown.stdout)
        results.append((document["credential"], document["created_at"], document["origin"]))
    assert results == [("cred-new", "2026-02-01T00:00:00.000Z", "register")] * 4
