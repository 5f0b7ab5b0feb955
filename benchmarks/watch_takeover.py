"""Several `dasctl watch` processes on one inbox and one PostgreSQL store, one killed with SIGKILL at a
random moment of each trial: is every recording enrolled exactly once, in the store and at the service?

Usage: python benchmarks/watch_takeover.py --store-server postgresql://USER@HOST:PORT [--files 300]
       [--trials 20] [--watchers 3] [--concurrency 4] [--seed N]

Each trial: a fresh database on the server, an inbox of FILES recordings (speaker id = file stem), WATCHERS
`dasctl watch DIR --once --speed 0 --store URL` started together against one emulator, one of them
killed with SIGKILL at a random point of the work (when a random share, 2-90%, of the recordings is
finished); the others must finish the inbox. Checked:
- the store: one final watch state per recording, its line marked printed, and for every `done` one
  exactly one successful enrollment (never two); a recording the service refused (on a starved machine
  a session can run out of audio) is a `failed` outcome, counted and shown, not a broken rule;
- the service (the emulator's log): no call id with two sessions; every call id the store kept had its
  one session there; the only other successful sessions are the killed watcher's last ones (at most
  --concurrency), whose answer the service sent as the kill landed, before its store had it: das-Peak
  keeps no credential, so such a session leaves nothing behind, and the file is run again, once;
- every recording has its line on some watcher's stdout, and all its lines (a reprint after a kill is
  allowed) carry the same call id: no two watchers ran it; the watchers left alive exit 0.
Prints one line per trial and a summary; exits 1 when a trial breaks a rule. The test suite runs a smaller
version of the same trials (tests/test_watch_shared.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech-a-8k-mono.wav"
#: the emulator's line for a session's terminal event: "session register twilio CALL: result-success, ..."
RESULT_LINE = re.compile(r"session register \S+ (\S+): (result-[a-z-]+)")


@dataclass
class Trial:
    files: int
    kill_at_share: float  # the share of recordings finished when the kill lands
    killed_after: float = 0.0  # seconds into the trial
    killed_pid: int = 0
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0
    done_by: list[int] = field(default_factory=list)  # lines on each watcher's stdout
    cut_by_kill: int = 0  # sessions the service answered as the kill landed (see the module's text)
    refused: list[str] = field(default_factory=list)  # recordings whose outcome is the service's "no"


def make_inbox(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"{i:04d}-CUST{i:06d}.wav" for i in range(count)]
    for name in names:
        shutil.copyfile(SPEECH, folder / name)
    return names


def fresh_database(server: str) -> str:
    import psycopg

    name = "takeover_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def run_trial(
    *,
    server: str,
    emulator_url: str,
    emulator_log: Path,
    work: Path,
    files: int,
    watchers: int = 3,
    concurrency: int = 4,
    rng: random.Random,
    env: dict[str, str] | None = None,
) -> Trial:
    """One trial (see the module's text); the problems found, if any, are in Trial.problems."""
    import psycopg

    work.mkdir(parents=True, exist_ok=True)
    inbox = work / "inbox"
    names = make_inbox(inbox, files)
    store = fresh_database(server)
    base_env = {**(env or os.environ), "DASCTL_PROFILE": "local", "DASCTL_URL": emulator_url,
                "NO_COLOR": "1"}
    base_env.setdefault("DASCTL_CONFIG_DIR", str(work / "config"))
    log_from = emulator_log.stat().st_size if emulator_log.exists() else 0
    command = [sys.executable, "-m", "dasctl", "watch", str(inbox), "--once", "--speed", "0", "--settle", "0",
               "--concurrency", str(concurrency), "--store", store, "--backoff", "0.1"]
    procs: list[subprocess.Popen[bytes]] = []
    outs = [work / f"watcher-{n}.out" for n in range(watchers)]
    errs = [work / f"watcher-{n}.err" for n in range(watchers)]
    # the kill lands at a random point of the work (not of the clock: a loaded machine is slower)
    trial = Trial(files, rng.uniform(0.02, 0.9))
    started = time.monotonic()
    try:
        for n in range(watchers):
            with outs[n].open("wb") as out, errs[n].open("wb") as err:
                procs.append(subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                              env=base_env))
        victim = rng.randrange(watchers)
        finished = 0
        while finished < trial.kill_at_share * files and procs[victim].poll() is None:
            time.sleep(0.05 + rng.random() * 0.1)
            finished = _finished(store)
        trial.killed_after = time.monotonic() - started
        if procs[victim].poll() is None:
            procs[victim].send_signal(signal.SIGKILL)
            trial.killed_pid = procs[victim].pid
        else:
            trial.problems.append(f"watcher {victim} ended before its kill ({finished} finished)")
        for n, proc in enumerate(procs):
            try:
                code = proc.wait(timeout=120 + files)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                trial.problems.append(f"watcher {n} did not finish within {120 + files} s")
                continue
            if n != victim and code not in (0, 7):  # 7: some recording failed (counted below)
                trial.problems.append(f"watcher {n} exited {code}: {errs[n].read_text()[-400:]!r}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    trial.wall = time.monotonic() - started

    # the stdout lines: every recording on some watcher's stdout
    printed: dict[str, set[str]] = {}
    for out in outs:
        lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip().startswith("{")]
        trial.done_by.append(len(lines))
        for line in lines:
            printed.setdefault(line["file"], set()).add(line["call_id"])
    missing_lines = [name for name in names if name not in printed]
    if missing_lines:
        trial.problems.append(f"{len(missing_lines)} recording(s) with no line, e.g. {missing_lines[:3]}")
    run_twice = [name for name, calls in printed.items() if len(calls) > 1]
    if run_twice:
        trial.problems.append(f"{len(run_twice)} recording(s) printed with two call ids, "
                              f"e.g. {run_twice[:3]}")

    # the store: one done state and one successful enrollment per recording
    with psycopg.connect(store) as connection:
        states = dict(connection.execute(
            "SELECT relpath, state || '/' || reported FROM watch_files").fetchall())
        kept = connection.execute("SELECT speaker, call_id FROM enrollments WHERE ok = 1").fetchall()
    successes = Counter(speaker for speaker, _ in kept)
    kept_calls = {call for _, call in kept}
    speakers = {name: name.removesuffix(".wav") for name in names}
    not_final = [name for name in names if states.get(name) not in ("done/1", "failed/1")]
    if not_final:
        trial.problems.append(f"{len(not_final)} recording(s) without a printed outcome in the store, e.g. "
                              f"{[(n, states.get(n)) for n in not_final[:3]]}")
    # a "no" from the service is an outcome too (on an overloaded machine a starved session can run out
    # of audio): counted and shown, not a broken rule
    trial.refused = [name for name in names if states.get(name) == "failed/1"]
    twice = [s for s, count in successes.items() if count > 1]
    lost = [speakers[n] for n in names if states.get(n) == "done/1" and successes[speakers[n]] == 0]
    if twice:
        trial.problems.append(f"{len(twice)} speaker(s) enrolled twice in the store, e.g. {twice[:3]}")
    if lost:
        trial.problems.append(f"{len(lost)} speaker(s) with no enrollment in the store, e.g. {lost[:3]}")

    # the service: one session per call id, and as many successful enrollments as recordings
    with emulator_log.open("rb") as handle:
        handle.seek(log_from)
        log = handle.read().decode(errors="replace")
    results = RESULT_LINE.findall(log)
    per_call = Counter(call for call, _ in results)
    doubled = [call for call, count in per_call.items() if count > 1]
    if doubled:
        trial.problems.append(f"{len(doubled)} call id(s) with two sessions at the service")
    answered = {call for call, outcome in results if outcome == "result-success"}
    unseen = kept_calls - answered
    if unseen:
        trial.problems.append(f"{len(unseen)} stored call id(s) the service never enrolled")
    trial.cut_by_kill = len(answered - kept_calls)
    if trial.cut_by_kill > concurrency:
        trial.problems.append(f"{trial.cut_by_kill} successful sessions at the service that no store has "
                              f"(more than the killed watcher's {concurrency} sessions in flight)")
    return trial


def _finished(store: str) -> int:
    """Recordings with a final state in the store now (0 until watch has made its tables)."""
    import psycopg

    try:
        with psycopg.connect(store, connect_timeout=5) as connection:
            row = connection.execute("SELECT count(*) FROM watch_files WHERE state IN ('done', 'failed')"
                                     ).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-server", required=True,
                        help="postgresql://USER@HOST:PORT (a database is created per trial)")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--watchers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    # SIGTERM (timeout, a supervisor) ends the trials through the finally blocks: no watcher left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from local_emulator import running_emulator

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="dasctl-takeover-"))
    failures = 0
    print(f"{args.trials} trials, {args.watchers} watchers x -j {args.concurrency}, {args.files} recordings "
          f"each, seed {seed}")
    try:
        with running_emulator(log=work / "emulator.log", quiet=False) as emulator:
            # the first trial's wall time without a kill bounds when later kills land (while work is left)
            for n in range(args.trials):
                trial = run_trial(server=args.store_server, emulator_url=emulator.url,
                                  emulator_log=work / "emulator.log", work=work / f"trial-{n}",
                                  files=args.files, watchers=args.watchers, concurrency=args.concurrency,
                                  rng=rng)
                verdict = "ok" if not trial.problems else "FAILED: " + "; ".join(trial.problems)
                failures += bool(trial.problems)
                print(f"trial {n + 1:2d}: SIGKILL at {trial.killed_after:5.1f} s ({trial.kill_at_share:4.0%} "
                      f"done), {trial.wall:5.1f} s, "
                      f"lines per watcher {trial.done_by}, answered as the kill landed "
                      f"{trial.cut_by_kill}, refused by the service {len(trial.refused)}: {verdict}",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.trials - failures}/{args.trials} trials: every recording exactly once in the store and at "
          "the service" if not failures else f"{failures}/{args.trials} trials broke a rule")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
