"""TIFF: its tags, decoding, page count, and the writer.

A TIFF file is an EXIF block, so its first IFD is read with Pillow's EXIF reader
(:func:`tiff_tags`), which also works for the layouts Pillow cannot open; a header or a
record needs a few of its tags only, read from the file with seeks (:func:`read_tiff_tags`).
:func:`decode_tiff` decodes 16-bit gray and RGB through OpenCV, 16-bit gray + alpha here,
8-bit through Pillow, and rebuilds a standalone EXIF block from the descriptive tags.
:func:`encode_tiff` writes a little-endian baseline TIFF (Adobe Deflate, horizontal
predictor) at 8 or 16 bits with ICC, XMP and EXIF, which neither library writes together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import struct
import zlib
from collections.abc import Collection, Mapping
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pocketsr_cli.errors import ImageReadError, ImageWriteError
from pocketsr_cli.imageio.backends import (
    TRUNCATED,
    decode_failure,
    decode_with_opencv,
    open_pillow,
    reason,
)
from pocketsr_cli.imageio.decoded import DecodedImage, finish
from pocketsr_cli.imageio.metadata import (
    DROPPED_TAGS,
    LONG,
    SHORT,
    TAG_ORIENTATION,
    Metadata,
    bare_exif,
    dpi_of,
    ifd_entries,
    reset_xmp_orientation,
)
from pocketsr_cli.imageio.pixels import pillow_pixels
from pocketsr_cli.imageio.png import deflate

if TYPE_CHECKING:
    from PIL import Image


# Tags that describe a TIFF's own pixel layout: never carried over as EXIF.  With them,
# SubIFDs (330: offsets into the input file, stale once upscaled), and the tags no output
# keeps from any input's EXIF (metadata.DROPPED_TAGS: IPTC-IIM, and Photoshop's image
# resources and layers, 34377 and 37724, which in a TIFF are what Photoshop opens instead
# of the pixels and cost a JPEG output its whole EXIF).
_TIFF_LAYOUT_TAGS = frozenset(
    {
        254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284,
        317, 320, 322, 323, 324, 325, 338, 339, 347, 513, 514, 530, 531, 532,
        700, 34675, 40965,
        330,
    }
) | DROPPED_TAGS  # fmt: skip


def as_tuple(value: object) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return value
    return (value,) if isinstance(value, int) else ()


def tiff_tags(data: bytes) -> Image.Exif:
    """The first IFD of a TIFF file, read as an EXIF block (a TIFF file is one).

    Raises:
        ImageReadError: the IFD is missing (cut off: writers often put it last) or corrupt.
    """
    return _first_ifd(io.BytesIO(data))


def _first_ifd(fp: IO[bytes]) -> Image.Exif:
    """:func:`tiff_tags` of the TIFF file ``fp`` (from its start), read by Pillow's EXIF
    reader: the header, the first IFD and its tags' values, with seeks."""
    from PIL import Image

    size = fp.seek(0, os.SEEK_END)
    fp.seek(0)
    head = fp.read(8)
    order = "<" if head[:2] == b"II" else ">"
    if len(head) < 8 or struct.unpack_from(order + "I", head, 4)[0] + 2 > size:
        raise ImageReadError(TRUNCATED)
    fp.seek(0)
    tags = Image.Exif()
    try:
        tags.load_from_fp(fp)
    except Exception as exc:
        raise ImageReadError(f"corrupt TIFF header ({reason(exc)})") from None
    if not isinstance(tags.get(256), int) or not isinstance(tags.get(257), int):
        raise ImageReadError("corrupt TIFF header (no image size)")
    return tags


# The byte size of one value of each TIFF field type (TIFF 6.0, with BigTIFF's LONG8 and
# the IFD type), as Pillow's reader counts them: where an entry's values are, inline (4
# bytes or fewer) or elsewhere in the file.
_TYPE_SIZES = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8
}  # fmt: skip


def read_tiff_tags(handle: IO[bytes], wanted: Collection[int]) -> Image.Exif:
    """The first IFD of the TIFF file open as ``handle``, as :func:`tiff_tags` reads it
    from the whole file, for the tags in ``wanted`` (others may be left out), without
    reading the whole file: its 8-byte header, the IFD (which may lie anywhere: writers
    often put it last) and the values of those tags and of the image size (checked as
    :func:`tiff_tags` checks it), found with seeks; never the pixels, nor the other tags'
    values (Photoshop's layers, 37724, are often larger than the image).

    Pillow's EXIF reader is handed those entries alone, rebuilt into a small TIFF of their
    own, so that their values come out typed as :func:`tiff_tags` gives them.  An IFD
    that Pillow would read only in part (cut short, or a value past the end of the file,
    or more values than the file holds) is read by Pillow from the file itself, every
    tag's value with it (at most the file's size, never the pixels), so that what is lost
    and what Pillow warns of are the same.

    Raises:
        ImageReadError: as :func:`tiff_tags`: the IFD is missing (cut off) or corrupt.
    """
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    head = handle.read(8)
    order = "<" if head[:2] == b"II" else ">"
    if len(head) < 8 or (offset := struct.unpack_from(order + "I", head, 4)[0]) + 2 > size:
        raise ImageReadError(TRUNCATED)
    handle.seek(offset)
    (count,) = struct.unpack(order + "H", handle.read(2))
    table = handle.read(12 * count + 4)  # the entries, then the next IFD's offset
    kept = set(wanted) | {256, 257}
    places: list[tuple[bytes, int, int]] = []  # the kept entries, where their values are
    spent, seen = 0, set[int]()  # as Pillow's reader counts them
    regular = len(table) == 12 * count + 4
    for i in range(count if regular else 0):
        entry = table[12 * i : 12 * i + 12]
        tag, typ, n = struct.unpack_from(order + "HHI", entry)
        length = n * _TYPE_SIZES.get(typ, 0)
        if not length or tag in seen:  # an unknown type or no values: Pillow skips it
            continue
        at = struct.unpack_from(order + "I", entry, 8)[0] if length > 4 else -1
        if length > 4:
            spent += length
            if spent > size or at + length > size:  # Pillow warns, skips or stops there
                regular = False
                break
        seen.add(tag)
        if tag in kept:
            places.append((entry, at, length))
    if not regular:
        return _first_ifd(handle)
    values = bytearray()
    entries = []
    for entry, at, length in places:
        if at >= 0:
            handle.seek(at)
            entry = entry[:8] + struct.pack(order + "I", 8 + len(values))
            values += handle.read(length)
        entries.append(entry)
    rebuilt = b"".join(
        [
            head[:4],
            struct.pack(order + "I", 8 + len(values)),
            values,
            struct.pack(order + "H", len(entries)),
            *entries,
            bytes(4),  # no next IFD
        ]
    )
    return tiff_tags(rebuilt)


def decode_tiff(data: bytes) -> DecodedImage:
    """TIFF: tags parsed here, 16-bit pixels through OpenCV, 8-bit ones through Pillow.

    Pillow cannot even open some 16-bit layouts (gray + alpha), so the tags are read as an
    EXIF block: a TIFF file is one.
    """
    from PIL import Image, TiffTags

    tags = tiff_tags(data)
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        pairs = zip(as_tuple(tags.get(offsets_tag)), as_tuple(tags.get(counts_tag)), strict=False)
        if any(offset + count > len(data) for offset, count in pairs):
            raise ImageReadError(TRUNCATED)
    bits = max(as_tuple(tags.get(258)) or (1,))
    photometric = tags.get(262)
    refused = _samples_refused(tags, bits, photometric)
    if refused is not None:
        raise ImageReadError(refused)
    if bits == 16 and tags.get(284, 1) == 2 and tags.get(277, 1) > 1:
        # OpenCV reads the planes as if their samples were interleaved: scrambled pixels.
        raise ImageReadError(
            "unsupported TIFF (16-bit samples stored in separate planes, planar "
            "configuration 2); save it with its samples together (contiguous)"
        )
    if bits == 16 and photometric in (1, 2):
        _check_extra_samples_16(tags, 1 if photometric == 1 else 3)
    try:
        if bits == 16 and photometric == 1 and tags.get(277) == 2:
            pixels = _unassociated(_decode_tiff_gray_alpha_16(data, tags), tags)
        elif bits == 16 and photometric in (1, 2):
            # Some OpenCV versions (5.x) turn a TIFF upright themselves, even with
            # IMREAD_UNCHANGED: hand them a copy that says it is upright already, so that
            # the orientation is applied once, by finish(), as for every other decoder.
            upright = _marked_upright(data)
            pixels = _unassociated(decode_with_opencv(upright, gray_alpha=False), tags)
        else:
            # Recent Pillow turns a TIFF upright while loading, by its orientation tag or,
            # without one, by its XMP's tiff:Orientation: the same copy, so that finish()
            # turns it, by the tag alone.
            im = open_pillow(io.BytesIO(_marked_upright(data)))
            with im:
                im.load()
                pixels = pillow_pixels(im)
        if bits == 16 and _unspecified_extra(tags) and pixels.shape[2] in (2, 4):
            # Not alpha (a saved selection, a mask): left out, as Pillow does at 8 bits.
            pixels = np.ascontiguousarray(pixels[:, :, :-1])
    except ImageReadError:
        raise
    except Exception as exc:
        raise decode_failure(exc) from None

    # The EXIF tags live in the file's own IFD0, mixed with layout tags: rebuild a standalone
    # block from the descriptive ones.  Odd tags cost the EXIF, never the image.
    exif: bytes | None = None
    with contextlib.suppress(Exception):
        block = Image.Exif()
        for tag, value in tags.items():
            if tag not in _TIFF_LAYOUT_TAGS:
                block[tag] = tags.get_ifd(tag) if tag in TiffTags.TAGS_V2_GROUPS else value
        exif = bare_exif(block.tobytes()) if len(block) else None
    icc = tags.get(34675)
    icc = icc if isinstance(icc, bytes) else None
    decoded = finish(pixels, "tiff", exif, icc, tags.get(700), None, _tiff_dpi(tags))
    pages = _tiff_pages(data)
    if pages > 1:
        decoded.warnings = (
            *decoded.warnings,
            f"multi-page TIFF: only the first of its {pages} pages was upscaled",
        )
    return decoded


# SampleFormat (tag 339) values other than unsigned integers (1; 4, "undefined", is read as
# unsigned), and PhotometricInterpretation (262) names, for messages.
_SAMPLE_KINDS = {2: "signed-integer", 3: "floating-point", 5: "complex-integer", 6: "complex"}
_COLOUR_MODELS = {0: "inverted gray (WhiteIsZero)", 1: "gray", 2: "RGB", 3: "palette", 4: "mask"}
_COLOUR_MODELS |= {5: "CMYK", 6: "YCbCr", 8: "CIELab", 9: "CIELab", 10: "CIELab"}


def _samples_refused(tags: Mapping[int, Any], bits: int, photometric: object) -> str | None:
    """Why a TIFF's samples cannot be read, in a user's words, or None: what is read is 8
    bits or fewer per sample in any colour model (Pillow's), and 16-bit unsigned gray or
    RGB (what photo editors and scanners write); deeper samples, floating-point (HDR,
    scientific) or signed ones, and other 16-bit colour models are not."""
    kind = _SAMPLE_KINDS.get(max(as_tuple(tags.get(339)) or (1,)))
    if bits <= 8 or (kind is None and bits == 16 and photometric in (1, 2)):
        return None
    if kind is None and bits == 16:
        model = _COLOUR_MODELS.get(photometric) if isinstance(photometric, int) else None
        return (
            f"16-bit {model or 'colour model ' + str(photometric)} TIFF is not supported "
            "(16-bit TIFFs are read in gray or RGB, 8-bit ones in any colour model); convert "
            "it to 16-bit RGB"
        )
    what = f"{bits}-bit {kind or 'integer'}"
    if kind is None or kind == "floating-point":
        return (
            f"{what} TIFF is not supported (8- and 16-bit integer TIFFs are); convert it to 16-bit"
        )
    return (
        f"{what} TIFF is not supported (8- and 16-bit unsigned-integer TIFFs are); convert "
        "it to 16-bit unsigned"
    )


def _unspecified_extra(tags: Mapping[int, Any]) -> bool:
    """Whether a TIFF's one extra sample is marked unspecified data (ExtraSamples 0), not
    alpha: a saved selection or mask (Photoshop's "Alpha Channels"), never transparency."""
    return as_tuple(tags.get(338))[:1] == (0,)


def _check_extra_samples_16(tags: Mapping[int, Any], colour: int) -> None:
    """Refuse a 16-bit TIFF with more than one extra sample per pixel (transparency and a
    saved selection, say), which OpenCV cannot decode: it read as truncated or corrupt.

    Raises:
        ImageReadError: saying so.
    """
    samples = tags.get(277, 1)
    if isinstance(samples, int) and samples > colour + 1:
        raise ImageReadError(
            f"unsupported TIFF (16-bit with {samples - colour} extra channels besides its "
            f"colour, such as saved selections); save it with transparency alone"
        )


def _marked_upright(data: bytes) -> bytes:
    """``data`` with the first IFD's orientation tag, and any ``tiff:Orientation`` in its
    XMP (tag 700, rewritten where it lies: one digit for another), set to 1 (a copy;
    ``data`` itself when neither says anything else)."""
    order = "<" if data[:2] == b"II" else ">"
    patches: list[tuple[int, bytes]] = []  # where, what
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        for tag, typ, pos in ifd_entries(data, order, offset):
            if tag == TAG_ORIENTATION and typ == SHORT:
                if struct.unpack_from(order + "H", data, pos)[0] != 1:
                    patches.append((pos, struct.pack(order + "H", 1)))
            elif tag == 700 and typ in (1, 2, 7):  # BYTE, ASCII, UNDEFINED
                (count, at) = struct.unpack_from(order + "II", data, pos - 4)
                xmp = data[at : at + count] if count > 4 else b""
                upright = reset_xmp_orientation(xmp)
                if upright != xmp and len(upright) == len(xmp):
                    patches.append((at, upright))
    except struct.error:
        pass
    if not patches:
        return data
    marked = bytearray(data)
    for at, value in patches:
        marked[at : at + len(value)] = value
    return bytes(marked)


def _unassociated(pixels: np.ndarray, tags: Mapping[int, Any]) -> np.ndarray:
    """16-bit ``pixels`` with straight alpha: a TIFF whose ExtraSamples (tag 338) says its
    alpha is associated stores colour already multiplied by alpha, which every output
    (tagged unassociated) would show darkened.  Colour under zero alpha becomes 0."""
    if pixels.shape[2] not in (2, 4) or 1 not in as_tuple(tags.get(338))[:1]:
        return pixels
    alpha = pixels[:, :, -1:].astype(np.float32)
    colour = pixels[:, :, :-1].astype(np.float32)
    colour *= 65535.0
    np.divide(colour, alpha, out=colour, where=alpha > 0)
    colour[np.broadcast_to(alpha == 0, colour.shape)] = 0
    np.clip(np.rint(colour, out=colour), 0, 65535, out=colour)
    out = pixels.copy()
    out[:, :, :-1] = colour  # float32 holds every 16-bit value exactly
    return out


_MAX_TIFF_PAGES = 10_000


def _tiff_pages(data: bytes) -> int:
    """How many full-size images a (classic) TIFF's IFD chain holds; reduced-resolution
    ones (thumbnails, NewSubfileType bit 0) are not counted.  The chain is followed while
    it stays inside the file and never loops."""
    order = "<" if data[:2] == b"II" else ">"
    pages, seen = 0, set[int]()
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        while offset and offset not in seen and len(seen) < _MAX_TIFF_PAGES:
            seen.add(offset)
            (count,) = struct.unpack_from(order + "H", data, offset)
            reduced = False
            for tag, typ, pos in ifd_entries(data, order, offset):
                if tag == 254 and typ == LONG:
                    reduced = bool(struct.unpack_from(order + "I", data, pos)[0] & 1)
            pages += 0 if reduced and pages else 1
            (offset,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
    except struct.error:
        pass
    return max(pages, 1)


def _decode_tiff_gray_alpha_16(data: bytes, tags: Mapping[int, Any]) -> np.ndarray:
    """Decode 16-bit gray + alpha, which OpenCV reads as 8-bit gray.

    Handles what :func:`encode_tiff` writes and the usual variants: uncompressed or Deflate
    strips, with or without horizontal differencing.
    """
    width, height = int(tags[256]), int(tags[257])
    compression, predictor = tags.get(259, 1), tags.get(317, 1)
    if 324 in tags:  # TileOffsets: no strips to read (it said "truncated")
        raise ImageReadError("unsupported TIFF (16-bit gray + alpha in tiles)")
    if compression not in (1, 8, 32946) or predictor not in (1, 2) or tags.get(284, 1) != 1:
        raise ImageReadError(
            "unsupported TIFF (16-bit gray + alpha with compression "
            f"{compression}, predictor {predictor})"
        )
    offsets, counts = as_tuple(tags.get(273)), as_tuple(tags.get(279))
    strips = [data[offset : offset + count] for offset, count in zip(offsets, counts, strict=False)]
    if compression != 1:
        strips = [zlib.decompress(strip) for strip in strips]
    raw = b"".join(strips)
    expected = width * height * 2 * 2
    if len(raw) < expected:
        raise ImageReadError(TRUNCATED)
    dtype = "<u2" if data[:2] == b"II" else ">u2"
    pixels = np.frombuffer(raw[:expected], dtype).reshape(height, width, 2).astype(np.uint16)
    if predictor == 2:
        pixels = np.cumsum(pixels, axis=1, dtype=np.uint16)  # wraps modulo 2**16, as encoded
    return pixels


_TIFF_STRIP_BYTES = 1 << 20


def encode_tiff(pixels: np.ndarray, meta: Metadata) -> bytes:
    """Little-endian baseline TIFF, Adobe Deflate with horizontal differencing.

    Works for 1..4 channels at 8 or 16 bits; ICC (tag 34675), XMP (700) and EXIF (its IFD0
    tags merged into the image IFD, its Exif and GPS sub-IFDs linked) are all kept.  EXIF
    that Pillow cannot re-serialise is left out rather than failing the image.
    """
    height, width, channels = pixels.shape
    bits = 16 if pixels.dtype == np.uint16 else 8
    samples = pixels.astype("<u2" if bits == 16 else np.uint8, copy=False)
    row_bytes = width * channels * bits // 8
    rows_per_strip = max(1, min(height, _TIFF_STRIP_BYTES // row_bytes))
    strips = [
        _deflated_strip(samples[top : top + rows_per_strip])
        for top in range(0, height, rows_per_strip)
    ]
    header = b"II*\x00" + struct.pack("<I", 8)
    layout = (pixels.shape, bits, rows_per_strip, strips)
    try:
        directory = _tiff_directory(*layout, meta, len(header))
    except Exception:  # EXIF that Pillow cannot re-serialise costs the EXIF, not the image
        without_exif = dataclasses.replace(meta, exif=None)
        directory = _tiff_directory(*layout, without_exif, len(header))
    if len(header) + len(directory) + sum(map(len, strips)) >= 1 << 32:
        raise ImageWriteError("image too large for a TIFF file (over 4 GiB)")
    return b"".join([header, directory, *strips])


def _deflated_strip(rows: np.ndarray) -> bytes:
    """One strip of ``rows`` (height, width, channels), differenced for predictor 2 (each
    sample minus its left neighbour, modulo 2**bits: unsigned wrap) and deflated.  A strip
    at a time, so that the encoder never holds a differenced copy of the whole image (48 MB
    for 4000x3000 RGBA, 72 MB at 16 bits), only one of :data:`_TIFF_STRIP_BYTES`."""
    diff = rows.copy()
    diff[:, 1:] -= rows[:, :-1]
    return deflate(diff.tobytes())


def _tiff_dpi(tags: Mapping[int, Any]) -> tuple[float, float] | None:
    """The resolution a TIFF states (XResolution, YResolution in ResolutionUnit), per inch."""
    unit = tags.get(296, 2)
    per_inch = {2: 1.0, 3: 2.54}.get(unit if isinstance(unit, int) else 2)
    if per_inch is None:  # 1: no absolute unit
        return None
    try:
        return dpi_of((float(tags[282]) * per_inch, float(tags[283]) * per_inch))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _tiff_directory(
    shape: tuple[int, ...],
    bits: int,
    rows_per_strip: int,
    strips: list[bytes],
    meta: Metadata,
    offset: int,
) -> bytes:
    """The image IFD (with its sub-IFDs and out-of-line values) to place at ``offset``.

    The strips are expected right after the returned bytes.
    """
    from PIL import Image, TiffImagePlugin, TiffTags

    height, width, channels = shape
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    if meta.exif:
        exif = Image.Exif()
        exif.load(meta.exif)
        for tag, value in exif.items():
            if tag in _TIFF_LAYOUT_TAGS:
                continue
            if tag in TiffTags.TAGS_V2_GROUPS:
                sub = dict(exif.get_ifd(tag))
                # A stale interoperability pointer would point into the pixel data.
                sub.pop(40965, None)
                ifd[tag] = sub
            else:
                ifd[tag] = value
    ifd[256] = width
    ifd[257] = height
    ifd[258] = (bits,) * channels
    ifd[259] = 8  # Adobe Deflate
    ifd[262] = 1 if channels in (1, 2) else 2  # BlackIsZero or RGB
    ifd[277] = channels
    ifd[278] = rows_per_strip
    ifd[284] = 1  # contiguous samples
    ifd[317] = 2  # horizontal differencing
    ifd[339] = (1,) * channels  # unsigned integers
    if channels in (2, 4):
        ifd[338] = (2,)  # unassociated alpha
    if meta.dpi is not None:  # the input's print resolution, in pixels per inch
        ifd[282], ifd[283], ifd[296] = meta.dpi[0], meta.dpi[1], 2
    if 282 not in ifd or 283 not in ifd:  # resolution is required by baseline TIFF
        ifd[282], ifd[283], ifd[296] = 72, 72, 2
    if meta.icc_profile:
        ifd[34675] = meta.icc_profile
    if meta.xmp:
        ifd[700] = meta.xmp
    # Offsets relative to the first strip; ImageFileDirectory_v2 shifts them past the IFD.
    offsets = [0]
    for strip in strips[:-1]:
        offsets.append(offsets[-1] + len(strip))
    ifd[273] = tuple(offsets)
    ifd[279] = tuple(len(strip) for strip in strips)
    ifd.tagtype[273] = ifd.tagtype[279] = TiffTags.LONG
    return ifd.tobytes(offset)
