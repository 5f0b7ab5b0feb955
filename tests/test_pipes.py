"""Piped into another program on a terminal (`dasctl ... | jq`): nothing dasctl draws overwrites its lines.

Each test runs a real shell pipeline in a real terminal (a private tmux server) and reads the final
screen: every line the downstream program printed must be there, whole.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest

from dasctl.environment import Environment, live_display_allowed
from tests.conftest import DATA, ROOT, Emulator
from tests.test_reenroll import seed
from tests.tmux_server import TmuxServer

SPEECH = str(DATA / "speech-a-8k-mono.wav")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


#: what the shell prints after the pipeline: the end of what the test reads
END = "PIPELINE-ENDED-MARKER"


class Terminal:
    """Runs one shell pipeline at a time in a WIDTH x HEIGHT window of the test's private tmux server."""

    def __init__(self, server: TmuxServer, tmp_path: Path) -> None:
        self.server = server
        self.tmp_path = tmp_path

    def tmux(self, *args: str) -> str:
        return self.server.run(*args).stdout

    def run(self, pipeline: str, env: dict[str, str], *, width: int = 100, height: int = 40,
            timeout: float = 60) -> tuple[str, str]:
        """Run `pipeline` (its first word after `dasctl` is dasctl's argv); return (exit code of dasctl,
        final screen with wrapped lines joined)."""
        done = self.tmp_path / f"exit-{uuid.uuid4().hex[:6]}"
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        dasctl = f"{shlex.quote(sys.executable)} -m dasctl"
        script = (
            # the pane starts at tmux's default size and is resized after: wait for the asked one (bounded)
            f"for i in $(seq 100); do [ \"$(stty size)\" = '{height} {width}' ] && break; sleep 0.05; done; "
            f"cd {shlex.quote(str(ROOT))}; export {exports}; unset NO_COLOR COLUMNS LINES; "
            f"{pipeline.replace('dasctl ', dasctl + ' ', 1)}; "
            f"echo ${{PIPESTATUS[0]}} > {shlex.quote(str(done))}; echo {END}; sleep 60"
        )
        name = self.server.new_session(f"bash -c {shlex.quote(script)}", width, height)
        deadline = time.monotonic() + timeout
        screen = ""
        # The shell writes END once every program of the pipeline has exited, after all they wrote: once
        # tmux shows it, it has drawn all of theirs too (a loaded tmux can lag well behind a fixed wait).
        while time.monotonic() < deadline and END not in screen.splitlines():
            time.sleep(0.1)
            screen = self.server.run("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", name).stdout
        code = done.read_text().strip() if done.exists() and END in screen.splitlines() else "timeout"
        return code, "\n".join(line for line in screen.splitlines() if line != END) + "\n"


@pytest.fixture
def terminal(tmux_server: TmuxServer, tmp_path: Path) -> Terminal:
    return Terminal(tmux_server, tmp_path)


def _env(emulator: Emulator) -> dict[str, str]:
    return {**emulator.client_env(), "DASCTL_CONFIG_DIR": os.environ["DASCTL_CONFIG_DIR"],
            "TERM": "xterm-256color"}


#: one of dasctl's stderr lines, wherever on the screen it begins (it ends with its own newline)
DASCTL_LINE = re.compile(r"dasctl: [^\n]*\n")


def _apart(screen: str) -> tuple[list[str], list[str]]:
    """(the downstream program's lines, dasctl's lines), each whole, from one terminal's screen.

    Two processes write to that terminal, and the kernel keeps each write() whole, never a line: jq writes
    a coloured line longer than its 1 KiB stdio buffer in several writes, and a dasctl status line written
    meanwhile lands between two of them, mid-row (seen under load: a watch report cut at column 321 by
    `dasctl: watch: finished: ...`). No program can see that another is mid-line, so what dasctl answers
    for is that it only adds whole lines (one write each, never `\r` or a cursor move): taken out, they
    leave every downstream line whole."""
    ours = [found.rstrip("\n") for found in DASCTL_LINE.findall(screen)]
    for line in ours:
        assert '"schema"' not in line and "\x1b" not in line, line  # whole: nothing of jq's inside
    return DASCTL_LINE.sub("", screen).splitlines(), ours


def _json_lines(screen: str) -> list[dict[str, object]]:
    """The downstream program's JSON lines, each parsed whole (json.loads fails on a cut or overwritten
    one)."""
    try:
        return [json.loads(line) for line in _apart(screen)[0] if line.startswith("{")]
    except json.JSONDecodeError as error:
        raise AssertionError(f"a cut line ({error}) on the screen:\n{screen}") from None


def test_register_piped_into_jq_leaves_jq_line_whole(emulator: Emulator, terminal: Terminal) -> None:
    code, screen = terminal.run(f"dasctl register {shlex.quote(SPEECH)} --speed 2 --json | jq -c .",
                                _env(emulator))
    assert code == "0", screen
    (document,) = _json_lines(screen)  # json.loads fails on a line a redraw cut or overwrote
    assert document["ok"] is True and document["outcome"]["event"] == "result-success"  # type: ignore[index]
    assert "━" not in screen  # no live bar: plain progress lines, which only add lines
    assert "speech-a-8k-mono.wav: streaming audio" in screen and "\r" not in screen


def test_reenroll_piped_into_cat_leaves_every_line_readable(two_models: Emulator, terminal: Terminal) -> None:
    seed(6)
    code, screen = terminal.run("dasctl reenroll --model-hash new -j 2 --speed 3 --json | cat",
                                _env(two_models))
    assert code == "0", screen
    documents = _json_lines(screen)
    assert sorted(str(d["speaker"]) for d in documents) == [f"spk-{i:03d}" for i in range(6)]
    assert "━" not in screen
    assert "dasctl: reenroll: [6/6]" in screen
    assert "re-enrolled 6 of 6 speaker(s) with new; 0 failed" in screen


def test_stdout_into_a_file_keeps_the_live_bar(emulator: Emulator, terminal: Terminal,
                                               tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code, screen = terminal.run(
        f"dasctl register {shlex.quote(SPEECH)} --speed 0 --json > {shlex.quote(str(out))}", _env(emulator))
    assert code == "0", screen
    assert "━" in screen  # nobody else writes to this terminal: the bar is safe
    assert json.loads(out.read_text())["ok"] is True


@pytest.mark.parametrize(
    ("stderr_tty", "piped", "dumb", "quiet", "live"),
    [
        (True, False, False, False, True),
        (True, True, False, False, False),  # | jq, | tee, | less
        (False, False, False, False, False),  # stderr into a log
        (True, False, True, False, False),  # TERM=dumb
        (True, False, False, True, False),  # --quiet
    ],
)
def test_the_one_rule_for_live_bars(stderr_tty: bool, piped: bool, dumb: bool, quiet: bool,
                                    live: bool) -> None:
    assert live_display_allowed(stderr_isatty=stderr_tty, stdout_piped=piped, dumb_terminal=dumb,
                                quiet=quiet) is live


def test_a_pipe_on_stdout_is_seen_as_one() -> None:
    read, write = os.pipe()
    try:
        with os.fdopen(write, "w") as stdout:
            environment = Environment(stdout=stdout, stderr_isatty=True, env={"TERM": "xterm"})
            assert environment.stdout_piped is True and environment.live_display is False
    finally:
        os.close(read)
    with open(os.devnull, "w") as devnull:
        environment = Environment(stdout=devnull, stderr_isatty=True, env={"TERM": "xterm"})
        assert environment.stdout_piped is False and environment.live_display is True


LONG_NAME = "20261201-0915-CUST000123-inbound-queue-sales.wav"


@pytest.mark.parametrize("width", [100, 160])
def test_names_in_the_bar_are_cut_only_as_far_as_the_width_demands(
    emulator: Emulator, terminal: Terminal, tmp_path: Path, width: int
) -> None:
    recording = tmp_path / LONG_NAME
    shutil.copy(SPEECH, recording)
    code, screen = terminal.run(f"dasctl register {shlex.quote(str(recording))} --speed 0 > /dev/null",
                                _env(emulator), width=width)
    assert code == "0", screen
    unjoined = terminal.tmux("capture-pane", "-p", "-S", "-", "-E", "-")
    (bar,) = [line for line in unjoined.splitlines() if "━" in line]
    assert "voice " in bar and "result-success" in bar  # the whole bar on one line: nothing wrapped
    if width == 160:
        assert LONG_NAME in bar
    else:
        assert "…" in bar and bar.split()[0].endswith("sales.wav") and len(bar.rstrip()) <= width


def test_watch_piped_into_jq_leaves_every_jq_line_whole(
    emulator: Emulator, terminal: Terminal, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    fixtures = ["speech-a-8k-mono.wav", "speech-b-16k-mono.wav", "speech-c-22k-mono.wav"]
    for index, fixture in enumerate(fixtures):
        shutil.copy(DATA / fixture, inbox / f"CUST{index:03d}.wav")
    code, screen = terminal.run(f"dasctl watch {shlex.quote(str(inbox))} --once --speed 2 -j 2 | jq -c .",
                                _env(emulator))
    assert code == "0", screen
    files = sorted(str(d["file"]) for d in _json_lines(screen) if "file" in d)
    assert files == ["CUST000.wav", "CUST001.wav", "CUST002.wav"], screen
    assert "━" not in screen
    assert any(line.startswith("dasctl: watch: finished: 3 done, 0 failed in") for line in _apart(screen)[1])
