"""The live bar of `register --attach` in a real terminal (a private tmux server), fed by `dasctl stream`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import DATA, Emulator
from tests.tmux_server import TmuxServer, dasctl_command, wait_for_file

SPEECH = str(DATA / "speech-a-8k-mono.wav")


def test_the_live_bar_follows_a_call_whose_audio_comes_from_elsewhere(
    emulator: Emulator, tmux_server: TmuxServer, tmp_path: Path
) -> None:
    call_id = str(uuid.uuid4())
    done = tmp_path / "exit-code"
    env = {**emulator.client_env(), "TERM": "xterm-256color"}
    env["DASCTL_CONFIG_DIR"] = os.environ["DASCTL_CONFIG_DIR"]
    name = tmux_server.new_session(dasctl_command(f"register --attach {call_id} --no-store", env, done))

    def wait_for_screen(wanted: list[str]) -> str:
        return tmux_server.wait_for(name, lambda screen: all(text in screen for text in wanted), 30)

    waiting = wait_for_screen(["waiting for the platform's audio", "live call"])
    flat = waiting.replace("\n", "")  # the line is wider than the terminal (joined by the harness)
    assert f"waiting for the platform's audio for call {call_id}: start the call's Media Stream now" in flat
    assert f"dasctl stream call.wav --call-id {call_id}" in flat
    # the platform's part, in real time, so the bar is seen moving
    feeder = subprocess.Popen(
        [sys.executable, "-m", "dasctl", "stream", SPEECH, "--call-id", call_id, "--quiet"],
        env={**os.environ, **emulator.client_env()}, stdin=subprocess.DEVNULL,
    )
    try:
        mid_run = wait_for_screen(["hearing the call's audio", "live call"])
        bar = next(line for line in mid_run.splitlines() if "voice " in line and "live call" in line)
        assert "attach" in bar and "/5 s" in bar and "━" in bar
        assert wait_for_file(done, 30) == "0"
        final = tmux_server.screen(name)
        assert "registered" in final and "result-success" in final and "credential" in final
        assert feeder.wait(timeout=30) == 0
    finally:
        if feeder.poll() is None:
            feeder.kill()
            feeder.wait()
