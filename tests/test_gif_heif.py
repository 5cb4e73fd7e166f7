"""GIF, animated WebP and HEIC/HEIF input, through ``pocketsr upscale`` and ``read_image``."""

from __future__ import annotations

import json
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
