"""EXIF, ICC and XMP at the byte level: what an input's metadata becomes in its output.

:class:`Metadata` holds the three blocks as decoding leaves them: EXIF bare (no ``Exif\\0\\0``
prefix), the orientation reset to 1 in EXIF and XMP (the pixels are turned upright
instead; an XMP orientation without an EXIF one is kept, pixels unturned), an ICC profile
only when it matches the pixels' colour space.
:func:`output_metadata` fits them to the encoded pixels (new size, channels).  EXIF is
patched in place, never re-serialised, so that maker notes and unknown tags survive; only
a block too large for a JPEG loses its thumbnail or maker note, the rest moved up intact.
Nothing here raises on malformed metadata: it is returned unchanged or dropped.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Metadata:
    """Metadata carried from an input to its output.

    Attributes:
        exif: the EXIF block as a bare TIFF structure (starts with ``II*\\0`` or ``MM\\0*``,
            no ``Exif\\0\\0`` prefix), its Orientation tag already set to 1.
        icc_profile: the ICC profile, matching the pixels' colour space (gray or RGB).
        xmp: the XMP packet (UTF-8 XML), its ``tiff:Orientation`` set to 1 where the
            pixels were turned upright or the EXIF states an orientation.  One the EXIF
            does not state is kept, and the pixels stay as stored: browsers and most
            viewers ignore it, Lightroom and Photoshop honour it, and either way the
            output shows as the input did.
        dpi: the print resolution the file states (JFIF density, PNG pHYs, TIFF
            resolution), pixels per inch across and down the upright pixels (swapped
            where the orientation turned them a quarter); kept as it is (an upscale
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

    def colour_only(self) -> Metadata:
        """What ``--strip-metadata`` keeps: how the colours are to be shown (the ICC
        profile, a PNG's gAMA/cHRM/sRGB chunks), nothing about the camera, the place, the
        time or the editing (EXIF, XMP) and no print resolution.  The pixels are numbers
        in the profile's colour space: without it a Display P3 or Adobe RGB photo would
        be shown as sRGB, its colours dulled, so, as a photo editor's export with
        metadata "none" still embeds the profile, the profile stays."""
        return Metadata(icc_profile=self.icc_profile, png_colour=self.png_colour)


EXIF_PREFIX = b"Exif\x00\x00"
TAG_ORIENTATION = 0x0112
_TAG_EXIF_IFD = 0x8769
_TAG_PIXEL_X = 0xA002
_TAG_PIXEL_Y = 0xA003
_TAG_X_RESOLUTION, _TAG_Y_RESOLUTION = 0x011A, 0x011B
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
    return _stated_orientation(exif) or 1


def exif_states_orientation(exif: bytes | None) -> bool:
    """Whether a bare EXIF block holds a readable Orientation tag (1 included)."""
    return _stated_orientation(exif) is not None


def _stated_orientation(exif: bytes | None) -> int | None:
    """The Orientation tag of a bare EXIF block: 1..8 (1 for a value outside them), or
    None when it has none or cannot be read."""
    if not exif:
        return None
    order = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", exif, 4)
        for tag, typ, pos in ifd_entries(exif, order, ifd0):
            if tag == TAG_ORIENTATION and typ == SHORT:
                (value,) = struct.unpack_from(order + "H", exif, pos)
                return value if 1 <= value <= 8 else 1
    except struct.error:
        pass
    return None


def patch_exif(
    exif: bytes, *, size: tuple[int, int] | None = None, quarter_turn: bool = False
) -> bytes:
    """Set Orientation to 1 (and PixelX/YDimension, and IFD0's ImageWidth/ImageLength where
    a phone wrote them, to ``size`` = (w, h)) in place; with ``quarter_turn`` (the pixels
    were turned a quarter, orientation 5 to 8), XResolution and YResolution trade values,
    as the pixels' rows and columns did.

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
        resolution: dict[int, int] = {}  # X/YResolution: where each entry's type starts
        for tag, typ, pos in ifd_entries(buf, order, ifd0):
            if tag == TAG_ORIENTATION and typ == SHORT:
                (old,) = struct.unpack_from(order + "H", buf, pos)
                if old != 1:
                    struct.pack_into(order + "H", buf, pos, 1)
                    _unlink_thumbnail(buf, order, ifd0)
            elif tag == _TAG_EXIF_IFD and typ == LONG:
                (exif_ifd,) = struct.unpack_from(order + "I", buf, pos)
            elif tag in (_TAG_X_RESOLUTION, _TAG_Y_RESOLUTION):
                resolution[tag] = pos - 6
        whole = all(at + 10 <= len(buf) for at in resolution.values())  # not cut short
        if quarter_turn and len(resolution) == 2 and whole:
            # Each entry's type, count and value (or offset to it) go to the other tag:
            # the tags stay in order, the values trade places, nothing else moves.
            x, y = resolution[_TAG_X_RESOLUTION], resolution[_TAG_Y_RESOLUTION]
            buf[x : x + 10], buf[y : y + 10] = buf[y : y + 10], buf[x : x + 10]
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
_IFD = 13
_SUB_IFDS = (_TAG_EXIF_IFD, 0x8825, 0xA005)  # Exif, GPS, Interoperability
_TAG_THUMBNAIL_OFFSET, _TAG_THUMBNAIL_LENGTH = 0x0201, 0x0202
# Offsets to image data and further IFDs that the walk does not follow: a block holding one
# is not edited where it is (they would point at the wrong bytes once data before them moved).
_UNFOLLOWED_OFFSETS = (0x0111, 0x0144, 0x014A)  # StripOffsets, TileOffsets, SubIFDs
_LINK = -1  # the tag of an offset stored in the header (to IFD0) or in an IFD's link


class _Ref(NamedTuple):
    """One offset in an EXIF block, as :func:`_walk` found it."""

    field: int  # where it is stored (4: the header's, to IFD0)
    target: int  # where it points
    size: int  # the bytes it points at (an IFD: its table and its link)
    tag: int  # the tag of the entry that holds it, or _LINK
    ifd: bool  # whether it points at an IFD
    thumbnail: bool  # reached through IFD0's link (IFD1, the thumbnail's)

    def inside(self, length: int) -> bool:
        """Whether it points past the header and its bytes end within ``length``."""
        return self.target >= 8 and self.target + self.size <= length


@dataclass(frozen=True)
class _Layout:
    """An EXIF block's structure, as far as :func:`_walk` understood it.

    Attributes:
        order: its byte order, ``"<"`` or ``">"``.
        length: its length in bytes.
        refs: the offsets it follows, each one once: the header's, each IFD's link to the
            next, the Exif, GPS and Interoperability IFDs, the values stored out of line and
            the thumbnail.  One pointing past the end is listed, not followed.
        unknown: for each entry it could not follow (an offset to image strips or tiles or
            to SubIFDs, a sub-IFD or thumbnail offset of another shape, a type TIFF does not
            define: its value may be an offset), whether it lies on the thumbnail's side.
        ifd0, exif_ifd: where IFD0 and the Exif IFD it points at are (0: none).
        link: where IFD0's link to the next IFD (IFD1, the thumbnail's) is stored (0: unread).
    """

    order: str
    length: int
    refs: tuple[_Ref, ...]
    unknown: tuple[bool, ...]
    ifd0: int
    exif_ifd: int
    link: int

    def understood(self, *, thumbnail: bool) -> bool:
        """Whether every offset on IFD0's side, and on the thumbnail's when ``thumbnail``,
        was followed and points within the block: what an edit that moves or cuts bytes
        needs (an offset it cannot see would point at the wrong bytes afterwards)."""
        refs = (ref for ref in self.refs if thumbnail or not ref.thumbnail)
        unknown = [side for side in self.unknown if thumbnail or not side]
        return not unknown and all(ref.inside(self.length) for ref in refs)


def _walk(exif: bytes) -> _Layout | None:
    """The structure of a bare EXIF block: IFD0 and its sub-IFDs first, then what IFD0's
    link leads to (IFD1, the thumbnail's, and its own links).  None without a TIFF header.

    The one walk behind every edit here that moves or cuts bytes, with one tolerance
    policy: it never raises on damaged data (an IFD whose table does not fit, a loop of
    offsets, garbage entries) but says what it could not follow (:meth:`_Layout.understood`),
    and the edits refuse a block they do not fully understand.  Offsets inside a tag's
    value (a maker note's own) are not seen: such a value moves as one piece."""
    if len(exif) < 8 or exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if exif[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(order + "I", exif, 4)
    refs: list[_Ref] = []
    unknown: list[bool] = []
    seen: set[int] = set()
    # IFD tables that do not overlap hold at most one entry per 12 bytes of the block; one
    # that would pass that overlaps others, and is not followed: tables laid over each other
    # (IFD k + 1 inside IFD k, one entry on) made the walk quadratic, minutes and gigabytes
    # for a 1 MB block.
    entries_left = len(exif) // 12
    exif_ifd = link0 = 0
    sides: tuple[list[tuple[int, int, int]], ...] = ([(4, ifd0, _LINK)], [])
    for thumbnail, todo in enumerate(sides):
        while todo:
            field, at, tag = todo.pop()
            fits = 8 <= at <= len(exif) - 2
            count = struct.unpack_from(order + "H", exif, at)[0] if fits else 0
            ref = _Ref(field, at, 2 + 12 * count + 4, tag, True, bool(thumbnail))
            refs.append(ref)
            if at in seen or not ref.inside(len(exif)):
                continue
            seen.add(at)
            if count > entries_left:
                unknown.append(bool(thumbnail))
                continue
            entries_left -= count
            thumbnail_at, thumbnail_length = 0, 0
            for pos in range(at + 2, at + 2 + 12 * count, 12):
                entry, typ, n, value = struct.unpack_from(order + "HHII", exif, pos)
                width = _TYPE_SIZES.get(typ)
                if width is None or entry in _UNFOLLOWED_OFFSETS:
                    unknown.append(bool(thumbnail))
                elif entry in _SUB_IFDS or entry == _TAG_THUMBNAIL_OFFSET:
                    again = entry == _TAG_THUMBNAIL_OFFSET and thumbnail_at  # a second one
                    if typ not in (LONG, _IFD) or n != 1 or again:
                        unknown.append(bool(thumbnail))
                    elif entry == _TAG_THUMBNAIL_OFFSET:
                        thumbnail_at = pos + 8
                    elif value:
                        todo.append((pos + 8, value, entry))
                        if at == ifd0 and entry == _TAG_EXIF_IFD and not exif_ifd:
                            exif_ifd = value
                elif width * n > 4:
                    refs.append(_Ref(pos + 8, value, width * n, entry, False, bool(thumbnail)))
                if entry == _TAG_THUMBNAIL_LENGTH and typ == LONG and n == 1:
                    thumbnail_length = value
            if thumbnail_at:
                (offset,) = struct.unpack_from(order + "I", exif, thumbnail_at)
                thumbnail_ref = (thumbnail_at, offset, thumbnail_length, _TAG_THUMBNAIL_OFFSET)
                refs.append(_Ref(*thumbnail_ref, False, bool(thumbnail)))
            link = at + 2 + 12 * count
            (after,) = struct.unpack_from(order + "I", exif, link)
            if field == 4:  # IFD0: what its link leads to is the thumbnail's side
                link0 = link
                if after:
                    sides[1].append((link, after, _LINK))
            elif after:
                todo.append((link, after, _LINK))
    return _Layout(order, len(exif), tuple(refs), tuple(unknown), ifd0, exif_ifd, link0)


def _checked(edited: bytes) -> bytes | None:
    """``edited`` when every offset in it is followed and points within it, else None:
    what the edits return is walked once more, so that none can hand over a broken block."""
    layout = _walk(edited)
    return edited if layout is not None and layout.understood(thumbnail=True) else None


def without_thumbnail_data(exif: bytes) -> bytes | None:
    """``exif`` shortened by its thumbnail (IFD1 and the JPEG it points at), or None when
    that cannot be done safely: no thumbnail, something IFD0 or its Exif, GPS and
    Interoperability IFDs point at lies after the thumbnail's start (the block would be
    cut through it), or an offset on their side that :func:`_walk` does not follow or that
    points past the end.  For a block too large for a JPEG segment, where the thumbnail is
    usually what makes it so; maker notes and other tags stay byte for byte.

    A thumbnail whose link was already cut (:func:`patch_exif` and :func:`without_thumbnail`
    cut it when the pixels are turned upright) still holds its bytes: an IFD with a
    thumbnail right after everything IFD0's side points at is taken for it."""
    layout = _walk(exif)
    if layout is None or not layout.understood(thumbnail=False):
        return None
    end = max(ref.target + ref.size for ref in layout.refs if not ref.thumbnail)
    if not any(ref.field == layout.link for ref in layout.refs):  # no IFD1 linked
        for at in dict.fromkeys((end, end + end % 2)):  # (on a word boundary or not)
            relinked = bytearray(exif)
            struct.pack_into(layout.order + "I", relinked, layout.link, at)
            if _thumbnail_start(_walk(bytes(relinked)), jpeg=True) is not None:
                return without_thumbnail_data(bytes(relinked))
        return None
    start = _thumbnail_start(layout, jpeg=False)
    if start is None or end > start:
        return None
    buf = bytearray(exif[:start])
    struct.pack_into(layout.order + "I", buf, layout.link, 0)
    return _checked(bytes(buf))


def _thumbnail_start(layout: _Layout | None, *, jpeg: bool) -> int | None:
    """Where what IFD0's link leads to starts: IFD1 or the JPEG thumbnail it points at,
    whichever comes first; None when IFD1 is not there or cannot be read, or (``jpeg``)
    points at no JPEG thumbnail inside the block."""
    if layout is None:
        return None
    ifd1 = next((ref for ref in layout.refs if ref.field == layout.link), None)
    if ifd1 is None or not ifd1.inside(layout.length):
        return None
    offsets = [
        ref
        for ref in layout.refs
        if ref.tag == _TAG_THUMBNAIL_OFFSET and ifd1.target <= ref.field < ifd1.target + ifd1.size
    ]
    if jpeg and not any(ref.inside(layout.length) for ref in offsets):
        return None
    return min([ifd1.target] + [ref.target for ref in offsets])


_TAG_MAKER_NOTE = 0x927C
_TAG_IPTC = 33723
_TAG_PHOTOSHOP = 34377
_TAG_IMAGE_SOURCE_DATA = 37724

DROPPED_TAGS = frozenset({_TAG_IPTC, _TAG_PHOTOSHOP, _TAG_IMAGE_SOURCE_DATA})
"""IFD0 tags that no output keeps from any input's EXIF (:func:`without_dropped_tags`; a
TIFF's IFD0 is rebuilt without them, ``tiff._TIFF_LAYOUT_TAGS``).  IPTC-IIM (33723): as
EXIF in a JPEG, PNG or WebP it is where no reader looks for IPTC (ExifTool aside), a copy
that no editor updates (a JPEG's own IPTC, in APP13, is not read either); what it says
(caption, keywords, credit) is in the XMP that the same editors write beside it, which is
kept.  Photoshop's image resources (34377: its thumbnail, resolution, paths) and layers
(37724, ImageSourceData: often larger than the image): stale once the pixels are
upscaled, and large enough to cost a JPEG output its whole EXIF, whichever file they come
in (a TIFF's tags copied into a JPEG's or PNG's EXIF by another program)."""


def without_dropped_tags(exif: bytes) -> bytes:
    """``exif`` without IFD0's :data:`DROPPED_TAGS`: cut out with the bytes they point at
    (as :func:`without_maker_note` cuts), or, where that cannot be done safely, taken out
    of IFD0's table, their bytes left where they are, pointed at by nothing.  Unchanged
    when it has none or IFD0 cannot be read."""
    order = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", exif, 4)
        if not any(tag in DROPPED_TAGS for tag, _typ, _pos in ifd_entries(exif, order, ifd0)):
            return exif
        (count,) = struct.unpack_from(order + "H", exif, ifd0)
        end = ifd0 + 2 + 12 * count + 4  # the table, then its link to IFD1
        if ifd0 < 8 or end > len(exif):  # over the header, or cut short
            return exif
    except struct.error:
        return exif
    cut = _without_entries(exif, DROPPED_TAGS, exif_ifd=False)
    if cut is not None:
        return cut
    # Entries only move up within IFD0's table (no offset points into it), its link with
    # them; the bytes freed at its end are zeroed.
    kept = [
        exif[pos : pos + 12]
        for pos in range(ifd0 + 2, end - 4, 12)
        if struct.unpack_from(order + "H", exif, pos)[0] not in DROPPED_TAGS
    ]
    table = struct.pack(order + "H", len(kept)) + b"".join(kept) + exif[end - 4 : end]
    return exif[:ifd0] + table + bytes(end - ifd0 - len(table)) + exif[end:]


def without_maker_note(exif: bytes) -> bytes | None:
    """``exif`` without its maker note (the MakerNote entry and the bytes it points at: a
    camera maker's private data, often tens of KiB), or None when there is none or it
    cannot be cut out safely (:func:`_without_entries`).  For a block too large for a JPEG
    segment once its thumbnail is gone (:func:`without_thumbnail_data`).

    The note is looked for in the Exif IFD, where the Exif standard puts it, and in IFD0,
    where some cameras write it (ExifTool reads and rewrites it there, "some cameras
    incorrectly write maker notes in IFD0"; Exiv2 keeps it as a plain IFD0 tag): it is as
    large there, and as private."""
    return _without_entries(exif, frozenset({_TAG_MAKER_NOTE}), exif_ifd=True)


def _without_entries(exif: bytes, tags: frozenset[int], *, exif_ifd: bool) -> bytes | None:
    """``exif`` without IFD0's entries of ``tags`` (and the Exif IFD's, with ``exif_ifd``)
    and the bytes they point at, or None when there are none or they cannot be cut out
    safely: something else lies within their bytes, or the block holds an offset
    :func:`_walk` does not follow or one pointing past its end.  What follows each cut
    moves up and every offset past it with it; all else stays byte for byte."""
    layout = _walk(exif)
    if layout is None or not layout.understood(thumbnail=True):
        return None
    order = layout.order
    notes: dict[int, list[int]] = {}  # an IFD: the value fields of its entries to cut
    ifds = (layout.ifd0, layout.exif_ifd) if exif_ifd else (layout.ifd0,)
    for ifd in dict.fromkeys(ifd for ifd in ifds if ifd):
        fields = [pos for tag, _typ, pos in ifd_entries(exif, order, ifd) if tag in tags]
        if fields:
            notes[ifd] = fields
    entries = {field for fields in notes.values() for field in fields}
    if not entries:
        return None
    # Each entry goes, and the entries after it move up over it; an odd-sized value leaves
    # its last byte behind, so that every offset keeps its parity (TIFF's word alignment).
    # A cut: where it starts, the bytes it removes, the bytes it stands for, the IFD whose
    # table holds it (0: an entry's value).
    cuts = sorted(
        [(field - 8, 12, 12, ifd) for ifd, fields in notes.items() for field in fields]
        + [
            (ref.target, ref.size - ref.size % 2, ref.size, 0)
            for ref in layout.refs
            if ref.field in entries
        ]
    )
    if any(_overlap((a[0], a[2]), (b[0], b[2])) for a, b in itertools.pairwise(cuts)):
        return None
    for ref in layout.refs:
        if ref.field in entries:
            continue
        for start, _n, span, ifd in cuts:
            holds = ref.ifd and ref.target == ifd  # the IFD that loses the entry
            if start <= ref.field < start + span or (
                _overlap((ref.target, max(ref.size, 1)), (start, span)) and not holds
            ):
                return None

    def moved(offset: int) -> int:
        return offset - sum(n for start, n, _span, _ifd in cuts if start + n <= offset)

    out, at = bytearray(), 0
    for start, n, _span, _ifd in cuts:
        out += exif[at:start]
        at = start + n
    out += exif[at:]
    for ifd, fields in notes.items():
        (count,) = struct.unpack_from(order + "H", exif, ifd)
        struct.pack_into(order + "H", out, moved(ifd), count - len(fields))
    for ref in layout.refs:
        if ref.field not in entries:
            struct.pack_into(order + "I", out, moved(ref.field), moved(ref.target))
    return _checked(bytes(out))


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
    """Write ``size`` into the IFD at ``ifd``'s width and height tags, where present.

    A SHORT too small for its new value becomes a LONG: a single value is stored in the
    entry's own four bytes either way, so nothing moves (kept as a SHORT, it would have
    gone on stating the input's size)."""
    for tag, typ, pos in ifd_entries(buf, order, ifd):
        if tag in (width_tag, height_tag):
            value = size[0] if tag == width_tag else size[1]
            (count,) = struct.unpack_from(order + "I", buf, pos - 4)
            if count != 1 or typ not in (SHORT, LONG):
                continue
            if typ == SHORT and value <= 0xFFFF:
                struct.pack_into(order + "H", buf, pos, value)
            else:
                struct.pack_into(order + "HII", buf, pos - 6, LONG, 1, value)


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


def xmp_with_resolution_turned(xmp: bytes) -> bytes:
    """``xmp`` with its ``tiff:XResolution`` and ``tiff:YResolution`` trading places, for
    pixels turned a quarter (orientation 5 to 8): what was said across is now down.  The
    names are swapped, not the values, so attribute and element forms alike follow."""
    held = b"\x00pocketsr-x-resolution\x00"
    xmp = xmp.replace(b"tiff:XResolution", held).replace(b"tiff:YResolution", b"tiff:XResolution")
    return xmp.replace(held, b"tiff:YResolution")


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
    xmp = metadata.xmp or None
    if xmp is not None and exif_states_orientation(exif):  # the EXIF's, now 1, wins
        xmp = reset_xmp_orientation(xmp)
    xmp = xmp_with_size(xmp, size) if xmp is not None else None
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
