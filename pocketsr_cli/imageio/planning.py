"""Output planning: :func:`plan_output` chooses an output's format and bit depth
(:func:`plan_for`: from a decoded image or a header).

It decides from the source format, the requested one, alpha, bit depth and whether the
source is a lossless WebP only, before any pixel is encoded, and says in the plan's
warnings what it had to change (transparency written as PNG, 16 bits written as 8, a
format with no writer here).  An alpha channel
that is fully opaque is no transparency: ``decoded.drop_opaque_alpha`` takes it away
when the output's format has no room for it (:func:`holds_alpha`), so that such an image
asked as JPEG is a JPEG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pocketsr_cli.imageio.formats import FORMAT_NAMES, OUTPUT_FORMATS, format_from_name
from pocketsr_cli.spelling import FORMAT


@dataclass(frozen=True)
class OutputPlan:
    """How an output will be encoded.

    Attributes:
        format: one of :data:`OUTPUT_FORMATS`.
        bit_depth: 8 or 16 (16 only for ``png`` and ``tiff``).
        warnings: one line each, for the user, about what the plan had to change.
        lossless: write a WebP losslessly (``format`` is ``webp``): its source was a
            lossless WebP and no quality was asked for.  The quality given to
            ``encode_image`` then does not apply.
    """

    format: str
    bit_depth: int
    warnings: tuple[str, ...] = ()
    lossless: bool = False


DEFAULT_QUALITY = 95
"""The JPEG/WebP quality written when none is asked for (``--quality``)."""

FORMATS_16 = ("png", "tiff")
_FORMATS_ALPHA = ("png", "webp", "tiff")


class PlanSource(Protocol):
    """What :func:`plan_for` reads of an image: a ``DecodedImage`` or an ``ImageHeader``."""

    @property
    def format(self) -> str: ...
    @property
    def has_alpha(self) -> bool: ...
    @property
    def bit_depth(self) -> int: ...
    @property
    def lossless(self) -> bool: ...


def plan_for(
    source: PlanSource, requested: str | None, *, quality: int | None = None
) -> OutputPlan:
    """:func:`plan_output` for ``source``, a decoded image or its header (its format,
    alpha, bit depth and whether it is a lossless WebP), written in ``requested`` at
    ``quality``.

    Raises:
        ValueError: ``requested`` is not an output format name.
    """
    return plan_output(
        source.format,
        requested,
        has_alpha=source.has_alpha,
        bit_depth=source.bit_depth,
        lossless=source.lossless,
        quality=quality,
    )


def plan_output(
    source_format: str,
    requested: str | None,
    *,
    has_alpha: bool,
    bit_depth: int,
    lossless: bool = False,
    quality: int | None = None,
) -> OutputPlan:
    """Choose the output format and bit depth, saying what had to change.

    ``requested`` None means "same as the input"; GIF, HEIF and AVIF inputs, which have no
    writer here, then become PNG, with a warning: PNG loses nothing, where JPEG would
    re-compress a photo that was already compressed once (``--format jpg`` asks for it),
    and GIF's 256 colours would undo the upscale.  Alpha never goes to JPEG or BMP: PNG is
    written instead.  16-bit input stays 16-bit for PNG/TIFF and becomes 8-bit otherwise.

    A lossless source (``lossless``: a lossless WebP, :attr:`DecodedImage.lossless`)
    written as WebP (as itself, or asked as WebP) stays lossless (``OutputPlan.lossless``)
    unless ``quality``, the JPEG/WebP quality the user asked for (None: none), says
    otherwise: a photographer's lossless master must not quietly become lossy.  Other
    sources written as WebP (a PNG with ``--format webp``) are lossy, at the quality asked
    or the default.

    Raises:
        ValueError: ``requested`` is not an output format name (see :func:`format_from_name`).
    """
    warnings: list[str] = []
    if requested is None:
        fmt = source_format
        if fmt not in OUTPUT_FORMATS:
            name = FORMAT_NAMES.get(fmt, fmt)
            if fmt == "gif":
                why = "GIF holds only 256 colours, which would spoil the upscale"
            else:
                why = f"{name} output is not supported"
            warnings.append(f"{why}; writing PNG instead (choose another with {FORMAT})")
            fmt = "png"
    else:
        fmt = format_from_name(requested)
    if has_alpha and fmt not in _FORMATS_ALPHA:
        warnings.append(transparency_switch(fmt))
        fmt = "png"
    depth = 8
    if bit_depth > 8:
        if fmt in FORMATS_16:
            depth = 16
        else:
            warnings.append(f"16-bit input written as 8-bit {FORMAT_NAMES[fmt]}")
    keep_lossless = lossless and quality is None and fmt == "webp"
    return OutputPlan(format=fmt, bit_depth=depth, warnings=tuple(warnings), lossless=keep_lossless)


def transparency_switch(fmt: str) -> str:
    """The plan's line when transparency asked as ``fmt`` (JPEG, BMP) is written as PNG."""
    return f"{FORMAT_NAMES[fmt]} cannot store transparency; writing PNG instead"


def holds_alpha(fmt: str) -> bool:
    """Whether output format ``fmt`` (a key of :data:`OUTPUT_FORMATS`) can store alpha."""
    return fmt in _FORMATS_ALPHA
