"""JPEG completeness: refuse a JPEG whose entropy-coded data stops before its last block.

libjpeg fills the missing blocks with flat grey and only warns, so a JPEG cut short with
its end marker put back would decode "fine".  :func:`check_jpeg_complete` raises
:class:`ImageReadError` for such a file and returns quietly for every other one,
including files whose markers it cannot follow (the decoder says what is wrong then).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.backends import truncated
from pocketsr_cli.imageio.pixels import pillow_pixels

if TYPE_CHECKING:
    from PIL import Image


_JPEG_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE)
# Arithmetic-coded frames: their decoder reads ahead into whatever follows a scan, so the
# filler probe would change a whole file's last blocks.
_JPEG_ARITHMETIC = (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
# Filler a complete image ignores and a cut one decodes: no 0xFF, so no marker in it.
_JPEG_FILLER = bytes((i * 73 + 41) % 255 for i in range(2048))


def _marker_offsets(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of every ``FF`` that starts a marker: followed by anything but a stuffed
    zero, a restart marker or another ``FF`` (fill bytes; the run's last one counts); and
    those of the restart markers (``FF D0``-``FF D7``).

    Vectorised, because entropy-coded data is most of the file: a regular expression over a
    4K photo's took 24 ms and held the GIL throughout; numpy takes a few ms and releases it.
    """
    b = np.frombuffer(data, np.uint8)
    ff = np.flatnonzero(b[:-1] == 0xFF)
    after = b[ff + 1]
    restart = (after >= 0xD0) & (after <= 0xD7)
    return ff[(after != 0x00) & (after != 0xFF) & ~restart], ff[restart]


def _restarts_in_order(data: bytes, inside: np.ndarray, on: bool) -> bool:
    """Whether the restart markers of one scan (their offsets ``inside``) are what its
    frame allows: none without a restart interval (``on``), else RST0, RST1, ... RST7,
    RST0...  A stray one (a damaged file) makes libjpeg give up on the rest of the scan and
    fill it with grey."""
    if not on:
        return len(inside) == 0
    numbers = np.frombuffer(data, np.uint8)[inside + 1].astype(np.int64) - 0xD0
    return bool(np.array_equal(numbers, np.arange(len(numbers)) % 8))


@dataclass(frozen=True)
class _Layout:
    """What following a JPEG's markers found (:func:`_layout`)."""

    scan_end: int  # where the last scan's entropy-coded data ends (the marker after it)
    progressive: bool
    restarts_ok: bool  # every scan's restart markers as its frame allows
    restarts_short: bool  # a sequential scan with fewer restart markers than it needs
    eoi: int | None  # the end marker of the first image; None: the walk lost its way
    coefficients_left: bool  # progressive: a coefficient no scan brought to full precision
    no_ac: bool  # progressive: a component whose scans sent nothing but its DC (8x8 blocks)
    arithmetic: bool  # arithmetic-coded: no filler probe


# Start-of-frame markers: baseline, extended, progressive, lossless (Huffman coding).
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2, 0xC3)


def _frame(data: bytes, pos: int) -> tuple[int | None, tuple[int, ...]]:
    """``(MCUs of an interleaved scan, component ids)`` of the frame whose SOF marker is at
    ``pos``: blocks for one component; None when its height is left to a DNL marker."""
    try:
        height, width, count = struct.unpack_from(">HHB", data, pos + 5)
        ids = tuple(data[pos + 10 + 3 * i] for i in range(count))
        factors = [data[pos + 11 + 3 * i] for i in range(count)]
    except (struct.error, IndexError):
        return None, ()
    if not height or not width or not factors:
        return None, ids
    if count == 1:
        return -(-width // 8) * -(-height // 8), ids
    h = max(f >> 4 for f in factors) or 1
    v = max(f & 15 for f in factors) or 1
    return -(-width // (8 * h)) * -(-height // (8 * v)), ids


def _refine(done: dict[int, np.ndarray], data: bytes, pos: int) -> None:
    """Mark in ``done`` (2 x 64 flags per component id) the coefficients that the
    progressive scan whose SOS marker is at ``pos`` sends (row 0) and brings to full
    precision (row 1: successive approximation low bit 0)."""
    try:
        count = data[pos + 4]
        ids = [data[pos + 5 + 2 * i] for i in range(count)]
        start, end, approximation = data[pos + 5 + 2 * count : pos + 8 + 2 * count]
    except (IndexError, ValueError):
        return
    if start <= end < 64:
        for c in ids:
            if c in done:
                done[c][0, start : end + 1] = True
                done[c][1, start : end + 1] |= approximation & 15 == 0


_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"


def extended_xmp_size(data: bytes) -> int:
    """Bytes of extended XMP a JPEG carries (APP1 segments after its main packet, for
    what does not fit one segment: a depth map, an edit history), counted in the segments
    ahead of its first scan; 0 without any.  Decoders keep the main packet only."""
    pos, total = 2, 0
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # the first scan, or the end: no metadata after it here
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and data.startswith(_XMP_EXTENSION, pos + 4):
            total += max(0, length - 2 - len(_XMP_EXTENSION) - 40)  # GUID, sizes, offset
        pos += 2 + length
    return total


def _layout(data: bytes) -> _Layout | None:
    """The markers of ``data`` followed from the start; None before a first scan (the
    decoder then says what is wrong).  A walk that loses its way after a scan (bytes that
    are no marker where one must be: a stray marker cut the scan short) ends with
    ``eoi`` None."""
    pos, progressive, restarts_ok, interval = 2, False, True, 0
    arithmetic = False
    short = False
    found: tuple[np.ndarray, np.ndarray] | None = None  # found at the first scan
    scan_end: int | None = None
    units: int | None = None  # MCUs of a scan holding every component of the frame
    components: tuple[int, ...] = ()  # the frame's ids
    done: dict[int, np.ndarray] = {}  # progressive: coefficients at full precision

    def stop(eoi: int | None) -> _Layout | None:
        if scan_end is None:
            return None
        left = progressive and any(not flags[1].all() for flags in done.values())
        no_ac = progressive and any(not flags[0, 1:].any() for flags in done.values())
        return _Layout(scan_end, progressive, restarts_ok, short, eoi, left, no_ac, arithmetic)

    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            return stop(None)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return stop(pos)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            pos += 2
            continue
        if pos + 4 > len(data):
            return stop(None)
        (length,) = struct.unpack_from(">H", data, pos + 2)
        progressive = progressive or marker in _JPEG_PROGRESSIVE
        arithmetic = arithmetic or marker in _JPEG_ARITHMETIC
        if marker == 0xDD and length >= 4:  # DRI: restart interval, 0 turns them off
            interval = struct.unpack_from(">H", data, pos + 4)[0]
        if marker in _JPEG_FRAMES or marker in _JPEG_PROGRESSIVE:
            units, components = _frame(data, pos)
            done = {c: np.zeros((2, 64), bool) for c in components}
        every = marker == 0xDA and pos + 4 < len(data) and data[pos + 4] == len(components)
        if marker == 0xDA and progressive:
            _refine(done, data, pos)
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            if found is None:
                found = _marker_offsets(data)
            markers, restarts = found
            at = int(np.searchsorted(markers, pos))
            if at == len(markers):
                return stop(None)
            end = int(markers[at])
            inside = restarts[(restarts >= pos) & (restarts < end)]
            # A sequential scan of every component has one restart marker between each
            # two of its intervals: fewer, and a stray marker cut it short.
            wanted = -(-units // interval) - 1 if interval and units and every else None
            if not progressive and wanted is not None:
                short = short or len(inside) < wanted
            restarts_ok = restarts_ok and _restarts_in_order(data, inside, interval > 0)
            scan_end = end
            pos = end
    return stop(None)


def _corner_is_blank(im: Image.Image) -> bool:
    """Whether the image's last 8x8 block (on the block grid, so inside the last MCU) is
    the flat mid-grey libjpeg fills missing blocks with (all coefficients zero: 128 in
    every band, 127 in inverted CMYK)."""
    width, height = im.size
    box = ((width - 1) // 8 * 8, (height - 1) // 8 * 8, width, height)
    corner = np.asarray(im.crop(box)).reshape(-1, len(im.getbands()))
    first = corner[0]
    # One comparison, not np.unique over the rows (a sort: 0.18 ms of every JPEG's read).
    return set(first.tolist()) <= {127, 128} and bool((corner == first).all())


def check_jpeg_complete(data: bytes, im: Image.Image, pixels: np.ndarray) -> str | None:
    """Refuse a JPEG whose entropy-coded data stops before its last block; a warning for
    one whose progressive scans end before every coefficient reached full precision.

    libjpeg fills the blocks after a premature end marker with flat grey and only warns,
    and Pillow drops the warning: a JPEG cut short with its end marker put back decodes
    "fine".  The same file with filler inserted before that marker decodes the same when
    the data was complete (the filler comes after the last block and is skipped) and
    differently when it was not (the filler is decoded as the missing blocks).  The filler
    goes where the last scan read ends: before the end marker, or before a stray marker
    (APP, COM, DHT, EOI...) that cut the scan short, where following the markers loses
    its way.  The second decode is made only when it can matter: for progressive JPEGs,
    whose missing scans leave no trace, for sequential ones whose last block is blank, and
    where the walk lost its way.  Restart markers out of their order are refused outright.
    A progressive JPEG that ends (with its end marker) before some coefficient has reached
    full precision was cut between two scans, or written by an unusual scan script: the
    warning returned says so.
    """
    from PIL import Image

    layout = _layout(data)
    if layout is None:
        return None
    if not layout.restarts_ok:
        raise ImageReadError(truncated("its JPEG image data holds a stray restart marker"))
    if layout.restarts_short:
        raise ImageReadError(truncated("its JPEG image data stops before the last block"))
    # Cut between two scans with its end marker put back, every block decodes from the
    # coarse scans only (soft), and the filler below is skipped.  The standard allows a
    # scan script that leaves coefficients coarse, though (jpegtran -scans), and the two
    # cannot be told apart: said, not refused.
    coarse = layout.coefficients_left and layout.eoi is not None
    if coarse and layout.no_ac:  # flat 8x8 blocks: no encoder writes that, a cut does
        raise ImageReadError(truncated("its progressive JPEG data stops after its first scans"))
    # Filler where the last scan read ends: before the end marker of a whole file, before
    # the stray marker that cut a damaged one short (the walk then loses its way there).
    if layout.arithmetic:  # the probe would be read as data by the arithmetic decoder
        return COARSE_WARNING if coarse else None
    if not layout.progressive and layout.eoi is not None and not _corner_is_blank(im):
        return None
    at = layout.scan_end
    probe_data = data[:at] + _JPEG_FILLER + data[at:]
    try:
        with Image.open(io.BytesIO(probe_data), formats=("JPEG",)) as other:
            other.load()
            again = pillow_pixels(other)
    except OSError:
        # The decoder read the filler as image data and choked on it ("broken data
        # stream"): only missing blocks make it read the filler at all.  A stray marker in
        # the middle of the data does this.
        raise ImageReadError(truncated("its JPEG image data stops before the last block")) from None
    except Exception:
        return COARSE_WARNING if coarse else None
    if again.shape != pixels.shape or not np.array_equal(again, pixels):
        raise ImageReadError(truncated("its JPEG image data stops before the last block"))
    return COARSE_WARNING if coarse else None


COARSE_WARNING = (
    "its progressive JPEG data ends before every detail reached full precision: cut short "
    "between two scans (the upscale is then softer than the photo was), or so written"
)
