"""Encoding: :func:`encode_image`, pixels and an :class:`OutputPlan` to a file's bytes.

Samples are converted to the plan's bit depth, metadata is fitted to the new pixels and
written where the format has room, and the provenance record is embedded (:mod:`.record`).
PNG, JPEG and TIFF are written by :mod:`.png`, :mod:`.jpeg_encode` and :mod:`.tiff` (the
first two through OpenCV, which releases the GIL while it encodes); WebP and BMP by Pillow.
Every failure is an :class:`ImageWriteError`.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from pocketsr_cli.errors import ImageWriteError
from pocketsr_cli.imageio.backends import reason
from pocketsr_cli.imageio.formats import FORMAT_NAMES, OUTPUT_FORMATS
from pocketsr_cli.imageio.jpeg_encode import XMP_MAX, encode_jpeg, fits_jpeg
from pocketsr_cli.imageio.metadata import Metadata, icc_colour_space, output_metadata
from pocketsr_cli.imageio.pixels import as_hwc, to_depth
from pocketsr_cli.imageio.planning import DEFAULT_QUALITY, FORMATS_16, OutputPlan
from pocketsr_cli.imageio.png import encode_png, png_chunk, png_chunk_payload
from pocketsr_cli.imageio.record import (
    PROVENANCE_KEYWORD,
    embeds_provenance,
    jpeg_record,
    packet_with_record,
)
from pocketsr_cli.imageio.tiff import encode_tiff

_MAX_SIDE = {"jpeg": 65_535, "webp": 16_383}


def side_limit_problem(fmt: str, width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` cannot be written as ``fmt`` (a side longer
    than the format holds: JPEG 65,535, WebP 16,383 pixels), or None when it can.  Known
    from the output size alone, so the pipeline asks before upscaling."""
    limit = _MAX_SIDE.get(fmt)
    if limit is None or max(width, height) <= limit:
        return None
    return (
        f"{FORMAT_NAMES[fmt]} cannot store images over {limit} pixels on a side "
        f"(this one is {width}x{height}); choose PNG or TIFF"
    )


def encode_image(
    pixels: np.ndarray,
    plan: OutputPlan,
    *,
    quality: int | None = None,
    metadata: Metadata | None = None,
    provenance: str | None = None,
    notes: list[str] | None = None,
) -> bytes:
    """Encode pixels (as in :class:`DecodedImage`) following ``plan``.

    Samples are converted to ``plan.bit_depth``; gray stays gray except in WebP (no gray
    mode: written as RGB/RGBA).  EXIF, ICC and XMP are written where the format has room for
    them: PNG (eXIf, iCCP, iTXt), JPEG and WebP (all three), TIFF (all three, any depth);
    BMP keeps none.  EXIF PixelX/YDimension are updated to the new size.  JPEG has no room
    for an EXIF or XMP block over 64 KiB: such a block is left out.  ``metadata=None``
    writes no metadata.  ``quality`` (1..100; None: :data:`DEFAULT_QUALITY`) applies to
    JPEG and WebP, except a WebP the plan keeps lossless (``plan.lossless``), which is
    written losslessly, its pixels exactly (colour under transparent pixels included).

    ``provenance`` (one line of ASCII text: pocketsr's record, whatever ``metadata`` is) is
    embedded where the format allows (:func:`embeds_provenance`): a PNG ``tEXt`` chunk
    ``pocketsr``, or the XMP property ``pocketsr:record`` added to the XMP packet (an older
    record in it is replaced).  BMP cannot hold it: the caller writes a sidecar.  In a JPEG,
    whose XMP packet holds 64 KiB at most, a camera's packet that fits only without the
    record is kept, and the record goes in a comment segment when dropping the packet's
    padding does not make room (:func:`record.jpeg_record`); a packet that does not fit
    at all gives way to one holding the record alone.  In a WebP or TIFF a malformed packet
    the record cannot join gives way to one holding the record alone too
    (:func:`record.packet_with_record`).  Either way a later run knows its own output.

    ``notes`` gets a line, for the user, naming the metadata blocks the format cannot
    hold and that are therefore not copied (:func:`not_kept`): a BMP's ICC profile, EXIF
    and XMP, a gray image's ICC profile in WebP, a PNG's gAMA/cHRM in another format.

    Raises:
        ImageWriteError: the pixels or plan cannot be encoded (alpha for JPEG/BMP, a side
            too long for the format, an encoder failure).
    """
    if plan.format not in OUTPUT_FORMATS:
        raise ImageWriteError(f"unknown output format {plan.format!r}")
    if quality is None:
        quality = DEFAULT_QUALITY
    if not 1 <= quality <= 100:
        raise ImageWriteError(f"quality must be between 1 and 100, not {quality}")
    depth = plan.bit_depth if plan.format in FORMATS_16 else 8
    pixels = to_depth(as_hwc(pixels), depth)
    channels = pixels.shape[2]
    if plan.format in ("jpeg", "bmp") and channels in (2, 4):
        raise ImageWriteError(f"{FORMAT_NAMES[plan.format]} cannot store transparency")
    too_large = side_limit_problem(plan.format, pixels.shape[1], pixels.shape[0])
    if too_large is not None:
        raise ImageWriteError(too_large)
    meta, dropped = not_kept(plan.format, output_metadata(metadata, pixels))
    if dropped is not None and notes is not None:
        notes.append(dropped)
    if plan.format == "webp" and channels in (1, 2):
        pixels = np.concatenate([pixels[:, :, :1]] * 3 + [pixels[:, :, 1:]], axis=2)
    png_text = b""
    comment = None  # a JPEG comment segment's payload: the record, where the XMP had no room
    if provenance is not None and plan.format == "png":
        png_text = png_chunk(b"tEXt", PROVENANCE_KEYWORD + b"\x00" + provenance.encode("latin-1"))
    elif provenance is not None and plan.format == "jpeg":
        # The camera's packet and the record, in the one 64 KiB XMP segment or apart.
        xmp, comment = jpeg_record(meta.xmp, provenance, XMP_MAX, notes)
        meta = dataclasses.replace(meta, xmp=xmp)
    elif provenance is not None and embeds_provenance(plan.format):
        # WebP and TIFF: the one packet holds the record, the camera's given up if need be.
        meta = dataclasses.replace(meta, xmp=packet_with_record(meta.xmp, provenance, notes))
    try:
        if plan.format == "png":
            return encode_png(pixels, meta, png_text)
        if plan.format == "tiff":
            return encode_tiff(pixels, meta)
        if plan.format == "jpeg":
            return encode_jpeg(pixels, quality, fits_jpeg(meta, notes), comment)
        return _encode_pillow(pixels, plan.format, quality, meta, lossless=plan.lossless)
    except ImageWriteError:
        raise
    except Exception as exc:  # encoders raise OSError, ValueError, cv2.error...
        raise ImageWriteError(
            f"could not encode {FORMAT_NAMES[plan.format]}: {reason(exc)}"
        ) from exc


def not_kept(fmt: str, meta: Metadata) -> tuple[Metadata, str | None]:
    """What of ``meta`` (fitted to the pixels as decoded: a gray image's profile is a gray
    one) a ``fmt`` output holds, and the line for what it has no room for (None when
    nothing is lost): a BMP keeps only the print resolution (no ICC profile, EXIF, XMP);
    WebP has no gray mode, so no place for a gray profile; only a PNG has one for a PNG's
    gAMA/cHRM chunks (named when they say anything: beside an sRGB chunk, which every
    format's default means, readers ignore them).  The colour blocks are named first:
    without them a wide-gamut photo (Display P3, Adobe RGB) or a gray image's tone curve
    shows otherwise, which the user must hear of, since nothing else says so."""
    lost: list[str] = []
    keeper = ""  # where the colour block lost would be kept
    kept = meta
    if fmt == "bmp":
        lost += [
            name
            for name, block in (
                ("ICC colour profile", meta.icc_profile),
                ("EXIF", meta.exif),
                ("XMP", meta.xmp),
            )
            if block
        ]
        keeper = "PNG or TIFF keep the profile" if meta.icc_profile else ""
        kept = Metadata(dpi=meta.dpi, png_colour=meta.png_colour)
    elif fmt == "webp" and meta.icc_profile and icc_colour_space(meta.icc_profile) == b"GRAY":
        lost.append("gray ICC colour profile (WebP has no gray mode)")
        keeper = "PNG or TIFF keep the profile"
        kept = dataclasses.replace(meta, icc_profile=None)
    if fmt != "png" and kept.png_colour:
        if _says_colour(kept.png_colour):
            lost.insert(0, "PNG gAMA/cHRM colour chunks")
            keeper = "a PNG keeps them"
        kept = dataclasses.replace(kept, png_colour=None)
    if not lost:
        return kept, None
    what = lost[0] if len(lost) == 1 else ", ".join(lost[:-1]) + " and " + lost[-1]
    line = f"{FORMAT_NAMES[fmt]} has no room for its {what}: not copied"
    if keeper:
        line += f" (its colours may show differently; {keeper})"
    return kept, line


def _says_colour(chunks: bytes) -> bool:
    """Whether a PNG's colour chunks (``Metadata.png_colour``) state a gamma or primaries
    that readers honour: gAMA or cHRM, without the sRGB chunk that overrides them."""
    data = b"\x00" * 8 + chunks  # png_chunk_payload skips a signature
    found = {
        kind for kind in (b"gAMA", b"cHRM", b"sRGB") if png_chunk_payload(data, kind) is not None
    }
    return bool(found) and b"sRGB" not in found


def _encode_pillow(
    pixels: np.ndarray, fmt: str, quality: int, meta: Metadata, *, lossless: bool = False
) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    out = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "webp":
        if lossless:
            # Here quality is the effort.  Measured on an upscaled 4K photo: Pillow's
            # default (80, method 4) takes 21 s, this 2.6 s for a file 0.5 % larger (lossy
            # at 95: 1.7 s).  ``exact`` keeps the colour under transparent pixels.
            options.update(lossless=True, quality=10, method=1, exact=True)
        else:
            options.update(quality=quality, method=4)
        if meta.exif:
            options["exif"] = meta.exif
        if meta.xmp:
            options["xmp"] = meta.xmp
        if meta.icc_profile:
            options["icc_profile"] = meta.icc_profile
        image.save(out, "WEBP", **options)
    else:
        image.save(out, "BMP", **({"dpi": meta.dpi} if meta.dpi is not None else {}))
    return out.getvalue()
