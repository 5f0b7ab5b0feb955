"""Placeholder: the 'serve' commands are being written (see the issues)."""

from __future__ import annotations

import typer


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
