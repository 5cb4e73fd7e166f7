"""Decoding: :func:`read_image`, a file's bytes to a :class:`DecodedImage`.

TIFF goes to :mod:`.tiff`; every other format is opened by Pillow, after the checks that
refuse cut or corrupt data (:mod:`.png`, :mod:`.jpeg`), with 16-bit PNG decoded by
OpenCV.  The size limit (``max_pixels``) is checked from the header before any pixel is
decoded.  Every failure is an :class:`ImageReadError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.backends import (
    decode_failure,
    decode_with_opencv,
    open_pillow,
    read_bytes,
)
from pocketsr_cli.imageio.decoded import DecodedImage, finish
from pocketsr_cli.imageio.formats import PILLOW_FORMATS, TIFF_MAGIC, require_heif_decoder
from pocketsr_cli.imageio.header import parse_header
from pocketsr_cli.imageio.jpeg import check_jpeg_complete, extended_xmp_size
from pocketsr_cli.imageio.metadata import bare_exif, dpi_of, without_thumbnail
from pocketsr_cli.imageio.nclx import (
    HDR_TRANSFERS,
    Nclx,
    icc_for_nclx,
    nclx_of,
    needs_profile,
    primaries_name,
)
from pocketsr_cli.imageio.pixels import pillow_pixels
from pocketsr_cli.imageio.png import (
    apply_colour_key,
    check_png_data,
    colour_chunks,
    png_chunk_payload,
    png_for_opencv,
    png_structure,
    scale_gray_key,
)
from pocketsr_cli.imageio.tiff import decode_tiff
from pocketsr_cli.imageio.webp import is_lossless

if TYPE_CHECKING:
    from PIL import Image

ANIMATED_WARNING = "animated: only the first frame was upscaled"


MAX_PIXELS = 2 * 89_478_485
"""The largest image :func:`read_image` decodes by default (Pillow's own limit, as an
error rather than its warning); the pipeline passes None and checks memory itself."""


def read_image(path: Path, *, max_pixels: int | None = MAX_PIXELS) -> DecodedImage:
    """Decode an image file into upright pixels plus the metadata to write back.

    16-bit PNG and TIFF stay 16-bit; palette images become RGB (RGBA when they have
    transparency); a PNG's tRNS colour key becomes an alpha channel; 1-bit becomes gray;
    CMYK becomes RGB (through its profile when it has one, and the CMYK profile is
    dropped).  The EXIF orientation is applied to the pixels and reset to 1 in the returned
    EXIF and XMP.  Animated or multi-page files give their first frame or page, and say so
    in ``warnings`` (:data:`ANIMATED_WARNING`, a multi-page TIFF's page count).  HEIC/HEIF
    needs pillow-heif (the ``heif`` extra); without it such a file raises :data:`HEIF_HINT`.

    Data that ends early or is corrupt is refused rather than decoded with black or grey
    filler: a cut file, a PNG whose image data holds too few rows or fails its checksums,
    a JPEG cut short with its end marker put back.  (Damage inside compressed data that
    still decodes, a flipped bit in a JPEG or WebP, cannot be told from an image.)

    ``max_pixels`` refuses larger images before decoding them (None: no limit).

    Raises:
        ImageReadError: the file is missing, a directory, unreadable, empty, truncated,
            corrupt, too large, or in an unsupported format or pixel layout.  Nothing else
            is raised for a bad file.
    """
    data = read_bytes(path)
    require_heif_decoder(path, data[:12])
    if max_pixels is not None:
        header = parse_header(io.BytesIO(data), path)
        if header.pixels > max_pixels:
            raise ImageReadError(
                f"image is too large to decode safely ({header.width}x{header.height}, "
                f"over {max_pixels:,} pixels)"
            )
    if data[:4] in TIFF_MAGIC:
        return decode_tiff(data)
    return _decode_pillow_file(data)


_UNUSED_ALPHA = (
    "its alpha channel is zero everywhere, which BMP writers use for no alpha at all: "
    "read as opaque"
)


def _decode_pillow_file(data: bytes) -> DecodedImage:
    """JPEG, PNG, WebP, BMP, HEIF, AVIF (not TIFF, see :func:`decode_tiff`)."""
    im = open_pillow(io.BytesIO(data))
    with im:
        fmt = PILLOW_FORMATS.get(im.format or "")
        if fmt == "tiff":  # a TIFF without the classic header reached Pillow: BigTIFF
            raise ImageReadError("BigTIFF files are not supported")
        if fmt is None:
            raise ImageReadError(f"unsupported image format {im.format}")
        coarse = None  # a JPEG's warning that its progressive scans end early
        try:
            png = png_structure(data) if fmt == "png" else None
            if png is not None:
                check_png_data(data, png)
            if png is not None and png.depth == 16:
                pixels = decode_with_opencv(
                    png_for_opencv(data, png), gray_alpha=png.colour_type == 4
                )
                if png.trns is not None:
                    pixels = apply_colour_key(pixels, png.trns)
                raw_exif = im.info.get("exif") or png_chunk_payload(data, b"eXIf")
            else:
                im.load()
                if png is not None and png.colour_type == 0 and png.depth in (2, 4):
                    scale_gray_key(im, png.depth)
                pixels = pillow_pixels(im)
                coarse = check_jpeg_complete(data, im, pixels) if fmt == "jpeg" else None
                raw_exif = im.info.get("exif")  # a PNG's late eXIf is read by load()
        except ImageReadError:
            raise
        except Exception as exc:  # decoders raise OSError, ValueError, SyntaxError...
            raise decode_failure(exc) from None
        # libheif has already applied the container's rotation and mirror, which the HEIF
        # standard makes authoritative over the (informative) EXIF tag.
        orientation = 1 if fmt == "heif" else None
        stated = im.info.get("original_orientation") if fmt == "heif" else None
        turned = stated if isinstance(stated, int) else 1  # the turn libheif applied
        exif = bare_exif(raw_exif)
        if fmt == "heif" and exif and turned != 1:
            exif = without_thumbnail(exif)  # stored unturned: it would now show sideways
        icc, xmp = im.info.get("icc_profile"), im.info.get("xmp")
        nclx = _nclx(im.info, data) if fmt in ("heif", "avif") and not icc else None
        if nclx is not None:  # its colour space, said without a profile: one that says it
            icc = icc_for_nclx(nclx)
        dpi = _jpeg_dpi(im) if fmt == "jpeg" else dpi_of(im.info.get("dpi"))
        unused_alpha = fmt == "bmp" and pixels.shape[2] == 4 and not pixels[..., 3].any()
        if unused_alpha:  # what BMP writers mean by it, and how browsers and Windows show it
            pixels = np.ascontiguousarray(pixels[..., :3])
        decoded = finish(pixels, fmt, exif, icc, xmp, orientation, dpi, turned)
        decoded.lossless = fmt == "webp" and is_lossless(io.BytesIO(data))
        if unused_alpha:
            decoded.warnings = (*decoded.warnings, _UNUSED_ALPHA)
        if fmt == "png" and decoded.metadata.icc_profile is None:
            decoded.metadata = dataclasses.replace(decoded.metadata, png_colour=colour_chunks(data))
        # MPO (a camera's JPEG with a preview or depth image) is multi-frame, not animated.
        if fmt in ("gif", "webp", "png", "avif") and getattr(im, "is_animated", False):
            decoded.warnings = (*decoded.warnings, ANIMATED_WARNING)
        elif fmt == "heif" and (frames := int(getattr(im, "n_frames", 1))) > 1:
            decoded.warnings = (
                *decoded.warnings,
                f"holds {frames} images: only the primary one was upscaled",
            )
        if fmt in ("heif", "avif"):
            decoded.warnings = (*decoded.warnings, *_heif_notes(im.info, nclx, icc is not None))
        elif im.format == "MPO" and (views := _mpo_views(im)):
            decoded.warnings = (
                *decoded.warnings,
                f"a multi-picture JPEG holding {views} more view(s) of the scene (a stereo "
                "or multi-angle camera's): only the first was upscaled",
            )
        if coarse is not None:
            decoded.warnings = (*decoded.warnings, coarse)
        if fmt == "jpeg" and (extended := extended_xmp_size(data)):
            decoded.warnings = (
                *decoded.warnings,
                f"its extended XMP ({extended / 1024:,.0f} KiB of large metadata, such as a "
                "depth map or an edit history) was left out",
            )
        return decoded


def _nclx(info: Mapping[Any, Any], data: bytes) -> Nclx | None:
    """The nclx code points of a HEIF/AVIF: as pillow-heif hands them over, else read
    from the file (Pillow's AVIF plugin does not)."""
    given = info.get("nclx_profile")
    if isinstance(given, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return Nclx(
                int(given["color_primaries"]),
                int(given["transfer_characteristics"]),
                int(given.get("matrix_coefficients", 0)),
                bool(given.get("full_range_flag", 1)),
            )
    return nclx_of(data)


def _heif_notes(info: Mapping[Any, Any], nclx: Nclx | None, has_icc: bool) -> tuple[str, ...]:
    """What a HEIF's or AVIF's decoding leaves out, for the user: samples deeper than 8
    bits (pillow-heif hands over 8), and a colour space stated by nclx that no ICC profile
    here can say (HDR, or code points :mod:`nclx` does not know), which no output then
    carries: colours look less saturated, or an HDR picture flat."""
    notes: list[str] = []
    depth = info.get("bit_depth")
    if isinstance(depth, int) and depth > 8:
        notes.append(f"its {depth}-bit samples were read as 8-bit")
    if nclx is not None and not has_icc and needs_profile(nclx):
        name = primaries_name(nclx.primaries)
        hdr = HDR_TRANSFERS.get(nclx.transfer)
        if hdr is not None:
            notes.append(
                f"it is HDR ({hdr}, {name}), which no output here can carry: it is "
                "written as SDR, its colours and highlights shown as sRGB"
            )
        else:
            notes.append(
                f"its colour space ({name}, transfer {nclx.transfer}, stated without an "
                "ICC profile) is not carried to the output: viewers will show it as sRGB"
            )
    return tuple(notes)


_MP_ENTRIES = 0xB002
_MP_VIEWS = frozenset(
    {
        "Multi-Frame Image (Panorama)",
        "Multi-Frame Image: (Disparity)",
        "Multi-Frame Image: (Multi-Angle)",
    }
)  # Pillow's names of the MP types


def _mpo_views(im: Image.Image) -> int:
    """How many further views of the scene an MPO holds (stereo, multi-angle, panorama
    parts), which the output leaves out.  Large thumbnails (a camera's preview of the same
    picture) and images of undefined type (gain maps, depth) are not counted: every such
    camera JPEG would otherwise warn about nothing a viewer shows."""
    try:
        entries = getattr(im, "mpinfo", {}).get(_MP_ENTRIES) or []
        return sum(entry.get("Attribute", {}).get("MPType") in _MP_VIEWS for entry in entries)
    except Exception:  # an unreadable MP index: nothing to say
        return 0


_X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128


def _jpeg_dpi(im: Image.Image) -> tuple[float, float] | None:
    """The print resolution a JPEG states: its JFIF density in inches or centimetres, else
    its EXIF resolution (in inches when no unit is given, as EXIF's default).  Pillow's own
    ``info["dpi"]`` falls back to a made-up 72 when the EXIF has no resolution or no unit,
    which would be written into the output as if the photo had said so."""
    stated = dpi_of(im.info.get("dpi")) if im.info.get("jfif_unit") in (1, 2) else None
    if stated is not None:
        return stated
    try:  # no JFIF density (or a zero one): the EXIF's
        exif = im.getexif()
        x = exif.get(_X_RESOLUTION)
        y = exif.get(_Y_RESOLUTION, x)
        unit = exif.get(_RESOLUTION_UNIT, 2)
        if x is None or unit not in (2, 3):  # 1: no absolute unit
            return None
        factor = 2.54 if unit == 3 else 1.0
        return dpi_of((float(x) * factor, float(y) * factor))
    except Exception:  # unreadable EXIF, or values that are no numbers
        return None
