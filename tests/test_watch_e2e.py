"""`dasctl watch` end to end: the real CLI in a subprocess against the real emulator, real WAV files."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, Emulator, free_port, wait_for_port

from dasctl.store import Store, WatchFile, open_store
from tests.tmux_server import TmuxServer, dasctl_command, wait_for_file

SPEECH = [
    "speech-a-8k-mono.wav", "speech-b-16k-mono.wav", "speech-c-22k-mono.wav", "speech-ab-44k-stereo.wav",
]

# ------------------------------------------------------------------------------------------- helpers


def fill(inbox: Path, good: int = 0, tone: int = 0, corrupt: int = 0, short: int = 0) -> dict[str, int]:
    """Put recordings in the inbox; returns file name -> the exit code its line must carry."""
    inbox.mkdir(parents=True, exist_ok=True)
    expected: dict[str, int] = {}
    for i in range(good):
        name = f"good-{i:02}.wav"
        shutil.copy(DATA / SPEECH[i % len(SPEECH)], inbox / name)
        expected[name] = 0
    for i in range(tone):
        name = f"tone-{i:02}.wav"
        shutil.copy(DATA / "tone-440-8k-mono.wav", inbox / name)
        expected[name] = 5  # the service says no: a tone is not a live voice
    header = (DATA / "speech-a-8k-mono.wav").read_bytes()[:44]
    broken = [b"", b"this is not audio\n" * 20, os.urandom(4096), header]  # empty, text, noise, no frames
    for i in range(corrupt):
        name = f"corrupt-{i:02}.wav"
        (inbox / name).write_bytes(broken[i % len(broken)])
        expected[name] = 3
    for i in range(short):
        name = f"short-{i:02}.wav"
        shutil.copy(DATA / "speech-short-16k-mono.wav", inbox / name)
        expected[name] = 5  # error-audio: not enough voice
    return expected


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


_STORES: dict[str, Store] = {}


def the_store() -> Store:
    """The store the watch processes of this test use (DASCTL_CONFIG_DIR's), opened once per test."""
    key = os.environ["DASCTL_CONFIG_DIR"]
    if key not in _STORES:
        _STORES[key] = open_store()
    return _STORES[key]


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _STORES:
        _STORES.popitem()[1].close()


def watch_state(inbox: Path) -> dict[str, WatchFile]:
    """What the store says about each recording of a watched folder."""
    return {known.key.relpath: known for known in the_store().watch_files(str(inbox))}


def in_state(inbox: Path, state: str) -> int:
    return sum(known.state == state for known in watch_state(inbox).values())


def client_env(emulator: Emulator) -> dict[str, str]:
    env = dict(os.environ)
    env.update(emulator.client_env())
    return env


class WatchProcess:
    """A `dasctl watch` running in the background, stdout and stderr going to files."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, name: str = "watch") -> None:
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dasctl", "watch", *args],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
            )

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"watch exited with {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.01)
        raise AssertionError(f"timed out; stderr so far: {self.stderr()}")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def watch_processes() -> Iterator[list[WatchProcess]]:
    started: list[WatchProcess] = []
    yield started
    for process in started:
        process.stop()


def serve_on(port: int, log: Path, *flags: str) -> Emulator:
    """`dasctl serve` on a chosen port, so a test can replace a faulty emulator by a healthy one."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dasctl", "serve", "--host", "127.0.0.1", "--port", str(port), *flags],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    emulator = Emulator(port, proc, log, list(flags))
    wait_for_port(port, proc)
    return emulator


FAST = ["--speed", "0", "--settle", "0", "--backoff", "0.05"]

# ------------------------------------------------------------------------------------------- tests


def test_fifty_mixed_files_each_get_the_right_outcome_once(dasctl, emulator, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    expected = fill(inbox, good=20, tone=10, corrupt=10, short=10)
    assert len(expected) == 50
    result = dasctl("watch", str(inbox), "--once", "--concurrency", "8", *FAST,
                    env=emulator.client_env(), timeout=120)
    assert result.returncode == 7, result.stderr
    lines = lines_of(result.stdout)
    assert len(lines) == 50
    assert Counter(line["file"] for line in lines) == Counter(expected.keys())
    for line in lines:
        assert line["schema"] == "dasctl.watch/1"
        assert line["exit_code"] == expected[line["file"]], line
        if line["exit_code"] == 0:
            assert line["outcome"]["event"] == "result-success" and line["credential"]
            assert line["error"] is None
            assert line["model_hash"] and line["voice_seconds"] >= 5.0
        else:
            assert line["credential"] is None and line["error"]["message"]
    kinds = {line["file"].split("-")[0]: (line["outcome"] or {}).get("event") for line in lines}
    assert kinds["tone"] in ("result-fail-spoof", "error-audio")
    assert kinds["short"] == "error-audio"
    assert {line["error"]["kind"] for line in lines if line["file"].startswith("corrupt")} == {"audio"}
    # stderr is for people: status lines, never a redraw, never a traceback
    assert "\r" not in result.stderr and "Traceback" not in result.stderr
    assert "processing" in result.stderr and "finished: 20 done, 30 failed" in result.stderr
    # a second run finds everything in the store, and says that 30 of them failed
    again = dasctl("watch", str(inbox), "--once", *FAST, env=emulator.client_env())
    assert again.returncode == 7 and again.stdout == ""
    assert "finished: 0 done, 0 failed, 50 already reported" in again.stderr
    assert "30 failed earlier" in again.stderr
    assert sorted(p.name for p in inbox.iterdir()) == sorted(expected)  # nothing of dasctl's in the inbox


def test_kill_9_at_several_moments_then_restart_reports_each_file_exactly_once(
    emulator, tmp_path: Path, watch_processes: list[WatchProcess]
) -> None:
    inbox = tmp_path / "calls"
    expected = fill(inbox, good=14, corrupt=2)
    args = [str(inbox), "--concurrency", "4", *FAST, "--once"]
    env = client_env(emulator)

    def count(state: str) -> Callable[[int], Callable[[], bool]]:
        return lambda n: lambda: in_state(inbox, state) >= n

    def reported(n: int) -> Callable[[], bool]:
        return lambda: sum(known.reported for known in watch_state(inbox).values()) >= n

    # kill as the first session starts, between outcomes, and right after an outcome is durable
    moments = [count("started")(1), count("done")(3), count("done")(6), reported(9)]
    runs: list[list[dict[str, Any]]] = []
    for i, moment in enumerate(moments):
        process = WatchProcess(args, env, tmp_path, name=f"killed-{i}")
        watch_processes.append(process)
        process.wait_until(moment)
        process.proc.send_signal(signal.SIGKILL)
        process.proc.wait()
        runs.append(lines_of(process.stdout()))
    final = WatchProcess(args, env, tmp_path, name="final")
    watch_processes.append(final)
    code = final.wait(timeout=90)
    runs.append(lines_of(final.stdout()))
    # --once answers whether every recording there is enrolled: two corrupt files are not
    assert code == 7, final.stderr()
    lines = [line for run in runs for line in run]

    # Exactly once, with docs/watch.md's one exception: a kill between a line and its "reported" mark
    # repeats that line, identical, among the lines the next run replays. Nothing else may repeat.
    for before, after in zip(runs, runs[1:], strict=False):
        if before and before[-1] in after:
            after.remove(before[-1])
    lines = [line for run in runs for line in run]
    per_file = Counter(line["file"] for line in lines)
    assert per_file == Counter(expected.keys()), "each file reported exactly once"
    for line in lines:
        assert line["exit_code"] == expected[line["file"]]
    # no credential the service returned is lost: every one the store holds was printed, and each is
    # its speaker's current enrollment
    state = watch_state(inbox)
    kept = {name: (w.report or {})["credential"] for name, w in state.items() if w.state == "done"}
    printed = {line["file"]: line["credential"] for line in lines if line["credential"]}
    assert kept == printed and len(printed) == 14
    for name, credential in printed.items():
        current = the_store().current(Path(name).stem)
        assert current is not None and current.credential == credential and current.origin == "watch"
    assert all(known.reported for known in state.values())
    assert sorted(p.name for p in inbox.iterdir()) == sorted(expected)


def test_files_that_grow_while_watched_are_taken_once_complete(
    emulator, tmp_path: Path, watch_processes: list[WatchProcess]
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    process = WatchProcess([str(inbox), "--speed", "0", "--settle", "0.6"], client_env(emulator), tmp_path)
    watch_processes.append(process)
    process.wait_until(lambda: "watching" in process.stderr())
    data = (DATA / "speech-b-16k-mono.wav").read_bytes()
    target = inbox / "growing.wav"
    step = len(data) // 5 + 1
    with target.open("wb") as handle:  # a recorder writing the call as it happens
        for start in range(0, len(data), step):
            handle.write(data[start:start + step])
            handle.flush()
            time.sleep(0.3)
    shutil.copy(DATA / "speech-a-8k-mono.wav", inbox / "whole.wav")
    process.wait_until(lambda: len(lines_of(process.stdout())) >= 2, timeout=30)
    process.proc.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 130
    lines = lines_of(process.stdout())
    assert sorted(line["file"] for line in lines) == ["growing.wav", "whole.wav"]
    assert all(line["ok"] for line in lines), lines
    assert lines[[line["file"] for line in lines].index("growing.wav")]["exit_code"] == 0
    assert "\r" not in process.stderr()


def test_injected_faults_are_retried_and_recovered(tmp_path: Path, watch_processes) -> None:
    port = free_port()
    faulty = serve_on(port, tmp_path / "faulty.log", "--fault-error-event", "error-das-Peak")
    try:
        inbox = tmp_path / "calls"
        fill(inbox, good=2)
        env = dict(os.environ, DASCTL_PROFILE="local", DASCTL_URL=faulty.url)
        process = WatchProcess(
            [str(inbox), "--once", "--speed", "0", "--settle", "0", "--backoff", "0.2",
             "--max-retries", "30"],
            env, tmp_path,
        )
        watch_processes.append(process)
        process.wait_until(lambda: process.stderr().count("retrying") >= 2)
    finally:
        faulty.stop()  # the service goes away for a moment (connection refused), then comes back healthy
    time.sleep(0.5)
    healthy = serve_on(port, tmp_path / "healthy.log")
    try:
        assert process.wait(timeout=60) == 0, process.stderr()
    finally:
        healthy.stop()
    lines = lines_of(process.stdout())
    assert [line["outcome"]["event"] for line in lines] == ["result-success", "result-success"]
    assert max(line["attempts"] for line in lines) >= 2
    assert "error-das-Peak" in process.stderr() or "das-Peak" in process.stderr()


def test_concurrency_really_overlaps_sessions(emulator, tmp_path: Path, dasctl) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=4)
    # real-time x4: each session lasts over a second, long enough to see whether they overlap
    result = dasctl("-v", "watch", str(inbox), "--once", "--concurrency", "4", "--speed", "4",
                    "--settle", "0", env=emulator.client_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    events = [line.split("watch: ", 1)[1] for line in result.stderr.splitlines() if "watch: " in line]
    first_done = next(i for i, event in enumerate(events) if event.startswith("done: "))
    started = [event for event in events[:first_done] if event.endswith(": started")]
    assert len(started) == 4, "all four sessions ran before any finished"


def test_sigterm_lets_the_session_in_flight_finish_and_takes_no_new_file(
    emulator, tmp_path: Path, watch_processes: list[WatchProcess]
) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=3)
    args = [str(inbox), "--concurrency", "1", "--speed", "4", "--settle", "0", "--grace", "30"]
    process = WatchProcess(args, client_env(emulator), tmp_path)
    watch_processes.append(process)
    process.wait_until(lambda: in_state(inbox, "started") >= 1)
    process.proc.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 130
    lines = lines_of(process.stdout())
    assert len(lines) == 1 and lines[0]["ok"]
    assert "SIGTERM" in process.stderr()
    assert len(watch_state(inbox)) == 1  # one file was ever started


def test_a_second_sigint_aborts_and_the_next_run_finishes_the_file(
    emulator, tmp_path: Path, watch_processes: list[WatchProcess], dasctl
) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=1)
    process = WatchProcess([str(inbox), "--speed", "1", "--settle", "0"], client_env(emulator), tmp_path)
    watch_processes.append(process)
    process.wait_until(lambda: in_state(inbox, "started") >= 1)
    process.proc.send_signal(signal.SIGINT)
    process.wait_until(lambda: "SIGINT" in process.stderr())
    process.proc.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 130
    assert process.stdout() == ""
    assert [known.state for known in watch_state(inbox).values()] == ["aborted"]
    again = dasctl("watch", str(inbox), "--once", *FAST, env=emulator.client_env())
    assert again.returncode == 0
    assert [line["ok"] for line in lines_of(again.stdout)] == [True]


def test_a_service_unreachable_past_the_budget_exits_6(dasctl, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=1)
    env = {"DASCTL_PROFILE": "local", "DASCTL_URL": f"http://127.0.0.1:{free_port()}"}  # nobody listens
    result = dasctl("watch", str(inbox), *FAST, "--unreachable-budget", "1", env=env, timeout=30)
    assert result.returncode == 6, result.stderr
    assert result.stdout == ""
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr
    assert not any(known.state in ("done", "failed") for known in watch_state(inbox).values())


def test_refused_tokens_exit_4(start_emulator, dasctl, tmp_path: Path) -> None:
    refusing = start_emulator("--fault-refuse-tokens")
    inbox = tmp_path / "calls"
    fill(inbox, good=1)
    result = dasctl("watch", str(inbox), "--once", *FAST, env=refusing.client_env(), timeout=30)
    assert result.returncode == 4, result.stderr
    assert result.stdout == "" and "refused" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing-folder"], "is not a directory"),
        (["{inbox}", "--done-dir", "{inbox}"], "cannot be the watched folder"),
        (["{inbox}", "--channel", "middle"], "--channel"),
        (["{inbox}", "--protocol", "sip"], "--protocol"),
        (["{inbox}", "--concurrency", "0"], "--concurrency"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(dasctl, tmp_path: Path, args: list[str], message: str):
    inbox = tmp_path / "calls"
    inbox.mkdir()
    result = dasctl("watch", *[a.format(inbox=inbox) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_two_watches_cannot_share_a_folder(emulator, tmp_path: Path, watch_processes, dasctl) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    first = WatchProcess([str(inbox), "--speed", "0"], client_env(emulator), tmp_path)
    watch_processes.append(first)
    first.wait_until(lambda: "watching" in first.stderr())
    second = dasctl("watch", str(inbox), "--once", env=emulator.client_env())
    assert second.returncode == 2 and "another dasctl watch" in second.stderr
    # with SQLite: one watch per folder, and the error names the way to run several
    assert "PostgreSQL store" in second.stderr and "--store postgresql://" in second.stderr


def test_a_failing_token_endpoint_counts_as_unreachable(start_emulator, dasctl, tmp_path: Path) -> None:
    failing = start_emulator("--fault-token-5xx")
    inbox = tmp_path / "calls"
    fill(inbox, good=1)
    result = dasctl("watch", str(inbox), *FAST, "--unreachable-budget", "1", env=failing.client_env())
    assert result.returncode == 6, result.stderr
    assert result.stdout == "" and "unreachable" in result.stderr


def test_a_re_recorded_file_with_the_same_name_is_enrolled_again(emulator, dasctl, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(DATA / "speech-a-8k-mono.wav", inbox / "agent.wav")
    first = dasctl("watch", str(inbox), "--once", *FAST, env=emulator.client_env())
    shutil.copy(DATA / "speech-b-16k-mono.wav", inbox / "agent.wav")  # same name, new recording
    os.utime(inbox / "agent.wav", (time.time() - 60, time.time() - 60))
    second = dasctl("watch", str(inbox), "--once", *FAST, env=emulator.client_env())
    [one], [two] = lines_of(first.stdout), lines_of(second.stdout)
    assert one["file"] == two["file"] == "agent.wav" and one["id"] != two["id"]
    assert one["credential"] != two["credential"]


def test_closing_stdout_stops_watch_quietly_and_the_next_run_prints_what_was_not(
    emulator, tmp_path: Path
) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=6)
    command = [sys.executable, "-m", "dasctl", "watch", str(inbox), "--once", "-j", "3", *FAST]
    env = client_env(emulator)
    # `dasctl watch DIR --once | head -n1`, through a real pipe and a real head
    head = subprocess.run(f"{shlex.join(command)} 2> {tmp_path / 'err'} | head -n1; "
                          f"echo \"${{PIPESTATUS[0]}}\" > {tmp_path / 'status'}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, env=env,
                          timeout=60)
    [first] = lines_of(head.stdout)
    stderr = (tmp_path / "err").read_text()
    assert (tmp_path / "status").read_text().strip() == "0", stderr  # every file it finished succeeded
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "error" not in stderr
    assert stderr.count("stdout was closed") == 1 and "the next run prints them" in stderr
    rest = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert rest.returncode == 0, rest.stderr
    printed = [line["file"] for line in lines_of(rest.stdout)]
    # none lost, none twice
    assert sorted([first["file"], *printed]) == [f"good-{i:02}.wav" for i in range(6)]
    # the summary counts each file once: what this run printed, and the one line the first run printed
    assert f"finished: {len(printed)} done, 0 failed, 1 already reported" in rest.stderr, rest.stderr


def test_once_over_files_that_failed_earlier_exits_7_and_says_so(emulator, dasctl, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=1, corrupt=2)
    first = dasctl("watch", str(inbox), "--once", *FAST, env=emulator.client_env())
    assert first.returncode == 7
    again = dasctl("watch", str(inbox), "--once", *FAST, env=emulator.client_env())
    assert again.stdout == ""
    assert again.returncode == 7, again.stderr  # a cron job must not read "nothing new" as "all enrolled"
    assert "0 done, 0 failed, 3 already reported" in again.stderr
    assert "2 failed earlier" in again.stderr and "--retry-failed" in again.stderr


@pytest.mark.terminal
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_results_on_a_terminal_are_clean_human_lines_above_the_bars(
    emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=3, tone=1)
    status = tmp_path / "status"
    variables = {**emulator.client_env(), "DASCTL_CONFIG_DIR": str(tmp_path), "TERM": "xterm-256color"}
    command = dasctl_command(f"watch {shlex.quote(str(inbox))} --once -j 2 --speed 3 --settle 0", variables,
                             status)
    session = tmux_server.new_session(command, 160, 30)
    screens = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not status.exists():
        screens.append(tmux_server.screen(session))
        time.sleep(0.1)
    time.sleep(0.3)
    final = tmux_server.screen(session)
    assert status.read_text().strip() == "7", final
    # mid-run: a result line above bars still drawing, and never a result glued onto a bar
    assert any("━" in screen and "\ndone  " in screen for screen in screens), screens[-1]
    for screen in [*screens, final]:
        for line in screen.splitlines():
            if "done  good" in line or "failed  tone" in line:
                assert line.startswith(("done  ", "failed  ")) and "━" not in line and "%" not in line, screen
    lines = final.splitlines()
    done = sorted(line.split()[1:4] for line in lines if line.startswith("done  "))
    assert done == [[f"good-{i:02}.wav", f"good-{i:02}", "authenticity"] for i in range(3)], final
    [failed] = [line for line in lines if line.startswith("failed  ")]
    assert failed.startswith("failed  tone-00.wav  the service said no"), final
    assert "{" not in final  # no JSON on a terminal unless --json
    assert "finished: 3 done, 1 failed" in final


@pytest.mark.terminal
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_json_on_a_terminal_prints_ndjson(emulator, tmp_path: Path, tmux_server: TmuxServer) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=1)
    status = tmp_path / "status"
    variables = {**emulator.client_env(), "DASCTL_CONFIG_DIR": str(tmp_path), "TERM": "xterm-256color"}
    command = dasctl_command(f"watch {shlex.quote(str(inbox))} --once --json --speed 0 --settle 0",
                             variables, status, unset=(), redirect="2>/dev/null")
    session = tmux_server.new_session(command, 400, 10)
    wait_for_file(status, 30)
    screen = tmux_server.screen(session)
    assert status.read_text().strip() == "0", screen
    [line] = lines_of(screen)
    assert line["schema"] == "dasctl.watch/1" and line["file"] == "good-00.wav" and line["ok"]


@pytest.mark.terminal
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_terminal_shows_one_live_bar_per_file_in_flight_and_totals(
    emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    inbox = tmp_path / "calls"
    fill(inbox, good=3)
    variables = {**emulator.client_env(), "DASCTL_CONFIG_DIR": str(tmp_path)}
    command = dasctl_command(f"watch {shlex.quote(str(inbox))} -j 2 --speed 2 --settle 0", variables,
                             tmp_path / "status", redirect=f"> {shlex.quote(str(tmp_path / 'out.jsonl'))}")
    session = tmux_server.new_session(command, 120, 20)
    screen = tmux_server.wait_for(session, lambda shown: shown.count("%") >= 2 and "in flight" in shown, 20)
    assert "2 in flight" in screen and "1 queued" in screen, screen
    assert sum("good-0" in line and "%" in line for line in screen.splitlines()) == 2, screen
    # Closing the terminal mid-session (SIGHUP, and every later write to it fails with EIO) stops watch:
    # it once kept running, deaf to SIGTERM, SIGINT and SIGHUP, because saying "stopping" failed first.
    tmux_server.kill()
    deadline = time.monotonic() + 30
    while running_with(str(inbox)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running_with(str(inbox)), running_with(str(inbox))


def running_with(fragment: str) -> list[str]:
    """Command lines of live processes (zombies aside) whose arguments contain `fragment`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if stat[stat.rindex(")") + 2] != "Z" and fragment in command and "-m dasctl watch" in command:
            found.append(command)
    return found


def test_summary_ends_the_ndjson_with_what_the_run_did_and_jq_keeps_the_file_lines_apart(
    emulator, dasctl, tmp_path: Path
) -> None:
    """--summary: a cron job reads "all enrolled" (or not) from the last line: counts, and the files not
    taken by reason. Without it stdout is one line per file, as before; docs' jq recipe splits the two."""
    inbox = tmp_path / "calls"
    fill(inbox, good=2, tone=1)
    shutil.copy(DATA / "speech-a-8k-mono.wav", inbox / "0412-CUST9.wav")
    (inbox / "notes.txt").write_text("call notes\n")
    (inbox / "blob.bin").write_bytes(os.urandom(4096))
    optout = dasctl("credentials", "optout", "0412-CUST9", "--reason", "asked on the phone")
    assert optout.returncode == 0, optout.stderr
    fast = ["--once", "--speed", "0", "--settle", "0"]
    run = dasctl("watch", str(inbox), *fast, "--summary", env=emulator.client_env())
    assert run.returncode == 7, run.stderr
    *files, summary = lines_of(run.stdout)
    outcomes = {line["file"]: line["ok"] or line.get("outcome") for line in files}
    assert outcomes == {"good-00.wav": True, "good-01.wav": True, "tone-00.wav": {
        "event": "result-fail-spoof", "content": outcomes["tone-00.wav"]["content"]},  # type: ignore[index]
        "0412-CUST9.wav": "opted-out"}
    assert {line["schema"] for line in files} == {"dasctl.watch/1"}
    assert summary == {
        "schema": "dasctl.watch-summary/1", "ended": "finished", "exit_code": 7, "done": 2, "failed": 1,
        "already_reported": 0, "opted_out": 1, "failed_earlier": 0, "skipped": 2,
        "skipped_files": {"not audio": ["blob.bin", "notes.txt"]},
        "seconds": summary["seconds"],
    }

    again = dasctl("watch", str(inbox), *fast, "--summary", env=emulator.client_env())
    assert again.returncode == 7, again.stderr
    opted, rerun = lines_of(again.stdout)  # nothing new but the opted-out file's line (said every run)
    assert opted["outcome"] == "opted-out" and rerun["schema"] == "dasctl.watch-summary/1"
    assert (rerun["done"], rerun["already_reported"], rerun["failed_earlier"], rerun["opted_out"]) == (
        0, 3, 1, 1)

    plain = dasctl("watch", str(inbox), *fast, env=emulator.client_env())
    assert plain.returncode == 7, plain.stderr  # no --summary: one line per file, no summary line
    assert [line["schema"] for line in lines_of(plain.stdout)] == ["dasctl.watch/1"]

    if shutil.which("jq"):  # the recipe in docs/watch.md
        (inbox / "good-03.wav").write_bytes((DATA / "speech-b-16k-mono.wav").read_bytes())
        piped = subprocess.run(
            f"{shlex.quote(sys.executable)} -m dasctl watch {shlex.quote(str(inbox))} {' '.join(fast)} "
            "--summary | jq -c 'select(.schema == \"dasctl.watch/1\") | .file'",
            shell=True, capture_output=True, text=True, timeout=60,
            env={**os.environ, **emulator.client_env()})
        assert sorted(piped.stdout.splitlines()) == ['"0412-CUST9.wav"', '"good-03.wav"'], piped.stderr
