"""Channel pick: which channel of the input the service hears (one column, or the average of all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dasctl.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

CHANNEL_CHOICES = "mix, left, right, or a channel number counted from 0"


def parse_channel(channel: str) -> str | int:
    """'mix' stays 'mix'; 'left', 'right' and 'N' become a 0-based index; anything else is a UsageError."""
    text = str(channel).strip().lower()
    if text == "mix":
        return "mix"
    if text == "left":
        return 0
    if text == "right":
        return 1
    if text.isdigit():
        return int(text)
    raise UsageError(f"--channel {channel!r} is not a channel: use {CHANNEL_CHOICES}")


def to_mono(block: np.ndarray, channel: str | int, scale: float) -> np.ndarray:
    """One block (frames x channels, int16 or float32) -> mono float32 in [-1, 1): a column, or the mix.

    `scale` turns the block's values into that range (1/32768 for int16, 1 for float32)."""
    import numpy as np  # here: choosing a channel (the CLI, the config) must not load numpy

    channels = block.shape[1]
    if channels == 1 or channel != "mix":
        index = 0 if channels == 1 else int(channel)
        mono = block[:, index].astype(np.float32)
        if scale != 1.0:
            mono *= scale
        return mono
    # column by column: numpy's mean(axis=1) over two columns is several times slower
    mono = block[:, 0].astype(np.float32)
    for column in range(1, channels):
        mono += block[:, column]
    mono *= np.float32(scale / channels)
    return mono
