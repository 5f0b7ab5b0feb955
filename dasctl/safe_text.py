"""The one rule for text dasctl did not write itself, before it reaches a terminal or a plain-text line.

Speaker ids, file names, paths, the service's `content` messages, store values and library errors are
untrusted: an ESC in a speaker id could retitle the window or clear the screen, a carriage return could
overwrite the line before it, a bidi override could make `evil.wav` read as `vaw.live`. They are shown the
way git shows an unusual path (core.quotePath=false): unchanged when nothing in them is special, otherwise
in double quotes with C escapes (`\\a \\b \\t \\n \\v \\f \\r`), octal bytes (`\\033`) for the other controls,
the C1 controls, the bidi and line-separator characters and bytes that are not UTF-8, and `\\"`, `\\\\` for
the quote and the backslash. JSON output never goes through here: it keeps the exact value.

No rich here (the core never imports it): dasctl/display/ renders the result as rich `Text`, never as markup.
"""

from __future__ import annotations

import re

_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}

#: What a terminal could act on or show deceptively: C0 controls and DEL, C1 controls, the bidi
#: embeddings, overrides, isolates and marks, the Unicode line and paragraph separators, and lone
#: surrogates (bytes of a file name that are not UTF-8, decoded with surrogateescape).
_SPECIAL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                      "\ud800-\udfff]")
_SPECIAL_OR_QUOTE = re.compile(_SPECIAL.pattern[:-1] + '"\\\\]')


def _octal(char: str) -> str:
    if "\udc80" <= char <= "\udcff":  # an undecodable byte, kept by surrogateescape: show that byte
        return f"\\{ord(char) - 0xDC00:03o}"
    if "\ud800" <= char <= "\udfff":
        return "\\ufffd"
    return "".join(f"\\{byte:03o}" for byte in char.encode("utf-8"))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in ('"', "\\"):
        return "\\" + char
    return _C_ESCAPES.get(char) or _octal(char)


def needs_quoting(text: str) -> bool:
    """Whether `text` holds a character a terminal could act on or show deceptively."""
    return _SPECIAL.search(text) is not None


def quoted(value: object) -> str:
    """One untrusted value (a speaker id, a file name): unchanged when harmless, else git's quoted form."""
    text = value if isinstance(value, str) else str(value)
    if not needs_quoting(text):
        return text
    return '"' + _SPECIAL_OR_QUOTE.sub(_escape, text) + '"'


def line(text: str, *, keep_newlines: bool = False) -> str:
    """A whole line assembled elsewhere (an error message, a log record): every special character
    escaped in place, without quotes; the last guard at the points where text leaves dasctl.
    `keep_newlines` leaves line breaks alone (a -vv traceback)."""
    if not needs_quoting(text):
        return text
    if keep_newlines:
        return "\n".join(_SPECIAL.sub(_escape, part) for part in text.split("\n"))
    return _SPECIAL.sub(_escape, text)

