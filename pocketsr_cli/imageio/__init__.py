"""Decode, encode and atomically write images, keeping bit depth, alpha and metadata.

The pipeline calls this package in three steps::

    image = read_image(path)                      # pixels (EXIF orientation applied) + metadata
    plan = plan_output(image.format, requested, has_alpha=image.has_alpha,
                       bit_depth=image.bit_depth)  # may switch format/depth, with warnings
    write_atomic(out_path, encode_image(upscaled, plan, quality=q, metadata=image.metadata))

Pixel arrays are always ``H x W x C`` with ``C`` in {1 (gray), 2 (gray + alpha), 3 (RGB),
4 (RGBA)}, channels in RGB order, dtype ``uint8`` or ``uint16``.

Backends: Pillow identifies every file and decodes 8-bit data; OpenCV decodes 16-bit PNG and
TIFF (Pillow flattens 16-bit colour to 8 bits) and encodes PNG (about ten times faster than
Pillow's encoder) and JPEG (the bytes Pillow writes, but without holding the GIL), with the
metadata chunks and segments inserted by this package.  WebP and BMP are encoded by Pillow;
TIFF is written by this package (Deflate + horizontal predictor), because neither library
writes 16-bit colour TIFF together with an ICC profile and EXIF.

Outputs can carry pocketsr's own record of how they were made (``provenance``): a PNG
``tEXt`` chunk with the keyword ``pocketsr``, the XMP property ``pocketsr:record`` (merged
into the camera's XMP packet) in JPEG, WebP and TIFF, and for BMP, which has no room for
metadata, a sidecar file ``NAME.bmp.pocketsr.json`` (:func:`write_sidecar`).
:func:`read_provenance_text` finds it again from the file header alone.

Every error about a bad input file is an :class:`ImageReadError` whose message is the reason
only (the caller adds the path); every encoding or writing failure is an
:class:`ImageWriteError`.  Nothing here prints, and the libraries are kept from printing:
OpenCV's log is silenced, libtiff's (Pillow's copy) message handlers are cleared, and a PNG
reaches OpenCV's libpng only after its chunks, checksums and image data were checked here,
stripped to the chunks OpenCV needs.  Truncated or corrupt data that a decoder would fill
with black or grey is refused (:func:`read_image`).

Pillow's decompression-bomb check (a fixed pixel count, a warning then an error) is
replaced by ``max_pixels`` here and by the pipeline's memory estimate from the header
(:func:`read_header`, ``memory.predict``), which knows the scale and model.

One module per concern; callers import from the package, never from its modules:

* ``formats``: format keys, extensions, format names, HEIF availability.
* ``metadata``: :class:`Metadata`; EXIF, ICC and XMP at the byte level.
* ``nclx``: a HEIF/AVIF colour space stated by code points, as an ICC profile.
* ``backends``: reading files; Pillow and OpenCV, loaded lazily and kept quiet.
* ``pixels``: Pillow images to ``H x W x C`` arrays, orientation, bit depth.
* ``png``, ``jpeg``, ``tiff``: each format's own checks, decoding and writing; ``webp``:
  whether a WebP is lossless.
* ``jpeg_encode``: JPEG writing (OpenCV's encoder, Pillow's metadata layout).
* ``decoded``: :class:`DecodedImage`, the step every decoder ends with, and
  :func:`drop_opaque_alpha`.
* ``header``: :func:`read_header` / :func:`probe`, from the header alone.
* ``decode``: :func:`read_image`.
* ``planning``: :func:`plan_output` (:func:`plan_for`: from an image or a header).
* ``encode``: :func:`encode_image`.
* ``record``: where outputs store the provenance record, and finding it again.
* ``atomic``: :func:`write_atomic`.

Imports go one way, down this list: ``decode``, ``encode`` → ``header``, ``record`` →
``tiff`` → ``png``, ``jpeg``, ``jpeg_encode``, ``decoded`` → ``backends``, ``pixels``,
``planning`` → ``formats``, ``metadata``, ``nclx``, ``webp``, ``atomic``.  Pillow's plugins
and OpenCV are loaded when the first image is read or written, not with the package.
"""

from __future__ import annotations

from pocketsr_cli.imageio.atomic import TEMP_SUFFIX, temp_path_for, write_atomic
from pocketsr_cli.imageio.backends import opencv
from pocketsr_cli.imageio.decode import ANIMATED_WARNING, MAX_PIXELS, read_image
from pocketsr_cli.imageio.decoded import DecodedImage, drop_opaque_alpha
from pocketsr_cli.imageio.encode import encode_image, side_limit_problem
from pocketsr_cli.imageio.formats import (
    HEIF_HINT,
    IMAGE_EXTENSIONS,
    OUTPUT_FORMATS,
    READABLE,
    extension_for,
    format_from_name,
    format_label,
    format_of_path,
    heif_available,
    is_image_path,
    output_extension,
    sniff_format,
)
from pocketsr_cli.imageio.header import FileStamp, ImageHeader, file_stamp, probe, read_header
from pocketsr_cli.imageio.metadata import Metadata, icc_for_channels
from pocketsr_cli.imageio.pixels import cmyk_to_rgb
from pocketsr_cli.imageio.planning import (
    DEFAULT_QUALITY,
    OutputPlan,
    plan_for,
    plan_output,
    transparency_switch,
)
from pocketsr_cli.imageio.record import (
    PROVENANCE_KEYWORD,
    SIDECAR_SUFFIX,
    embeds_provenance,
    read_provenance_text,
    sidecar_path,
    sidecar_written,
    write_sidecar,
)

__all__ = [
    "ANIMATED_WARNING",
    "DEFAULT_QUALITY",
    "HEIF_HINT",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "OUTPUT_FORMATS",
    "PROVENANCE_KEYWORD",
    "READABLE",
    "SIDECAR_SUFFIX",
    "TEMP_SUFFIX",
    "DecodedImage",
    "FileStamp",
    "ImageHeader",
    "Metadata",
    "OutputPlan",
    "cmyk_to_rgb",
    "drop_opaque_alpha",
    "embeds_provenance",
    "encode_image",
    "extension_for",
    "file_stamp",
    "format_from_name",
    "format_label",
    "format_of_path",
    "heif_available",
    "icc_for_channels",
    "is_image_path",
    "opencv",
    "output_extension",
    "plan_for",
    "plan_output",
    "probe",
    "read_header",
    "read_image",
    "read_provenance_text",
    "side_limit_problem",
    "sidecar_path",
    "sidecar_written",
    "sniff_format",
    "temp_path_for",
    "transparency_switch",
    "write_atomic",
    "write_sidecar",
]
