"""AudioHook stream time (docs/protocol.md, AudioHook): exact `PT<seconds>S` from a sample count, and back.

mu-law at 8 kHz is one byte per sample, so a position is a byte count; integer and Decimal arithmetic keep
it exact (PT11.675875S, never rounded, never in exponent form).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SAMPLE_RATE = 8000

# ISO 8601 durations as AudioHook writes them: PT2.8S, and the longer PT1M2.5S / PT1H0M0S forms
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


def position_text(samples: int) -> str:
    """An AudioHook position from a sample count: exact ISO 8601 `PT<seconds>S` (PT11.675875S, PT0S).

    Integer arithmetic: 8000 samples a second always give at most six decimals, never rounded, never
    in exponent form.
    """
    whole, rest = divmod(max(samples, 0), SAMPLE_RATE)
    if not rest:
        return f"PT{whole}S"
    micro = rest * 1_000_000 // SAMPLE_RATE  # exact: 10**6 is a multiple of 8000
    return f"PT{whole}.{micro:06d}".rstrip("0") + "S"


def duration_samples(text: object) -> int | None:
    """The sample count of an AudioHook duration (`PT2.5S` -> 20000), rounded to the nearest sample as
    the reference client does; None when it is not a duration."""
    if not isinstance(text, str) or text in ("PT", ""):
        return None
    match = _DURATION.match(text)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    try:
        total = Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60 + Decimal(seconds or 0)
    except InvalidOperation:  # pragma: no cover  (the pattern admits only digits)
        return None
    return int((total * SAMPLE_RATE).to_integral_value(rounding=ROUND_HALF_UP))
