"""Small generated test images and metadata, shared by the test modules.

Everything is seeded and tiny, so tests stay fast and deterministic.  Files are written
with Pillow or OpenCV directly, never with ``pocketsr_cli.imageio``, so that tests of that
module compare against independent encoders.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

ORIENTATION_TAG = 0x0112
EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 0x9003
MAKE = 0x010F


def make_photo_like(
    h: int,
    w: int,
    channels: int = 3,
    dtype: type[np.generic] = np.uint8,
    seed: int = 0,
) -> np.ndarray:
    """An ``h x w x channels`` image that looks roughly like a photograph.

    Smooth gradients plus a fine texture and a little noise, different in every channel.
    For ``uint16`` the low byte is used too (values are not multiples of 257), so that any
    flattening to 8 bits is detected.  The alpha channel (channels 2 and 4) is a gradient.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        phase = rng.uniform(0, 2 * np.pi)
        plane = (
            0.45 * (x / max(w - 1, 1))
            + 0.35 * (y / max(h - 1, 1)) * (1 if c % 2 else -1)
            + 0.12 * np.sin(x / (2.5 + c) + phase) * np.cos(y / (3.5 + c))
            + rng.normal(0, 0.02, (h, w))
        )
        planes.append(plane)
    img = np.stack(planes, axis=2)
    img -= img.min(axis=(0, 1), keepdims=True)
    img /= np.maximum(img.max(axis=(0, 1), keepdims=True), 1e-9)
    top = 65535 if dtype == np.uint16 else 255
    return np.ascontiguousarray(np.round(img * top).astype(dtype))


def make_asymmetric(
    h: int, w: int, channels: int = 3, dtype: type[np.generic] = np.uint8
) -> np.ndarray:
    """Every pixel distinct and no symmetry, so any flip or rotation is detectable."""
    count = h * w * channels
    values = (np.arange(count, dtype=np.int64) * 7919) % (65521 if dtype == np.uint16 else 251)
    return values.reshape(h, w, channels).astype(dtype)


def make_blocky(h: int, w: int, block: int = 8, seed: int = 0) -> np.ndarray:
    """RGB of flat ``block x block`` squares: survives JPEG almost unchanged, not symmetric."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(30, 226, (-(-h // block), -(-w // block), 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(cells, block, 0), block, 1)[:h, :w])


def to_pillow(pixels: np.ndarray) -> Image.Image:
    """Pillow image of an ``H x W x C`` uint8 array (gray for C == 1)."""
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def srgb_icc() -> bytes:
    """Bytes of LittleCMS's built-in sRGB profile."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def fake_icc(colour_space: bytes) -> bytes:
    """The sRGB profile with its data colour space field changed (``b"CMYK"``, ``b"GRAY"``)."""
    icc = bytearray(srgb_icc())
    icc[16:20] = colour_space
    return bytes(icc)


def make_exif(orientation: int | None = None, make: str = "PocketCam") -> Image.Exif:
    """EXIF with Make in IFD0, DateTimeOriginal in the Exif IFD and optional Orientation."""
    exif = Image.Exif()
    exif[MAKE] = make
    if orientation is not None:
        exif[ORIENTATION_TAG] = orientation
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = "2024:05:06 07:08:09"
    return exif


def make_xmp(orientation: int = 1, marker: str = "pocketsr-test-marker") -> bytes:
    """A small, well-formed XMP packet with a tiff:Orientation attribute and a marker."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        f'xmlns:dc="http://purl.org/dc/elements/1.1/" tiff:Orientation="{orientation}">'
        f"<dc:source>{marker}</dc:source>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def save_pillow(path: Path, pixels: np.ndarray, fmt: str, **options: object) -> Path:
    """Save an 8-bit array with Pillow (``fmt`` is Pillow's name: JPEG, PNG, TIFF...)."""
    to_pillow(pixels).save(path, fmt, **options)
    return path


def save_with_exif_orientation(
    path: Path, pixels: np.ndarray, orientation: int, fmt: str = "PNG", **options: object
) -> Path:
    """Save ``pixels`` as stored (not rotated) with an EXIF Orientation tag."""
    return save_pillow(path, pixels, fmt, exif=make_exif(orientation), **options)


def save_opencv(path: Path, pixels: np.ndarray, ext: str = ".png") -> Path:
    """Save an ``H x W x C`` RGB(A)/gray array (uint8 or uint16) with OpenCV."""
    if pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def decode_opencv(data: bytes) -> np.ndarray:
    """Decode with OpenCV (keeps 16 bits) into ``H x W x C`` RGB(A)/gray."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels is not None
    if pixels.ndim == 2:
        return pixels[:, :, None]
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)


# How Pillow turns each EXIF orientation upright (as in ``ImageOps.exif_transpose``).
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def pillow_orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (uint8 or uint16) made upright by Pillow, one channel at a time."""
    if orientation == 1:
        return pixels
    method = _TRANSPOSE_FOR_ORIENTATION[orientation]
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(pixels[:, :, c])).transpose(method))
        for c in range(pixels.shape[2])
    ]
    return np.stack(planes, axis=2)


def add_png_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """``png`` with one more chunk inserted right after IHDR."""
    chunk = struct.pack(">I", len(payload)) + kind + payload
    chunk += struct.pack(">I", zlib.crc32(kind + payload))
    return png[:33] + chunk + png[33:]


def open_pillow(data: bytes) -> Image.Image:
    """Open encoded bytes with Pillow and decode them (raises on truncation)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class _CountingFile(io.FileIO):
    """A file that counts the bytes read from it: what a buffered reader over it asks of
    the disk."""

    total = 0

    def readinto(self, buffer: object) -> int | None:
        n = super().readinto(buffer)  # type: ignore[arg-type]
        _CountingFile.total += n or 0
        return n

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        _CountingFile.total += len(data)
        return data

    def readall(self) -> bytes:
        data = super().readall()
        _CountingFile.total += len(data)
        return data


def bytes_read_by(monkeypatch: pytest.MonkeyPatch, call: object) -> tuple[object, int]:
    """What ``call()`` returns, and how many bytes it read from the disk through files it
    opened with ``Path.open`` (``read_header``, ``read_provenance_text``...)."""
    assert callable(call)

    def counted_open(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        assert mode == "rb", mode
        return io.BufferedReader(_CountingFile(self))

    _CountingFile.total = 0
    with monkeypatch.context() as patch:
        patch.setattr(Path, "open", counted_open)
        result = call()
    return result, _CountingFile.total
