"""Which MP3 files libsndfile reads exactly: those whose first frame carries LAME's "Info" tag (constant
bit rate, length exact). libsndfile (libmpg123 inside) stops a VBR file without a Xing header at its
estimated length (a 150 s call read as 105.8 s, exit 0), and decodes a VBR file wrongly for a few hundred
samples here and there depending on where its reads end; FFmpeg reads both whole and right, so from a
file they go to FFmpeg (dasctl/audio/ffmpeg.py), when PyAV is installed.
"""

from __future__ import annotations

import os

_ID3_HEADER = 10
#: bytes of the first frame searched for the tag: it follows the frame header and the side information
_TAG_WINDOW = 64


def _looks_like_mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # an MPEG audio frame header: 11 sync bits, then a version and layer III (bits 01 in the layer field)
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) == 0x02


def _first_frame_offset(fd: int, head: bytes) -> int:
    if not head.startswith(b"ID3") or len(head) < _ID3_HEADER:
        return 0
    size = 0
    for byte in head[6:10]:  # a "syncsafe" integer: 7 bits a byte
        size = (size << 7) | (byte & 0x7F)
    footer = _ID3_HEADER if head[5] & 0x10 else 0
    return _ID3_HEADER + size + footer


def is_mp3_without_exact_length(fd: int, head: bytes) -> bool:
    """An MP3 file (by its first bytes) whose first frame has no "Info" tag: VBR ("Xing", "VBRI") or no
    tag at all, so libsndfile would not read it exactly."""
    if not _looks_like_mp3(head):
        return False
    offset = _first_frame_offset(fd, head)
    try:
        frame = os.pread(fd, 4096, offset)
    except OSError:
        return False
    start = frame.find(b"\xff")
    while start >= 0 and not _looks_like_mp3(frame[start:start + 2]):
        start = frame.find(b"\xff", start + 1)
    if start < 0:
        return False  # no frame where one should be: libsndfile's verdict on it stands
    return b"Info" not in frame[start:start + _TAG_WINDOW]
