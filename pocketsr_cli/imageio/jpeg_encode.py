"""JPEG writing: OpenCV's encoder, with the metadata segments spliced in after its header.

Why not Pillow: Pillow's JPEG encoder holds the GIL for the whole encode (a 4K q95 photo:
about 50 ms on this project's CPU; two threads encode no faster than one, and a thread that
wants the GIL meanwhile is late more than half of the time, against 0-3 % here).  The
pipeline's encoder threads then took turns instead of encoding in parallel, and the
inference thread, which needs the GIL between every layer it launches, waited behind
them.  OpenCV releases the GIL while it encodes.

Both wrap libjpeg-turbo with the same settings (``jpeg_set_quality`` with baseline tables,
no Huffman optimisation, a JFIF header), so the entropy-coded image is the one Pillow
writes; :func:`encode_jpeg` inserts EXIF, XMP and ICC segments after the JFIF header in
Pillow's order and layout (APP1 EXIF, APP1 XMP, APP2 ``ICC_PROFILE`` chunks), so a file
reads back as Pillow's did.  The tests compare both byte for byte.  (The chroma sampling
setting came with OpenCV 4.5.5; pocketsr requires 4.8.)
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from pocketsr_cli.errors import ImageWriteError
from pocketsr_cli.imageio.backends import opencv
from pocketsr_cli.imageio.metadata import (
    EXIF_PREFIX,
    Metadata,
    without_maker_note,
    without_thumbnail_data,
)

_SOI = b"\xff\xd8"
_APP0 = 0xE0
_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
_ICC_PREFIX = b"ICC_PROFILE\x00"
_SEGMENT_MAX = 65_533  # payload bytes one marker segment holds (its length field counts 2)
_ICC_CHUNK = _SEGMENT_MAX - len(_ICC_PREFIX) - 2  # 65,519: after the prefix, index, count
_ICC_CHUNKS_MAX = 255
XMP_MAX = _SEGMENT_MAX - len(_XMP_PREFIX)  # 65,504: the largest XMP packet a JPEG holds


def fits_jpeg(meta: Metadata, notes: list[str] | None = None) -> Metadata:
    """``meta`` without the EXIF block or XMP packet that is too long for one JPEG segment
    (64 KiB; the ICC profile is split over several and stays): an EXIF block that fits
    once its thumbnail is cut off the end (``metadata.without_thumbnail_data``), or then
    its maker note cut out (``metadata.without_maker_note``), is kept without them; a line
    for each thing left out goes to ``notes``."""
    exif, xmp = meta.exif, meta.xmp
    if exif is not None and not _exif_fits(exif):
        left_out: list[str] = []
        # The thumbnail is usually what makes it so, else a camera maker's private data.
        for what, cut in (
            ("thumbnail", without_thumbnail_data),
            ("maker note", without_maker_note),
        ):
            smaller = None if _exif_fits(exif) else cut(exif)
            if smaller is not None:
                exif = smaller
                left_out.append(what)
        if _exif_fits(exif):
            if notes is not None:
                was, it = ("was", "it") if len(left_out) == 1 else ("were", "them")
                notes.append(
                    f"its EXIF {' and '.join(left_out)} {was} left out: without {it} the EXIF "
                    "block fits a JPEG (64 KiB at most)"
                )
        else:
            exif = None
            size = len(meta.exif or b"")
            _note(notes, f"its EXIF block ({size:,} bytes) is too large for a JPEG")
    if xmp is not None and len(xmp) > XMP_MAX:
        xmp = None
        _note(notes, f"its XMP packet ({len(meta.xmp or b''):,} bytes) is too large for a JPEG")
    return dataclasses.replace(meta, exif=exif, xmp=xmp)


def _exif_fits(exif: bytes) -> bool:
    return len(EXIF_PREFIX) + len(exif) <= _SEGMENT_MAX


def _note(notes: list[str] | None, what: str) -> None:
    if notes is not None:
        notes.append(f"{what} (64 KiB at most): not copied")


def encode_jpeg(
    pixels: np.ndarray, quality: int, meta: Metadata, comment: bytes | None = None
) -> bytes:
    """``H x W x C`` uint8 pixels, C 1 (gray) or 3 (RGB), to JPEG bytes at ``quality``
    (1..100; 4:4:4 chroma from 90 up, else 4:2:0), with ``meta``'s EXIF block (stored
    without the ``Exif\\0\\0`` prefix, which is added), XMP packet and ICC profile, and
    after them a comment (COM) segment holding ``comment``, if given.
    Blocks too long for a JPEG are the caller's to leave out (:func:`fits_jpeg`).

    Raises:
        ImageWriteError: the encoder refused the image, or a metadata block does not fit
            a JPEG (EXIF, XMP or the comment over 64 KiB, an ICC profile over 255
            segments).
    """
    segments = _metadata_segments(meta)
    if comment:
        if len(comment) > _SEGMENT_MAX:
            raise ImageWriteError(f"the comment ({len(comment)} bytes) is too long for JPEG")
        segments += _segment(0xFE, comment)
    cv2 = opencv()
    # Full-resolution chroma at high quality: 4:2:0 would halve the colour detail that
    # upscaling just produced (4K q95: ~0.05 s and 2x the size, against ~0.03 s).
    sampling = (
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
        if quality >= 90
        else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    )
    if pixels.shape[2] == 3:
        image = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    else:
        image = np.ascontiguousarray(pixels[:, :, 0])
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    ok, buffer = cv2.imencode(".jpg", image, params)
    if not ok:
        raise ImageWriteError("could not encode JPEG (OpenCV refused the image)")
    view = memoryview(buffer).cast("B")
    if view[:2] != _SOI:
        raise ImageWriteError("could not encode JPEG (unexpected encoder output)")
    at = _after_jfif(view)
    head: bytes | memoryview = view[:at]
    if meta.dpi is not None:  # OpenCV's JFIF segment states no density: say the input's
        x, y = (max(1, min(65535, round(v))) for v in meta.dpi)
        jfif = b"JFIF\x00\x01\x01\x01" + struct.pack(">HH", x, y) + b"\x00\x00"
        head = _SOI + _segment(_APP0, jfif)
    # One join, no other copy of the encoded bytes.
    return b"".join((head, segments, view[at:]))


def _after_jfif(view: memoryview) -> int:
    """Offset just after the start marker and, if one follows it, the JFIF APP0 segment."""
    if len(view) >= 6 and view[2] == 0xFF and view[3] == _APP0:
        (length,) = struct.unpack_from(">H", view, 4)
        return 4 + length
    return 2


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _metadata_segments(meta: Metadata) -> bytes:
    """APP1 EXIF, APP1 XMP and APP2 ICC segments, as Pillow writes them."""
    parts: list[bytes] = []
    if meta.exif:
        exif = EXIF_PREFIX + meta.exif
        if len(exif) > _SEGMENT_MAX:
            raise ImageWriteError(f"the EXIF block ({len(exif)} bytes) is too long for JPEG")
        parts.append(_segment(0xE1, exif))
    if meta.xmp:
        if len(meta.xmp) > XMP_MAX:
            raise ImageWriteError(f"the XMP packet ({len(meta.xmp)} bytes) is too long for JPEG")
        parts.append(_segment(0xE1, _XMP_PREFIX + meta.xmp))
    if meta.icc_profile:
        icc = meta.icc_profile
        chunks = [icc[i : i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
        if len(chunks) > _ICC_CHUNKS_MAX:
            raise ImageWriteError(f"the ICC profile ({len(icc)} bytes) is too large for JPEG")
        for index, chunk in enumerate(chunks, start=1):
            parts.append(_segment(0xE2, _ICC_PREFIX + bytes((index, len(chunks))) + chunk))
    return b"".join(parts)
