"""README's "Try it" typed into a real terminal (tmux): `dasctl serve &`, then register with the live bar.

The emulator in the background must not print into the bar, and the bar must say where it is in the
file and how long is left (a file with 40 s of silence first used to show an empty bar and nothing else).
Plain lines (stderr not a terminal) carry the same figures, in the order things happen.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import DATA, Emulator, free_port
from tests.tmux_server import TmuxServer

BIN = Path(sys.executable).parent


def late_speech(tmp_path: Path, silence: float = 40.0) -> Path:
    """A 51 s call whose voice starts after `silence` seconds."""
    speech, rate = sf.read(DATA / "speech-a-8k-mono.wav", dtype="int16")
    path = tmp_path / "late-speech.wav"
    sf.write(path, np.concatenate([np.zeros(int(silence * rate), dtype=np.int16), speech]), rate)
    return path


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_try_it_in_one_terminal_keeps_the_bar_clean(tmp_path: Path, tmux_server: TmuxServer) -> None:
    recording = late_speech(tmp_path)
    port = free_port()
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"],
        "DASCTL_URL": f"http://127.0.0.1:{port}",
        "TERM": "xterm-256color",
        "PS1": "$ ",
    }
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    name = tmux_server.new_session(f"env -u NO_COLOR {exports} bash --norc --noprofile -i", 100, 40)

    def wait_for(predicate: Callable[[str], bool], seconds: float) -> str:
        return tmux_server.wait_for(name, predicate, seconds, history=200)

    type_line = functools.partial(tmux_server.type_line, name)
    type_line(f"dasctl serve --port {port} &")
    wait_for(lambda s: "; log in " in s, 30)
    type_line("dasctl login")
    wait_for(lambda s: "Logged in to profile 'local'" in s, 30)
    type_line(f"dasctl register {shlex.quote(str(recording))} --speed 4; echo EXIT=$?")
    mid = wait_for(lambda s: re.search(r"audio 0:[1-3]\d/0:51", s) is not None, 40)
    bar = next(line for line in mid.splitlines() if "audio 0:" in line)
    assert "late-speech.wav" in bar and "voice 0.0/5 s" in bar
    assert re.search(r"~0:\d\d ", bar), bar  # an estimate of the time left, even before any voice
    final = wait_for(lambda s: re.search(r"^EXIT=", s, re.M) is not None, 60)
    assert re.search(r"^EXIT=0", final, re.M) and "registered" in final
    type_line("kill %1; wait; echo STOPPED=$?")
    final = wait_for(lambda s: re.search(r"^STOPPED=", s, re.M) is not None, 20)
    # nothing from the background emulator in the terminal but its one line about where it listens
    assert "Stop with Ctrl-C" not in final
    assert "das-Peak Streaming emulator listening on" in final and "log in " in final
    assert not re.search(r"^\d\d:\d\d:\d\d ", final, re.M), final  # no session log lines
    assert "token endpoint" not in final
    log = Path(os.environ["DASCTL_CONFIG_DIR"] + "-state") / "serve.log"
    assert "Stop with `kill" in log.read_text() and "register" in log.read_text()


def test_plain_lines_show_the_position_and_come_in_order(emulator: Emulator, tmp_path: Path) -> None:
    recording = late_speech(tmp_path, silence=20.0)
    run = subprocess.run(
        [sys.executable, "-m", "dasctl", "register", str(recording), "--speed", "4"],
        env={**os.environ, **emulator.client_env()}, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr
    lines = [line.split(": ", 1)[1] for line in run.stderr.splitlines()]
    # before any voice: where the file is, of how long, and about how long is left
    silent = [line for line in lines if line.startswith("voice 0.00/5 s")]
    assert silent and re.fullmatch(r"voice 0\.00/5 s   0%, audio 0:\d\d/0:31, ~0:\d\d left", silent[0])
    # the last voice figure is printed before what came after streaming, never after it
    streaming = ("voice", "connecting", "initializing", "streaming")
    after = lines[next(i for i, line in enumerate(lines) if not line.startswith(streaming)):]
    assert not any(line.startswith("voice ") for line in after), lines
    result = next(line for line in lines if line.startswith("result-success after "))
    took = float(result.split("after ", 1)[1].split(" s", 1)[0])
    assert took >= 4.0  # 20 s of silence at 4x: never "after 0.0 s"
