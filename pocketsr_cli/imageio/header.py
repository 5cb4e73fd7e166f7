"""What an image file's header says, without decoding its pixels: :func:`read_header`.

Size, channels and bit depth come out as :func:`~pocketsr_cli.imageio.read_image` would
return them (EXIF orientation applied, palettes as RGB, transparency as alpha), in about a
millisecond: what predicting an image's memory needs (``memory.predict``), and what job
planning asks (:func:`probe`).  Truncation is not detected here: that needs the pixels.

A header knows the file it was read from (:attr:`ImageHeader.stamp`), so that one read
while planning is passed along rather than read again (``read_header(path, known=...)``)
for as long as that file is still the one there.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.backends import open_pillow, os_errors_as_read_errors
from pocketsr_cli.imageio.formats import PILLOW_FORMATS, TIFF_MAGIC, require_heif_decoder
from pocketsr_cli.imageio.metadata import TAG_ORIENTATION, bare_exif, exif_orientation
from pocketsr_cli.imageio.pixels import partial_gif_frame
from pocketsr_cli.imageio.tiff import as_tuple, read_tiff_tags
from pocketsr_cli.imageio.webp import is_lossless

if TYPE_CHECKING:
    from collections.abc import Mapping

FileStamp = tuple[int, int, int, int]
"""What tells one file from another written at the same path later: its device, inode,
size and modification time (ns)."""


def file_stamp(st: os.stat_result) -> FileStamp:
    """The :data:`FileStamp` of a file whose ``stat`` is ``st``."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, without decoding its pixels.

    Attributes:
        width, height: as :func:`read_image` returns them (EXIF orientation applied).
        channels: as decoded (1..4): palettes give RGB, CMYK gives RGB, a tRNS colour key,
            palette transparency or a GIF's first frame smaller than its canvas adds alpha.
        bit_depth: 8 or 16, as decoded.
        format: the format key (``jpeg``, ``png``...).
        lossless: as :attr:`DecodedImage.lossless` (a lossless WebP).
        stamp: the file it was read from, as it was then (:func:`file_stamp`); None when
            read from no file.  Not compared: two headers that say the same are equal.
    """

    width: int
    height: int
    channels: int
    bit_depth: int
    format: str
    lossless: bool = False
    stamp: FileStamp | None = field(default=None, compare=False, repr=False)

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(path: Path, *, known: ImageHeader | None = None) -> ImageHeader:
    """Size, channels and bit depth as :func:`read_image` would return them, from the
    header alone (about a millisecond): what predicting an image's memory needs.

    Does not decode pixels, so it does not detect truncation; an EXIF orientation stored
    after a PNG's image data is not seen.

    ``known``: a header read from ``path`` before (job planning's), returned as it is
    while the file there is the one it was read from (same :data:`FileStamp`: a ``stat``
    instead of a parse), else read again.

    Raises:
        ImageReadError: as :func:`read_image`, for what the header alone reveals.
    """
    if known is not None and known.stamp is not None:
        try:
            if file_stamp(os.stat(path)) == known.stamp:
                return known
        except OSError:  # gone or unreadable: reading it says so
            pass
    with os_errors_as_read_errors(path), Path(path).open("rb") as handle:
        # Stamped as opened: a change while it is read makes the stamp stale, not wrong.
        stamp = file_stamp(os.fstat(handle.fileno()))
        return dataclasses.replace(parse_header(handle, path), stamp=stamp)


def probe(path: Path) -> tuple[int, int, bool]:
    """``(width, height, has_alpha)`` from the file header (see :func:`read_header`)."""
    header = read_header(path)
    return header.width, header.height, header.has_alpha


# Pillow mode -> (channels, bit depth) as decoded here, before any transparency.
_MODE_LAYOUTS: dict[str, tuple[int, int]] = {
    "1": (1, 8),
    "L": (1, 8),
    "LA": (2, 8),
    "La": (2, 8),
    "P": (3, 8),
    "PA": (4, 8),
    "RGB": (3, 8),
    "RGBA": (4, 8),
    "RGBa": (4, 8),
    "RGBX": (3, 8),
    "YCbCr": (3, 8),
    "CMYK": (3, 8),
    "I": (1, 16),
    "I;16": (1, 16),
    "I;16L": (1, 16),
    "I;16B": (1, 16),
    "I;16N": (1, 16),
}


def parse_header(handle: IO[bytes], path: Path) -> ImageHeader:
    head = handle.read(32)
    if not head:
        raise ImageReadError("file is empty (0 bytes)")
    require_heif_decoder(path, head[:12])
    handle.seek(0)
    if head[:4] in TIFF_MAGIC:
        # Pillow cannot open every 16-bit layout: the tags are read as an EXIF block, like
        # read_image does, those of the layout alone (found with seeks, not the file read).
        return parse_tiff_header(read_tiff_tags(handle, TIFF_HEADER_TAGS))
    with open_pillow(handle) as im:
        fmt = PILLOW_FORMATS.get(im.format or "")
        if fmt is None:
            raise ImageReadError(f"unsupported image format {im.format}")
        width, height = im.size
        if fmt != "heif" and exif_orientation(bare_exif(im.info.get("exif"))) in (5, 6, 7, 8):
            width, height = height, width
        channels, depth = _MODE_LAYOUTS.get(im.mode, (3, 8))
        transparent = "transparency" in im.info or partial_gif_frame(im) is not None
        if transparent and channels in (1, 3):
            channels += 1
        if fmt == "png" and head[12:16] == b"IHDR" and head[24] == 16:
            depth = 16  # Pillow opens 16-bit colour as 8-bit; OpenCV decodes it here
    lossless = False
    if fmt == "webp":
        handle.seek(0)
        lossless = is_lossless(handle)
    return ImageHeader(width, height, channels, depth, fmt, lossless)


TIFF_HEADER_TAGS = frozenset({256, 257, 258, 262, 274, 277, 338})
"""The TIFF tags :func:`parse_tiff_header` reads: size, bits per sample, colour model,
orientation, samples per pixel and extra samples."""


def parse_tiff_header(tags: Mapping[int, Any]) -> ImageHeader:
    """The header of a TIFF whose first IFD holds ``tags`` (:data:`TIFF_HEADER_TAGS`
    at least; ``tiff.tiff_tags`` or ``tiff.read_tiff_tags``)."""
    width, height = int(tags[256]), int(tags[257])
    if tags.get(TAG_ORIENTATION) in (5, 6, 7, 8):
        width, height = height, width
    samples, photometric = tags.get(277, 1), tags.get(262)
    # Some writers (OpenCV) leave out ExtraSamples: count the samples as well.  An extra
    # sample marked unspecified (0: a saved selection, a mask) is not alpha and is dropped.
    extra = as_tuple(tags.get(338))
    has_alpha = extra[:1] != (0,) and (
        bool(extra) or samples == (2 if photometric in (0, 1) else 4)
    )
    gray = photometric in (0, 1)
    channels = (1 if gray else 3) + (1 if has_alpha else 0)
    depth = 16 if max(as_tuple(tags.get(258)) or (1,)) > 8 else 8
    return ImageHeader(width, height, channels, depth, "tiff")
