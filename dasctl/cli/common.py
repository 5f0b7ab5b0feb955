"""Global options shared by every command, and the Environment built from them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from dasctl.environment import Environment


@dataclass
class GlobalOptions:
    profile: str | None = None
    verbosity: int = 0
    quiet: bool = False
    no_color: bool = False


OPTIONS = GlobalOptions()


def environment() -> Environment:
    """The process environment with the global options applied."""
    return Environment(no_color=OPTIONS.no_color, verbosity=OPTIONS.verbosity, quiet=OPTIONS.quiet)


def color_stderr() -> bool:
    return bool(
        sys.stderr.isatty()
        and not OPTIONS.no_color
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM") != "dumb"
    )


def profile_name(command_value: str | None) -> str | None:
    """A command's own --profile wins over the global one (the environment and default come later)."""
    return command_value or OPTIONS.profile


# Options that several commands repeat, declared once.
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Profile to use (default: DASCTL_PROFILE, else the file's default_profile, else 'local').",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
