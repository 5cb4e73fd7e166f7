"""Format keys, file extensions and format names: what this package reads and writes.

A *format key* is a lower-case name: ``png``, ``jpeg``, ``webp``, ``tiff`` and ``bmp``
(:data:`OUTPUT_FORMATS`, read and written), and ``gif``, ``heif`` and ``avif`` (read only).
Everything here answers from a file name or a file's first bytes: nothing opens an image,
and optional decoders are looked for with ``find_spec``, so that asking does not load them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pocketsr_cli.errors import ImageReadError

OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp", "tiff", "bmp")

# Extension -> format key, for every format this package may read.
_EXTENSION_FORMATS: dict[str, str] = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",  # what browsers on Windows save JPEGs as
    ".mpo": "jpeg",  # a camera's JPEG followed by more images (stereo, depth, preview)
    ".png": "png",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".gif": "gif",
    ".heic": "heif",
    ".heif": "heif",
    ".avif": "avif",
}

_CANONICAL_EXTENSIONS: dict[str, str] = {
    "png": ".png",
    "jpeg": ".jpg",
    "webp": ".webp",
    "tiff": ".tif",
    "bmp": ".bmp",
}

# Pillow's format names -> our keys.  MPO is the multi-picture JPEG some cameras write.
PILLOW_FORMATS: dict[str, str] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "TIFF": "tiff",
    "BMP": "bmp",
    "GIF": "gif",
    "HEIF": "heif",
    "AVIF": "avif",
}


FORMAT_NAMES = {
    "png": "PNG",
    "jpeg": "JPEG",
    "webp": "WebP",
    "tiff": "TIFF",
    "bmp": "BMP",
    "gif": "GIF",
    "heif": "HEIF",
    "avif": "AVIF",
}


def format_label(fmt: str) -> str:
    """How messages name a format key (``jpeg`` -> ``JPEG``, ``webp`` -> ``WebP``); an
    unknown key is returned as it is."""
    return FORMAT_NAMES.get(fmt, fmt)


TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HEIF_HINT = 'HEIC needs the optional extra: pip install "pocketsr[heif]"'
"""The reason a HEIC/HEIF input fails when pillow-heif is not installed."""

_HEIF_EXTENSIONS = (".heic", ".heif")
# ISO-BMFF major brands of HEIF stills and sequences (not AVIF's ``avif``/``avis``).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx")


def heif_available() -> bool:
    """Whether HEIC/HEIF files can be decoded (the ``heif`` extra, pillow-heif, is there).

    Uses ``find_spec`` so that asking does not load the plugin.
    """
    return _has_module("pillow_heif")


def require_heif_decoder(path: Path, head: bytes) -> None:
    """Raise :data:`HEIF_HINT` for a HEIC/HEIF file (by name or by content) without pillow-heif.

    Without this, such a file would fail as "not a recognised image", which does not say
    that installing one extra fixes it.  A file named ``.heic`` whose content is another
    format (a JPEG that a phone or an import tool left under the HEIC name) is decoded as
    that format: it needs no extra.
    """
    other = sniff_format(head) not in (None, "heif", "avif")
    named = Path(path).suffix.lower() in _HEIF_EXTENSIONS and not other
    sniffed = head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS
    if (named or sniffed) and not heif_available():
        raise ImageReadError(HEIF_HINT)


def _readable_extensions() -> frozenset[str]:
    """Every extension read here; ``.avif`` only when a decoder for it is installed.

    ``.heic``/``.heif`` are always listed, decoder or not: an iPhone photo must not be
    skipped as "not an image" when the ``heif`` extra is missing, but fail with
    :data:`HEIF_HINT` (so that the run exits 1 and says what to install).  Uses
    ``find_spec`` so that importing this package does not load the plugins.
    """
    extensions = {ext for ext, fmt in _EXTENSION_FORMATS.items() if fmt != "avif"}
    if _has_module("pillow_avif") or _has_module("PIL._avif"):
        extensions.add(".avif")
    return frozenset(extensions)


IMAGE_EXTENSIONS: frozenset[str] = _readable_extensions()

# What a file named on the command line that is none of these is told.
READABLE = "pocketsr reads JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC/HEIF and AVIF files"


def is_image_path(path: Path) -> bool:
    """True when ``path`` has an extension this package can read (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def format_of_path(path: Path) -> str | None:
    """The format key ``path``'s extension names (``gif`` and ``heif`` too), or None."""
    return _EXTENSION_FORMATS.get(Path(path).suffix.lower())


_AVIF_BRANDS = (b"avif", b"avis")
_ISOBMFF_IMAGE_BRANDS = (*_HEIF_BRANDS, *_AVIF_BRANDS, b"mif1", b"msf1")


def sniff_format(head: bytes, size: int | None = None) -> str | None:
    """The format key of an image file whose first 16 bytes are ``head`` (by their magic
    numbers alone, nothing decoded), or None when they are no image's.  ``size``, the
    file's length, confirms a BMP (whose two-letter magic number alone other files may
    begin with); without it a BMP is not recognised."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in TIFF_MAGIC:
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in _ISOBMFF_IMAGE_BRANDS:
        return "avif" if head[8:12] in _AVIF_BRANDS else "heif"
    if head[:2] == b"BM" and size is not None and int.from_bytes(head[2:6], "little") == size:
        return "bmp"
    return None


def format_from_name(name: str) -> str:
    """Map an output format name or extension (``jpg``, ``.TIFF``...) to its format key.

    Raises:
        ValueError: ``name`` is not one of the :data:`OUTPUT_FORMATS` or their extensions.
    """
    key = name.strip().lower()
    fmt = _EXTENSION_FORMATS.get(key if key.startswith(".") else "." + key)
    if fmt is None or fmt not in OUTPUT_FORMATS:
        choices = ", ".join(OUTPUT_FORMATS)
        raise ValueError(f"unknown output format {name!r} (choose from {choices})")
    return fmt


def extension_for(fmt: str) -> str:
    """Canonical extension, with the dot, for an output format key (``"jpeg"`` -> ``".jpg"``).

    Raises:
        ValueError: ``fmt`` is not one of :data:`OUTPUT_FORMATS`.
    """
    try:
        return _CANONICAL_EXTENSIONS[fmt]
    except KeyError:
        raise ValueError(f"unknown output format {fmt!r}") from None


def output_extension(fmt: str, source: Path) -> str:
    """Extension for an output of format ``fmt`` written from ``source``.

    Keeps the source's own spelling (``.JPEG``, ``.tiff``) when it already names ``fmt``, so
    that ``--format same`` does not rename ``photo.JPEG`` to ``photo.jpg``; otherwise returns
    :func:`extension_for`.
    """
    suffix = Path(source).suffix
    if _EXTENSION_FORMATS.get(suffix.lower()) == fmt:
        return suffix
    return extension_for(fmt)
