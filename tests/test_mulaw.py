"""G.711 mu-law: every one of the 65536 int16 inputs and all 256 codes pinned against the stdlib's audioop."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest

from dasctl.audio import mulaw_decode, mulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop", reason="audioop (audioop-lts on 3.13+) is the reference")

ALL_INT16 = np.arange(65536, dtype=np.uint16).view(np.int16)


def test_encode_matches_audioop_on_every_int16_input():
    ours = np.frombuffer(mulaw_encode(ALL_INT16), dtype=np.uint8)
    reference = np.frombuffer(audioop.lin2ulaw(ALL_INT16.tobytes(), 2), dtype=np.uint8)
    mismatches = np.flatnonzero(ours != reference)
    assert mismatches.size == 0, f"{mismatches.size} inputs differ, first at {ALL_INT16[mismatches[:5]]}"


def test_decode_matches_audioop_on_every_code():
    codes = bytes(range(256))
    reference = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype=np.int16)
    assert mulaw_decode(codes).tolist() == reference.tolist()


def test_encode_accepts_any_int16_layout_and_returns_one_byte_per_sample():
    strided = np.arange(-1000, 1000, dtype=np.int16)[::2]
    assert mulaw_encode(strided) == audioop.lin2ulaw(np.ascontiguousarray(strided).tobytes(), 2)
    assert mulaw_encode(np.zeros(0, dtype=np.int16)) == b""


def test_decode_then_encode_is_the_identity_on_codes_except_negative_zero():
    codes = np.arange(256, dtype=np.uint8)
    again = np.frombuffer(mulaw_encode(mulaw_decode(codes.tobytes())), dtype=np.uint8)
    # 0x7F ("-0") decodes to 0, which encodes as 0xFF ("+0"): the only code without a round trip
    assert [int(c) for c in codes if again[c] != c] == [0x7F]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_differs_only_at_segment_boundaries_as_protocol_md_says():
    """The known disagreement with ffmpeg's pcm_mulaw (docs/protocol.md §5): 512 inputs, each one code off."""
    ffmpeg = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", "8000", "-ac", "1", "-i", "-", "-f", "mulaw", "-"],
        input=ALL_INT16.tobytes(), capture_output=True, timeout=30, check=True,
    ).stdout
    theirs = np.frombuffer(ffmpeg, dtype=np.uint8)
    ours = np.frombuffer(mulaw_encode(ALL_INT16), dtype=np.uint8)
    differ = np.flatnonzero(ours != theirs)
    assert differ.size == 512
    assert np.all(np.abs(ours[differ].astype(int) - theirs[differ].astype(int)) == 1)
