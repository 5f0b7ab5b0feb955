"""Untrusted text on rich's side: data is always a `Text` (never parsed as markup), after dasctl.safe_text.

`[/x]` in a speaker id must not end a style (rich raises MarkupError) and `[link=file:///etc/passwd]`
must not become a link: markup strings are for dasctl's own literal labels only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dasctl.safe_text import line, quoted

if TYPE_CHECKING:
    from rich.text import Text


def data_text(value: object, style: str = "") -> Text:
    """One untrusted value as rich Text: quoted as git quotes a path, never read as markup."""
    from rich.text import Text

    return Text(quoted(value), style=style)


def line_text(text: str, style: str = "") -> Text:
    """A whole line that carries untrusted values, as rich Text with every special character escaped."""
    from rich.text import Text

    return Text(line(text), style=style)
