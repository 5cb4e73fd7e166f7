"""What decoding returns: :class:`DecodedImage`, and :func:`finish`, the last step every
decoder shares (orientation applied to the pixels, metadata normalised to match them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.formats import OUTPUT_FORMATS
from pocketsr_cli.imageio.metadata import (
    Metadata,
    exif_orientation,
    exif_states_orientation,
    icc_for_channels,
    patch_exif,
    reset_xmp_orientation,
    without_attached_media,
    without_dropped_tags,
    xmp_bytes,
    xmp_with_resolution_turned,
)
from pocketsr_cli.imageio.pixels import apply_orientation
from pocketsr_cli.imageio.planning import holds_alpha


@dataclass
class DecodedImage:
    """A decoded input.

    Attributes:
        pixels: contiguous ``H x W x C`` array (see the package docstring), EXIF orientation
            already applied.
        format: source format key (``jpeg``, ``png``, ``webp``, ``tiff``, ``bmp``, ``gif``,
            ``heif``, ``avif``).
        metadata: what :func:`encode_image` should write back.
        warnings: one line each, for the user, about what decoding left out (only the
            first frame of an animation).
        lossless: the file stores its pixels losslessly in a format that also has a
            lossy mode: a lossless WebP (``VP8L``; an animation's first frame).  False
            for every other format, whose output is lossless or not by its format
            alone.  :func:`plan_output` keeps such an image lossless.
    """

    pixels: np.ndarray
    format: str
    metadata: Metadata
    warnings: tuple[str, ...] = ()
    lossless: bool = False

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_transparent(self) -> bool:
        """Whether some pixel is less than fully opaque (an alpha channel below its
        maximum somewhere; one pass over the alpha channel)."""
        if not self.has_alpha:
            return False
        top = np.iinfo(self.pixels.dtype).max
        return bool(self.pixels[..., -1].min() < top)

    def without_alpha(self) -> DecodedImage:
        """This image without its alpha channel (a copy of the other channels), or itself
        when it has none."""
        if not self.has_alpha:
            return self
        pixels = np.ascontiguousarray(self.pixels[..., :-1])
        return dataclasses.replace(self, pixels=pixels)

    @property
    def is_gray(self) -> bool:
        return self.channels in (1, 2)

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


def finish(
    pixels: np.ndarray,
    fmt: str,
    exif: bytes | None,
    icc: bytes | None,
    xmp_value: object,
    orientation: int | None = None,
    dpi: tuple[float, float] | None = None,
    turned: int = 1,
) -> DecodedImage:
    """Apply the orientation (``None``: the one in ``exif``), normalise the metadata: the
    EXIF and XMP orientation reset, the EXIF tags no output keeps (IPTC-IIM:
    ``metadata.DROPPED_TAGS``) left out, an XMP that points at media after the picture (a
    motion photo's video, a gain map) no longer does so, with a warning saying so.

    An XMP ``tiff:Orientation`` is reset only where the pixels were turned or the EXIF
    states an orientation (which viewers prefer): one the EXIF does not state is kept and
    the pixels are not turned, since viewers disagree about it (browsers ignore it,
    Lightroom and Photoshop honour it) and the output then shows as the input did in each.

    ``turned`` is the orientation the decoder has already applied to ``pixels`` (libheif's
    rotation).  Where either is a quarter turn (5 to 8), the print
    resolution across and down trade places with the rows and columns: ``dpi``, the EXIF's
    XResolution/YResolution and the XMP's (a 300 x 600 dpi scan turned upright is 600 x 300
    dpi, and prints the same size)."""
    if pixels.shape[2] not in (1, 2, 3, 4) or pixels.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"unsupported pixel layout {pixels.shape} {pixels.dtype}")
    if orientation is None:
        orientation = exif_orientation(exif)
    pixels = apply_orientation(pixels, orientation)
    quarter_turn = orientation in (5, 6, 7, 8) or turned in (5, 6, 7, 8)
    if quarter_turn and dpi is not None:
        dpi = (dpi[1], dpi[0])
    if exif is not None:
        exif = patch_exif(without_dropped_tags(exif), quarter_turn=quarter_turn)
    xmp = xmp_bytes(xmp_value)
    attached = None
    if xmp is not None:
        if quarter_turn:
            xmp = xmp_with_resolution_turned(xmp)
        if orientation != 1 or turned != 1 or exif_states_orientation(exif):
            xmp = reset_xmp_orientation(xmp)
        xmp, attached = without_attached_media(xmp)
    icc = icc_for_channels(icc, pixels.shape[2])
    return DecodedImage(
        pixels=pixels,
        format=fmt,
        metadata=Metadata(exif, icc, xmp, dpi),
        warnings=() if attached is None else (attached,),
    )


def drop_opaque_alpha(image: DecodedImage, fmt: str | None) -> tuple[DecodedImage, bool | None]:
    """``image`` without its alpha channel when that channel is fully opaque and ``fmt``,
    the format its output is named in, cannot store alpha (JPEG, BMP); else ``image``.
    With it, :attr:`DecodedImage.is_transparent` where this had to look (None where it did
    not: no alpha channel, or ``fmt`` can store one), so that a caller that needs it too
    does not pass over a large image's alpha channel a second time.

    Such an alpha channel carries nothing, so the output of an input whose alpha is all
    opaque is written in the format asked for, not in PNG: the planner (``jobs``) plans
    both names (``Job.alt_output``), and the run picks one once the image is decoded.
    Upscaling three channels instead of four is also a quarter less work."""
    if fmt not in OUTPUT_FORMATS or holds_alpha(fmt) or not image.has_alpha:
        return image, None
    if image.is_transparent:
        return image, True
    return image.without_alpha(), False
