"""The process's streams, terminal flags and colour mode in one object that tests can replace."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO


def _isatty(stream: IO[str] | IO[bytes] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, AttributeError):
        return False


def feeds_another_program(stream: IO[str] | IO[bytes] | None) -> bool:
    """Whether the stream is a pipe or socket: `dasctl ... | jq` (or tee, less), whose reader may write to
    the same terminal as our stderr. A file, /dev/null or the terminal itself is no such reader."""
    try:
        mode = os.fstat(stream.fileno()).st_mode if stream is not None else 0
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def live_display_allowed(
    *, stderr_isatty: bool, stdout_piped: bool, dumb_terminal: bool = False, quiet: bool = False
) -> bool:
    """The one rule for redrawn progress (rich bars) on stderr, whichever command draws them.

    Only on an interactive, capable stderr; and never while stdout feeds a program (`| jq -c .`,
    `| tee log`): that program writes to the same terminal, and a bar redrawn in place would overwrite
    its lines. Plain progress lines, which only ever add lines, are used instead."""
    return bool(stderr_isatty and not stdout_piped and not dumb_terminal and not quiet)


@dataclass
class Environment:
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdin_isatty: bool | None = None
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    #: stdout is a pipe or socket (another program reads it): None = look at the stream
    stdout_piped: bool | None = None
    no_color: bool = False
    verbosity: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.stdin_isatty is None:
            self.stdin_isatty = _isatty(self.stdin)
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)
        if self.stderr_isatty is None:
            self.stderr_isatty = _isatty(self.stderr)
        if self.stdout_piped is None:
            self.stdout_piped = not self.stdout_isatty and feeds_another_program(self.stdout)

    @property
    def dumb_terminal(self) -> bool:
        return self.env.get("TERM", "") == "dumb"

    @property
    def color(self) -> bool:
        """Colour on stderr: a terminal, and neither --no-color, NO_COLOR nor TERM=dumb."""
        return bool(
            self.stderr_isatty and not self.no_color and "NO_COLOR" not in self.env and not self.dumb_terminal
        )

    @property
    def live_display(self) -> bool:
        """Redrawn progress (rich bars): see live_display_allowed."""
        return live_display_allowed(
            stderr_isatty=bool(self.stderr_isatty), stdout_piped=bool(self.stdout_piped),
            dumb_terminal=self.dumb_terminal, quiet=self.quiet,
        )

    def can_prompt(self) -> bool:
        """Prompts only when a person is there to answer: stdin is a terminal."""
        return bool(self.stdin_isatty)
