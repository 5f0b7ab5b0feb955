"""G.711 mu-law, bit-exact with Sun's reference g711.c (Python's `audioop`, `audioop-lts`).

ffmpeg's `pcm_mulaw` rounds differently on 512 of the 65536 int16 inputs (docs/protocol.md §5); we follow
audioop, and tests pin every input against it. Both directions are table lookups built once, lazily.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_BIAS = 0x84
_CLIP = 8159  # in the 14-bit domain of st_14linear2ulaw
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


@lru_cache(maxsize=1)
def encode_table() -> np.ndarray:
    """65536 mu-law bytes indexed by the int16 sample's uint16 bit pattern (g711.c st_14linear2ulaw)."""
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    pcm = pcm >> 2  # arithmetic shift, as the C code does on a signed value
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(negative, -pcm, pcm), _CLIP) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude, side="left")
    in_range = segment < 8
    shift = np.minimum(segment, 7) + 1
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0xF)
    table = np.where(in_range, code ^ mask, 0x7F ^ mask)
    return table.astype(np.uint8)


@lru_cache(maxsize=1)
def decode_table() -> np.ndarray:
    """256 int16 samples indexed by mu-law byte (g711.c st_ulaw2linear16)."""
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((inverted & 0x0F) << 3) + _BIAS) << ((inverted & 0x70) >> 4)
    samples = np.where(inverted & 0x80, _BIAS - magnitude, magnitude - _BIAS)
    return samples.astype(np.int16)


def mulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples -> G.711 mu-law bytes, bit-exact with audioop.lin2ulaw (Sun g711.c)."""
    return mulaw_encode_array(samples).tobytes()


def mulaw_encode_array(samples: np.ndarray) -> np.ndarray:
    """Like mulaw_encode, but returns the uint8 array (no copy into bytes)."""
    array = np.ascontiguousarray(samples, dtype=np.int16)
    return encode_table()[array.view(np.uint16)]


def mulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """G.711 mu-law bytes -> int16 samples, bit-exact with audioop.ulaw2lin."""
    return decode_table()[np.frombuffer(data, dtype=np.uint8)]
