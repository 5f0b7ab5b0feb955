"""The one harness for terminal tests: a private tmux server per test, killed at teardown.

`tmux -L <unique>` keeps tests off the developer's own server (a `tmux new` of theirs must never join a
test's session and inherit its DASCTL_CONFIG_DIR), and `-f /dev/null` keeps their ~/.tmux.conf out. The
server is started from the test process, so its panes inherit that test's environment. Screens are
captured with wrapped lines joined (-J): a long temporary path that wraps a prompt at the terminal's
width must not change what a test sees.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).parent.parent


class TmuxServer:
    """A private tmux server: sessions, screens, keys; `kill()` ends it and every process in its panes."""

    def __init__(self, label: str = "dasctl-test") -> None:
        self.socket = f"{label}-{uuid.uuid4().hex[:12]}"
        self._sessions = 0

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """One tmux command on this server (bounded: a wedged server fails the test, never hangs it)."""
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True, text=True, timeout=10, check=check,
        )

    def new_session(self, command: str, width: int = 100, height: int = 20, name: str | None = None) -> str:
        """Start `command` (a shell command line) in a new detached session; returns the session's name."""
        self._sessions += 1
        name = name or f"s{self._sessions}"
        self.run("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), command, check=True)
        return name

    def screen(self, session: str, escapes: bool = False, history: int = 0) -> str:
        """What the pane shows, wrapped lines joined, trailing blanks dropped; `escapes` keeps SGR codes."""
        args = ["capture-pane", "-p", "-J", "-t", session]
        if escapes:
            args.insert(1, "-e")
        if history:
            args += ["-S", f"-{history}"]
        text = self.run(*args).stdout
        return "\n".join(line.rstrip() for line in text.splitlines())

    def send_keys(self, session: str, *keys: str) -> None:
        self.run("send-keys", "-t", session, *keys, check=True)

    def type_line(self, session: str, line: str) -> None:
        self.send_keys(session, line, "Enter")

    def wait_for(
        self, session: str, predicate: Callable[[str], bool], seconds: float, history: int = 0
    ) -> str:
        """Poll the screen until `predicate` holds (a state, not a time); the screen, or AssertionError."""
        deadline = time.monotonic() + seconds
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen(session, history=history)
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out after {seconds} s; last screen:\n{screen}")

    def kill_session(self, session: str) -> None:
        self.run("kill-session", "-t", session)

    def kill(self) -> None:
        """End the server: every pane gets SIGHUP, as when a terminal window is closed."""
        self.run("kill-server")


def dasctl_command(
    args: str, env: Mapping[str, str], done: Path, *, unset: tuple[str, ...] = ("NO_COLOR",),
    redirect: str = "", linger: float = 30,
) -> str:
    """A shell line that runs `dasctl ARGS` from the repository with `env`, writes its exit status to
    `done`, then keeps the pane open (`linger` s) so the final screen can still be read."""
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    unsets = " ".join(f"-u {name}" for name in unset)
    return (
        f"cd {shlex.quote(str(ROOT))} && env {unsets} {exports} {shlex.quote(sys.executable)} -m dasctl "
        f"{args}{' ' + redirect if redirect else ''}; echo $? > {shlex.quote(str(done))}; sleep {linger:g}"
    )


def wait_for_file(path: Path, seconds: float) -> str:
    """The stripped content of `path` once it exists (an exit status written by the pane), or "?"."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    time.sleep(0.2)  # the status is written after the last frame: let tmux catch up
    return path.read_text().strip() if path.exists() else "?"
