"""WebP's own concern: whether a file stores its picture losslessly (:func:`is_lossless`).

A WebP holds either a lossy bitstream (chunk ``VP8 ``, with its alpha in an ``ALPH``
chunk) or a lossless one (``VP8L``, alpha included), in one of three containers: the
simple one (the bitstream chunk comes first), the extended one (``VP8X`` first, then
``ICCP``, ``ANIM``, ``ALPH``... before the bitstream, ``EXIF`` and ``XMP `` after it) or,
in an extended file, an animation, whose frames (``ANMF``) each hold their own bitstream
after a 16-byte frame header.  Pillow decodes all of them without saying which it was.
"""

from __future__ import annotations

from typing import IO

_MAX_CHUNKS = 64  # a real file's picture comes after a handful (ICC, animation settings)


def is_lossless(handle: IO[bytes]) -> bool:
    """Whether the WebP read from ``handle`` (positioned at its start) stores its picture,
    or an animation's first frame (the one that is decoded), as a lossless ``VP8L``
    bitstream.  Only chunk headers are read: the file's ICC profile or metadata is
    skipped over, not read.  False for a lossy picture, and for anything that is no
    well-formed WebP (the decoder then says what is wrong).  Leaves ``handle`` anywhere.
    """
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    for _ in range(_MAX_CHUNKS):
        chunk = handle.read(8)
        if len(chunk) < 8:
            return False
        tag, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if tag == b"VP8L":
            return True
        if tag == b"VP8 ":
            return False
        if tag == b"ANMF":
            # The frame's own chunks follow its 16-byte header: walk into them.
            if len(handle.read(16)) < 16:
                return False
            continue
        handle.seek(size + (size & 1), 1)  # chunks are padded to an even length
    return False
