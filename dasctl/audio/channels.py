"""Channel pick: which channel of the input the service hears (one column, or the average of all).

A call recorder writes one speaker per side; which side is the customer depends on the platform, so a
profile says it once (`customer_channel: left|right|N`) and `--channel customer|agent` (or the profile's
`channel`) picks by role. Nothing chosen on a multi-channel input means the mix, said once per run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dasctl.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from dasctl.config import Profile

CHANNEL_CHOICES = "mix, left, right, or a channel number counted from 0"
#: the roles a profile's customer_channel resolves
SIDES = ("customer", "agent")
CHANNEL_SETTING_CHOICES = "mix, left, right, N (from 0), customer or agent"
CUSTOMER_CHANNEL_CHOICES = "left, right, or a channel number counted from 0"


def parse_channel(channel: str | None) -> str | int:
    """'mix' (or None: nothing chosen) is 'mix'; 'left', 'right' and 'N' become a 0-based index;
    'customer' and 'agent' stay names (resolve_channel maps them); anything else is a UsageError."""
    if channel is None:
        return "mix"
    text = str(channel).strip().lower()
    if text == "mix":
        return "mix"
    if text == "left":
        return 0
    if text == "right":
        return 1
    if text.isdigit():
        return int(text)
    if text in SIDES:
        return text
    raise UsageError(f"--channel {channel!r} is not a channel: use {CHANNEL_CHOICES}, customer or agent")


class MixWarning:
    """Says once per run (a callback, e.g. a warning on stderr) that a multi-channel recording is being
    mixed because nothing chose a channel: the customer's voiceprint would include the agent."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._said = False
        self._lock = threading.Lock()

    def __call__(self, channels: int) -> None:
        with self._lock:
            if self._said:
                return
            self._said = True
        sides = "both sides" if channels == 2 else f"all {channels} channels"
        self._say(f"{channels}-channel recording: mixing {sides}; the customer's voiceprint will include "
                  "the agent; use --channel customer|agent|left|right|N")


@dataclass(frozen=True)
class ChannelChoice:
    """Which channel to send: `index` is 'mix' or a 0-based channel; `side` the role it was named by."""

    index: str | int = "mix"
    #: what the user wrote, as errors quote it ("customer", "right (from DASCTL_CHANNEL)")
    text: str = "mix"
    side: str | None = None
    #: False when nothing chose it (the default mix): a multi-channel input then warns through mixed
    chosen: bool = True
    mixed: MixWarning | None = None


def resolve_channel(
    channel: str | None, customer_channel: str | None = None, *, where: str = "--channel",
    profile: str | None = None, mixed: MixWarning | None = None,
) -> ChannelChoice:
    """A --channel value (or the profile's) with customer/agent mapped through customer_channel.

    The agent is the other side of a 2-channel recording, so it needs customer_channel left or right.
    """
    if channel is None:
        return ChannelChoice(chosen=False, mixed=mixed)
    index = parse_channel(channel)
    shown = str(channel).strip().lower()
    text = shown if where == "--channel" else f"{shown} (from {where})"
    if index not in SIDES:
        return ChannelChoice(index, text, mixed=mixed)
    of = f" of profile '{profile}'" if profile else ""
    if customer_channel is None:
        raise UsageError(
            f"--channel {text}: the customer_channel{of} is not set, so the {index}'s side is unknown",
            f"Say which side the customer is on: `dasctl config set customer_channel left"
            f"{f' --profile {profile}' if profile else ''}` (or right, or N; DASCTL_CUSTOMER_CHANNEL), "
            "see docs/audio.md for Genesys Cloud, Amazon Connect and Twilio.",
        )
    customer = parse_customer_channel(customer_channel, f"customer_channel{of}")
    if index == "customer":
        return ChannelChoice(customer, text, side="customer", mixed=mixed)
    if customer not in (0, 1):
        raise UsageError(f"--channel {text}: the agent is the other side of a 2-channel recording, but the "
                         f"customer_channel{of} is channel {customer}",
                         "Name the agent's channel by its number instead (--channel N).")
    return ChannelChoice(1 - customer, text, side="agent", mixed=mixed)


def parse_customer_channel(value: str, where: str) -> int:
    """'left', 'right' or 'N' as a 0-based index; UsageError naming where the value came from."""
    text = str(value).strip().lower()
    index = {"left": 0, "right": 1}.get(text, int(text) if text.isdigit() else None)
    if index is None:
        raise UsageError(f"{where}: {value!r} is not a side: use {CUSTOMER_CHANNEL_CHOICES}")
    return index


def choose_channel(flag: str | None, profile: Profile, mixed: MixWarning | None = None) -> ChannelChoice:
    """--channel, else the profile's `channel` (DASCTL_CHANNEL or the file), else the mix (unchosen)."""
    if flag is not None:
        return resolve_channel(flag, profile.customer_channel, profile=profile.name, mixed=mixed)
    if profile.channel is None:
        return ChannelChoice(chosen=False, mixed=mixed)
    source = profile.sources.get("channel")
    where = "DASCTL_CHANNEL" if source == "environment" else f"channel of profile '{profile.name}'"
    return resolve_channel(profile.channel, profile.customer_channel, where=where, profile=profile.name,
                           mixed=mixed)


def channel_label(index: str | int, channels: int) -> str | int:
    """How a result names the channel sent: 'mono', 'mix', 'left'/'right' of a 2-channel input, else N."""
    if channels == 1:
        return "mono"
    if index == "mix":
        return "mix"
    if channels == 2:
        return ("left", "right")[int(index)]
    return int(index)


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
