"""A PostgreSQL store that stops answering: every store call ends, with exit 6 and the store named.

The backend of dasctl's connection is stopped with SIGSTOP (as a hung server or a frozen VM would be): it
cannot run its own statement_timeout, so the bound is the client's (store/postgres.py). The figures are
printed (pytest -s shows them), never asserted: the only time limit is a generous one for the test to end.
Real PostgreSQL, real emulator, real files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from dasctl.store import StoreError, open_store
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
#: the test's own limit for a command to end (generous: the documented bound is 15 s)
ENOUGH = 90


def dasctl_backends(url: str) -> list[int]:
    """The server processes of dasctl's connections to this test's database."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity "
                             "WHERE datname = %s AND application_name = 'dasctl'", (database,)).fetchall()
    return [int(row[0]) for row in rows]


@contextmanager
def stopped(pids: list[int]) -> Iterator[list[int]]:
    """SIGSTOP these backends; SIGCONT them on the way out, whatever happened."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


class Lines:
    """A child's stream read line by line in a thread, so the test can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60, count: int = 1) -> None:
        """Until `count` lines hold `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line for line in self.lines) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {count} line(s) with {text!r} within {timeout} s: {''.join(self.lines)}")

    @property
    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], Lines, Lines]:
    proc = subprocess.Popen([sys.executable, "-m", "dasctl", *args], env={**os.environ, **env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    return proc, Lines(proc.stdout), Lines(proc.stderr)


@pytest.mark.slow
def test_a_stopped_backend_ends_a_store_call_with_a_store_error(postgres_store_url: str) -> None:
    store = open_store(postgres_store_url)
    try:
        backend = store._connection.info.backend_pid  # type: ignore[attr-defined]
        with stopped([backend]):
            began = time.monotonic()
            with pytest.raises(StoreError) as stalled:
                store.history("CUST1")
            took = time.monotonic() - began
        print(f"\nstopped backend -> StoreError after {took:.1f} s: {stalled.value.message}")
        assert store.location in stalled.value.message and "did not answer" in stalled.value.message
        assert "pg-test-password" not in stalled.value.message
        assert store.history("CUST1") == []  # a new connection, once the server answers again
    finally:
        store.close()


@pytest.mark.slow
def test_a_store_that_stops_answering_during_register_is_exit_6_and_nothing_is_doubled(
    emulator: Emulator, postgres_store_url: str, tmp_path: Path
) -> None:
    call = tmp_path / "CUST1.wav"
    shutil.copy(SPEECH, call)
    args = ["register", str(call), "--json", "--speed", "1", "--store", postgres_store_url]
    proc, out, err = start(args, emulator.client_env())
    try:
        err.wait_for("streaming")  # the store is open (migrated); its next call is the record
        with stopped(dasctl_backends(postgres_store_url)):
            began = time.monotonic()
            code = proc.wait(timeout=ENOUGH)
            took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nregister with a stopped store backend: exit {code} {took:.1f} s after the stop (the rest of "
          "the session, then the store's bound on its write)")
    stderr = err.text
    assert code == 6, stderr
    assert "Traceback" not in stderr and "127.0.0.1" in stderr and "pg-test-password" not in stderr
    [document] = [json.loads(line) for line in out.text.splitlines()]
    assert document["ok"] and document["credential"]  # the result still reaches the user
    assert document["stored"]["id"] is None and "did not answer" in document["stored"]["error"]
    # once the server answers again: the failed record was never committed, and a rerun keeps one
    again = subprocess.run([sys.executable, "-m", "dasctl", *args[:-4], "--speed", "0", "--store",
                            postgres_store_url], env={**os.environ, **emulator.client_env()},
                           capture_output=True, text=True, timeout=ENOUGH)
    assert again.returncode == 0, again.stderr
    with closing(open_store(postgres_store_url)) as store:
        history = store.history("CUST1")
    call_ids = [entry.call_id for entry in history]
    assert document["call_id"] not in call_ids or call_ids.count(document["call_id"]) == 1
    assert len([entry for entry in history if getattr(entry, "superseded_at", "x") is None]) == 1


@pytest.mark.slow
def test_a_running_watch_rides_out_a_stopped_store_backend_and_reports_each_file_once(
    emulator: Emulator, postgres_store_url: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    names = [f"CUST{n}.wav" for n in range(1, 5)]
    for name in names:
        shutil.copy(SPEECH, inbox / name)
    args = ["watch", str(inbox), "--once", "-j", "2", "--settle", "0", "--speed", "1", "--backoff", "0.2",
            "--store", postgres_store_url]
    proc, out, err = start([*args, "-v"], emulator.client_env())
    try:
        # two sessions in flight (11.7 s of audio each), their `started` kept; the stop meets whichever
        # store call comes next, a read (the opt-out check, the next file's state) or a write (an outcome)
        err.wait_for(": started", count=2)
        backends = dasctl_backends(postgres_store_url)
        with stopped(backends):
            began = time.monotonic()
            err.wait_for("trying again in", timeout=ENOUGH)  # the call was bounded, and is tried again
            noticed = time.monotonic() - began
            code = proc.wait(timeout=ENOUGH * 2)  # the retries' new connections get new backends
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nwatch with stopped store backends {backends}: the first store call after the stop given up "
          f"{noticed:.1f} s after the stop, then retried; exit {code}")
    stderr = err.text
    assert code == 0, stderr
    assert "Traceback" not in stderr
    reports: list[dict[str, Any]] = [json.loads(line) for line in out.text.splitlines()]
    assert sorted(report["file"] for report in reports) == names  # each once, none lost
    assert all(report["ok"] for report in reports)
    # once the old backends run again: every file kept once, and a rerun has nothing left to do
    rerun = subprocess.run([sys.executable, "-m", "dasctl", *args],
                           env={**os.environ, **emulator.client_env()}, capture_output=True, text=True,
                           timeout=ENOUGH)
    assert rerun.returncode == 0 and rerun.stdout == "", rerun.stderr
    with closing(open_store(postgres_store_url)) as store:
        for report in reports:
            speaker = report["file"].removesuffix(".wav")
            kept = [entry for entry in store.history(speaker) if getattr(entry, "ok", False)]
            assert [entry.call_id for entry in kept] == [report["call_id"]], speaker


@pytest.mark.slow
def test_a_running_watch_rides_out_a_store_that_stops_answering_a_read(
    emulator: Emulator, postgres_store_url: str, tmp_path: Path
) -> None:
    """The stop lands while watch waits for files, so its next store call is a read (the new file's
    state, as other watchers may have moved it on): tried again within --unreachable-budget as a write
    is, never the end of a long-running watch (nor a freeze of its event loop)."""
    inbox = tmp_path / "calls"
    inbox.mkdir()
    proc, out, err = start(["watch", str(inbox), "--settle", "0", "--speed", "0", "--backoff", "0.2",
                            "--store", postgres_store_url], emulator.client_env())
    try:
        err.wait_for("watching")  # the store is open, its connection idle: nothing is under way
        backends = dasctl_backends(postgres_store_url)
        with stopped(backends):
            shutil.copy(SPEECH, inbox / "CUST1.wav")
            err.wait_for("CUST1.wav: not read yet", timeout=ENOUGH)  # bounded, and tried again
            out.wait_for("CUST1.wav", timeout=ENOUGH)  # on a new connection: the file is done
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=ENOUGH)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.text
    assert code == 130, stderr
    assert "Traceback" not in stderr and "pg-test-password" not in stderr
    assert "the server did not answer" in stderr and postgres_store_url.split("@")[1] in stderr
    [report] = [json.loads(line) for line in out.text.splitlines()]
    assert report["file"] == "CUST1.wav" and report["ok"], stderr
    with closing(open_store(postgres_store_url)) as store:
        [kept] = [entry for entry in store.history("CUST1") if getattr(entry, "ok", False)]
    assert kept.call_id == report["call_id"]
