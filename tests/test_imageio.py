"""Tests of ``pocketsr_cli.imageio``: real files written and read back in ``tmp_path``.

Inputs are made with Pillow or OpenCV directly (``_imagegen``) and outputs are checked with
them too, so that the module is compared with independent encoders and decoders.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from _imagegen import (
    DATETIME_ORIGINAL,
    EXIF_IFD,
    MAKE,
    ORIENTATION_TAG,
    add_png_chunk,
    bytes_read_by,
    decode_opencv,
    fake_icc,
    make_asymmetric,
    make_blocky,
    make_exif,
    make_photo_like,
    make_xmp,
    open_pillow,
    pillow_orient,
    save_opencv,
    save_pillow,
    save_with_exif_orientation,
    srgb_icc,
    to_pillow,
)
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from pocketsr_cli import imageio
from pocketsr_cli.errors import ImageReadError, ImageWriteError
from pocketsr_cli.imageio import (
    IMAGE_EXTENSIONS,
    OUTPUT_FORMATS,
    TEMP_SUFFIX,
    Metadata,
    OutputPlan,
    encode_image,
    extension_for,
    format_from_name,
    is_image_path,
    output_extension,
    plan_output,
    probe,
    read_image,
    write_atomic,
)

PILLOW_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}
LOSSY = {"jpeg", "webp"}


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def exif_of(image: Image.Image) -> Image.Exif:
    return image.getexif()


# --------------------------------------------------------------------------------------------
# Names and plans
# --------------------------------------------------------------------------------------------


def test_image_extensions_and_is_image_path() -> None:
    for ext in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"):
        assert ext in IMAGE_EXTENSIONS
        assert is_image_path(Path(f"a/b/photo{ext.upper()}"))
    for ext in (".gif", ".heic", ".HEIF"):  # HEIC with or without its decoder (the hint)
        assert is_image_path(Path(f"photo{ext}"))
    for name in ("notes.txt", "photo", "archive.tar.gz", "movie.mp4", "x.ico", "jpg"):
        assert not is_image_path(Path(name))
    assert (".avif" in IMAGE_EXTENSIONS) == ("AVIF" in imageio.backends._pillow_formats())
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def test_format_names_and_extensions() -> None:
    for name, key in {
        "jpg": "jpeg",
        "JPEG": "jpeg",
        ".jpg": "jpeg",
        "png": "png",
        "webp": "webp",
        "tif": "tiff",
        "TIFF": "tiff",
        "bmp": "bmp",
    }.items():
        assert format_from_name(name) == key
    for bad in ("gif", "heic", "avif", "same", "", "jpegg"):
        with pytest.raises(ValueError):
            format_from_name(bad)
    assert [extension_for(f) for f in OUTPUT_FORMATS] == [".png", ".jpg", ".webp", ".tif", ".bmp"]
    with pytest.raises(ValueError):
        extension_for("heif")
    assert output_extension("jpeg", Path("IMG_1.JPEG")) == ".JPEG"
    assert output_extension("tiff", Path("scan.tiff")) == ".tiff"
    assert output_extension("png", Path("IMG_1.JPEG")) == ".png"
    assert output_extension("png", Path("x.heic")) == ".png"


@pytest.mark.parametrize(
    ("source", "requested", "alpha", "depth", "fmt", "out_depth", "n_warnings"),
    [
        ("jpeg", None, False, 8, "jpeg", 8, 0),
        ("png", None, True, 16, "png", 16, 0),
        ("tiff", None, True, 16, "tiff", 16, 0),
        ("png", "jpg", False, 8, "jpeg", 8, 0),
        ("png", "jpeg", True, 8, "png", 8, 1),  # alpha -> PNG
        ("bmp", None, True, 8, "png", 8, 1),  # 32-bit BMP with alpha -> PNG
        ("png", "jpeg", True, 16, "png", 16, 1),  # switched to PNG, so 16 bits survive
        ("png", "jpeg", False, 16, "jpeg", 8, 1),  # 16 -> 8 for JPEG
        ("tiff", "webp", True, 16, "webp", 8, 1),  # WebP keeps alpha, not 16 bits
        ("png", "bmp", False, 16, "bmp", 8, 1),
        ("heif", None, False, 8, "png", 8, 1),  # no HEIF writer
        ("avif", None, True, 8, "png", 8, 1),
        ("jpeg", "tiff", False, 8, "tiff", 8, 0),
    ],
)
def test_plan_output_rules(
    source: str, requested: str | None, alpha: bool, depth: int, fmt: str, out_depth: int,
    n_warnings: int,
) -> None:  # fmt: skip
    plan = plan_output(source, requested, has_alpha=alpha, bit_depth=depth)
    assert (plan.format, plan.bit_depth, len(plan.warnings)) == (fmt, out_depth, n_warnings)
    assert all(w and "\n" not in w for w in plan.warnings)


def test_plan_output_warning_texts_and_bad_request() -> None:
    plan = plan_output("png", "jpeg", has_alpha=True, bit_depth=8)
    assert plan.warnings == ("JPEG cannot store transparency; writing PNG instead",)
    plan = plan_output("tiff", "jpeg", has_alpha=False, bit_depth=16)
    assert plan.warnings == ("16-bit input written as 8-bit JPEG",)
    with pytest.raises(ValueError):
        plan_output("png", "gif", has_alpha=False, bit_depth=8)


# --------------------------------------------------------------------------------------------
# Every format in
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff", "bmp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_read_every_format_written_by_pillow(tmp_path: Path, fmt: str, channels: int) -> None:
    if fmt == "webp" and channels == 1:
        pytest.skip("WebP has no grayscale mode")
    pixels = make_photo_like(24, 32, channels, seed=channels)
    path = save_pillow(tmp_path / f"in{extension_for(fmt)}", pixels, PILLOW_NAMES[fmt])
    image = read_image(path)
    assert image.format == fmt
    assert image.pixels.shape == pixels.shape and image.pixels.dtype == np.uint8
    assert (image.width, image.height, image.channels, image.bit_depth) == (32, 24, channels, 8)
    assert image.pixels.flags.c_contiguous and image.pixels.flags.writeable
    if fmt in LOSSY:  # same decoder as Pillow's, so the same pixels; near the original
        reference = np.asarray(Image.open(path)).reshape(pixels.shape)
        np.testing.assert_array_equal(image.pixels, reference)
        assert mean_abs_diff(image.pixels, pixels) < 10
    else:
        np.testing.assert_array_equal(image.pixels, pixels)
    assert probe(path) == (32, 24, False)


def test_read_avif_when_supported(tmp_path: Path) -> None:
    if "AVIF" not in imageio.backends._pillow_formats():
        pytest.skip("no AVIF support in this Pillow")
    pixels = make_photo_like(16, 24, 3)
    path = save_pillow(tmp_path / "in.avif", pixels, "AVIF", quality=90)
    image = read_image(path)
    assert image.format == "avif" and image.pixels.shape == (16, 24, 3)
    assert mean_abs_diff(image.pixels, pixels) < 6
    assert plan_output(image.format, None, has_alpha=False, bit_depth=8).format == "png"


def test_mpo_and_uppercase_names_read_as_jpeg(tmp_path: Path) -> None:
    pixels = make_blocky(16, 16)
    path = save_pillow(tmp_path / "IMG 0001.JPG", pixels, "JPEG", quality=95)
    assert read_image(path).format == "jpeg"


# --------------------------------------------------------------------------------------------
# Every format out
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encode_every_format_read_by_pillow(fmt: str, channels: int) -> None:
    pixels = make_photo_like(20, 28, channels, seed=3)
    plan = plan_output("png", fmt, has_alpha=channels in (2, 4), bit_depth=8)
    decoded = open_pillow(encode_image(pixels, plan, quality=95))
    assert decoded.format == PILLOW_NAMES[plan.format]
    expected_mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    if plan.format == "webp" and channels in (1, 2):
        expected_mode = "RGBA" if channels == 2 else "RGB"  # WebP has no gray mode
    assert decoded.mode == expected_mode
    got = np.asarray(decoded).reshape(20, 28, -1)
    want = pixels
    if got.shape[2] != channels:  # gray written as RGB(A)
        want = np.concatenate([pixels[:, :, :1]] * 3 + [pixels[:, :, 1:]], axis=2)
    if plan.format in LOSSY:
        error = mean_abs_diff(got, want)
        assert error < 8
        rough = open_pillow(encode_image(pixels, plan, quality=30))
        assert mean_abs_diff(np.asarray(rough).reshape(got.shape), want) > error  # quality used
    else:
        np.testing.assert_array_equal(got, want)


def test_encode_rejects_bad_input() -> None:
    rgba = make_photo_like(8, 8, 4)
    with pytest.raises(ImageWriteError, match="transparency"):
        encode_image(rgba, OutputPlan("jpeg", 8))
    with pytest.raises(ImageWriteError):
        encode_image(rgba.astype(np.float32), OutputPlan("png", 8))
    with pytest.raises(ImageWriteError):
        encode_image(np.zeros((4, 4, 5), np.uint8), OutputPlan("png", 8))
    with pytest.raises(ImageWriteError, match="16383"):
        encode_image(np.zeros((1, 16_384, 3), np.uint8), OutputPlan("webp", 8))
    with pytest.raises(ImageWriteError):
        encode_image(rgba, OutputPlan("gif", 8))
    with pytest.raises(ImageWriteError, match="quality"):
        encode_image(rgba[:, :, :3], OutputPlan("jpeg", 8), quality=0)


def test_encode_accepts_views() -> None:
    pixels = make_photo_like(12, 16, 3)
    view = pixels[::-1, 2:14]  # flipped and cropped, not contiguous
    for fmt in ("png", "tiff", "jpeg"):
        decoded = np.asarray(open_pillow(encode_image(view, OutputPlan(fmt, 8))))
        tolerance = 8 if fmt == "jpeg" else 0
        assert mean_abs_diff(decoded, view) <= tolerance


def test_encode_accepts_2d_gray_and_converts_depth() -> None:
    gray16 = make_photo_like(10, 12, 1, np.uint16)
    decoded = open_pillow(encode_image(gray16[:, :, 0], OutputPlan("png", 8)))
    assert decoded.mode == "L"
    expected = np.round(gray16[:, :, 0] / 257).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(decoded), expected)
    rgb8 = make_photo_like(10, 12, 3)
    widened = decode_opencv(encode_image(rgb8, OutputPlan("png", 16)))
    assert widened.dtype == np.uint16
    np.testing.assert_array_equal(widened, rgb8.astype(np.uint16) * 257)


def test_png_output_is_well_formed() -> None:
    meta = Metadata(make_exif().tobytes()[6:], srgb_icc(), make_xmp())
    data = encode_image(make_photo_like(8, 9, 3), OutputPlan("png", 8), metadata=meta)
    kinds = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + payload), kind
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert kinds.index(b"iCCP") < kinds.index(b"IDAT")
    assert kinds.index(b"eXIf") < kinds.index(b"IDAT")
    assert b"iTXt" in kinds and b"sRGB" not in kinds


# --------------------------------------------------------------------------------------------
# 16 bits, alpha, palette, 1-bit, CMYK
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_written_by_opencv_reads_exactly(tmp_path: Path, ext: str, channels: int) -> None:
    pixels = make_photo_like(18, 22, channels, np.uint16, seed=channels)
    assert np.any(pixels % 257)  # would not survive 8 bits
    path = save_opencv(tmp_path / f"in16{ext}", pixels, ext)
    image = read_image(path)
    assert image.pixels.dtype == np.uint16 and image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels, pixels)
    assert probe(path) == (22, 18, channels == 4)


@pytest.mark.parametrize("fmt", ["png", "tiff"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_round_trip_stays_exact(tmp_path: Path, fmt: str, channels: int) -> None:
    pixels = make_photo_like(18, 22, channels, np.uint16, seed=10 + channels)
    plan = plan_output(fmt, None, has_alpha=channels in (2, 4), bit_depth=16)
    assert plan.bit_depth == 16
    path = tmp_path / f"out{extension_for(fmt)}"
    write_atomic(path, encode_image(pixels, plan))
    image = read_image(path)
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pixels)
    if channels != 2:  # OpenCV reads gray + alpha as 8-bit gray, so it cannot check that
        np.testing.assert_array_equal(decode_opencv(path.read_bytes()), pixels)


@pytest.mark.parametrize("fmt", ["png", "tiff", "webp"])
@pytest.mark.parametrize("channels", [2, 4])
def test_alpha_round_trip(tmp_path: Path, fmt: str, channels: int) -> None:
    pixels = make_photo_like(16, 20, channels, seed=5)
    path = tmp_path / f"alpha{extension_for(fmt)}"
    write_atomic(path, encode_image(pixels, plan_output("png", fmt, has_alpha=True, bit_depth=8)))
    image = read_image(path)
    assert image.has_alpha
    assert probe(path)[2] is True
    if fmt == "webp":  # lossy colour, lossless alpha; gray comes back as RGB
        np.testing.assert_array_equal(image.pixels[:, :, -1], pixels[:, :, -1])
        assert image.channels == 4
    else:
        assert image.is_gray == (channels == 2)
        np.testing.assert_array_equal(image.pixels, pixels)


def _webp_chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def _webp_with_odd_icc(pixels: np.ndarray) -> bytes:
    """A lossless WebP in the extended container, its ICC chunk of odd length (so padded)
    before the picture: what Pillow never writes, but other writers may."""
    simple = io.BytesIO()
    to_pillow(pixels).save(simple, "WEBP", lossless=True)
    h, w = pixels.shape[:2]
    vp8x = bytes([0x20, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    icc = srgb_icc()
    icc += b"\x00" * (1 - len(icc) % 2)  # an odd length, whatever the profile's own
    body = _webp_chunk(b"VP8X", vp8x) + _webp_chunk(b"ICCP", icc) + simple.getvalue()[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize(
    ("kind", "first_chunk", "lossless"),
    [
        ("simple", b"VP8L", True),
        ("simple", b"VP8 ", False),
        ("profile", b"VP8X", True),  # extended: ICCP before the picture
        ("profile", b"VP8X", False),
        ("alpha", b"VP8L", True),  # alpha inside the lossless bitstream
        ("alpha", b"VP8X", False),  # ALPH then VP8
        ("animated", b"VP8X", True),  # ANIM, then frames (ANMF) holding VP8L
        ("animated", b"VP8X", False),
        ("odd profile", b"VP8X", True),
    ],
)
def test_a_lossless_webp_is_told_from_a_lossy_one(
    tmp_path: Path, kind: str, first_chunk: bytes, lossless: bool
) -> None:
    """What the reader tells the planner: a lossless WebP (VP8L) in every container
    (simple, extended, animated), by the header alone and once decoded."""
    pixels = make_photo_like(24, 32, 4 if kind == "alpha" else 3, seed=7)
    path = tmp_path / "in.webp"
    if kind == "odd profile":
        path.write_bytes(_webp_with_odd_icc(pixels))
    elif kind == "animated":
        later = to_pillow(make_photo_like(24, 32, 3, seed=8))
        to_pillow(pixels).save(
            path, "WEBP", save_all=True, append_images=[later], duration=50, lossless=lossless
        )
    else:
        options: dict[str, object] = {"icc_profile": srgb_icc()} if kind == "profile" else {}
        save_pillow(path, pixels, "WEBP", lossless=lossless, exact=True, **options)
    assert path.read_bytes()[12:16] == first_chunk  # the container the case is about
    image = read_image(path)
    assert image.lossless is lossless
    assert imageio.read_header(path).lossless is lossless
    if lossless:
        np.testing.assert_array_equal(image.pixels, pixels)


def test_only_a_webp_is_lossless_and_only_its_picture_says(tmp_path: Path) -> None:
    """A PNG is lossless by its format (never marked); a file that is no well-formed WebP
    is not taken for a lossless one."""
    png = save_pillow(tmp_path / "in.png", make_photo_like(8, 8, 3), "PNG")
    assert read_image(png).lossless is False and imageio.read_header(png).lossless is False
    from pocketsr_cli.imageio.webp import is_lossless  # the module alone, no decoder

    assert not is_lossless(io.BytesIO(b"RIFF\x10\x00\x00\x00WEBPVP8X\xff\xff\xff\x7f"))
    assert not is_lossless(io.BytesIO(b"RIFF\x04\x00\x00\x00WEBP"))
    assert not is_lossless(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8))


@pytest.mark.parametrize(
    ("source", "requested", "lossless", "quality", "kept"),
    [
        ("webp", None, True, None, True),  # the format kept, no quality asked
        ("webp", "webp", True, None, True),  # asked as WebP: kept too
        ("webp", None, True, 95, False),  # a quality asked: lossy at it
        ("webp", "png", True, None, False),  # PNG is lossless anyway
        ("webp", None, False, None, False),  # a lossy WebP stays lossy
        ("png", "webp", False, None, False),  # --format webp for a PNG: lossy at 95
    ],
)
def test_plan_output_keeps_a_lossless_webp_lossless(
    source: str, requested: str | None, lossless: bool, quality: int | None, kept: bool
) -> None:
    plan = plan_output(
        source, requested, has_alpha=False, bit_depth=8, lossless=lossless, quality=quality
    )
    assert plan.lossless is kept and plan.warnings == ()


def test_plan_for_plans_a_decoded_image_and_its_header_alike(tmp_path: Path) -> None:
    """``plan_for`` reads what ``plan_output`` needs from a decoded image or its header: a
    lossless WebP with alpha stays a lossless WebP, asked as JPEG it is a PNG (alpha)."""
    path = save_pillow(
        tmp_path / "in.webp", make_photo_like(16, 12, 4, seed=3), "WEBP", lossless=True
    )
    for source in (read_image(path), imageio.read_header(path)):
        assert imageio.plan_for(source, None) == OutputPlan("webp", 8, lossless=True)
        assert imageio.plan_for(source, None, quality=90).lossless is False
        assert imageio.plan_for(source, "jpg").format == "png"


@pytest.mark.parametrize("channels", [3, 4])
def test_a_lossless_plan_writes_every_pixel_exactly(tmp_path: Path, channels: int) -> None:
    """Colour under fully transparent pixels included (libwebp drops it unless told)."""
    pixels = make_photo_like(24, 32, channels, seed=9)
    if channels == 4:
        pixels[:12, :, 3] = 0
    path = tmp_path / "out.webp"
    path.write_bytes(encode_image(pixels, OutputPlan("webp", 8, lossless=True), quality=50))
    image = read_image(path)
    assert image.lossless
    np.testing.assert_array_equal(image.pixels, pixels)
    lossy = encode_image(pixels, OutputPlan("webp", 8), quality=50)
    assert lossy[12:16] in (b"VP8 ", b"VP8X") and b"VP8L" not in lossy


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_images(tmp_path: Path, transparent: bool) -> None:
    rgb = make_photo_like(16, 16, 3)
    palette_image = to_pillow(rgb).quantize(colors=16)
    options = {"transparency": 0} if transparent else {}
    path = tmp_path / "palette.png"
    palette_image.save(path, "PNG", **options)
    reference = Image.open(path)
    expected = np.asarray(reference.convert("RGBA" if transparent else "RGB"))
    image = read_image(path)
    assert image.channels == (4 if transparent else 3)
    np.testing.assert_array_equal(image.pixels, expected)
    if transparent:
        assert np.any(image.pixels[:, :, 3] == 0) and np.any(image.pixels[:, :, 3] == 255)
    assert probe(path)[2] is transparent


def test_one_bit_becomes_gray(tmp_path: Path) -> None:
    bits = make_asymmetric(12, 10, 1)[:, :, 0] % 2 == 0
    path = tmp_path / "bilevel.png"
    Image.fromarray(bits).save(path, "PNG")
    assert Image.open(path).mode == "1"
    image = read_image(path)
    assert image.pixels.shape == (12, 10, 1) and image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels[:, :, 0], np.where(bits, 255, 0))


def test_la_and_gray16_pillow_files(tmp_path: Path) -> None:
    la = make_photo_like(10, 12, 2)
    la_path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(la_path)
    np.testing.assert_array_equal(read_image(la_path).pixels, la)
    gray16 = make_photo_like(10, 12, 1, np.uint16)
    i16_path = tmp_path / "gray16.tif"
    Image.fromarray(gray16[:, :, 0]).save(i16_path)  # Pillow's I;16 writer
    image = read_image(i16_path)
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, gray16)


@pytest.mark.parametrize("icc", [None, fake_icc(b"CMYK")])
def test_cmyk_jpeg_becomes_rgb(tmp_path: Path, icc: bytes | None) -> None:
    cmyk = Image.fromarray(make_blocky(16, 24), "RGB").convert("CMYK")
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, "JPEG", quality=100, **({"icc_profile": icc} if icc else {}))
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.channels == 3 and image.pixels.dtype == np.uint8
    assert image.metadata.icc_profile is None  # a CMYK profile no longer fits the pixels
    expected = np.asarray(Image.open(path).convert("RGB"))
    assert mean_abs_diff(image.pixels, expected) < 1


def test_profile_of_the_wrong_colour_space_is_dropped(tmp_path: Path) -> None:
    gray = make_photo_like(8, 8, 1)
    path = save_pillow(tmp_path / "gray_rgbprofile.png", gray, "PNG", icc_profile=srgb_icc())
    assert read_image(path).metadata.icc_profile is None
    gray_icc = fake_icc(b"GRAY")
    data = encode_image(gray, OutputPlan("webp", 8), metadata=Metadata(None, gray_icc, None))
    assert "icc_profile" not in open_pillow(data).info  # WebP wrote RGB: a gray profile lies


# --------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------

# Where the stored top-left pixel ends up once upright, per the EXIF specification.
_TOP_LEFT_GOES_TO = {
    1: "top-left",
    2: "top-right",
    3: "bottom-right",
    4: "bottom-left",
    5: "top-left",
    6: "top-right",
    7: "bottom-right",
    8: "bottom-left",
}


def _corner(pixels: np.ndarray, name: str) -> np.ndarray:
    row = 0 if name.startswith("top") else -1
    col = 0 if name.endswith("left") else -1
    return pixels[row, col]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_png(tmp_path: Path, orientation: int) -> None:
    stored = make_asymmetric(5, 7, 3)
    path = save_with_exif_orientation(tmp_path / f"o{orientation}.png", stored, orientation)
    image = read_image(path)
    # Oracle: Pillow's own implementation of the same transposition.
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.pixels.shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))
    np.testing.assert_array_equal(
        _corner(image.pixels, _TOP_LEFT_GOES_TO[orientation]), stored[0, 0]
    )
    assert image.pixels.flags.c_contiguous
    exif = Image.Exif()
    exif.load(image.metadata.exif)
    assert exif[ORIENTATION_TAG] == 1 and exif[MAKE] == "PocketCam"
    assert probe(path)[:2] == image.pixels.shape[1::-1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_jpeg_and_reset_in_output(tmp_path: Path, orientation: int) -> None:
    stored = make_blocky(16, 24)
    path = save_with_exif_orientation(
        tmp_path / f"o{orientation}.jpg", stored, orientation, "JPEG", quality=95
    )
    image = read_image(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(image.pixels, expected)
    out = open_pillow(encode_image(image.pixels, OutputPlan("jpeg", 8), metadata=image.metadata))
    assert exif_of(out)[ORIENTATION_TAG] == 1
    assert exif_of(out).get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:06 07:08:09"
    # Upright already: a viewer applying the (reset) tag must not turn it again.
    assert mean_abs_diff(np.asarray(ImageOps.exif_transpose(out)), expected) < 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_webp(tmp_path: Path, orientation: int) -> None:
    stored = make_asymmetric(5, 7, 3)
    path = save_with_exif_orientation(
        tmp_path / "o.webp", stored, orientation, "WEBP", lossless=True
    )
    np.testing.assert_array_equal(read_image(path).pixels, pillow_orient(stored, orientation))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_to_16bit_png(tmp_path: Path, orientation: int) -> None:
    stored = make_asymmetric(5, 7, 3, np.uint16)
    png = save_opencv(tmp_path / "plain16.png", stored).read_bytes()
    path = tmp_path / "o16.png"
    path.write_bytes(add_png_chunk(png, b"eXIf", make_exif(orientation).tobytes()[6:]))
    image = read_image(path)  # decoded by OpenCV, orientation from the eXIf chunk
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pillow_orient(stored, orientation))
    assert probe(path)[:2] == image.pixels.shape[1::-1]


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_once_to_16bit_tiff(
    tmp_path: Path, orientation: int, channels: int
) -> None:
    """16-bit TIFFs are decoded by OpenCV, whose 5.x versions turn them upright too: the
    image was turned twice (mirrored for 2-4, the wrong shape for 5-8)."""
    from pocketsr_cli.imageio.metadata import bare_exif
    from pocketsr_cli.imageio.tiff import encode_tiff

    stored = make_asymmetric(5, 7, channels, np.uint16)
    exif = bare_exif(make_exif(orientation).tobytes())
    path = tmp_path / "o16.tif"
    path.write_bytes(encode_tiff(stored, imageio.Metadata(exif=exif)))
    image = read_image(path)
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pillow_orient(stored, orientation))
    assert probe(path)[:2] == image.pixels.shape[1::-1]


def _associated(tiff: bytes) -> bytes:
    """``tiff`` (as encode_tiff writes it) with its ExtraSamples saying associated alpha."""
    from pocketsr_cli.imageio.metadata import ifd_entries

    data = bytearray(tiff)
    (offset,) = struct.unpack_from("<I", data, 4)
    for tag, _, pos in ifd_entries(data, "<", offset):
        if tag == 338:
            struct.pack_into("<H", data, pos, 1)
    return bytes(data)


@pytest.mark.parametrize("channels", [2, 4])
def test_16bit_tiff_with_associated_alpha_is_read_as_straight_alpha(
    tmp_path: Path, channels: int
) -> None:
    """Premultiplied colour was taken as it was stored, and written tagged unassociated:
    half-transparent white came out half-transparent grey."""
    from pocketsr_cli.imageio.tiff import encode_tiff

    stored = np.zeros((4, 6, channels), np.uint16)
    stored[:, :3, :-1] = 32768  # white at alpha 32768, premultiplied
    stored[:, :3, -1] = 32768
    stored[:, 3:, :-1] = 1000  # opaque
    stored[:, 3:, -1] = 65535
    path = tmp_path / "assoc.tif"
    path.write_bytes(_associated(encode_tiff(stored, imageio.Metadata())))
    pixels = read_image(path).pixels
    assert (pixels[:, :3, :-1] == 65535).all() and (pixels[:, :3, -1] == 32768).all()
    np.testing.assert_array_equal(pixels[:, 3:], stored[:, 3:])


@pytest.mark.parametrize("channels", [2, 4])
def test_16bit_tiff_extra_sample_marked_unspecified_is_not_alpha(
    tmp_path: Path, channels: int
) -> None:
    """An extra sample marked unspecified (ExtraSamples 0: Photoshop's saved selections)
    was taken as alpha at 16 bits: an empty selection made the whole output invisible,
    while the same 8-bit file (Pillow: RGBX) was read as opaque."""
    from pocketsr_cli.imageio.tiff import encode_tiff

    stored = make_photo_like(6, 8, channels, np.uint16)
    stored[:, :, -1] = 0  # an empty selection
    path = tmp_path / "selection.tif"
    path.write_bytes(_with_tag(encode_tiff(stored, imageio.Metadata()), 338, 0))
    pixels = read_image(path).pixels
    np.testing.assert_array_equal(pixels, stored[:, :, :-1])
    assert probe(path)[2] is False


@pytest.mark.parametrize(("channels", "dtype"), [(4, np.uint8), (1, np.uint8), (3, np.uint16)])
def test_a_tiff_is_differenced_strip_by_strip(channels: int, dtype: type[np.integer]) -> None:
    """The encoder differenced a copy of the whole image for the predictor before it
    deflated its strips: 48 MB more for 4000x3000 RGBA.  Now it holds the strips and the
    joined file (twice the file, on noise) and one strip in flight, and the file still
    reads back exactly with another decoder."""
    from pocketsr_cli.imageio.tiff import _TIFF_STRIP_BYTES, encode_tiff

    top = np.iinfo(dtype).max + 1  # noise: Deflate stores it, the file is the raw bytes
    width = 6000 // (channels * np.dtype(dtype).itemsize)  # 9 MB, 1500 rows of 6000 bytes
    pixels = np.random.default_rng(5).integers(0, top, (1500, width, channels), dtype)
    tracemalloc.start()
    try:
        data = encode_tiff(pixels, imageio.Metadata())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 2 * len(data) + 4 * _TIFF_STRIP_BYTES, (peak, len(data))
    if dtype == np.uint8:  # (OpenCV's reader premultiplies 8-bit alpha)
        read = np.asarray(Image.open(io.BytesIO(data))).reshape(pixels.shape)
    else:  # (Pillow's reads no 16-bit RGB)
        read = decode_opencv(data)
    np.testing.assert_array_equal(read, pixels)


def _raw_tiff_16(pixels: np.ndarray, photometric: int, extra: tuple[int, ...]) -> bytes:
    """An uncompressed little-endian 16-bit TIFF of ``pixels``, any number of samples."""
    from PIL import TiffImagePlugin, TiffTags

    height, width, channels = pixels.shape
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[256], ifd[257], ifd[258] = width, height, (16,) * channels
    ifd[259], ifd[262], ifd[277], ifd[278], ifd[284] = 1, photometric, channels, height, 1
    ifd[338] = extra
    ifd[273], ifd[279] = (0,), (pixels.size * 2,)  # offset shifted past the IFD by Pillow
    ifd.tagtype[273] = ifd.tagtype[279] = TiffTags.LONG
    return b"II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8) + pixels.astype("<u2").tobytes()


def test_16bit_tiff_with_two_extra_samples_is_unsupported_not_corrupt(tmp_path: Path) -> None:
    """Transparency plus a saved selection (5 samples): OpenCV cannot decode it, and the
    file was reported 'truncated or corrupt', which tells its owner it is broken."""
    path = tmp_path / "two_extra.tif"
    path.write_bytes(_raw_tiff_16(make_photo_like(6, 8, 5, np.uint16), 2, (2, 0)))
    with pytest.raises(ImageReadError, match=r"unsupported TIFF.*2 extra channels"):
        read_image(path)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_to_tiff(tmp_path: Path, orientation: int) -> None:
    stored = make_asymmetric(5, 7, 3)
    path = tmp_path / "o.tif"
    to_pillow(stored).save(path, "TIFF", exif=make_exif(orientation))  # tag 274 in the IFD
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, pillow_orient(stored, orientation))
    assert probe(path)[:2] == image.pixels.shape[1::-1]
    exif = Image.Exif()
    exif.load(image.metadata.exif)
    assert exif[ORIENTATION_TAG] == 1 and exif[MAKE] == "PocketCam"
    assert 256 not in exif and 273 not in exif  # the TIFF's layout tags are not EXIF


UNEVEN_XMP = make_xmp().replace(
    b'tiff:Orientation="1">',
    b'tiff:Orientation="1" tiff:XResolution="300/1"><tiff:YResolution>600/1</tiff:YResolution>',
)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_quarter_turn_turns_an_uneven_print_resolution(tmp_path: Path, orientation: int) -> None:
    """300 x 600 dpi stored sideways (orientation 5 to 8) is 600 x 300 dpi once the pixels
    are turned upright: the JFIF density, the EXIF's XResolution/YResolution and the XMP's
    kept the stored order, so the output printed squashed."""
    exif = make_exif(orientation)
    exif[0x011A], exif[0x011B], exif[0x0128] = 300.0, 600.0, 2
    path = save_pillow(
        tmp_path / "scan.jpg",
        make_asymmetric(8, 12, 3),
        "JPEG",
        exif=exif,
        xmp=UNEVEN_XMP,
        dpi=(300, 600),
    )
    image = read_image(path)
    turned = orientation >= 5
    expected = (600.0, 300.0) if turned else (300.0, 600.0)
    assert image.metadata.dpi == expected
    assert image.metadata.xmp is not None
    across = b'tiff:YResolution="300/1"' if turned else b'tiff:XResolution="300/1"'
    down = b"<tiff:XResolution>600/1" if turned else b"<tiff:YResolution>600/1"
    assert across in image.metadata.xmp and down in image.metadata.xmp
    for fmt in ("jpeg", "png", "tiff"):
        data = encode_image(image.pixels, OutputPlan(fmt, 8), metadata=image.metadata)
        out = open_pillow(data)
        assert tuple(round(v) for v in out.info["dpi"]) == expected, fmt
        if fmt != "tiff":  # a TIFF's resolution is its own tags, the dpi above
            stated = exif_of(out)
            assert (float(stated[0x011A]), float(stated[0x011B])) == expected, fmt
            assert stated[MAKE] == "PocketCam"


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_a_tiff_turned_a_quarter_turns_its_print_resolution(
    tmp_path: Path, orientation: int
) -> None:
    """A TIFF that Pillow turns upright itself (its tags read apart from the pixels)."""
    path = tmp_path / "scan.tif"
    to_pillow(make_asymmetric(8, 12, 3)).save(
        path, "TIFF", exif=make_exif(orientation), dpi=(300, 600)
    )
    image = read_image(path)
    assert image.pixels.shape[:2] == ((12, 8) if orientation >= 5 else (8, 12))
    assert image.metadata.dpi == ((600.0, 300.0) if orientation >= 5 else (300.0, 600.0))


def test_a_quarter_turn_the_decoder_made_turns_the_print_resolution() -> None:
    """HEIF: libheif turns the pixels and pillow-heif says orientation 1 in the EXIF; the
    turn it made (``original_orientation``) still swaps the resolution."""
    from pocketsr_cli.imageio.decoded import finish

    exif = make_exif(1)
    exif[0x011A], exif[0x011B] = 300.0, 600.0
    pixels = make_asymmetric(12, 8, 3)  # already upright
    image = finish(pixels, "heif", exif.tobytes()[6:], None, None, 1, (300.0, 600.0), 6)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.metadata.dpi == (600.0, 300.0)
    stated = Image.Exif()
    stated.load(image.metadata.exif)
    assert (float(stated[0x011A]), float(stated[0x011B])) == (600.0, 300.0)


def test_a_tiffs_iptc_is_not_carried_over(tmp_path: Path) -> None:
    """IPTC-IIM (tag 33723) became an EXIF tag of every output, although IPTC is not
    kept (README), and in a JPEG no IPTC reader looks for it there."""
    tags = make_exif()
    tags[33723] = b"\x1c\x02\x78\x00\x05hello"  # 2:120, the caption
    path = tmp_path / "captioned.tif"
    to_pillow(make_blocky(8, 8)).save(path, "TIFF", tiffinfo=tags)
    assert 33723 in Image.open(path).tag_v2  # type: ignore[attr-defined]
    image = read_image(path)
    kept = Image.Exif()
    kept.load(image.metadata.exif)
    assert 33723 not in kept and kept[MAKE] == "PocketCam"
    for fmt in ("jpeg", "tiff"):
        out = open_pillow(encode_image(image.pixels, OutputPlan(fmt, 8), metadata=image.metadata))
        assert 33723 not in exif_of(out) and exif_of(out)[MAKE] == "PocketCam", fmt


IPTC = b"\x1c\x02\x78\x00\x05hello"  # IPTC-IIM 2:120, the caption


@pytest.mark.parametrize("tag", [33723, 34377, 37724], ids=["iptc", "photoshop", "layers"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_iptc_in_a_jpeg_png_or_webp_exif_is_not_carried_over(
    tmp_path: Path, fmt: str, tag: int
) -> None:
    """IPTC-IIM is not kept (README): a TIFF's tag 33723 was left out, but the same tag in
    the EXIF of any other input went on into every output's EXIF.  So were Photoshop's
    image resources and layers (34377, 37724), left out of a TIFF's."""
    tags = make_exif(6)
    tags[tag] = IPTC
    path = save_pillow(tmp_path / f"captioned.{fmt.lower()}", make_blocky(8, 12), fmt, exif=tags)
    assert tag in exif_of(Image.open(path))
    image = read_image(path)
    assert image.metadata.exif is not None and b"hello" not in image.metadata.exif
    kept = Image.Exif()
    kept.load(image.metadata.exif)
    assert tag not in kept and kept[MAKE] == "PocketCam" and kept[ORIENTATION_TAG] == 1
    assert kept.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:06 07:08:09"
    for out_fmt in ("jpeg", "png", "webp", "tiff"):
        plan = OutputPlan(out_fmt, 8)
        out = open_pillow(encode_image(image.pixels, plan, metadata=image.metadata))
        assert tag not in exif_of(out) and exif_of(out)[MAKE] == "PocketCam", out_fmt


@pytest.mark.parametrize("endian", ["<", ">"])
def test_iptc_is_cut_out_of_an_exif_block_or_else_unlisted(endian: str) -> None:
    """Cut out with its bytes where every offset is understood (as a maker note is), else
    only taken out of IFD0's table (an offset to strips the walk does not follow), the
    other tags read as before either way; a block without it is returned as it is."""
    from pocketsr_cli.imageio.metadata import without_dropped_tags

    def block(*, strips: bool) -> bytes:
        tags = make_exif()
        tags.endian = endian
        tags[33723] = IPTC
        tags[0x0131] = "editor"  # Software
        if strips:
            tags[0x0111] = 4096  # StripOffsets: an offset the walk does not follow
        return tags.tobytes()[6:]

    def parsed(exif: bytes) -> Image.Exif:
        tags = Image.Exif()
        tags.load(b"Exif\x00\x00" + exif)
        return tags

    for strips in (False, True):
        exif = block(strips=strips)
        assert parsed(exif)[33723] == IPTC
        trimmed = without_dropped_tags(exif)
        tags = parsed(trimmed)
        assert 33723 not in tags
        assert (tags[MAKE], tags[0x0131]) == ("PocketCam", "editor")
        assert tags.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:06 07:08:09"
        assert (b"hello" in trimmed, len(trimmed) == len(exif)) == (strips, strips)
    plain = make_exif().tobytes()[6:]
    assert without_dropped_tags(plain) == plain
    assert without_dropped_tags(plain[:9]) == plain[:9]  # IFD0 cut short: as it is


def test_xmp_orientation_reset_and_exif_dimensions_updated(tmp_path: Path) -> None:
    path = save_pillow(
        tmp_path / "meta.jpg", make_blocky(16, 24), "JPEG", exif=make_exif(6), xmp=make_xmp(6)
    )
    image = read_image(path)
    assert b'tiff:Orientation="1"' in image.metadata.xmp
    assert b"pocketsr-test-marker" in image.metadata.xmp
    exif = make_exif(1)
    exif.get_ifd(EXIF_IFD)[0xA002] = 24  # PixelXDimension
    exif.get_ifd(EXIF_IFD)[0xA003] = 16
    meta = Metadata(exif.tobytes()[6:], None, make_xmp(8))
    out = open_pillow(encode_image(make_blocky(32, 48), OutputPlan("jpeg", 8), metadata=meta))
    assert exif_of(out).get_ifd(EXIF_IFD)[0xA002] == 48
    assert exif_of(out).get_ifd(EXIF_IFD)[0xA003] == 32
    assert b'tiff:Orientation="1"' in out.info["xmp"]


@pytest.mark.parametrize("exif", [None, "without orientation", "orientation 1"])
def test_an_xmp_orientation_the_exif_does_not_state_is_kept_with_the_pixels(
    tmp_path: Path, exif: str | None
) -> None:
    """XMP tiff:Orientation 6 with no EXIF orientation: the pixels were not turned, yet the
    XMP said 1 afterwards, so Lightroom and Photoshop (which honour it) showed the output
    turned back from the input.  Kept, the output shows as the input did everywhere;
    an EXIF orientation, which viewers prefer, still has the XMP's reset with it."""
    stored = make_asymmetric(8, 12, 3)
    options: dict[str, object] = {"xmp": make_xmp(6)}
    if exif is not None:
        options["exif"] = make_exif(1 if exif == "orientation 1" else None)
    path = save_pillow(tmp_path / "x.webp", stored, "WEBP", lossless=True, **options)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, stored)  # never turned by the XMP
    kept = exif != "orientation 1"
    said = b'tiff:Orientation="6"' if kept else b'tiff:Orientation="1"'
    assert image.metadata.xmp is not None and said in image.metadata.xmp
    for fmt in ("jpeg", "png", "webp", "tiff"):
        out = tmp_path / f"out{extension_for(fmt)}"
        out.write_bytes(encode_image(stored, OutputPlan(fmt, 8), metadata=image.metadata))
        again = read_image(out)  # a TIFF through Pillow, which honours the XMP's itself
        assert again.pixels.shape == stored.shape, fmt
        assert again.metadata.xmp is not None and said in again.metadata.xmp, fmt
        if fmt in ("png", "tiff"):
            np.testing.assert_array_equal(again.pixels, stored)


def test_the_size_a_phone_writes_in_ifd0_and_xmp_is_the_outputs() -> None:
    """IFD0 ImageWidth/ImageLength (many Android phones) and the XMP's exif:PixelX/Y and
    tiff:ImageWidth/Length kept the input's size."""
    exif = make_exif(1)
    exif[0x0100], exif[0x0101] = 24, 16
    xmp = make_xmp().replace(
        b'tiff:Orientation="1">',
        b'tiff:Orientation="1" exif:PixelXDimension="24" tiff:ImageWidth="24">'
        b"<exif:PixelYDimension>16</exif:PixelYDimension><tiff:ImageLength>16</tiff:ImageLength>",
    )
    meta = Metadata(exif.tobytes()[6:], None, xmp)
    out = open_pillow(encode_image(make_blocky(32, 48), OutputPlan("png", 8), metadata=meta))
    assert (exif_of(out)[0x0100], exif_of(out)[0x0101]) == (48, 32)
    packet = out.info["xmp"] if isinstance(out.info["xmp"], bytes) else out.info["xmp"].encode()
    for part in (
        b'exif:PixelXDimension="48"',
        b'tiff:ImageWidth="48"',
        b"<exif:PixelYDimension>32</exif:PixelYDimension>",
        b"<tiff:ImageLength>32</tiff:ImageLength>",
    ):
        assert part in packet, packet


@pytest.mark.parametrize("endian", ["<", ">"])
def test_a_size_over_65535_turns_a_short_size_tag_into_a_long(endian: str) -> None:
    """PixelX/YDimension (and IFD0's ImageWidth/Length) stored as SHORT kept the input's
    value when the new side no longer fitted 16 bits; now the entry becomes a LONG."""
    from pocketsr_cli.imageio.metadata import output_metadata

    exif = make_exif(1)
    exif.endian = endian
    exif[0x0100], exif[0x0101] = 24, 16  # SHORT, as Pillow writes small values
    exif.get_ifd(EXIF_IFD)[0xA002] = 24
    exif.get_ifd(EXIF_IFD)[0xA003] = 16
    block = exif.tobytes()[6:]
    assert block[:2] == (b"II" if endian == "<" else b"MM")
    meta = output_metadata(Metadata(block), np.zeros((3, 70_000, 1), np.uint8))
    assert meta.exif is not None and len(meta.exif) == len(block)  # patched in place
    out = Image.Exif()
    out.load(meta.exif)
    assert (out[0x0100], out[0x0101]) == (70_000, 3)
    assert (out.get_ifd(EXIF_IFD)[0xA002], out.get_ifd(EXIF_IFD)[0xA003]) == (70_000, 3)
    assert out[MAKE] == "PocketCam"
    assert out.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:06 07:08:09"


# --------------------------------------------------------------------------------------------
# Metadata through every format
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["jpeg", "png", "webp", "tiff"])
def test_metadata_read_from_every_format(tmp_path: Path, source: str) -> None:
    icc, xmp = srgb_icc(), make_xmp()
    path = tmp_path / f"m{extension_for(source)}"
    if source == "png":  # Pillow writes PNG XMP only as an iTXt text chunk
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", xmp.decode())
        save_pillow(
            path, make_blocky(16, 16), "PNG", exif=make_exif(), icc_profile=icc, pnginfo=text
        )
    elif source == "tiff":  # TIFF: EXIF tags and XMP (700) in the file's own IFD
        tags = make_exif()
        tags[700] = xmp
        tags[EXIF_IFD] = dict(tags.get_ifd(EXIF_IFD))  # else Pillow's writer drops it
        save_pillow(path, make_blocky(16, 16), "TIFF", tiffinfo=tags, icc_profile=icc)
    else:
        name = PILLOW_NAMES[source]
        save_pillow(path, make_blocky(16, 16), name, exif=make_exif(), icc_profile=icc, xmp=xmp)
    meta = read_image(path).metadata
    assert meta.icc_profile == icc
    assert meta.xmp is not None and b"pocketsr-test-marker" in meta.xmp
    assert meta.exif is not None and meta.exif[:4] in (b"II*\x00", b"MM\x00*")
    exif = Image.Exif()
    exif.load(meta.exif)
    assert exif[MAKE] == "PocketCam"
    assert exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:06 07:08:09"


def test_photoshop_layers_and_resources_in_a_tiff_are_not_carried_as_exif(
    tmp_path: Path,
) -> None:
    """A layered Photoshop TIFF keeps its layers in tag 37724 (ImageSourceData, often larger
    than the image) and its image resources in 34377: both were copied as EXIF, into TIFF
    outputs (where Photoshop opens the stale layers instead of the upscaled pixels) and
    PNG/WebP ones (megabytes of them), and made a JPEG output lose its whole EXIF as too
    large."""
    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[MAKE] = "PocketCam"
    tags[37724] = b"Adobe Photoshop Document Data Block\x00" + bytes(100_000)
    tags[34377] = b"8BIM\x03\xed\x00\x00\x00\x00\x00\x10" + bytes(16)
    tags.tagtype[37724] = tags.tagtype[34377] = 7  # UNDEFINED
    path = tmp_path / "layered.tif"
    save_pillow(path, make_blocky(16, 16), "TIFF", tiffinfo=tags)
    image = read_image(path)
    assert image.metadata.exif is not None and len(image.metadata.exif) < 1000
    exif = Image.Exif()
    exif.load(image.metadata.exif)
    assert exif[MAKE] == "PocketCam" and 37724 not in exif and 34377 not in exif
    notes: list[str] = []
    out = encode_image(image.pixels, OutputPlan("jpeg", 8), metadata=image.metadata, notes=notes)
    assert notes == [] and Image.open(io.BytesIO(out)).getexif()[MAKE] == "PocketCam"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
@pytest.mark.parametrize("depth", [8, 16])
def test_metadata_written_to_every_format(fmt: str, depth: int) -> None:
    if depth == 16 and fmt not in ("png", "tiff"):
        pytest.skip("8-bit formats")
    icc, xmp = srgb_icc(), make_xmp(marker="written-back")
    meta = Metadata(make_exif().tobytes()[6:], icc, xmp)
    pixels = make_photo_like(12, 14, 3, np.uint16 if depth == 16 else np.uint8)
    data = encode_image(pixels, OutputPlan(fmt, depth), metadata=meta)
    # Pillow opens 16-bit colour PNG/TIFF headers (it only cannot decode their pixels).
    out = Image.open(io.BytesIO(data))
    assert out.info.get("icc_profile") == icc
    written_xmp = out.info.get("xmp")
    written_xmp = written_xmp[0] if isinstance(written_xmp, tuple) else written_xmp
    assert b"written-back" in written_xmp
    exif = out.getexif()
    assert exif[MAKE] == "PocketCam"
    assert exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:06 07:08:09"


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_strip_metadata(fmt: str) -> None:
    out = open_pillow(encode_image(make_photo_like(8, 8, 3), OutputPlan(fmt, 8), metadata=None))
    assert not out.info.get("icc_profile") and not out.info.get("xmp")
    assert MAKE not in out.getexif()


def test_colour_only_keeps_how_colours_are_shown_and_nothing_else() -> None:
    meta = Metadata(make_exif().tobytes()[6:], b"icc", b"<x:xmpmeta/>", (300.0, 300.0), b"gAMA")
    assert meta.colour_only() == Metadata(icc_profile=b"icc", png_colour=b"gAMA")


def test_oversized_exif_is_left_out_of_jpeg_only() -> None:
    exif = make_exif()
    exif[0x010E] = "x" * 70_000  # ImageDescription
    meta = Metadata(exif.tobytes()[6:], None, None)
    jpeg = open_pillow(encode_image(make_blocky(8, 8), OutputPlan("jpeg", 8), metadata=meta))
    assert MAKE not in jpeg.getexif()
    png = open_pillow(encode_image(make_blocky(8, 8), OutputPlan("png", 8), metadata=meta))
    assert png.getexif()[MAKE] == "PocketCam"


# --------------------------------------------------------------------------------------------
# Paths and bad files
# --------------------------------------------------------------------------------------------


def test_unicode_and_spaces_in_paths(tmp_path: Path) -> None:
    folder = tmp_path / "Фото été 写真"
    folder.mkdir()
    source = save_pillow(folder / "my photo ü.png", make_photo_like(8, 8, 3), "PNG")
    image = read_image(source)
    target = tmp_path / "out dir ñ" / "résultat x2.tif"
    write_atomic(target, encode_image(image.pixels, OutputPlan("tiff", 8)))
    np.testing.assert_array_equal(read_image(target).pixels, image.pixels)
    assert probe(target) == (8, 8, False)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_file_cases(tmp_path: Path) -> dict[str, Path]:
    cases: dict[str, Path] = {}
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty"] = tmp_path / "empty.jpg"
    photo = make_photo_like(48, 64, 3)
    for name, fmt in (
        ("jpg", "JPEG"),
        ("png", "PNG"),
        ("webp", "WEBP"),
        ("tif", "TIFF"),
        ("bmp", "BMP"),
    ):
        full = save_pillow(tmp_path / f"full.{name}", photo, fmt)
        cut = tmp_path / f"cut.{name}"
        cut.write_bytes(_truncated(full.read_bytes()))
        cases[f"truncated {name}"] = cut
    for ext in (".png", ".tif"):
        full = save_opencv(tmp_path / f"full16{ext}", make_photo_like(48, 64, 3, np.uint16), ext)
        cut = tmp_path / f"cut16{ext}"
        cut.write_bytes(_truncated(full.read_bytes()))
        cases[f"truncated 16-bit {ext}"] = cut
    for channels in (2, 3):  # TIFF with its IFD first (as written here), then cut strips
        full = encode_image(make_photo_like(48, 64, channels, np.uint16), OutputPlan("tiff", 16))
        cut = tmp_path / f"cut16_ifd_first_{channels}.tif"
        cut.write_bytes(_truncated(full))
        cases[f"truncated 16-bit TIFF, IFD first, {channels} channels"] = cut
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    cases["random bytes"] = tmp_path / "random.jpg"
    (tmp_path / "dir.jpg").mkdir()
    cases["directory"] = tmp_path / "dir.jpg"
    cases["missing"] = tmp_path / "missing.png"
    pcx = tmp_path / "really_a_pcx.png"
    to_pillow(photo).save(pcx, "PCX")
    cases["pcx named png"] = pcx
    jpeg = save_pillow(tmp_path / "tail.jpg", photo, "JPEG")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + jpeg.read_bytes()[:200])
    cases["png signature, garbage"] = tmp_path / "garbage.png"
    return cases


def test_bad_files_raise_image_read_error(tmp_path: Path) -> None:
    for name, path in _bad_file_cases(tmp_path).items():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        message = str(info.value)
        assert message and "\n" not in message, name
        expected = {
            "empty": "empty",
            "directory": "directory",
            "missing": "no such file",
            "random bytes": "not a recognised image",
            "pcx named png": "not a recognised image",
        }.get(name, "truncated" if name.startswith("truncated") else "")
        assert expected in message, (name, message)


def test_truncated_16bit_files_fail_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Cut 16-bit files are refused before OpenCV sees them (libpng/libtiff log to stderr)."""
    pixels = make_photo_like(48, 64, 3, np.uint16)
    files = {
        "png": save_opencv(tmp_path / "a.png", pixels, ".png").read_bytes(),
        "tiff": encode_image(pixels, OutputPlan("tiff", 16)),
    }
    for name, data in files.items():
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(_truncated(data))
        with pytest.raises(ImageReadError, match="truncated"):
            read_image(cut)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("layout", ["IFD first", "IFD last", "Photoshop layers"])
def test_a_tiff_header_reads_its_layout_tags_not_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A TIFF's header is read from its IFD, found with seeks wherever it is, and the
    values of the tags that describe its pixels: a few KiB of a 1 MB file, where the
    whole file was read (and read again to decode it).  What it says is what the whole
    file's tags say."""
    from pocketsr_cli.imageio.header import parse_tiff_header
    from pocketsr_cli.imageio.tiff import tiff_tags

    pixels = np.random.default_rng(0).integers(0, 256, (400, 600, 4), dtype=np.uint8)
    path = tmp_path / "a.tif"
    if layout == "IFD first":
        path.write_bytes(_tiff_16(pixels))
    elif layout == "IFD last":  # libtiff (Pillow's, when compressing) writes it last
        save_pillow(path, pixels, "TIFF", compression="tiff_adobe_deflate")
    else:  # Photoshop's layers (37724) and image resources (34377), larger than the image
        tags = {37724: bytes(range(256)) * 8192, 34377: b"8BIM" * 4096}
        save_pillow(path, pixels[..., :3], "TIFF", tiffinfo=tags, exif=make_exif(6))
    size = path.stat().st_size
    header, read = bytes_read_by(monkeypatch, lambda: imageio.read_header(path))
    assert size > 900_000 and read < 64 * 1024, (size, read)
    assert header == parse_tiff_header(tiff_tags(path.read_bytes()))
    image = read_image(path)
    assert isinstance(header, imageio.ImageHeader)
    assert (header.height, header.width, header.channels) == image.pixels.shape
    assert header.bit_depth == (16 if image.pixels.dtype == np.uint16 else 8)


def _tiff_16(pixels: np.ndarray) -> bytes:
    """``pixels`` as 16-bit RGBA TIFF, its IFD first (as :func:`encode_tiff` writes it)."""
    from pocketsr_cli.imageio.tiff import encode_tiff

    return encode_tiff(pixels.astype(np.uint16) * 257, Metadata())


def test_a_tiff_header_read_with_seeks_is_the_whole_files_even_when_damaged(
    tmp_path: Path,
) -> None:
    """Cut or corrupt TIFFs give the same header, error or library warnings whether their
    tags are read from the whole file or found with seeks (``read_tiff_tags``): an IFD
    cut short, a value past the end of the file, a size tag of the wrong type."""
    import random
    import warnings

    from pocketsr_cli.imageio.header import TIFF_HEADER_TAGS, parse_tiff_header
    from pocketsr_cli.imageio.tiff import read_tiff_tags, tiff_tags

    sources = []
    for compression in (None, "tiff_adobe_deflate"):  # IFD first, IFD last
        options = {"compression": compression} if compression else {}
        path = save_pillow(tmp_path / "a.tif", make_photo_like(12, 16, 4), "TIFF", **options)
        sources.append(path.read_bytes())
    sources.append(_tiff_16(make_photo_like(12, 16, 2)))

    def outcome(read: object) -> tuple[str, list[str]]:
        assert callable(read)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                said = repr(parse_tiff_header(read()))
            except ImageReadError as exc:
                said = str(exc)
        return said, [str(w.message) for w in caught]

    rng = random.Random(0)
    for data in sources:
        start = struct.unpack_from("<I", data, 4)[0]
        cases = [data[:cut] for cut in range(8, len(data), 7)]
        for _ in range(150):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                damaged[min(len(data) - 1, start + rng.randrange(120))] = rng.randrange(256)
            cases.append(bytes(damaged))
        for case in cases:
            whole = outcome(lambda: tiff_tags(case))  # noqa: B023
            sought = outcome(lambda: read_tiff_tags(io.BytesIO(case), TIFF_HEADER_TAGS))  # noqa: B023
            assert sought == whole


def test_probe_errors(tmp_path: Path) -> None:
    cases = _bad_file_cases(tmp_path)
    for name in ("empty", "directory", "missing", "random bytes", "pcx named png"):
        with pytest.raises(ImageReadError):
            probe(cases[name])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = save_pillow(tmp_path / "secret.png", make_photo_like(8, 8, 3), "PNG")
    path.chmod(0)
    try:
        try:
            path.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: the file is still readable")
        with pytest.raises(ImageReadError, match="permission denied"):
            read_image(path)
        with pytest.raises(ImageReadError, match="permission denied"):
            probe(path)
    finally:
        path.chmod(0o644)


def test_os_errors_become_read_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same as above without needing a non-root user: the OS refuses the read."""
    path = save_pillow(tmp_path / "x.png", make_photo_like(8, 8, 3), "PNG")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(path)
    with pytest.raises(ImageReadError, match="permission denied"):
        probe(path)

    def io_error(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "read_bytes", io_error)
    with pytest.raises(ImageReadError, match="Input/output error"):
        read_image(path)


def test_truncation_is_never_silent_filler(tmp_path: Path) -> None:
    """Cut anywhere inside the pixel data, a JPEG or PNG must fail, never decode grey."""
    photo = make_photo_like(64, 64, 3, seed=9)
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png")):
        data = save_pillow(tmp_path / f"full.{ext}", photo, fmt).read_bytes()
        for fraction in (0.3, 0.6, 0.9):
            cut = tmp_path / f"cut{fraction}.{ext}"
            cut.write_bytes(data[: int(len(data) * fraction)])
            with pytest.raises(ImageReadError):
                read_image(cut)


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_write_atomic_success(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.png"
    write_atomic(target, b"first")
    write_atomic(target, b"second")  # replaces
    assert target.read_bytes() == b"second"
    assert _leftovers(target.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    if sys.platform != "win32":
        assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_write_atomic_cleans_up_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old")
    seen: list[Path] = []

    def fail(fd: int) -> None:
        # The temporary file exists and holds the data at this point.
        seen.extend(_leftovers(tmp_path))
        raise error("simulated")

    monkeypatch.setattr(imageio.atomic.os, "fsync", fail)
    expected = KeyboardInterrupt if error is KeyboardInterrupt else ImageWriteError
    with pytest.raises(expected):
        write_atomic(target, b"new data", fsync=True)
    assert len(seen) == 1 and seen[0].name.startswith(".") and seen[0].parent == tmp_path
    assert _leftovers(tmp_path) == []
    assert target.read_bytes() == b"old"


def test_write_atomic_reports_os_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imageio.atomic.os, "replace", refuse)
    with pytest.raises(ImageWriteError, match="Permission denied"):
        write_atomic(tmp_path / "x.png", b"data")
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    (tmp_path / "taken").write_bytes(b"")  # a file where a folder is needed
    with pytest.raises(ImageWriteError):
        write_atomic(tmp_path / "taken" / "x.png", b"data")


def test_temp_names_are_unique_and_hidden(tmp_path: Path) -> None:
    names = {imageio.temp_path_for(tmp_path / "x.png").name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(".") and n.endswith(TEMP_SUFFIX) for n in names)
    long_name = tmp_path / ("n" * 250 + ".png")
    assert len(imageio.temp_path_for(long_name).name) < 255


# --------------------------------------------------------------------------------------------
# Speed (docs/measurement.md: a 4K PNG ~0.28 s with OpenCV against ~2.6 s with Pillow's defaults)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_4k_encode_speed() -> None:
    pixels = make_photo_like(2160, 3840, 3)
    meta = Metadata(make_exif().tobytes()[6:], srgb_icc(), make_xmp())
    timings = {}
    for fmt in ("png", "jpeg", "tiff"):
        start = time.perf_counter()
        encode_image(pixels, OutputPlan(fmt, 8), quality=95, metadata=meta)
        timings[fmt] = time.perf_counter() - start
    print(timings)
    assert timings["png"] < 1.5 and timings["jpeg"] < 0.5 and timings["tiff"] < 1.5


@pytest.mark.parametrize("depth", [8, 16])
def test_png_gamma_and_chromaticities_go_into_a_png_output(tmp_path: Path, depth: int) -> None:
    """A PNG that says how its colours are shown with gAMA and cHRM (no ICC profile): the
    chunks were dropped, so a browser showed a linear-light image's grey of 128 as 128
    instead of about 188."""
    from pocketsr_cli.imageio.png import png_chunk_payload

    dtype = np.uint16 if depth == 16 else np.uint8
    stored = make_asymmetric(6, 8, 3, dtype)
    png = save_opencv(tmp_path / "plain.png", stored).read_bytes()
    gama = struct.pack(">I", 100000)  # gamma 1.0
    chrm = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    path = tmp_path / "linear.png"
    path.write_bytes(add_png_chunk(add_png_chunk(png, b"cHRM", chrm), b"gAMA", gama))
    image = read_image(path)
    plan = plan_output("png", None, has_alpha=False, bit_depth=depth)
    out = encode_image(image.pixels, plan, metadata=image.metadata)
    assert png_chunk_payload(out, b"gAMA") == gama and png_chunk_payload(out, b"cHRM") == chrm
    assert out.index(b"gAMA") < out.index(b"IDAT")
    # With an ICC profile the profile says it all: the chunks are not repeated.
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with_icc = add_png_chunk(path.read_bytes(), b"iCCP", b"p\x00\x00" + zlib.compress(profile))
    path.write_bytes(with_icc)
    image = read_image(path)
    out = encode_image(image.pixels, plan, metadata=image.metadata)
    assert png_chunk_payload(out, b"iCCP") is not None and png_chunk_payload(out, b"gAMA") is None


def _with_tag(tiff: bytes, tag: int, value: int) -> bytes:
    """``tiff`` (as encode_tiff writes it) with the SHORT value of ``tag`` changed."""
    from pocketsr_cli.imageio.metadata import ifd_entries

    data = bytearray(tiff)
    (offset,) = struct.unpack_from("<I", data, 4)
    entries = {tag_: pos for tag_, _, pos in ifd_entries(data, "<", offset)}
    struct.pack_into("<H", data, entries[tag], value)
    return bytes(data)


def test_16bit_tiff_in_separate_planes_is_refused_not_scrambled(tmp_path: Path) -> None:
    """OpenCV read the planes of a PlanarConfiguration=2 file as interleaved samples: the
    run wrote scrambled pixels and said ok."""
    from pocketsr_cli.imageio.tiff import encode_tiff

    tiff = encode_tiff(make_asymmetric(6, 8, 3, np.uint16), imageio.Metadata())
    path = tmp_path / "planar.tif"
    path.write_bytes(_with_tag(tiff, 284, 2))
    with pytest.raises(ImageReadError, match="separate planes"):
        read_image(path)


def test_a_12_bit_jpeg_is_unsupported_not_corrupt(tmp_path: Path) -> None:
    """Pillow opens 8-bit JPEGs only; a 12-bit one was 'not a recognised image (corrupt, or
    not one of ... JPEG ...)', which tells its owner the file is broken."""
    buffer = io.BytesIO()
    Image.fromarray(make_asymmetric(8, 8, 3)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 1] = 0xC1  # extended sequential, which allows 12 bits
    data[sof + 4] = 12
    path = tmp_path / "deep.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"^unsupported JPEG \(12-bit samples\)$"):
        read_image(path)


def test_without_thumbnail_cuts_the_link_to_ifd1_and_keeps_the_rest() -> None:
    """HEIF: libheif turns the pixels upright and pillow-heif already says orientation 1,
    so the thumbnail (stored unturned) was kept and shown sideways next to them."""
    from pocketsr_cli.imageio.metadata import bare_exif, without_thumbnail

    block = bare_exif(make_exif(1).tobytes())
    assert block is not None
    order = "<" if block[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(order + "I", block, 4)
    (count,) = struct.unpack_from(order + "H", block, ifd0)
    linked = bytearray(block)
    struct.pack_into(order + "I", linked, ifd0 + 2 + 12 * count, 8)  # any IFD1 offset
    cut = without_thumbnail(bytes(linked))
    assert struct.unpack_from(order + "I", cut, ifd0 + 2 + 12 * count)[0] == 0
    assert cut[: ifd0 + 2 + 12 * count] == bytes(linked)[: ifd0 + 2 + 12 * count]
    assert without_thumbnail(b"junk") == b"junk"
