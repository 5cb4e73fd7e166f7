"""Sample arrays: Pillow images into ``H x W x C`` arrays, orientation, bit depth.

Every array this module returns follows the package's convention: ``H x W x C`` with C in
1..4, RGB order, ``uint8`` or ``uint16``.  On the way in, palette and colour-key
transparency become alpha, as does the part of a GIF's canvas its first frame leaves
uncovered (:func:`partial_gif_frame`), 1-bit becomes gray and CMYK becomes RGB (through
its profile when it has one); :func:`apply_orientation` turns pixels upright.  On the way
out, :func:`as_hwc` refuses what cannot be encoded and :func:`to_depth` converts between
8 and 16 bits (rounded, so that 8 -> 16 -> 8 bit is exact).
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np

from pocketsr_cli.errors import ImageReadError, ImageWriteError
from pocketsr_cli.imageio.metadata import icc_colour_space

if TYPE_CHECKING:
    from PIL import Image


def cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert CMYK to RGB through its embedded profile ``icc`` when possible (to sRGB),
    else naively; the result's pixels fit no CMYK profile, so none is to be written with
    them (:func:`~pocketsr_cli.imageio.metadata.icc_for_channels` drops it)."""
    if icc and icc_colour_space(icc) == b"CMYK":
        from PIL import ImageCms

        with contextlib.suppress(Exception):  # a broken profile falls back to the naive path
            converted = ImageCms.profileToProfile(
                im,
                ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.createProfile("sRGB"),
                outputMode="RGB",
            )
            if converted is not None:
                return converted
    return im.convert("RGB")


# Pillow mode -> mode converted to before taking the array.
_MODE_CONVERSIONS: dict[str, str] = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "YCbCr": "RGB",
    "PA": "RGBA",
}
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")


def partial_gif_frame(im: Image.Image) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom) that the first frame of the GIF ``im`` covers
    when it leaves part of the canvas (the logical screen) uncovered, else None (the
    frame covers it all, or ``im`` is no GIF).

    Browsers show that part as transparent; Pillow fills it with palette entry 0 (or with
    the frame's transparent index, when it has one), a colour the file never drew there.
    Valid opened or loaded, as long as the first frame is the current one."""
    box = getattr(im, "dispose_extent", None)  # Pillow's: where the current frame is drawn
    if im.format != "GIF" or not isinstance(box, tuple) or len(box) != 4:
        return None
    left, top, right, bottom = box
    if left <= 0 and top <= 0 and right >= im.width and bottom >= im.height:
        return None
    return left, top, right, bottom


def pillow_pixels(im: Image.Image) -> np.ndarray:
    """Pixels of a Pillow image as ``H x W x C`` uint8/uint16 (a writable copy)."""
    frame = partial_gif_frame(im)
    mode = im.mode
    if mode in _MODES_16 or (mode == "I" and im.format == "PNG"):
        pixels = np.asarray(im).astype(np.uint16)
    else:
        if mode == "CMYK":
            im = cmyk_to_rgb(im, im.info.get("icc_profile"))
        elif mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("1", "L", "RGB") and "transparency" in im.info:
            im = im.convert("RGBA" if mode == "RGB" else "LA")  # a tRNS colour key
        elif mode not in _MODE_CONVERSIONS:
            raise ImageReadError(f"unsupported pixel format {mode!r}")
        elif _MODE_CONVERSIONS[mode] != mode:
            im = im.convert(_MODE_CONVERSIONS[mode])
        pixels = np.array(im)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if frame is not None:
        pixels = _transparent_outside(pixels, frame)
    return pixels


def _transparent_outside(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``pixels`` with an alpha channel (added when it has none, opaque) that is zero
    outside ``box`` (left, top, right, bottom)."""
    if pixels.shape[2] in (1, 3):
        opaque = np.full((*pixels.shape[:2], 1), np.iinfo(pixels.dtype).max, pixels.dtype)
        pixels = np.concatenate([pixels, opaque], axis=2)
    left, top, right, bottom = box
    covered = np.zeros(pixels.shape[:2], bool)
    covered[top:bottom, left:right] = True
    pixels[~covered, -1] = 0
    return pixels


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright according to an EXIF orientation (1..8)."""
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    elif orientation == 5:
        pixels = pixels.transpose(1, 0, 2)
    elif orientation == 6:
        pixels = np.rot90(pixels, -1)
    elif orientation == 7:
        pixels = pixels[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:
        pixels = np.rot90(pixels, 1)
    return np.ascontiguousarray(pixels)


def as_hwc(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ImageWriteError(f"cannot encode an array of shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"cannot encode samples of type {pixels.dtype}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageWriteError("cannot encode an empty image")
    return pixels


def to_depth(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    if bit_depth == 8 and pixels.dtype == np.uint16:
        # Rounded, so that 8 -> 16 -> 8 bit is exact.
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if bit_depth == 16 and pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * 257
    return pixels
