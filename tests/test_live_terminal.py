"""The live bar of `register --attach` in a real terminal (a private tmux server), fed by `dasctl stream`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, Emulator

SPEECH = str(DATA / "speech-a-8k-mono.wav")


@pytest.fixture
def tmux_server() -> Iterator[str]:
    """A tmux server of this test's own (-L), killed at teardown with everything in it."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    socket = f"dasctl-live-{uuid.uuid4().hex[:8]}"
    yield socket
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10)


def screen_of(socket: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, "capture-pane", "-p", "-t", "live"], capture_output=True, text=True, timeout=10
    ).stdout


def wait_for_screen(socket: str, wanted: list[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = screen_of(socket)
        if all(text in screen for text in wanted):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"never saw {wanted}; last screen:\n{screen}")


def test_the_live_bar_follows_a_call_whose_audio_comes_from_elsewhere(
    emulator: Emulator, tmux_server: str, tmp_path: Path
) -> None:
    call_id = str(uuid.uuid4())
    done = tmp_path / "exit-code"
    env = {**emulator.client_env(), "TERM": "xterm-256color"}
    env["DASCTL_CONFIG_DIR"] = os.environ["DASCTL_CONFIG_DIR"]
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    command = (
        f"cd {shlex.quote(str(ROOT))} && env -u NO_COLOR {exports} {shlex.quote(sys.executable)} -m dasctl "
        f"register --attach {call_id} --no-store; echo $? > {shlex.quote(str(done))}; sleep 30"
    )
    subprocess.run(
        ["tmux", "-L", tmux_server, "new-session", "-d", "-s", "live", "-x", "100", "-y", "20", command],
        check=True, timeout=10,
    )
    waiting = wait_for_screen(tmux_server, ["waiting for the platform's audio", "live call"])
    flat = waiting.replace("\n", "")  # the line is wider than the terminal: tmux wraps it
    assert f"waiting for the platform's audio for call {call_id}: start the call's Media Stream now" in flat
    assert f"dasctl stream call.wav --call-id {call_id}" in flat
    # the platform's part, in real time, so the bar is seen moving
    feeder = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "stream", SPEECH, "--call-id", call_id, "--quiet"],
        env={**os.environ, **emulator.client_env()}, stdin=subprocess.DEVNULL,
    )
    try:
        mid_run = wait_for_screen(tmux_server, ["hearing the call's audio", "live call"])
        bar = next(line for line in mid_run.splitlines() if "voice " in line and "live call" in line)
        assert "attach" in bar and "/5 s" in bar and "━" in bar
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done.exists():
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
        final = screen_of(tmux_server)
        assert "registered" in final and "result-success" in final and "credential" in final
        assert feeder.wait(timeout=30) == 0
    finally:
        if feeder.poll() is None:
            feeder.kill()
            feeder.wait()
