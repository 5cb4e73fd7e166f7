"""EXIF, ICC and XMP at the byte level: what an input's metadata becomes in its output.

:class:`Metadata` holds the three blocks as decoding leaves them: EXIF bare (no ``Exif\\0\\0``
prefix), the orientation reset to 1 in EXIF and XMP (the pixels are turned upright
instead), an ICC profile only when it matches the pixels' colour space.
:func:`output_metadata` fits them to the encoded pixels (new size, channels).  EXIF is
patched in place, never re-serialised, so that maker notes and unknown tags survive; only
a block too large for a JPEG loses its thumbnail or maker note, the rest moved up intact.
Nothing here raises on malformed metadata: it is returned unchanged or dropped.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metadata:
    """Metadata carried from an input to its output.

    Attributes:
        exif: the EXIF block as a bare TIFF structure (starts with ``II*\\0`` or ``MM\\0*``,
            no ``Exif\\0\\0`` prefix), its Orientation tag already set to 1.
        icc_profile: the ICC profile, matching the pixels' colour space (gray or RGB).
        xmp: the XMP packet (UTF-8 XML), any ``tiff:Orientation`` already set to 1.
        dpi: the print resolution the file states (JFIF density, PNG pHYs, TIFF
            resolution), pixels per inch across and down; kept as it is (an upscale
            prints larger at the same resolution, as an editor's resample does).
        png_colour: a PNG's gAMA, cHRM and sRGB chunks as they were (whole chunks), when
            it has no ICC profile: how its colours are to be shown, written again into a
            PNG output (other formats have no place for them).
    """

    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    png_colour: bytes | None = None


EXIF_PREFIX = b"Exif\x00\x00"
TAG_ORIENTATION = 0x0112
_TAG_EXIF_IFD = 0x8769
_TAG_PIXEL_X = 0xA002
_TAG_PIXEL_Y = 0xA003
SHORT = 3  # TIFF field types
LONG = 4


def bare_exif(raw: bytes | None) -> bytes | None:
    """The TIFF structure inside an EXIF block, or None when it is missing or malformed."""
    if not raw:
        return None
    if raw.startswith(EXIF_PREFIX):
        raw = raw[len(EXIF_PREFIX) :]
    if raw[:4] not in (b"II*\x00", b"MM\x00*") or len(raw) < 8:
        return None
    return raw


def ifd_entries(buf: bytes | bytearray, order: str, offset: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(tag, type, position of the value field)`` for the entries of one IFD."""
    (count,) = struct.unpack_from(order + "H", buf, offset)
    for i in range(count):
        pos = offset + 2 + 12 * i
        tag, typ = struct.unpack_from(order + "HH", buf, pos)
        yield tag, typ, pos + 8


def exif_orientation(exif: bytes | None) -> int:
    """Orientation tag (1..8) of a bare EXIF block; 1 when absent or unreadable."""
    if not exif:
        return 1
    order = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", exif, 4)
        for tag, typ, pos in ifd_entries(exif, order, ifd0):
            if tag == TAG_ORIENTATION and typ == SHORT:
                (value,) = struct.unpack_from(order + "H", exif, pos)
                return value if 1 <= value <= 8 else 1
    except struct.error:
        pass
    return 1


def patch_exif(exif: bytes, *, size: tuple[int, int] | None = None) -> bytes:
    """Set Orientation to 1 (and PixelX/YDimension, and IFD0's ImageWidth/ImageLength where
    a phone wrote them, to ``size`` = (w, h)) in place.

    Patching the bytes rather than re-serialising keeps maker notes and unknown tags intact.
    When the orientation changes, the link to IFD1 (the thumbnail) is cut as well: the
    thumbnail is stored in the old orientation and would now be shown rotated.  Malformed
    blocks are returned unchanged.
    """
    buf = bytearray(exif)
    order = "<" if buf[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", buf, 4)
        exif_ifd = 0
        for tag, typ, pos in ifd_entries(buf, order, ifd0):
            if tag == TAG_ORIENTATION and typ == SHORT:
                (old,) = struct.unpack_from(order + "H", buf, pos)
                if old != 1:
                    struct.pack_into(order + "H", buf, pos, 1)
                    _unlink_thumbnail(buf, order, ifd0)
            elif tag == _TAG_EXIF_IFD and typ == LONG:
                (exif_ifd,) = struct.unpack_from(order + "I", buf, pos)
        if size is not None:
            _set_size(buf, order, ifd0, _TAG_IMAGE_WIDTH, _TAG_IMAGE_LENGTH, size)
            if exif_ifd:
                _set_size(buf, order, exif_ifd, _TAG_PIXEL_X, _TAG_PIXEL_Y, size)
    except struct.error:
        return exif
    return bytes(buf)


# Bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE,
# UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SUB_IFDS = (_TAG_EXIF_IFD, 0x8825, 0xA005)  # Exif, GPS, Interoperability
_TAG_THUMBNAIL_OFFSET, _TAG_THUMBNAIL_LENGTH = 0x0201, 0x0202


def _extent(buf: bytes, order: str, offset: int, seen: set[int]) -> int:
    """Where the IFD at ``offset``, the values it points at and its sub-IFDs end."""
    seen.add(offset)
    (count,) = struct.unpack_from(order + "H", buf, offset)
    end = offset + 2 + 12 * count + 4
    for i in range(count):
        pos = offset + 2 + 12 * i
        tag, typ, n = struct.unpack_from(order + "HHI", buf, pos)
        (value,) = struct.unpack_from(order + "I", buf, pos + 8)
        if _TYPE_SIZES.get(typ, 1) * n > 4:
            end = max(end, value + _TYPE_SIZES.get(typ, 1) * n)
        if tag in _SUB_IFDS and typ in (LONG, 13) and value not in seen and value < len(buf):
            end = max(end, _extent(buf, order, value, seen))
    return end


def without_thumbnail_data(exif: bytes) -> bytes | None:
    """``exif`` shortened by its thumbnail (IFD1 and the JPEG it points at), or None when
    that cannot be done safely: no thumbnail, or something IFD0 or its Exif, GPS and
    Interoperability IFDs point at lies after the thumbnail's start (the block would be
    cut through it).  For a block too large for a JPEG segment, where the thumbnail is
    usually what makes it so; maker notes and other tags stay byte for byte."""
    order = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", exif, 4)
        (count,) = struct.unpack_from(order + "H", exif, ifd0)
        link = ifd0 + 2 + 12 * count
        (ifd1,) = struct.unpack_from(order + "I", exif, link)
        if not ifd1:
            return None
        start = ifd1
        for tag, typ, pos in ifd_entries(exif, order, ifd1):
            if tag == _TAG_THUMBNAIL_OFFSET and typ == LONG:
                (offset,) = struct.unpack_from(order + "I", exif, pos)
                start = min(start, offset)
        if _extent(exif, order, ifd0, set()) > start:
            return None
    except struct.error:
        return None
    buf = bytearray(exif[:start])
    struct.pack_into(order + "I", buf, link, 0)
    return bytes(buf)


_TAG_MAKER_NOTE = 0x927C
# Offsets to image data and further IFDs that this module does not follow: a block holding
# one is not rearranged (they would point at the wrong bytes once data before them moved).
_UNFOLLOWED_OFFSETS = (0x0111, 0x0144, 0x014A)  # StripOffsets, TileOffsets, SubIFDs


def _references(buf: bytes, order: str) -> list[tuple[int, int, int]] | None:
    """The offsets in the block, as ``(where it is stored, where it points, bytes there)``:
    IFD0's from the header, each IFD's link to the next (IFD1, the thumbnail's), their
    Exif, GPS and Interoperability IFDs, the values stored out of line and the thumbnail.
    None when the block holds an offset this walk does not follow (image strips or tiles,
    SubIFDs), an entry of a type TIFF does not define (its value may be one), or an offset
    past its end.  Offsets inside a tag's value (a maker note's own) are not seen.

    Raises:
        struct.error: the block is cut short.
    """
    (ifd0,) = struct.unpack_from(order + "I", buf, 4)
    refs: list[tuple[int, int, int]] = []
    todo, seen = [(4, ifd0)], set()
    while todo:
        field, ifd = todo.pop()
        (count,) = struct.unpack_from(order + "H", buf, ifd)
        link = ifd + 2 + 12 * count
        refs.append((field, ifd, link + 4 - ifd))
        if ifd in seen:
            continue
        seen.add(ifd)
        thumbnail: list[int] = []  # where its offset is stored, where it points
        thumbnail_length = 0
        for i in range(count):
            pos = ifd + 2 + 12 * i
            tag, typ, n, value = struct.unpack_from(order + "HHII", buf, pos)
            if typ not in _TYPE_SIZES or tag in _UNFOLLOWED_OFFSETS:
                return None
            if tag in _SUB_IFDS and typ in (LONG, 13) and n == 1:
                if value:
                    todo.append((pos + 8, value))
            elif tag == _TAG_THUMBNAIL_OFFSET and typ == LONG and n == 1:
                thumbnail = [pos + 8, value]
            elif tag == _TAG_THUMBNAIL_LENGTH and typ == LONG and n == 1:
                thumbnail_length = value
            elif _TYPE_SIZES[typ] * n > 4:
                refs.append((pos + 8, value, _TYPE_SIZES[typ] * n))
        if thumbnail:
            refs.append((thumbnail[0], thumbnail[1], thumbnail_length))
        (after,) = struct.unpack_from(order + "I", buf, link)
        if after:
            todo.append((link, after))
    if any(target + size > len(buf) for _field, target, size in refs):
        return None
    return refs


def without_maker_note(exif: bytes) -> bytes | None:
    """``exif`` without its maker note (the Exif IFD's MakerNote entry and the bytes it
    points at: a camera maker's private data, often tens of KiB), or None when there is
    none or it cannot be cut out safely: something else lies within its bytes, or the
    block holds an offset :func:`_references` does not know.  What follows the cut moves
    up and every offset past it with it; all else stays byte for byte.  For a block too
    large for a JPEG segment once its thumbnail is gone (:func:`without_thumbnail_data`).
    """
    order = "<" if exif[:2] == b"II" else ">"
    try:
        refs = _references(exif, order)
        exif_ifd, note = _maker_note_entry(exif, order)
        if refs is None or not note:
            return None
        (count,) = struct.unpack_from(order + "H", exif, exif_ifd)
    except struct.error:
        return None
    # The entry goes, and the entries after it move up over it; an odd-sized note leaves
    # its last byte behind, so that every offset keeps its parity (TIFF's word alignment).
    cuts = [(note - 8, 12)]
    data = next(((target, size) for field, target, size in refs if field == note), None)
    if data is not None:
        cuts.append((data[0], data[1] - data[1] % 2))
    for field, target, size in refs:
        inside_entry = cuts[0][0] <= target < cuts[0][0] + 12
        inside_data = data is not None and field != note and _overlap((target, max(size, 1)), data)
        if inside_entry or inside_data:
            return None
    cuts.sort()

    def moved(offset: int) -> int:
        return offset - sum(n for start, n in cuts if start + n <= offset)

    out, at = bytearray(), 0
    for start, n in cuts:
        out += exif[at:start]
        at = start + n
    out += exif[at:]
    struct.pack_into(order + "H", out, moved(exif_ifd), count - 1)
    for field, target, _size in refs:
        if field != note:
            struct.pack_into(order + "I", out, moved(field), moved(target))
    return bytes(out)


def _maker_note_entry(exif: bytes, order: str) -> tuple[int, int]:
    """Where the Exif IFD is and where its MakerNote entry's value field is (0: none)."""
    (ifd0,) = struct.unpack_from(order + "I", exif, 4)
    for tag, typ, pos in ifd_entries(exif, order, ifd0):
        if tag == _TAG_EXIF_IFD and typ in (LONG, 13):
            (exif_ifd,) = struct.unpack_from(order + "I", exif, pos)
            if not exif_ifd:
                break
            for note_tag, _typ, note in ifd_entries(exif, order, exif_ifd):
                if note_tag == _TAG_MAKER_NOTE:
                    return exif_ifd, note
    return 0, 0


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the byte ranges ``(start, length)`` a and b share a byte."""
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def without_thumbnail(exif: bytes) -> bytes:
    """``exif`` with the link from IFD0 to IFD1 (the thumbnail) cut, for pixels that were
    turned upright before the EXIF was read (HEIF: libheif applies its rotation and the
    plugin already says orientation 1, so :func:`patch_exif` sees nothing to cut).
    Malformed blocks are returned unchanged."""
    buf = bytearray(exif)
    order = "<" if buf[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", buf, 4)
        _unlink_thumbnail(buf, order, ifd0)
    except struct.error:
        return exif
    return bytes(buf)


def _unlink_thumbnail(buf: bytearray, order: str, ifd0: int) -> None:
    """Set IFD0's link to the next IFD (IFD1, the thumbnail) to none, in place."""
    (count,) = struct.unpack_from(order + "H", buf, ifd0)
    struct.pack_into(order + "I", buf, ifd0 + 2 + 12 * count, 0)


_TAG_IMAGE_WIDTH, _TAG_IMAGE_LENGTH = 0x0100, 0x0101


def _set_size(
    buf: bytearray, order: str, ifd: int, width_tag: int, height_tag: int, size: tuple[int, int]
) -> None:
    """Write ``size`` into the IFD at ``ifd``'s width and height tags, where present."""
    for tag, typ, pos in ifd_entries(buf, order, ifd):
        if tag in (width_tag, height_tag):
            value = size[0] if tag == width_tag else size[1]
            if typ == SHORT and value <= 0xFFFF:
                struct.pack_into(order + "H", buf, pos, value)
            elif typ == LONG:
                struct.pack_into(order + "I", buf, pos, value)


_XMP_SIZES = {
    b"exif:PixelXDimension": 0,
    b"exif:PixelYDimension": 1,
    b"tiff:ImageWidth": 0,
    b"tiff:ImageLength": 1,
}


def xmp_with_size(xmp: bytes, size: tuple[int, int]) -> bytes:
    """``xmp`` with the image size it states (``exif:PixelX/YDimension``,
    ``tiff:ImageWidth/Length``, attribute or element form) set to ``size`` = (w, h)."""
    for name, axis in _XMP_SIZES.items():
        value = str(size[axis]).encode()
        key = re.escape(name)
        xmp = re.sub(rb"(" + key + rb"\s*=\s*[\"'])\d+([\"'])", rb"\g<1>" + value + rb"\g<2>", xmp)
        xmp = re.sub(
            rb"(<" + key + rb">\s*)\d+(\s*</" + key + rb">)", rb"\g<1>" + value + rb"\g<2>", xmp
        )
    return xmp


_XMP_ORIENTATION = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])[1-8]([\"'])")
_XMP_ORIENTATION_ELEMENT = re.compile(rb"(<tiff:Orientation>\s*)[1-8](\s*</tiff:Orientation>)")


def reset_xmp_orientation(xmp: bytes) -> bytes:
    """Set ``tiff:Orientation`` to 1 in an XMP packet (attribute or element form).

    Without this, viewers that prefer XMP over EXIF would rotate the already upright pixels.
    """
    xmp = _XMP_ORIENTATION.sub(rb"\g<1>1\g<2>", xmp)
    return _XMP_ORIENTATION_ELEMENT.sub(rb"\g<1>1\g<2>", xmp)


# A phone's JPEG may carry more than its picture after it, which its XMP points at: a
# motion photo's video (Google's GCamera:MotionPhoto / MicroVideo, Samsung's newer ones),
# an Ultra HDR gain map or a depth map (a Container:Directory listing each item's length,
# counted back from the end of the file).  The output holds the upscaled picture alone.
_XMP_MOTION = re.compile(rb"(GCamera:(?:MotionPhoto|MicroVideo)\s*=\s*[\"'])1([\"'])")
_XMP_MOTION_ELEMENT = re.compile(
    rb"(<GCamera:(?:MotionPhoto|MicroVideo)>\s*)1(\s*</GCamera:(?:MotionPhoto|MicroVideo)>)"
)
_XMP_MICRO_VIDEO_OFFSET = re.compile(rb"\s+GCamera:MicroVideoOffset\s*=\s*[\"']\d*[\"']")
_XMP_CONTAINER = re.compile(
    rb"<Container:Directory\b(?:[^>]*/>|.*?</Container:Directory>)", re.DOTALL
)


def without_attached_media(xmp: bytes) -> tuple[bytes, str | None]:
    """``xmp`` no longer pointing at what the file held after its picture (a motion
    photo's video, a gain map or depth map listed in a ``Container:Directory``), which no
    output carries, and a line saying what was left out (None: nothing).

    Kept as they were, the flags would have a viewer (Google Photos) take the output's last
    bytes for a video: ``GCamera:MotionPhoto``/``MicroVideo`` become 0, the micro-video
    offset and the container directory go."""
    motion = bool(_XMP_MOTION.search(xmp) or _XMP_MOTION_ELEMENT.search(xmp))
    container = bool(_XMP_CONTAINER.search(xmp))
    if not motion and not container:
        return xmp, None
    xmp = _XMP_MOTION.sub(rb"\g<1>0\g<2>", xmp)
    xmp = _XMP_MOTION_ELEMENT.sub(rb"\g<1>0\g<2>", xmp)
    xmp = _XMP_MICRO_VIDEO_OFFSET.sub(b"", xmp)
    xmp = _XMP_CONTAINER.sub(b"", xmp)
    if motion:
        return xmp, "a motion photo: its video was left out, only the picture was upscaled"
    return xmp, (
        "the items its XMP lists after the picture (an HDR gain map, a depth map) were left "
        "out: only the picture was upscaled"
    )


def icc_colour_space(icc: bytes) -> bytes | None:
    """The data colour space signature of an ICC profile (``b"RGB "``, ``b"GRAY"``...)."""
    return icc[16:20] if len(icc) >= 128 else None


def icc_for_channels(icc: bytes | None, channels: int) -> bytes | None:
    """``icc`` if it describes gray (C in 1, 2) or RGB (C in 3, 4) pixels, else None.

    A profile for another colour space (CMYK, or RGB on gray pixels) would make viewers
    misinterpret the pixels, and libpng rejects such files.
    """
    if not icc:
        return None
    expected = b"GRAY" if channels in (1, 2) else b"RGB "
    return icc if icc_colour_space(icc) == expected else None


def xmp_bytes(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    return None


def output_metadata(metadata: Metadata | None, pixels: np.ndarray) -> Metadata:
    """Metadata fitted to the encoded pixels: new pixel dimensions, matching ICC profile."""
    if metadata is None:
        return Metadata()
    exif = bare_exif(metadata.exif)
    if exif is not None:
        exif = patch_exif(exif, size=(pixels.shape[1], pixels.shape[0]))
    icc = icc_for_channels(metadata.icc_profile, pixels.shape[2])
    size = (pixels.shape[1], pixels.shape[0])
    xmp = xmp_with_size(reset_xmp_orientation(metadata.xmp), size) if metadata.xmp else None
    return Metadata(
        exif=exif, icc_profile=icc, xmp=xmp, dpi=metadata.dpi, png_colour=metadata.png_colour
    )


def dpi_of(value: object) -> tuple[float, float] | None:
    """A print resolution as Pillow reports it (``info["dpi"]``): two numbers of at least 1
    dpi, or None for anything else (a missing or zero density means "not stated")."""
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    try:
        x, y = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return (x, y) if 1 <= x < 1e6 and 1 <= y < 1e6 else None  # below 1 dpi: no print size
