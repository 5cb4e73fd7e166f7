"""GIF, animated WebP and HEIC/HEIF input, through ``pocketsr upscale`` and ``read_image``."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli import imageio
from pocketsr_cli.cli import app
from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio.nclx import Nclx, icc_for_nclx

runner = CliRunner()
FAST = ("-m", "bicubic", "-s", "2")


def frames(n: int, h: int = 12, w: int = 16) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def run_json(*args: str | Path) -> tuple[int, list[dict]]:
    result = runner.invoke(app, ["upscale", *map(str, args), *FAST, "--json", "-q"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, [line for line in lines if line["type"] == "image"]


def test_animated_gif_gives_first_frame_as_png_with_warnings(tmp_path: Path) -> None:
    first, second = frames(2)
    src = tmp_path / "anim.gif"
    first.save(src, save_all=True, append_images=[second], duration=100, loop=0)
    code, (rec,) = run_json(src)
    assert code == 0 and rec["status"] == "ok"
    assert Path(rec["output"]) == tmp_path / "anim_x2.png"
    assert imageio.ANIMATED_WARNING in rec["warnings"]
    assert any("256 colours" in w for w in rec["warnings"])
    with Image.open(rec["output"]) as out:
        assert out.size == (32, 24) and out.format == "PNG"
    assert not (tmp_path / "anim_x2.gif").exists()


def test_still_gif_and_format_option(tmp_path: Path) -> None:
    src = tmp_path / "still.gif"
    frames(1)[0].save(src)
    code, (rec,) = run_json(src, "--format", "jpg")
    assert code == 0 and rec["status"] == "ok"
    assert Path(rec["output"]).name == "still_x2.jpg"
    assert imageio.ANIMATED_WARNING not in rec["warnings"]
    decoded = imageio.read_image(src)
    assert decoded.format == "gif" and decoded.warnings == ()


GIF_PALETTE = ((10, 20, 30), (200, 100, 50), (0, 255, 0), (255, 255, 255))


def gif_bytes(
    screen: tuple[int, int],
    at: tuple[int, int],
    indexes: np.ndarray,
    *,
    transparency: int | None = None,
    background: int = 0,
) -> bytes:
    """A still GIF written by hand: ``GIF_PALETTE`` as its global palette, a logical screen
    of ``screen`` (width, height), and one image of palette ``indexes`` (rows) placed at
    ``at`` (left, top) on it.  Its LZW data sends a clear code before each index, so that
    every code stays 3 bits wide: valid, just not compressed."""
    height, width = indexes.shape
    codes = [code for index in indexes.reshape(-1) for code in (4, int(index))] + [5]
    packed = sum(code << (3 * n) for n, code in enumerate(codes))
    lzw = packed.to_bytes((3 * len(codes) + 7) // 8, "little")
    blocks = b"".join(
        bytes([len(lzw[i : i + 255])]) + lzw[i : i + 255] for i in range(0, len(lzw), 255)
    )
    control = b""
    if transparency is not None:  # a graphic control extension with the transparent flag
        control = b"\x21\xf9\x04\x01\x00\x00" + bytes([transparency]) + b"\x00"
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", *screen, 0x81, background, 0)  # a 4-entry global palette
        + bytes(np.array(GIF_PALETTE, np.uint8))
        + control
        + b"\x2c"
        + struct.pack("<HHHHB", *at, width, height, 0)
        + b"\x02"  # LZW minimum code size
        + blocks
        + b"\x00\x3b"
    )


def test_a_gif_frame_smaller_than_its_screen_leaves_the_rest_transparent(tmp_path: Path) -> None:
    """Browsers show the screen outside a GIF's first frame as transparent, where Pillow
    puts palette entry 0, opaque.  The header says alpha too, so a JPEG asked for is
    planned as PNG from the start."""
    src = tmp_path / "sticker.gif"
    src.write_bytes(gif_bytes((8, 8), (2, 2), np.full((4, 4), 1)))
    decoded = imageio.read_image(src)
    assert decoded.pixels.shape == (8, 8, 4)
    inside = np.zeros((8, 8), bool)
    inside[2:6, 2:6] = True
    assert (decoded.pixels[inside] == (200, 100, 50, 255)).all()
    assert (decoded.pixels[~inside, 3] == 0).all()
    assert imageio.read_header(src).channels == 4
    code, (rec,) = run_json(src, "--format", "jpg")
    assert code == 0 and rec["status"] == "ok"
    assert Path(rec["output"]).name == "sticker_x2.png"
    assert "JPEG cannot store transparency; writing PNG instead" in rec["warnings"]
    with Image.open(rec["output"]) as out:
        alpha = np.asarray(out.convert("RGBA"))[..., 3]
    assert out.size == (16, 16) and alpha[0, 0] == 0 and alpha[8, 8] == 255


def test_a_small_gif_frame_with_a_transparent_index_keeps_both_transparencies(
    tmp_path: Path,
) -> None:
    indexes = np.full((4, 4), 1)
    indexes[:, 1] = 2  # the transparent index
    src = tmp_path / "holes.gif"
    src.write_bytes(gif_bytes((8, 8), (2, 2), indexes, transparency=2))
    alpha = imageio.read_image(src).pixels[..., 3]
    expected = np.zeros((8, 8), np.uint8)
    expected[2:6, 2:6] = 255
    expected[2:6, 3] = 0
    assert np.array_equal(alpha, expected)
    assert imageio.read_header(src).channels == 4


@pytest.mark.parametrize("background", [0, 3])
def test_a_gif_frame_covering_its_screen_stays_opaque_rgb(tmp_path: Path, background: int) -> None:
    src = tmp_path / "full.gif"
    src.write_bytes(gif_bytes((4, 4), (0, 0), np.full((4, 4), 1), background=background))
    decoded = imageio.read_image(src)
    assert decoded.pixels.shape == (4, 4, 3) and (decoded.pixels == (200, 100, 50)).all()
    assert imageio.read_header(src).channels == 3
    code, (rec,) = run_json(src, "--format", "jpg")
    assert code == 0 and Path(rec["output"]).name == "full_x2.jpg"


def test_animated_webp_warns(tmp_path: Path) -> None:
    first, second = frames(2)
    src = tmp_path / "anim.webp"
    first.save(src, save_all=True, append_images=[second], duration=100, lossless=True)
    decoded = imageio.read_image(src)
    assert decoded.warnings == (imageio.ANIMATED_WARNING,)
    assert np.array_equal(decoded.pixels, np.asarray(first))


def test_heic_without_pillow_heif_fails_with_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imageio.formats, "heif_available", lambda: False)
    src = tmp_path / "IMG_0001.HEIC"
    src.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ImageReadError, match=r"pip install \"pocketsr\[heif\]\""):
        imageio.read_image(src)
    code, (rec,) = run_json(src)
    assert code == 1
    assert rec["status"] == "failed" and rec["error"].endswith(imageio.HEIF_HINT)


def test_a_jpeg_named_heic_is_decoded_without_pillow_heif(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JPEG under a .HEIC name (what some phones' and import tools' "most compatible"
    transfers leave) needs no HEIF decoder, but failed with the hint to install one, while
    the same JPEG named .avif was decoded."""
    monkeypatch.setattr(imageio.formats, "heif_available", lambda: False)
    src = tmp_path / "IMG_0003.HEIC"
    Image.new("RGB", (8, 6), (200, 120, 40)).save(src, format="JPEG", quality=95)
    decoded = imageio.read_image(src)
    assert decoded.format == "jpeg" and decoded.pixels.shape == (6, 8, 3)
    assert imageio.read_header(src).format == "jpeg"
    code, (rec,) = run_json(src)
    assert code == 0 and rec["status"] == "ok"
    assert any("its content is JPEG" in w for w in rec["warnings"])


def test_heic_round_trip_with_pillow_heif(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    src = tmp_path / "IMG_0002.heic"
    Image.new("RGB", (32, 24), (200, 120, 40)).save(src, format="HEIF", quality=95)
    decoded = imageio.read_image(src)
    assert decoded.format == "heif" and decoded.pixels.shape == (24, 32, 3)
    assert np.abs(decoded.pixels.astype(int) - (200, 120, 40)).max() < 12
    code, (rec,) = run_json(src)
    assert code == 0 and rec["status"] == "ok"
    assert Path(rec["output"]).name == "IMG_0002_x2.png"
    assert any("writing PNG" in w for w in rec["warnings"])


def test_heic_deeper_than_8_bits_says_so_and_its_nclx_colour_space_is_carried(
    tmp_path: Path,
) -> None:
    """A 10-bit HEIC became 8-bit without a word; a Display P3 one (nclx, no ICC profile)
    gets the same colour space as an ICC profile, and an HDR one says what is lost."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    pixels = np.random.default_rng(0).integers(0, 65535, (24, 32, 3), dtype=np.uint16)
    deep = pillow_heif.from_bytes(mode="RGB;16", size=(32, 24), data=pixels.tobytes())
    deep.save(tmp_path / "deep.heic", quality=-1)
    Image.new("RGB", (32, 24), (200, 120, 40)).save(
        tmp_path / "p3.heic", format="HEIF", color_primaries=12, transfer_characteristics=13
    )
    deep_notes = imageio.read_image(tmp_path / "deep.heic").warnings
    assert any("-bit samples were read as 8-bit" in w for w in deep_notes), deep_notes
    p3 = imageio.read_image(tmp_path / "p3.heic")
    assert p3.warnings == ()
    assert p3.metadata.icc_profile == icc_for_nclx(Nclx(12, 13))
    Image.new("RGB", (32, 24), (200, 120, 40)).save(
        tmp_path / "hlg.heic", format="HEIF", color_primaries=9, transfer_characteristics=18
    )
    hlg = imageio.read_image(tmp_path / "hlg.heic")
    assert hlg.metadata.icc_profile is None
    assert any(w.startswith("it is HDR (HLG, BT.2020)") for w in hlg.warnings), hlg.warnings
