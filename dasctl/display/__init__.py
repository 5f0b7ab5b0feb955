"""Progress renderers: what a person sees while sessions run (the only core code that may import rich).

- `register`: the live VAD bar of one register/verify session, plain status lines, none.
- `watch`: the batch view of `dasctl watch`.
- `reenroll`: the batch bar of `dasctl reenroll`.

Whether bars may be drawn at all is decided in one place for the three: dasctl.environment
(`Environment.live_display`, `live_display_allowed`): never while stdout feeds another program.
"""

from __future__ import annotations

#: A name is never cut shorter than this, however narrow the terminal (the line wraps instead).
MIN_NAME_WIDTH = 12


def fit_name(name: str, width: int) -> str:
    """The name whole when it fits in `width` columns, else cut in the middle with `…`, keeping more of
    the end: recorders put the customer or call id last (`20261201-0915-CUST000123.mp3`)."""
    width = max(MIN_NAME_WIDTH, width)
    if len(name) <= width:
        return name
    keep = width - 1
    head = keep // 3
    return name[:head] + "…" + name[len(name) - (keep - head):]
