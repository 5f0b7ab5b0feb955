"""The process's streams, terminal flags and colour mode in one object that tests can replace."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO


def _isatty(stream: IO[str] | IO[bytes] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, AttributeError):
        return False


@dataclass
class Environment:
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdin_isatty: bool | None = None
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
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
        """Redrawn progress (rich bars) only on an interactive, capable stderr."""
        return bool(self.stderr_isatty and not self.dumb_terminal and not self.quiet)

    def can_prompt(self) -> bool:
        """Prompts only when a person is there to answer: stdin is a terminal."""
        return bool(self.stdin_isatty)
