"""What a person sees: the live bar in a real terminal (tmux), and plain lines when stderr is a file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, Emulator
from tests.tmux_server import TmuxServer, dasctl_command, wait_for_file

SPEECH = str(DATA / "speech-a-8k-mono.wav")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_live_bar_shows_voice_collected_mid_run(
    emulator: Emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    done = tmp_path / "exit-code"
    env = {
        **emulator.client_env(),
        "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"],
        "TERM": "xterm-256color",
    }
    name = tmux_server.new_session(dasctl_command(f"register {shlex.quote(SPEECH)} --speed 1", env, done))
    mid_run = tmux_server.wait_for(
        name, lambda screen: "streaming audio" in screen and "voice " in screen and " 0% " not in screen, 20
    )
    bar = next(line for line in mid_run.splitlines() if "voice " in line)
    assert "speech-a-8k-mono.wav" in bar and "%" in bar and "audio " in bar and "/5 s" in bar
    assert "━" in bar  # rich's bar is drawn
    assert wait_for_file(done, 20) == "0"
    final = tmux_server.screen(name)
    assert "registered" in final and "credential" in final and "result-success" in final


def test_stderr_redirected_to_a_file_has_plain_lines_and_no_carriage_returns(
    emulator: Emulator, tmp_path: Path
) -> None:
    log = tmp_path / "stderr.log"
    env = {**os.environ, **emulator.client_env()}
    with log.open("w") as stderr:
        run = subprocess.run(
            [sys.executable, "-m", "dasctl", "register", SPEECH, "--speed", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0
    text = log.read_text()
    assert "\r" not in text and "\x1b[" not in text
    assert "connecting" in text and "streaming audio" in text and "result-success" in text
    assert len(text.splitlines()) <= 12  # sparse: state changes and quarters of the voice target


def test_quiet_prints_nothing_on_stderr(emulator: Emulator, dasctl: Any) -> None:
    run = dasctl("register", SPEECH, "--speed", "0", "--quiet", env=emulator.client_env())
    assert run.returncode == 0
    assert run.stderr == "" and "registered" in run.stdout


# SGR foreground colours: 30-37, 90-97, 256-colour and true colour
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[25];[0-9;]+)m")


def finished_screen(
    tmux_server: TmuxServer, emulator: Emulator, tmp_path: Path, args: str, env: dict[str, str]
) -> tuple[str, str]:
    """Run dasctl in a real terminal and return its exit code and the final screen, escapes kept."""
    done = tmp_path / f"exit-{uuid.uuid4().hex[:8]}"
    full_env = {**emulator.client_env(), "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"], **env}
    name = tmux_server.new_session(dasctl_command(args, full_env, done, redirect="> /dev/null"))
    code = wait_for_file(done, 30)
    return code, tmux_server.screen(name, escapes=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize(
    ("args", "env", "coloured"),
    [
        (f"register {SPEECH} --speed 0", {"TERM": "xterm-256color"}, True),
        (f"--no-color register {SPEECH} --speed 0", {"TERM": "xterm-256color"}, False),
        (f"register {SPEECH} --speed 0", {"TERM": "xterm-256color", "NO_COLOR": "1"}, False),
        (f"register {SPEECH} --speed 0 --no-color", {"TERM": "xterm-256color"}, False),
    ],
    ids=["default", "--no-color", "NO_COLOR", "--no-color-after-the-command"],
)
def test_colour_on_a_terminal_unless_asked_not_to(
    emulator: Emulator, tmp_path: Path, tmux_server: TmuxServer, args: str, env: dict[str, str],
    coloured: bool,
) -> None:
    code, screen = finished_screen(tmux_server, emulator, tmp_path, args, env)
    assert code == "0", screen
    assert "━" in screen  # the live bar is drawn either way
    assert bool(COLOUR.search(screen)) is coloured, repr(screen)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_dumb_terminal_gets_plain_lines_not_a_bar(
    emulator: Emulator, tmp_path: Path, tmux_server: TmuxServer
) -> None:
    args = f"register {SPEECH} --speed 0"
    code, screen = finished_screen(tmux_server, emulator, tmp_path, args, {"TERM": "dumb"})
    assert code == "0", screen
    assert "━" not in screen and not COLOUR.search(screen)
    assert "speech-a-8k-mono.wav: connecting" in screen
    assert "speech-a-8k-mono.wav: result-success" in screen


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("models", [("dasctl-emulator-model-v1", "dasctl-emulator-model-v2"),
                                    ("vd-2027-05-a3f5c9e1d2b4f6a8c", "vd-2026-11-9b1d2c3e4f5a6b7c8")])
def test_credentials_history_fits_100_columns_with_every_model_hash_whole(
    tmp_path: Path, tmux_server: TmuxServer, models: tuple[str, str]
) -> None:
    from dasctl.store import EnrollmentRecord, VerificationRecord, open_store
    from tests.test_pipes import Terminal

    store_file = tmp_path / "store.db"
    store = open_store(str(store_file))
    try:
        old, new = models
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential="Q" * 300, model_hash=old,
                                                 outcome="result-success"))
        store.record_enrollment(EnrollmentRecord("CUST1", False, outcome="result-fail-spoof", model_hash=new))
        store.record_enrollment(EnrollmentRecord("CUST1", True, credential="R" * 300, model_hash=new,
                                                 outcome="result-success"))
        store.record_verification(VerificationRecord("CUST1", True, outcome="result-success", score=0.91,
                                                     model_hash=new))
    finally:
        store.close()
    code, screen = Terminal(tmux_server, tmp_path).run(
        f"dasctl credentials history CUST1 --store {shlex.quote(str(store_file))}",
        {"DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"], "TERM": "xterm"}, width=100, height=20)
    assert code == "0", screen
    lines = screen.splitlines()
    assert lines[0].split() == ["when", "what", "outcome", "model", "hash", "credential", "id"], screen
    rows = [line for line in lines if line.startswith("20")]
    assert len(rows) == 4
    assert all(len(line.rstrip()) <= 100 for line in lines), screen  # wrapped lines come back joined
    assert [next(word for word in row.split() if word in models) for row in rows] == [old, new, new, new]
    # the credential is a secret: history (metadata) never decrypts it; nothing else is cut
    assert "(encrypted)" in rows[0] and "Q" * 8 not in screen and "…" not in rows[1]
