"""SIGTERM, SIGHUP and SIGINT at random moments: exit 130, no traceback, no temporary file left.

Each command runs 50 times; each run gets one signal at a random moment between the moment its handlers
are in place (SigCgt in /proc: before that the interpreter is still starting, as any Python program's is)
and a little past its usual end, so signals land before, during and after the sessions, and while the last
line is flushed. A signal that lands once dasctl has returned (the interpreter exiting, or the process
gone) cannot change what the run did: such a run must then look exactly like an undisturbed one.
Real emulator, real store, real files; --speed 0 and short inputs keep the whole test near two minutes.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dasctl.store import EnrollmentRecord, open_store
from tests.conftest import DATA, Emulator

RUNS = 50
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
SPEECH = DATA / "speech-a-8k-mono.wav"
PARALLEL = 4


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    signalled: bool  # the signal reached the process before it ended


def handlers_in_place(pid: int) -> bool:
    """Whether the process catches SIGTERM (dasctl installs its handlers first thing in main())."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def run_with_signal(args: list[str], env: dict[str, str], delay: float | None, signum: int) -> Outcome:
    proc = subprocess.Popen([sys.executable, "-m", "dasctl", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signalled = False
    if delay is not None:
        deadline = time.monotonic() + 30
        while not handlers_in_place(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            try:
                proc.send_signal(signum)
                signalled = True
            except ProcessLookupError:
                pass
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Outcome(proc.returncode, out, err, signalled)


@dataclass
class Command:
    name: str
    args: list[str]
    fresh: Path | None = None  # a store file copied anew for each run (the command changes it)
    outputs: Path | None = None  # where the command writes files (no temporary file may stay there)


@functools.cache
def _voice() -> bytes:
    from dasctl.audio import open_audio

    with open_audio(SPEECH) as audio:
        return b"".join(audio.chunks())


def _seed_store(path: Path, model: str, calls: str = "call") -> None:
    """Three speakers enrolled with `model`; `calls` names their call ids (each store its own, as two
    stores' enrollments are: reenroll derives its call ids from them, and one emulator serves all runs)."""
    voice = _voice()
    store = open_store(str(path))
    try:
        for index in range(3):
            store.record_enrollment(EnrollmentRecord(
                speaker=f"CUST{index}", ok=True, origin="register", outcome="result-success",
                credential=f"credential-{index}", model_hash=model, call_id=f"{calls}-{index}",
                protocol="twilio", source_path=str(SPEECH), audio=voice,
            ))
    finally:
        store.close()


def command(name: str, base: Path) -> Command:
    """The command, and what it needs in `base`: recordings, a store seeded with three speakers."""
    calls = base / "calls"
    calls.mkdir()
    shutil.copy(SPEECH, calls / "CUST0.wav")
    shutil.copy(SPEECH, calls / "CUST1.wav")
    seeded = base / "seeded.db"
    _seed_store(seeded, "old")
    out = base / "out"
    out.mkdir()
    return {
        "register": Command("register", ["register", str(calls / "CUST0.wav"), "--speed", "0", "--json",
                                         "--model-hash", "old", "--store", "{store}", "--output", str(out),
                                         "--force"],
                            fresh=seeded, outputs=out),
        "verify": Command("verify", ["verify", str(calls / "CUST1.wav"), "--speaker", "CUST1", "--speed", "0",
                                     "--store", "{store}"], fresh=seeded),
        "reenroll": Command("reenroll", ["reenroll", "--model-hash", "new", "--speed", "0", "-j", "2",
                                         "--store", "{store}"], fresh=seeded),
        "watch": Command("watch", ["watch", str(calls), "--once", "--speed", "0", "--settle", "0", "-j", "2",
                                   "--grace", "1", "--store", "{store}"], fresh=seeded),
        "credentials export": Command("credentials export",
                                      ["credentials", "export", "--format", "csv", "--audio-dir", "{audio}",
                                       "--store", str(seeded)], outputs=out),
    }[name]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", ["register", "verify", "reenroll", "watch", "credentials export"])
def test_a_signal_at_any_moment_is_exit_130_without_traceback_or_temporary_file(
    name: str, two_models: Emulator, tmp_path: Path
) -> None:
    env = {**os.environ, **two_models.client_env()}
    rng = random.Random(int(os.environ.get("DASCTL_SIGNAL_SEED", "16")))
    problems: list[str] = []
    chosen = command(name, tmp_path)

    def prepared(run: int) -> list[str]:
        store = tmp_path / f"store-{run}.db"
        if chosen.name == "reenroll":
            # a store of its own, not a copy: copies share their enrollments' call ids, so runs at once
            # (PARALLEL) re-enrolled the same calls and the emulator refused the second as still live
            _seed_store(store, "old", f"run{run}")
        elif chosen.fresh is not None:
            shutil.copy(chosen.fresh, store)
        audio = tmp_path / f"audio-{run}"
        audio.mkdir(exist_ok=True)
        return [arg.replace("{store}", str(store)).replace("{audio}", str(audio)) for arg in chosen.args]

    began = time.monotonic()
    undisturbed = run_with_signal(prepared(-1), env, None, signal.SIGTERM)
    usual = time.monotonic() - began
    assert undisturbed.code in (0, 5, 7), (name, undisturbed.stderr)
    moments = [(run, rng.uniform(0, usual * 1.1), rng.choice(SIGNALS)) for run in range(RUNS)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda m: (m, run_with_signal(prepared(m[0]), env, m[1], m[2])), moments))
    codes: dict[int, int] = {}
    for (run, delay, signum), outcome in outcomes:
        codes[outcome.code] = codes.get(outcome.code, 0) + 1
        where = f"{name} #{run}: {signal.Signals(signum).name} at {delay:.2f} s -> {outcome.code}"
        if "Traceback" in outcome.stderr or "Exception ignored" in outcome.stderr:
            problems.append(f"{where}: a traceback\n{outcome.stderr}")
        if outcome.code == 130:
            continue
        # not 130: only when the signal came too late to matter, and then the run is an undisturbed one
        if outcome.signalled and outcome.code != undisturbed.code:
            problems.append(f"{where}: neither 130 nor the undisturbed {undisturbed.code}\n{outcome.stderr}")
        elif outcome.stdout.count("\n") != undisturbed.stdout.count("\n"):
            problems.append(f"{where}: exit {outcome.code} with output cut short\n{outcome.stderr}")
    print(f"\n{name}: usual run {usual:.2f} s; exit codes of {RUNS} signalled runs: {codes}")
    for place in [tmp_path, *(p for p in tmp_path.iterdir() if p.is_dir())]:
        leftovers = [p.name for p in place.iterdir() if p.name.endswith(".tmp")]
        if leftovers:
            problems.append(f"{name}: temporary files left in {place}: {leftovers}")
    assert not problems, "\n".join(problems[:10])


def test_an_error_python_can_only_print_while_the_options_are_imported_stays_quiet() -> None:
    """A signal in the first tenth of a second (register #32: SIGINT at 0.08 s) raised in a __del__ while
    dasctl.cli.common was half imported: the hook that keeps such errors quiet read its OPTIONS, not there
    yet, and its own AttributeError was printed as a traceback."""
    probe = """
import sys, types
sys.modules["dasctl.cli.common"] = types.ModuleType("dasctl.cli.common")  # as half imported: no OPTIONS
from dasctl.cli import _quiet_unraisable

class Unraisable:
    exc_type, exc_value, exc_traceback = KeyboardInterrupt, KeyboardInterrupt(), None
    err_msg, object = None, None

_quiet_unraisable(Unraisable())
print("quiet")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout, done.stderr) == (0, "quiet\n", "")
