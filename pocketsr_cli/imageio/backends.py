"""Files and the decoding libraries: reading bytes, opening with Pillow, decoding with OpenCV.

Pillow and OpenCV are imported on first use (importing the package stays fast), and only
the Pillow plugins of the formats read here are registered.  Both libraries are kept from
printing: OpenCV's log is silenced and libtiff's message handlers are cleared.  Every
failure of a file or a library leaves this module as an :class:`ImageReadError` whose
message is the reason only (the caller adds the path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.formats import FORMAT_NAMES, PILLOW_FORMATS

if TYPE_CHECKING:
    from PIL import Image


TRUNCATED = "file is truncated or corrupt (incomplete download or copy?)"


def truncated(detail: str) -> str:
    return f"file is truncated or corrupt: {detail} (incomplete download or copy?)"


@cache
def _pillow_formats() -> tuple[str, ...]:
    """Register the plugins we read with and return their Pillow format names.

    Only these formats are tried, so that a mislabelled file can never reach one of Pillow's
    riskier plugins (EPS, for instance, runs Ghostscript).
    """
    from PIL import (  # noqa: F401  (imported to register the plugins)
        BmpImagePlugin,
        GifImagePlugin,
        Image,
        JpegImagePlugin,
        MpoImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    with contextlib.suppress(ImportError):
        from PIL import AvifImagePlugin  # noqa: F401
    with contextlib.suppress(ImportError):
        import pillow_heif

        pillow_heif.register_heif_opener()
    with contextlib.suppress(ImportError):
        import pillow_avif  # noqa: F401  (registers itself)
    # Our own limit replaces Pillow's (see the package docstring): its warning would reach
    # the user raw, and its error refuses images that fit.
    Image.MAX_IMAGE_PIXELS = None
    _quiet_libtiff()
    return tuple(name for name in PILLOW_FORMATS if name in Image.OPEN)


def _quiet_libtiff() -> None:
    """Clear the message handlers of the libtiff that Pillow links, so that a corrupt TIFF
    fails with our one line instead of libtiff's text on stderr.  Best effort: where the
    library is not found (another platform, a system Pillow), nothing changes."""
    import ctypes
    import glob

    import PIL

    root = Path(PIL.__file__).parent
    patterns = (
        "../pillow.libs/libtiff*.so*",
        ".dylibs/libtiff*.dylib",
        "../pillow.libs/*tiff*.dll",
    )
    for pattern in patterns:
        for found in glob.glob(str(root / pattern)):
            with contextlib.suppress(Exception):
                library = ctypes.CDLL(found)
                library.TIFFSetErrorHandler(None)
                library.TIFFSetWarningHandler(None)


@cache
def opencv() -> Any:
    """OpenCV, with its own log (``[ WARN:0@...]`` lines on stderr) silenced: failures come
    back as return values and are turned into our messages here."""
    import cv2

    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


@contextlib.contextmanager
def os_errors_as_read_errors(path: Path) -> Iterator[None]:
    """Turn the OS errors of opening or reading ``path`` into one-line ImageReadErrors."""
    try:
        yield
    except IsADirectoryError:
        raise ImageReadError("is a directory, not an image file") from None
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except PermissionError:
        # Windows reports opening a folder as a permission error.
        if Path(path).is_dir():
            raise ImageReadError("is a directory, not an image file") from None
        raise ImageReadError("permission denied (cannot read the file)") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})") from None


def read_bytes(path: Path) -> bytes:
    with os_errors_as_read_errors(path):
        data = Path(path).read_bytes()
    if not data:
        raise ImageReadError("file is empty (0 bytes)")
    return data


def open_pillow(source: IO[bytes]) -> Image.Image:
    """Open (header only) with the plugins of :func:`_pillow_formats`."""
    from PIL import Image, UnidentifiedImageError

    formats = _pillow_formats()
    try:
        return Image.open(source, formats=formats)
    except UnidentifiedImageError:
        source.seek(0)
        precision = jpeg_precision(source.read(1 << 16))
        if precision is not None and precision != 8:
            # Pillow opens 8-bit JPEGs only: a 12-bit or 16-bit one (SOF1/SOF3, from
            # medical and some camera tools) is a real JPEG, not a corrupt file.
            raise ImageReadError(f"unsupported JPEG ({precision}-bit samples)") from None
        names = ", ".join(sorted({FORMAT_NAMES[PILLOW_FORMATS[name]] for name in formats}))
        raise ImageReadError(f"not a recognised image (corrupt, or not one of {names})") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image is too large to decode safely ({exc})") from None
    except Exception as exc:  # plugins raise many types for malformed or cut files
        raise decode_failure(exc) from None


# Start-of-frame markers (not DHT C4, JPG C8, DAC CC), whose segment holds the precision.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_precision(head: bytes) -> int | None:
    """The sample precision (bits) in the frame header of the JPEG that ``head`` starts,
    or None when it is no JPEG or its frame header is not in ``head``."""
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 < len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            return head[pos + 4] if pos + 4 < len(head) else None
        if marker in (0xD9, 0xDA):  # the end, or a scan before any frame
            return None
        pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return None


def reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def decode_failure(exc: BaseException) -> ImageReadError:
    text = reason(exc)
    lowered = text.lower()
    if "truncated" in lowered or "incomplete" in lowered or "could not create decoder" in lowered:
        return ImageReadError(TRUNCATED)
    return ImageReadError(f"corrupt image data ({text})")


def decode_with_opencv(data: bytes, *, gray_alpha: bool) -> np.ndarray:
    """Decode a 16-bit PNG or TIFF with OpenCV into ``H x W x C``, RGB order.

    ``IMREAD_UNCHANGED`` keeps 16 bits and alpha, and ignores the EXIF orientation (applied
    later, the same way for every decoder).
    """
    cv2 = opencv()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageReadError(TRUNCATED)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"unsupported sample type {pixels.dtype}")
    if pixels.ndim == 2:
        return pixels[:, :, None]
    channels = pixels.shape[2]
    if channels == 3:
        return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
    if channels == 4:
        if gray_alpha:  # OpenCV expands gray + alpha to BGRA
            return np.ascontiguousarray(pixels[:, :, [0, 3]])
        return np.asarray(cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA))
    raise ImageReadError(f"unsupported channel count {channels}")
