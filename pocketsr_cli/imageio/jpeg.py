"""JPEG completeness: refuse a JPEG whose entropy-coded data stops before its last block.

libjpeg fills the missing blocks with flat grey and only warns, so a JPEG cut short with
its end marker put back would decode "fine".  :func:`check_jpeg_complete` raises
:class:`ImageReadError` for such a file and returns quietly for every other one,
including files whose markers it cannot follow (the decoder says what is wrong then).
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING

import numpy as np

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.backends import truncated
from pocketsr_cli.imageio.pixels import pillow_pixels

if TYPE_CHECKING:
    from PIL import Image


_JPEG_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE)
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


def _restarts_in_order(data: bytes, restarts: np.ndarray, start: int, end: int, on: bool) -> bool:
    """Whether the restart markers of the scan data ``data[start:end]`` are what its frame
    allows: none without a restart interval (``on``), else RST0, RST1, ... RST7, RST0...
    A stray one (a damaged file) makes libjpeg give up on the rest of the scan and fill
    it with grey."""
    inside = restarts[(restarts >= start) & (restarts < end)]
    if not on:
        return len(inside) == 0
    numbers = np.frombuffer(data, np.uint8)[inside + 1].astype(np.int64) - 0xD0
    return bool(np.array_equal(numbers, np.arange(len(numbers)) % 8))


def _jpeg_end(data: bytes) -> tuple[int, bool, bool] | None:
    """``(offset of the EOI marker that ends the first image, progressive, whether every
    scan's restart markers are in order)``, or None when the markers cannot be followed to
    one (the decoder then says what is wrong)."""
    pos, progressive, restarts_ok, interval = 2, False, True, False
    found: tuple[np.ndarray, np.ndarray] | None = None  # found at the first scan
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos, progressive, restarts_ok
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            pos += 2
            continue
        if pos + 4 > len(data):
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        progressive = progressive or marker in _JPEG_PROGRESSIVE
        if marker == 0xDD and length >= 4:  # DRI: restart interval, 0 turns them off
            interval = struct.unpack_from(">H", data, pos + 4)[0] > 0
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            if found is None:
                found = _marker_offsets(data)
            markers, restarts = found
            at = int(np.searchsorted(markers, pos))
            if at == len(markers):
                return None
            end = int(markers[at])
            restarts_ok = restarts_ok and _restarts_in_order(data, restarts, pos, end, interval)
            pos = end
    return None


def _corner_is_blank(im: Image.Image) -> bool:
    """Whether the image's last 8x8 block (on the block grid, so inside the last MCU) is
    the flat mid-grey libjpeg fills missing blocks with (all coefficients zero: 128 in
    every band, 127 in inverted CMYK)."""
    width, height = im.size
    box = ((width - 1) // 8 * 8, (height - 1) // 8 * 8, width, height)
    corner = np.asarray(im.crop(box))
    values = np.unique(corner.reshape(-1, len(im.getbands())), axis=0)
    return len(values) == 1 and set(values[0].tolist()) <= {127, 128}


def check_jpeg_complete(data: bytes, im: Image.Image, pixels: np.ndarray) -> None:
    """Refuse a JPEG whose entropy-coded data stops before its last block.

    libjpeg fills the blocks after a premature end marker with flat grey and only warns,
    and Pillow drops the warning: a JPEG cut short with its end marker put back decodes
    "fine".  The same file with filler inserted before that marker decodes the same when
    the data was complete (the filler comes after the last block and is skipped) and
    differently when it was not (the filler is decoded as the missing blocks).  The second
    decode is made only when it can matter: for progressive JPEGs, whose missing scans
    leave no trace, and for sequential ones whose last block is blank.
    """
    from PIL import Image

    end = _jpeg_end(data)
    if end is None:
        return
    offset, progressive, restarts_ok = end
    if not restarts_ok:
        raise ImageReadError(truncated("its JPEG image data holds a stray restart marker"))
    if not progressive and not _corner_is_blank(im):
        return
    probe_data = data[:offset] + _JPEG_FILLER + data[offset:]
    try:
        with Image.open(io.BytesIO(probe_data), formats=("JPEG",)) as other:
            other.load()
            again = pillow_pixels(other)
    except OSError:
        # The decoder read the filler as image data and choked on it ("broken data
        # stream"): only missing blocks make it read the filler at all.  A stray end marker
        # in the middle of the data does this.
        raise ImageReadError(truncated("its JPEG image data stops before the last block")) from None
    except Exception:
        return
    if again.shape != pixels.shape or not np.array_equal(again, pixels):
        raise ImageReadError(truncated("its JPEG image data stops before the last block"))
