"""Several `dasctl watch` processes on one inbox: with a PostgreSQL store they share it (each recording
enrolled once, a SIGKILLed watcher's files taken over); with SQLite the second one is refused and told
the PostgreSQL way. Real watchers, a real emulator, a real PostgreSQL server."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import DATA, ROOT, Emulator

sys.path.insert(0, str(ROOT / "benchmarks"))
import watch_takeover  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

Run = Callable[..., subprocess.CompletedProcess[Any]]


def test_three_watchers_one_killed_each_recording_enrolled_once_in_the_store_and_at_the_service(
    emulator: Emulator, postgres_server: str, tmp_path: Path
) -> None:
    # the full size (300 recordings, 20 trials) is benchmarks/watch_takeover.py; this is its small form
    rng = random.Random(20261205)
    for n in range(5):
        trial = watch_takeover.run_trial(
            server=postgres_server, emulator_url=emulator.url, emulator_log=emulator.log,
            work=tmp_path / f"trial-{n}", files=40, rng=rng, kill_within=6.0,
        )
        assert trial.killed_pid, f"trial {n}: the watcher chosen to die ended first ({trial.problems})"
        assert not trial.problems, f"trial {n}, SIGKILL at {trial.killed_after:.2f} s: {trial.problems}"
        # the work was shared: the two watchers left alive each printed lines
        alive = [count for count in trial.done_by if count]
        assert len(alive) >= 2, trial.done_by


def test_a_second_watch_on_a_sqlite_store_is_refused_and_told_the_postgresql_way(
    dasctl: Run, emulator: Emulator, tmp_path: Path
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(DATA / "speech-a-8k-mono.wav", inbox / "a.wav")
    store = tmp_path / "store.db"
    first = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "watch", str(inbox), "--store", str(store), "--settle", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, **emulator.client_env()},
    )
    try:
        assert first.stderr is not None
        deadline = time.monotonic() + 30
        seen = b""
        while b"watching" not in seen and time.monotonic() < deadline:
            seen += first.stderr.readline()
        assert b"watching" in seen, seen
        second = dasctl("watch", str(inbox), "--once", "--store", str(store), env=emulator.client_env())
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert second.returncode == 2, second.stderr
    assert "another dasctl watch" in second.stderr
    assert "PostgreSQL store" in second.stderr and "--store postgresql://" in second.stderr
    assert "Traceback" not in second.stderr and second.stdout == ""
