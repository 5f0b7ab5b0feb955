"""Several `dasctl watch` processes on one inbox and one PostgreSQL store share it: each recording enrolled
once, a SIGKILLed watcher's files taken over. (With SQLite the second one is refused and told the
PostgreSQL way: test_watch_e2e.) Real watchers, a real emulator, a real PostgreSQL server."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Emulator

sys.path.insert(0, str(ROOT / "benchmarks"))
import watch_takeover  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

Run = Callable[..., subprocess.CompletedProcess[Any]]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a few minutes on a loaded 2-core machine
def test_three_watchers_one_killed_each_recording_enrolled_once_in_the_store_and_at_the_service(
    emulator: Emulator, postgres_server: str, tmp_path: Path
) -> None:
    # the full size (300 recordings, 20 trials) is benchmarks/watch_takeover.py; this is its small form
    rng = random.Random(20261205)
    for n in range(4):
        trial = watch_takeover.run_trial(
            server=postgres_server, emulator_url=emulator.url, emulator_log=emulator.log,
            work=tmp_path / f"trial-{n}", files=30, rng=rng,
        )
        assert trial.killed_pid, f"trial {n}: the watcher chosen to die ended first ({trial.problems})"
        assert not trial.problems, f"trial {n}, SIGKILL at {trial.kill_at_share:.0%}: {trial.problems}"
        # the work was shared: the two watchers left alive each printed lines
        alive = [count for count in trial.done_by if count]
        assert len(alive) >= 2, trial.done_by


def test_claims_are_exclusive_let_go_with_a_nudge_and_die_with_their_connection(
    postgres_store_url: str,
) -> None:
    from dasctl.store import open_store
    from dasctl.watch.claims import PostgresClaims, claims_for
    from dasctl.watch.inbox import FileIdentity

    store = open_store(postgres_store_url)
    try:
        first, second = claims_for(store, "/data/calls"), claims_for(store, "/data/calls")
        elsewhere = claims_for(store, "/data/other")
        assert isinstance(first, PostgresClaims) and first.shared
        for claims in (first, second, elsewhere):
            claims.open()
        a, b = FileIdentity("a.wav", 10, 1), FileIdentity("b.wav", 10, 1)
        assert first.claim(a) and first.claim(a)  # again: still one claim, held once
        assert not second.claim(a) and second.claim(b)
        assert elsewhere.claim(a)  # another inbox: another space of claims
        assert second.held_elsewhere([a, b]) == {a} and first.held_elsewhere([a, b]) == {b}
        assert (first.count(), second.count()) == (1, 1)
        second.nudged()  # nothing owed yet
        first.release(a)
        deadline = time.monotonic() + 10
        while not second.nudged() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() < deadline, "no NOTIFY reached the other watcher"
        assert second.claim(a)
        # a watcher whose connection ends (kill -9, host lost) holds nothing any more
        second.close()  # the server ends that session a moment later: poll, as a watcher does
        deadline = time.monotonic() + 10
        while first.held_elsewhere([a, b]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.held_elsewhere([a, b]) == set() and first.claim(a) and first.claim(b)
        first.close()
        elsewhere.close()
    finally:
        store.close()
