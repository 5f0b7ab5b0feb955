"""How a recording that stops before its header's length is refused, in words a person can act on."""

from __future__ import annotations

import math

from dasctl.errors import AudioError


def two_figures(there: int, announced: int, rate: int) -> tuple[str, str]:
    """'6.2 s' and '11.7 s'; with the sample counts too when a tenth of a second cannot tell them apart."""
    first, second = f"{there / rate:.1f} s", f"{announced / rate:.1f} s"
    if first == second:
        return f"{first} ({there} samples)", f"{second}, {announced} samples"
    return first, second


def refuse_truncated(name: str, there: int, announced: int, rate: int, end: float | None) -> None:
    """A file whose data stops before its header's definite length: an error unless --end stays inside."""
    if end is not None and end <= there / rate:
        return
    if there == 0:
        raise AudioError(f"{name}: no audio: the file ends right after its header ({announced / rate:.1f} s)",
                         "The recording was probably cut off while it was being written.")
    shown, promised = two_figures(there, announced, rate)
    usable = math.floor(there / rate * 10) / 10
    raise AudioError(
        f"{name}: truncated: the data stops at {shown} but the header announces more ({promised})",
        f"If it is still being written, wait; to use what is there, add --end {usable:.1f}.",
    )

