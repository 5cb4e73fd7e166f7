"""End-to-end tests of ``pocketsr upscale`` through Typer's runner, on generated images."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _runs import unenterable
from _zoo import use_home
from PIL import Image, ImageCms, PngImagePlugin
from typer.testing import CliRunner

from pocketsr_cli.cli import app

runner = CliRunner()


def photo(h: int = 24, w: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth, slightly textured uint8 image (H, W, C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = [(x / w), (y / h), ((x + y) / (h + w))][:channels] + [np.full((h, w), 0.8)] * (
        channels - 3 if channels > 3 else 0
    )
    img = np.stack(base[:channels], axis=-1) * 200 + rng.normal(0, 8, (h, w, channels))
    return np.clip(img, 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze()).save(path, **kw)
    return path


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def jsonl(stdout: str) -> tuple[list[dict], dict]:
    """The ``"type": "image"`` lines and the summary of the final ``"type": "summary"`` line."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert lines[-1]["type"] == "summary" and "summary" in lines[-1], stdout
    assert all(line["type"] == "image" for line in lines[:-1]), stdout
    return lines[:-1], lines[-1]["summary"]


FAST = ("-m", "bicubic", "-s", "2")


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif", "bmp"])
def test_each_format_round_trips(tmp_path: Path, ext: str) -> None:
    src = save(tmp_path / f"in.{ext}", photo())
    code, out, err = invoke("upscale", src, *FAST, "--json", "-q")
    assert code == 0, err
    (rec,), summary = jsonl(out)
    dst = tmp_path / f"in_x2.{ext}"
    assert rec["status"] == "ok" and Path(rec["output"]) == dst
    assert (rec["width"], rec["height"], rec["out_width"], rec["out_height"]) == (32, 24, 64, 48)
    with Image.open(dst) as im:
        assert im.size == (64, 48) and im.mode == "RGB"
    assert summary["ok"] == 1 and summary["failed"] == 0
    assert rec["model"] == "bicubic" and rec["device"].startswith("cpu")


def test_output_matches_model_closely(tmp_path: Path) -> None:
    """The written pixels are the model's (PNG is lossless): compare with PIL's bicubic."""
    arr = photo(40, 40)
    src = save(tmp_path / "a.png", arr)
    assert invoke("upscale", src, *FAST, "-q")[0] == 0
    got = np.asarray(Image.open(tmp_path / "a_x2.png")).astype(int)
    ref = np.asarray(Image.fromarray(arr).resize((80, 80), Image.BICUBIC)).astype(int)
    inner = np.abs(got - ref)[4:-4, 4:-4]
    assert inner.max() <= 2


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_stays_16_bit(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(1)
    arr = (rng.random((20, 24, 3)) * 65535).astype(np.uint16)
    src = tmp_path / f"deep.{ext}"
    cv2.imwrite(str(src), arr[..., ::-1])
    code, _, err = invoke("upscale", src, *FAST, "-q")
    assert code == 0, err
    out = cv2.imread(str(tmp_path / f"deep_x2.{ext}"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (40, 48, 3)
    # Values use the 16-bit range, not an 8-bit one scaled up.
    assert len(np.unique(out)) > 256


def test_rgba_keeps_alpha_and_jpeg_switches_to_png(tmp_path: Path) -> None:
    arr = photo(channels=3)
    alpha = np.zeros(arr.shape[:2], np.uint8)
    alpha[:, 16:] = 255
    src = save(tmp_path / "logo.png", np.dstack([arr, alpha]))
    code, out, err = invoke("upscale", src, *FAST, "--format", "jpg", "--json")
    assert code == 0, err
    (rec,), _ = jsonl(out)
    assert rec["output"].endswith("logo_x2.png")
    assert any("PNG" in w for w in rec["warnings"]) and "warning" in err
    with Image.open(rec["output"]) as im:
        assert im.mode == "RGBA" and im.size == (64, 48)
        a = np.asarray(im)[..., 3]
    assert a[:, :28].max() <= 10 and a[:, 36:].min() >= 245  # the mask edge survives


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_an_all_opaque_alpha_channel_asked_as_jpeg_gives_a_jpeg(
    tmp_path: Path, dtype: type
) -> None:
    """A screenshot or export with an alpha channel and no transparency is written in the
    format asked for, without the channel; one pixel below full opacity keeps it PNG."""
    top = np.iinfo(dtype).max
    rgb = photo(channels=3).astype(dtype) * (257 if dtype == np.uint16 else 1)
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], top, dtype)])
    nearly = opaque.copy()
    nearly[5, 7, 3] = top - 1
    (tmp_path / "in").mkdir()
    for name, arr in (("shot.png", opaque), ("edge.png", nearly)):
        assert cv2.imwrite(str(tmp_path / "in" / name), cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA))
    args = ("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "--format", "jpg", "--json")
    code, out, err = invoke(*args, "--dry-run")
    assert code == 0, err
    planned = {Path(r["input"]).name: r for r in jsonl(out)[0]}
    assert Path(planned["shot.png"]["output"]).name == "shot.png"
    assert planned["shot.png"]["warnings"] == [
        "written as shot.jpg instead if its alpha channel is opaque everywhere "
        "(known once it is decoded)"
    ]
    code, out, err = invoke(*args)
    assert code == 0, err
    lines = {Path(r["input"]).name: r for r in jsonl(out)[0]}
    assert Path(lines["shot.png"]["output"]).name == "shot.jpg"
    assert not any("transparency" in w for w in lines["shot.png"]["warnings"])
    assert Path(lines["edge.png"]["output"]).name == "edge.png"
    assert "JPEG cannot store transparency; writing PNG instead" in lines["edge.png"]["warnings"]
    with Image.open(tmp_path / "o" / "shot.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 48)
        expected = cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_CUBIC)
        if dtype == np.uint16:
            expected = (expected // 257).astype(np.uint8)
        assert np.abs(np.asarray(im).astype(int) - expected).mean() < 3
    with Image.open(tmp_path / "o" / "edge.png") as im:
        assert im.mode == "RGBA"
    # The same command again finds the JPEG it wrote.
    code, out, err = invoke(*args)
    assert code == 0, err
    assert [r["reason_code"] for r in jsonl(out)[0]] == ["exists", "exists"]


def test_grayscale_and_palette(tmp_path: Path) -> None:
    gray = save(tmp_path / "g.png", photo(channels=3)[..., 0])
    pal = tmp_path / "p.png"
    Image.fromarray(photo()).convert("P", palette=Image.Palette.ADAPTIVE).save(pal)
    code, _, err = invoke("upscale", gray, pal, *FAST, "-q")
    assert code == 0, err
    with Image.open(tmp_path / "g_x2.png") as im:
        assert im.mode == "L" and im.size == (64, 48)
    with Image.open(tmp_path / "p_x2.png") as im:
        assert im.mode in ("RGB", "RGBA", "P") and im.size == (64, 48)


def test_exif_orientation_applied_and_icc_kept(tmp_path: Path) -> None:
    arr = photo(24, 32)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "TestCam"
    src = save(tmp_path / "cam.jpg", arr, exif=exif.tobytes(), icc_profile=icc, quality=95)
    code, _, err = invoke("upscale", src, *FAST, "-q")
    assert code == 0, err
    with Image.open(tmp_path / "cam_x2.jpg") as im:
        assert im.size == (48, 64)  # portrait now: 24x32 rotated, then x2
        assert im.info.get("icc_profile") == icc
        tags = im.getexif()
        assert tags.get(0x0112, 1) == 1 and tags.get(0x010F) == "TestCam"


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif"])
def test_strip_metadata_keeps_the_colour_profile_alone(tmp_path: Path, ext: str) -> None:
    # EXIF (camera, GPS), XMP and the print resolution go; the ICC profile, which says
    # what the pixel values mean, stays: without it a wide-gamut photo shows dulled.
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    src = save(tmp_path / f"m.{ext}", photo(), exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300))
    assert invoke("upscale", src, *FAST, "-q", "--strip-metadata")[0] == 0
    with Image.open(tmp_path / f"m_x2.{ext}") as im:
        assert im.info.get("icc_profile") == icc
        assert 0x010F not in im.getexif()
        # no print resolution stated (TIFF must state one: the baseline 72 dpi)
        assert tuple(round(d) for d in im.info.get("dpi", (72, 72))) == (72, 72)


def test_a_bmp_output_says_which_metadata_it_could_not_keep(tmp_path: Path) -> None:
    # BMP has no room for an ICC profile, EXIF or XMP: a Display P3 photo asked as BMP
    # would show dulled, so its line says what was left out, as a JPEG's line says of an
    # EXIF block too large for it. A BMP made from a BMP (nothing to lose) says nothing.
    from pocketsr_cli.imageio.nclx import Nclx, icc_for_nclx

    p3 = icc_for_nclx(Nclx(primaries=12, transfer=13))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    src = save(tmp_path / "p3.jpg", photo(), exif=exif.tobytes(), icc_profile=p3, quality=95)
    plain = save(tmp_path / "plain.bmp", photo(seed=1))
    code, stdout, err = invoke("upscale", src, plain, *FAST, "--format", "bmp", "--json")
    assert code == 0, err
    recs, _ = jsonl(stdout)
    by_name = {Path(r["input"]).name: r for r in recs}
    assert by_name["plain.bmp"]["warnings"] == []
    (line,) = by_name["p3.jpg"]["warnings"]
    assert "ICC colour profile and EXIF" in line and "not copied" in line, line
    assert "BMP has no room" in err  # shown in the log too
    with Image.open(tmp_path / "p3_x2.bmp") as im:
        assert im.info.get("icc_profile") is None  # as the line says
    # --strip-metadata keeps the profile alone, so the line names it alone.
    code, stdout, err = invoke(
        "upscale", src, *FAST, "--format", "bmp", "--json", "--strip-metadata", "--overwrite"
    )
    assert code == 0, err
    (line,) = jsonl(stdout)[0][0]["warnings"]
    assert "its ICC colour profile: not copied" in line, line


def test_other_formats_say_which_colour_block_they_could_not_keep(tmp_path: Path) -> None:
    """As a BMP's line says what it had no room for: a gray image's ICC profile in WebP
    (no gray mode) and a PNG's gAMA/cHRM in any other format were dropped silently."""
    import struct

    from _imagegen import add_png_chunk, fake_icc

    gray = save(tmp_path / "gray.png", photo(channels=3)[:, :, 0], icc_profile=fake_icc(b"GRAY"))
    plain = save(tmp_path / "plain.png", photo(seed=1))
    linear = tmp_path / "linear.png"
    linear.write_bytes(add_png_chunk(plain.read_bytes(), b"gAMA", struct.pack(">I", 100000)))
    srgb = tmp_path / "srgb.png"  # sRGB overrides gAMA: nothing said is lost
    srgb.write_bytes(add_png_chunk(linear.read_bytes(), b"sRGB", b"\x00"))

    def lines(fmt: str) -> dict[str, list[str]]:
        args = (gray, plain, linear, srgb, "-o", tmp_path / fmt, "--format", fmt, "--json")
        code, stdout, err = invoke("upscale", *args, *FAST)
        assert code == 0, err
        return {Path(r["input"]).name: r["warnings"] for r in jsonl(stdout)[0]}

    webp = lines("webp")
    assert webp["gray.png"] == [
        "WebP has no room for its gray ICC colour profile (WebP has no gray mode): not copied "
        "(its colours may show differently; PNG or TIFF keep the profile)"
    ]
    assert webp["linear.png"] == [
        "WebP has no room for its PNG gAMA/cHRM colour chunks: not copied (its colours may "
        "show differently; a PNG keeps them)"
    ]
    assert webp["plain.png"] == webp["srgb.png"] == []
    jpeg = lines("jpg")  # JPEG keeps a gray profile
    assert jpeg["gray.png"] == jpeg["plain.png"] == jpeg["srgb.png"] == []
    assert jpeg["linear.png"] == [webp["linear.png"][0].replace("WebP", "JPEG")]
    png = lines("png")
    assert all(warnings == [] for warnings in png.values()), png


def test_unicode_spaces_nested_mirror_and_rerun(tmp_path: Path) -> None:
    root = tmp_path / "Фото отпуск"
    save(root / "день 1.jpg", photo(seed=1))
    save(root / "sub dir" / "ñandú.png", photo(seed=2))
    save(root / "sub dir" / "deeper" / "x.webp", photo(seed=3))
    (root / "notes.txt").write_text("not an image")
    out = tmp_path / "выход"
    code, stdout, err = invoke("upscale", root, "-o", out, "-r", *FAST, "--json")
    assert code == 0, err
    recs, summary = jsonl(stdout)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (3, 1, 0)
    assert (out / "день 1.jpg").is_file()
    assert (out / "sub dir" / "ñandú.png").is_file()
    assert (out / "sub dir" / "deeper" / "x.webp").is_file()
    txt = next(r for r in recs if r["input"].endswith("notes.txt"))
    assert txt["status"] == "skipped" and "not an image" in txt["reason"]
    # A second run skips everything and writes nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, stdout, _ = invoke("upscale", root, "-o", out, "-r", *FAST, "--json")
    recs, summary = jsonl(stdout)
    assert code == 0 and summary["ok"] == 0 and summary["skipped"] == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # --overwrite rewrites them.
    code, stdout, _ = invoke("upscale", root, "-o", out, "-r", *FAST, "--json", "--overwrite")
    assert code == 0 and jsonl(stdout)[1]["ok"] == 3


def test_without_recursive_subfolders_are_not_searched(tmp_path: Path) -> None:
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "in" / "sub" / "b.png", photo())
    code, stdout, _ = invoke("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "--json")
    assert code == 0 and jsonl(stdout)[1]["ok"] == 1
    assert not (tmp_path / "o" / "sub").exists()


def test_bad_files_fail_but_the_rest_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    save(folder / "good.png", photo())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png at all")
    good_jpeg = save(tmp_path / "full.jpg", photo(64, 64))
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    code, stdout, err = invoke("upscale", folder, *FAST, "--json")
    assert code == 1
    recs, summary = jsonl(stdout)
    by_name = {Path(r["input"]).name: r for r in recs}
    assert by_name["good.png"]["status"] == "ok"
    for bad in ("empty.jpg", "garbage.png", "truncated.jpg"):
        assert by_name[bad]["status"] == "failed" and by_name[bad]["error"], bad
        assert by_name[bad]["output"] is None
    assert summary["failed"] == 3 and summary["ok"] == 1
    assert "failed" in err
    assert sorted(p.name for p in folder.iterdir()) == [
        "empty.jpg",
        "garbage.png",
        "good.png",
        "good_x2.png",
        "truncated.jpg",
    ]


def test_a_file_named_on_the_command_line_that_is_no_image_fails(tmp_path: Path) -> None:
    """Named, it was asked for: a camera RAW or a text file fails (exit 1), where in a
    folder it is only skipped; a JPEG saved as ``.jfif`` or ``.jpe`` is read as one."""
    raw = tmp_path / "IMG_1.CR2"
    raw.write_bytes(b"II*\x00not a tiff pocketsr reads")
    save(tmp_path / "web.jfif", photo(), format="JPEG")
    save(tmp_path / "old.jpe", photo(), format="JPEG")
    save(tmp_path / "cam.MPO", photo(), format="JPEG")  # a camera's multi-picture JPEG
    code, stdout, _ = invoke(
        "upscale",
        raw,
        tmp_path / "web.jfif",
        tmp_path / "old.jpe",
        tmp_path / "cam.MPO",
        *FAST,
        "--json",
    )
    assert code == 1
    recs, summary = jsonl(stdout)
    by_name = {Path(r["input"]).name: r for r in recs}
    assert by_name["IMG_1.CR2"]["status"] == "failed"
    assert by_name["IMG_1.CR2"]["error"].startswith("not an image file (.CR2); pocketsr reads JPEG")
    assert by_name["web.jfif"]["status"] == by_name["old.jpe"]["status"] == "ok"
    assert by_name["cam.MPO"]["status"] == "ok"
    with Image.open(tmp_path / "web_x2.jfif") as im:
        assert im.format == "JPEG" and im.size == (64, 48)
    assert summary["failed"] == 1 and summary["ok"] == 3


@pytest.mark.parametrize(
    "command",
    [
        "upscale here.png -m",
        "bench --size 32x18 -m",
        "eval . -m",
        "bench --size 32x18 -m lanczos --baseline",
    ],
)
@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_model_name_is_a_usage_error_not_the_default_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "here.png", photo())
    code, _, err = invoke(*command.split(), name)
    # One line, as every other usage error: not Click's usage box.
    assert code == 2 and err.startswith("error (usage): an empty model name: "), err
    assert len(err.strip().splitlines()) == 1 and "Usage:" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.png"]


@pytest.mark.parametrize("value", ["1.5", "0.5"])
def test_a_fractional_scale_points_upscale_to_outscale(tmp_path: Path, value: str) -> None:
    save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", tmp_path / "a.png", "-m", "bicubic", "-s", value)
    # One line that says what to type instead, not Typer's "valid integer" box.
    assert code == 2 and err.startswith("error (usage): -s/--scale takes a whole number"), err
    assert err.strip().endswith(f"give --outscale {value}") and "Usage:" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("value", ["0", "17", "4x", "nan", "1e1", "inf", "\u0662", "+2"])
def test_a_scale_that_is_no_whole_factor_is_one_usage_line(tmp_path: Path, value: str) -> None:
    save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", tmp_path / "a.png", "-m", "bicubic", "-s", value)
    assert code == 2, err
    assert err.strip() == (
        f"error (usage): -s/--scale takes a whole number from 1 to 16, not {value!r}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_eval_refuses_a_fractional_scale_without_naming_outscale(tmp_path: Path) -> None:
    code, _, err = invoke("eval", tmp_path, "-s", "1.5")  # eval has no --outscale
    assert code == 2 and err.strip() == (
        "error (usage): -s/--scale takes a whole number from 1 to 16, not '1.5'"
    ), err


NUMBER_REFUSALS = [
    # A unit or a resolution's name written with the number: the number to type.
    (
        ("--long-edge", "4K"),
        "--long-edge takes a whole number of pixels, 1 or more, not '4K': "
        "for 4K (3840×2160) give --long-edge 3840",
    ),
    (
        ("--height", "1080p"),
        "--height takes a whole number of pixels, 1 or more, not '1080p': "
        "for 1080p (1920×1080) give --height 1080",
    ),
    (
        ("--width", "3840x2160"),
        "--width takes a whole number of pixels, 1 or more, not "
        "'3840x2160': for 3840×2160 give --width 3840",
    ),
    (
        ("--width", "3840px"),
        "--width takes a whole number of pixels, 1 or more, not '3840px': give --width 3840",
    ),
    (
        ("--height", "2160 px"),
        "--height takes a whole number of pixels, 1 or more, not '2160 px': give --height 2160",
    ),
    (
        ("--outscale", "2x"),
        "--outscale takes a factor from 0.01 to 64, not '2x': give --outscale 2",
    ),
    (
        ("--outscale", "×1.5"),
        "--outscale takes a factor from 0.01 to 64, not '×1.5': give --outscale 1.5",
    ),
    (
        ("--quality", "90%"),
        "--quality takes a whole number from 1 to 100, not '90%': give --quality 90",
    ),
    # No plain number to point to: the range says what to type.
    (("--quality", "high"), "--quality takes a whole number from 1 to 100, not 'high'"),
    (("--quality", "101"), "--quality takes a whole number from 1 to 100, not '101'"),
    (("--outscale", "100x"), "--outscale takes a factor from 0.01 to 64, not '100x'"),
    (("--outscale", "1e1"), "--outscale takes a factor from 0.01 to 64, not '1e1'"),
    (("--pcsr-k", "1e1x"), "--pcsr-k takes a number, not '1e1x'"),
    (("--width", "12.5"), "--width takes a whole number of pixels, 1 or more, not '12.5'"),
    (("--threads", "two"), "--threads takes a whole number, 1 or more, not 'two'"),
    (("--ray-workers", "0"), "--ray-workers takes a whole number, 1 or more, not '0'"),
    (
        ("--ray-cpus-per-worker", "x"),
        "--ray-cpus-per-worker takes a whole number, 1 or more, not 'x'",
    ),
    (("--ensemble-weight", "half"), "--ensemble-weight takes a number from 0 to 3, not 'half'"),
    (("--pcsr-k", "inf"), "--pcsr-k takes a number, not 'inf'"),
]


@pytest.mark.parametrize(("args", "message"), NUMBER_REFUSALS)
def test_a_number_option_refuses_a_value_in_one_line_saying_what_to_type(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Not Typer's usage box ("Input should be a valid integer"), which neither repeats the
    value nor says what to type: one line, and with --json the error object too."""
    save(tmp_path / "a.png", photo())
    code, out, err = invoke("upscale", tmp_path / "a.png", "-m", "bicubic", *args)
    assert code == 2 and err.strip() == f"error (usage): {message}", err
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    code, out, _ = invoke("upscale", tmp_path / "a.png", "-m", "bicubic", *args, "--json")
    assert code == 2 and json.loads(out)["message"] == message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eval", "{dir}", "--limit", "all"), "--limit takes a whole number, 1 or more"),
        (
            ("eval", "{dir}", "--crop", "64px"),
            "--crop takes a whole number of pixels, 32 or more, not '64px': give --crop 64",
        ),
        (("eval", "{dir}", "--threads", "0"), "--threads takes a whole number, 1 or more"),
        (("bench", "--repeat", "3x"), "--repeat takes a whole number, 1 or more, not '3x'"),
        (("bench", "--quality", "high"), "--quality takes a whole number from 1 to 100"),
        (
            ("report", "{dir}/log.jsonl", "--crop", "5000"),
            "--crop takes a whole number of pixels from 16 to 4096, not '5000'",
        ),
        (
            ("report", "{dir}/log.jsonl", "--crops", "many"),
            "--crops takes a whole number from 1 to 8, not 'many'",
        ),
    ],
)
def test_number_options_of_other_commands_refuse_in_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, _, err = invoke(*(a.format(dir=tmp_path) for a in args))
    assert code == 2 and err.startswith(f"error (usage): {message}"), err
    assert "Usage:" not in err and len(err.strip().splitlines()) == 1, err


def test_number_options_take_their_numbers(tmp_path: Path) -> None:
    """The parsers give the commands what Typer gave: an int (2.0 is 2, as for -s) or a
    float; a default (--ray-cpus-per-worker's 1) passes through them too."""
    from pocketsr_cli.cli._options import number_argument
    from pocketsr_cli.errors import UsageError

    assert number_argument("2.0", option="--w", low=1) == 2
    assert number_argument(1, option="--w", low=1) == 1
    assert number_argument("-0.5", option="--k", whole=False) == -0.5
    assert number_argument("-1e6", option="--k", whole=False) == -1e6  # a knob's range
    with pytest.raises(UsageError, match=r"^--w takes a whole number, 1 or more, not '-2'$"):
        number_argument("-2", option="--w", low=1)
    src = save(tmp_path / "a.png", photo())
    code, out, err = invoke(
        "upscale", src, "-m", "bicubic", "--width", "64", "--quality", "90", "--json", "-q"
    )
    assert code == 0 and (jsonl(out)[0][0]["out_width"], err) == (64, "")
    code, out, err = invoke("upscale", src, "-m", "bicubic", "--outscale", "1.5", "--json", "-q")
    assert code == 0 and jsonl(out)[0][0]["out_width"] == 48, err


@pytest.mark.parametrize("size", [("-s", "2"), ("--width", "40")])
def test_the_first_line_counts_a_folders_inputs_streamed_or_listed(
    tmp_path: Path, size: tuple[str, ...]
) -> None:
    """A streamed run (-s) and a listed one (a size without -s: every input's size picks
    the variants) say the same, how many inputs, where the streamed one said 'inputs as
    found'."""
    for name in ("a.png", "b.png"):
        save(tmp_path / "in" / name, photo())
    (tmp_path / "in" / "notes.txt").write_text("not an image")  # an input too (skipped)
    code, _, err = invoke(
        "upscale", tmp_path / "in", "-o", tmp_path / "out", "-m", "bicubic", *size
    )
    assert code == 0, err
    first = err.splitlines()[0]
    assert first.endswith(" — 3 input(s)") and "as found" not in err, first


def test_the_first_line_of_a_folder_larger_than_planned_ahead_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli import jobs

    monkeypatch.setattr(jobs, "PLAN_AHEAD", 2)
    for name in ("a.png", "b.png", "c.png"):
        save(tmp_path / "in" / name, photo())
    code, _, err = invoke("upscale", tmp_path / "in", "-o", tmp_path / "out", *FAST, "--dry-run")
    assert code == 0, err
    assert err.splitlines()[0].endswith(
        " — 2 inputs so far (the folders are still being read) (dry run)"
    ), err


def test_a_whole_scale_written_as_a_decimal_is_taken(tmp_path: Path) -> None:
    save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", tmp_path / "a.png", "-m", "bicubic", "-s", "2.0")
    assert code == 0, err
    assert Image.open(tmp_path / "a_x2.png").size == (64, 48)


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        (["a.png"], "pocketsr upscale a.png"),  # there
        (["shoot", "-o", "my out"], "pocketsr upscale shoot -o 'my out'"),  # a folder
        (["IMG_0042.JPG"], "pocketsr upscale IMG_0042.JPG"),  # not there: an image's name
    ],
)
def test_an_input_given_without_the_upscale_command_is_answered_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], meant: str
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "a.png", photo())
    (tmp_path / "shoot").mkdir()
    code, _, err = invoke(*args)
    assert code == 2 and err.strip().endswith(
        f"Error: No such command {args[0]!r}. To upscale it: {meant}"
    ), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "shoot"]


@pytest.mark.parametrize(
    ("args", "json_object"),
    [
        (["a.png", "--json"], True),  # the upscale line meant takes --json: answered so
        (["a.png", "-q", "--json", "-s", "2"], True),
        (["a.png", "--glob", "--json"], False),  # --glob's pattern, not the flag
        (["a.png", "--", "--json"], False),  # an input named --json
        (["nosuch", "--json"], False),  # no command meant: no command's --json
    ],
)
def test_an_input_given_without_upscale_with_json_answers_in_json_as_upscale_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], json_object: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "a.png", photo())
    code, out, err = invoke(*args)
    message = err.strip().splitlines()[-1].removeprefix("Error: ")
    assert code == 2 and message.startswith(f"No such command {args[0]!r}"), err
    if json_object:
        assert "To upscale it: pocketsr upscale" in message
        assert json.loads(out) == {
            "type": "error",
            "kind": "usage",
            "message": message,
            "exit_code": 2,
        }
    else:
        assert out == "", out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_unknown_command_that_names_no_input_gets_no_upscale_advice() -> None:
    code, _, err = invoke("upscal", "x")
    assert code == 2 and "Did you mean 'upscale'?" in err and "To upscale" not in err, err


@pytest.mark.skipif(os.sep == "\\", reason="a backslash separates folders on Windows")
def test_an_input_written_with_backslashes_is_pointed_to_its_slashed_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "photos" / "a.png", photo())
    code, _, err = invoke("upscale", "photos\\a.png", "-m", "bicubic")
    assert code == 2 and err.strip() == (
        "error (usage): input not found: photos\\a.png "
        "(folders are separated by / here: photos/a.png)"
    ), err
    code, _, err = invoke("upscale", "C:\\Users\\me\\a.png", "-m", "bicubic")
    assert code == 2 and err.strip().endswith(
        "(a Windows path: give the path as this system names it, with / between folders; "
        "under WSL, C:\\ is /mnt/c)"
    ), err
    code, _, err = invoke("upscale", "photos\\b.png", "-m", "bicubic")  # neither is there
    assert code == 2 and err.strip() == "error (usage): input not found: photos\\b.png", err
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png"]


def test_an_empty_model_name_with_json_is_one_error_object(tmp_path: Path) -> None:
    code, out, err = invoke("upscale", tmp_path, "-m", "", "--json")
    assert code == 2 and err.startswith("error (usage): an empty model name")
    assert json.loads(out) == {
        "type": "error",
        "kind": "usage",
        "message": "an empty model name: name a model ('pocketsr models list') or a weights file",
        "exit_code": 2,
    }


@pytest.mark.parametrize(
    "args",
    [
        ("eval", ""),
        ("report", ""),
        ("report", "log.jsonl", "-o", ""),
        ("bench", "--folder", ""),
        ("upscale", "here.png", "--report", ""),
        ("upscale", ".", "--glob", ""),
    ],
)
def test_an_empty_path_or_pattern_is_a_usage_error_in_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "here.png", photo())
    (tmp_path / "log.jsonl").write_text("")
    code, _, err = invoke(*args)
    assert code == 2, err
    assert "an empty path" in err or "is no pattern" in err
    # One line, as the commands' own usage errors, not Click's usage box.
    assert len(err.strip().splitlines()) == 1 and err.startswith("error (usage): "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.png", "log.jsonl"]


@pytest.mark.parametrize("where", [("", "-o", "out"), (".", "-o", "")])
def test_an_empty_path_is_a_usage_error_not_this_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: tuple[str, str, str]
) -> None:
    """``pocketsr upscale "$SRC"`` with ``SRC`` unset must not upscale whatever folder the
    shell is in."""
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "here.png", photo())
    code, _, err = invoke("upscale", *where, *FAST)
    assert code == 2
    assert "an empty path" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.png"]


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not found out image by image after each has been upscaled for nothing."""
    save(tmp_path / "a.png", photo())
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        code, _, err = invoke("upscale", tmp_path / "a.png", "-o", out, *FAST)
        assert code == 2
        assert f"cannot write to the output folder {out}: {tmp_path / 'afile'} is a file" in err

    import os
    import types

    from pocketsr_cli import atomicfile

    real = os.statvfs
    read_only = str(tmp_path / "ro")
    (tmp_path / "ro").mkdir()

    def statvfs(path: object) -> object:
        if str(path) == read_only:
            return types.SimpleNamespace(f_flag=os.ST_RDONLY)
        return real(path)  # type: ignore[arg-type]

    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", tmp_path / "broken", *FAST)
    assert code == 2 and "is a symbolic link to nothing that exists" in err
    (tmp_path / "broken").unlink()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", tmp_path / "loop", *FAST)
    assert code == 2 and "is a symbolic link that loops back on itself" in err
    (tmp_path / "loop").unlink()

    monkeypatch.setattr(atomicfile.os, "statvfs", statvfs)
    code, stdout, _ = invoke(
        "upscale", tmp_path / "a.png", "-o", tmp_path / "ro" / "new", *FAST, "--json"
    )
    assert code == 2
    assert json.loads(stdout)["message"].endswith(f"{read_only} is on a read-only file system")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "afile", "ro"]


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-o /proc/xx``: /proc looks writable to root (permissions, a read-write mount), yet
    makes no folder, so each image failed on its own ("cannot write /proc/xx/00.jpg: No
    such file or directory", exit 1).  A folder is made and removed where the output folder
    would be made; nothing of it is left, whether it works or not."""
    import errno

    save(tmp_path / "a.png", photo())
    pseudo = tmp_path / "pseudo"  # stands for /proc: a folder that refuses new folders
    pseudo.mkdir()
    real = os.mkdir

    def mkdir(path: object, *args: object, **kwargs: object) -> None:
        if os.path.dirname(os.fspath(path)) == str(pseudo):  # type: ignore[call-overload]
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", pseudo / "xx" / "yy", *FAST)
    assert code == 2 and "failed" not in err
    assert " ".join(err.split()) == (
        f"error (usage): cannot write to the output folder {pseudo / 'xx' / 'yy'}: no folder "
        f"can be made in {pseudo} (No such file or directory)"
    )
    assert list(pseudo.iterdir()) == []
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", tmp_path / "new" / "out", *FAST)
    assert code == 0, err
    assert [str(p.relative_to(tmp_path)) for p in sorted(tmp_path.rglob("*"))] == [
        "a.png",
        "new",
        "new/out",
        "new/out/a.png",
        "pseudo",
    ]


def test_an_existing_output_folder_that_refuses_new_files_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-o /proc``, or a folder on a read-only mount that statvfs does not flag: writable
    by permissions (to root, whom they do not stop, always), yet no file can be made there,
    so each image failed on its own with the same line (exit 1).  A hidden file is made
    there and removed at once; nothing of it is left, whether it works or not.  The
    refusal is simulated (os.open raising EROFS), as chmod does not stop root."""
    import errno

    save(tmp_path / "a.png", photo())
    ro = tmp_path / "ro"  # stands for a read-only mount
    ro.mkdir()
    real = os.open

    def refusing(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT and os.path.dirname(os.fspath(path)) == str(ro):  # type: ignore[call-overload]
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing)
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", ro, *FAST)
    assert code == 2 and "failed" not in err
    assert " ".join(err.split()) == (
        f"error (usage): cannot write to the output folder {ro}: no file can be made in "
        f"{ro} (Read-only file system)"
    )
    assert list(ro.iterdir()) == []
    monkeypatch.setattr(os, "open", real)
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", ro, *FAST)
    assert code == 0, err
    assert [p.name for p in ro.iterdir()] == ["a.png"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")
def test_proc_as_the_output_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    """``-o /proc``: as root, permissions allow it, yet /proc makes no file; as another
    user, permissions refuse it.  Either way one line, exit 2, not a failure per image."""
    save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", "/proc", *FAST)
    assert code == 2 and "failed" not in err
    line = " ".join(err.split())  # as root: "no file can be made in /proc (No such file…)"
    assert line.startswith("error (usage): cannot write to the output folder /proc: ")


def test_an_output_folder_that_cannot_even_be_looked_at_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name in the path past NAME_MAX, the whole path past PATH_MAX, or a folder on the
    way that may not be entered: looking at the folder (``stat``) raises there, which ended
    the command in a traceback and "(this is a bug)", exit 1."""

    save(tmp_path / "a.png", photo())
    too_long = tmp_path / ("n" * 256) / "out"
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", too_long, *FAST)
    assert code == 2, err
    assert f"cannot write to the output folder {too_long}: the name 'nnnnnnnnnn…nnnnnnnnnn'" in err
    assert "in it has 256 bytes, more than its file system allows" in err
    deep = tmp_path.joinpath(*["d" * 200] * 25)  # each name fits, the path (5000+ bytes) not
    code, stdout, _ = invoke("upscale", tmp_path / "a.png", "-o", deep, *FAST, "--json")
    assert code == 2
    assert "it is longer than this system allows" in json.loads(stdout)["message"]
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", tmp_path / ("n" * 256 + ".png"))
    assert code == 2 and "looks like an image file name" in err

    locked = tmp_path / "locked"  # as a folder without search permission answers, even root
    locked.mkdir()
    unenterable(locked, monkeypatch)
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", locked / "sub" / "out", *FAST)
    assert code == 2, err
    assert f"{locked} may not be entered (permission denied)" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "locked"]


def test_an_output_named_like_an_image_file_is_refused(tmp_path: Path) -> None:
    """``-o big.jpg`` meant one output file; it would have made a folder called big.jpg."""
    save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", tmp_path / "big.jpg", *FAST)
    assert code == 2 and "takes a folder" in err and "looks like an image file name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    (tmp_path / "odd.png").mkdir()  # a folder of that name that exists is a folder
    code, _, err = invoke("upscale", tmp_path / "a.png", "-o", tmp_path / "odd.png", *FAST)
    assert code == 0, err
    assert (tmp_path / "odd.png" / "a.png").is_file()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    src = save(tmp_path / "a.png", photo())
    code, stdout, _ = invoke("upscale", src, *FAST, "--json", "--dry-run")
    assert code == 0
    (rec,), summary = jsonl(stdout)
    assert rec["status"] == "planned" and rec["reason"] == "dry run"
    assert rec["output"] == str(tmp_path / "a_x2.png")
    assert (rec["out_width"], rec["out_height"]) == (64, 48)
    assert summary["dry_run"] is True
    assert (summary["planned"], summary["ok"], summary["skipped"], summary["failed"]) == (
        1,
        0,
        0,
        0,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_dry_run_says_would_write_and_tells_planned_from_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    save(folder / "new.png", photo(seed=1))
    save(folder / "done.png", photo(seed=2))
    save(tmp_path / "out" / "done.png", photo(seed=2))  # an earlier run wrote this one
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"not a png")
    args = ("upscale", folder, "-o", tmp_path / "out", *FAST, "--dry-run")
    code, stdout, err = invoke(*args)
    assert code == 1 and stdout == ""  # a file that cannot be read fails a dry run too
    assert "would write" in err and "new.png" in err and "skipped" in err
    assert "pocketsr upscale (dry run)" in err
    code, stdout, _ = invoke(*args, "--json")
    recs, summary = jsonl(stdout)
    status = {Path(r["input"]).name: r["status"] for r in recs}
    assert status == {
        "broken.png": "failed",
        "done.png": "skipped",
        "new.png": "planned",
        "notes.txt": "skipped",
    }
    assert (summary["planned"], summary["skipped"], summary["failed"], summary["ok"]) == (
        1,
        2,
        1,
        0,
    )
    assert summary["total"] == 4 and code == 1
    (folder / "broken.png").unlink()
    assert invoke(*args)[0] == 0  # nothing failed: a dry run succeeds
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["done.png"]


def test_a_folder_of_only_sub_folders_is_a_usage_error(tmp_path: Path) -> None:
    save(tmp_path / "in" / "2024" / "a.png", photo())
    save(tmp_path / "in" / "2025" / "b.png", photo())
    code, stdout, err = invoke("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST)
    assert code == 2 and stdout == ""
    assert "no image files in" in err and "2 sub-folder(s): add -r/--recursive" in err
    assert not (tmp_path / "o").exists()
    code, stdout, err = invoke("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "--json")
    (obj,) = [json.loads(line) for line in stdout.splitlines()]
    assert obj["type"] == "error" and obj["kind"] == "usage" and obj["exit_code"] == code == 2
    assert "add -r/--recursive" in obj["message"]
    code, stdout, err = invoke("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "-r")
    assert code == 0, err


def test_sub_folders_left_out_without_recursive_are_warned_of_once(tmp_path: Path) -> None:
    """A folder of images *and* sub-folders, without -r: the sub-folders are said once
    (not the hidden one, the output folder inside it, or a review page's pictures)."""
    folder = tmp_path / "in"
    save(folder / "top.png", photo())
    save(folder / "2024" / "a.png", photo(seed=1))
    save(folder / "2025" / "deeper" / "b.png", photo(seed=2))
    save(folder / ".thumbs" / "c.png", photo(seed=3))
    (folder / "review_files").mkdir()
    (folder / "review_files" / ".pocketsr-report").write_text("")
    out = folder / "out"
    out.mkdir()
    for args in [(folder, "-o", out), (folder, folder, "-o", out, "--width", "64")]:
        code, _, err = invoke("upscale", *args, *FAST)
        assert code == 0, err
        note = f"{folder} has 2 sub-folders not scanned (add -r/--recursive to upscale its images"
        assert err.count(note) == 1, err  # the planned (--width) run lists inputs first
    code, _, err = invoke("upscale", folder, "-o", out, *FAST, "-r", "--overwrite")
    assert code == 0 and "not scanned (add" not in err, err
    assert (out / "2025" / "deeper" / "b.png").is_file()


def test_a_run_that_writes_nothing_leaves_no_output_folder_it_made(tmp_path: Path) -> None:
    """Every input failed: the -o folder the run made (and those above it) are removed,
    an -o folder that was there before stays, and so do the folders that got an output;
    the sub-folders made to mirror a tree for inputs that failed go too."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    out = tmp_path / "made" / "deeper" / "out"
    for args in [(), ("--dry-run",)]:
        code, _, err = invoke("upscale", broken, "-o", out, *FAST, *args)
        assert code == 1 and "failed" in err, err
        assert not (tmp_path / "made").exists()
    (tmp_path / "there").mkdir()
    code, _, err = invoke("upscale", broken, "-o", tmp_path / "there", *FAST)
    assert code == 1 and (tmp_path / "there").is_dir() and not any((tmp_path / "there").iterdir())
    tree = tmp_path / "in"
    save(tree / "ok.png", photo())
    save(tree / "a" / "ok.png", photo(seed=1))
    (tree / "b" / "c").mkdir(parents=True)
    (tree / "b" / "c" / "broken.png").write_bytes(broken.read_bytes())
    code, _, err = invoke("upscale", tree, "-r", "-o", tmp_path / "there", *FAST)
    assert code == 1, err
    made = sorted(str(p.relative_to(tmp_path / "there")) for p in (tmp_path / "there").rglob("*"))
    assert made == ["a", "a/ok.png", "ok.png"]


def test_tiffs_of_samples_it_cannot_read_are_refused_in_a_users_words(tmp_path: Path) -> None:
    """Floating-point, 32-bit and signed TIFFs failed with 'unsupported TIFF (32-bit
    samples, photometric interpretation 2)' or 'unsupported sample type int16'."""
    ramp = np.arange(24 * 32).reshape(24, 32)
    Image.fromarray((ramp / ramp.max()).astype(np.float32)).save(tmp_path / "hdr.tif")
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "deep.tif")
    cv2.imwrite(str(tmp_path / "signed.tif"), (ramp * 10 - 3000).astype(np.int16))
    code, stdout, err = invoke("upscale", tmp_path, "-o", tmp_path / "out", *FAST, "--json")
    assert code == 1, err
    errors = {Path(r["input"]).name: r["error"] for r in jsonl(stdout)[0]}
    assert errors == {
        "hdr.tif": "32-bit floating-point TIFF is not supported (8- and 16-bit integer TIFFs "
        "are); convert it to 16-bit",
        "deep.tif": "32-bit signed-integer TIFF is not supported (8- and 16-bit "
        "unsigned-integer TIFFs are); convert it to 16-bit unsigned",
        "signed.tif": "16-bit signed-integer TIFF is not supported (8- and 16-bit "
        "unsigned-integer TIFFs are); convert it to 16-bit unsigned",
    }


def test_a_glob_matching_nothing_is_a_usage_error(tmp_path: Path) -> None:
    save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", tmp_path, "--glob", "*.webp", *FAST)
    assert code == 2 and "no image files matching --glob '*.webp'" in err
    (tmp_path / "empty").mkdir()
    code, _, err = invoke("upscale", tmp_path / "empty", *FAST)
    assert code == 2 and "no image files in" in err and "recursive" not in err


def test_glob_ignores_case(tmp_path: Path) -> None:
    save(tmp_path / "in" / "IMG_0001.JPG", photo(seed=1))
    save(tmp_path / "in" / "img_0002.jpg", photo(seed=2))
    save(tmp_path / "in" / "other.png", photo(seed=3))
    args = ("upscale", tmp_path / "in", "-o", tmp_path / "o", "--glob", "*.jpg", *FAST, "--json")
    code, stdout, err = invoke(*args)
    assert code == 0, err
    recs, summary = jsonl(stdout)
    assert sorted(Path(r["input"]).name for r in recs) == ["IMG_0001.JPG", "img_0002.jpg"]
    assert summary["ok"] == 2 and (tmp_path / "o" / "IMG_0001.JPG").is_file()


def test_json_puts_only_json_on_stdout_and_leaves_the_log_off_stderr(tmp_path: Path) -> None:
    save(tmp_path / "in" / "a.png", photo())
    (tmp_path / "in" / "b.png").write_bytes(b"broken")
    args = ("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST)
    code, stdout, err = invoke(*args)
    assert code == 1 and stdout == ""  # without --json upscale's output is a log: stderr
    assert "ok      " in err and "written" in err and "failed" in err
    code, stdout, err = invoke(*args, "--json", "--overwrite")
    recs, summary = jsonl(stdout)  # every stdout line is JSON
    assert [r["status"] for r in recs] == ["ok", "failed"] and summary["failed"] == 1
    # The per-image lines and the summary table are the JSON's job now; failures and
    # errors still reach a person watching stderr.
    assert "ok      " not in err and "written" not in err
    assert "failed" in err and "b.png" in err


def test_outscale_and_suffix(tmp_path: Path) -> None:
    src = save(tmp_path / "a.png", photo())
    code, _, err = invoke("upscale", src, "-m", "bicubic", "--outscale", "1.5", "--suffix", "_big")
    assert code == 0, err
    with Image.open(tmp_path / "a_big.png") as im:
        assert im.size == (48, 36)


def test_tiled_equals_whole(tmp_path: Path) -> None:
    src = save(tmp_path / "a.png", photo(70, 90))
    assert invoke("upscale", src, *FAST, "-q", "--tile", "0", "--suffix", "_w")[0] == 0
    assert invoke("upscale", src, *FAST, "-q", "--tile", "64", "--suffix", "_t")[0] == 0
    whole = np.asarray(Image.open(tmp_path / "a_w.png")).astype(int)
    tiled = np.asarray(Image.open(tmp_path / "a_t.png")).astype(int)
    assert np.abs(whole - tiled).max() <= 1


def test_community_weights_file(tmp_path: Path) -> None:
    """A Real-ESRGAN compact (SRVGG) file loaded through spandrel."""
    import torch
    from safetensors.torch import save_file

    from pocketsr_cli.weights.community import import_spandrel

    compact = import_spandrel().architectures.Compact.Compact
    torch.manual_seed(0)
    net = compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    weights = tmp_path / "tiny compact.safetensors"
    save_file(net.state_dict(), str(weights))
    src = save(tmp_path / "a.png", photo())
    code, stdout, err = invoke("upscale", src, "-m", weights, "--json")
    assert code == 0, err
    (rec,), _ = jsonl(stdout)
    assert rec["status"] == "ok" and (rec["out_width"], rec["out_height"]) == (64, 48)


ERRORS = [
    (("upscale", "missing.png"), 2, "not found"),
    (("upscale", "{src}", "--device", "tpu"), 2, "unknown device"),
    (("upscale", "{src}", "--tile", "huge"), 2, "--tile"),
    (("upscale", "{src}", "--tile", "8"), 2, "--tile 8 is too small: use 16 or more, or 0"),
    (("upscale", "{src}", "--tile", "34"), 2, "--tile 34 leaves 2 px of each tile"),
    (("upscale", "{src}", "--tile", "40", "--tile-overlap", "12"), 2, "use --tile 48 or more"),
    (("upscale", "{src}", "--format", "gif"), 2, "--format"),
    (("upscale", "{src}", "--quality", "0"), 2, "quality"),
    (("upscale", "{src}", "-o", "{dir}", "--suffix", ""), 2, "overwrite input"),
    (("upscale", "{src}", "-m", "no-such-model"), 3, "unknown model"),
    (("upscale", "{src}", "-m", "pocketsr-nano-x4"), 3, "is no longer bundled: its visible"),
    (("upscale", "{src}", "-m", "{dir}/missing.pth"), 3, "not found"),
    (("upscale", "{src}", "-m", "{dir}/junk.pth"), 3, "cannot read weights"),
    (("upscale", "{src}", "-m", "bicubic", "--bogus"), 2, "No such option"),
    (("upscale", "{src}", "--width", "0"), 2, "--width takes a whole number of pixels, 1 or"),
    (("upscale", "{src}", "--height", "-5"), 2, "1 or more, not '-5'"),
    (("upscale", "{src}", "--long-edge", "4K"), 2, "for 4K (3840×2160) give --long-edge 3840"),
    (("upscale", "{src}", "--width", "9", "--height", "9"), 2, "cannot be combined"),
    (("upscale", "{src}", "--outscale", "2", "--long-edge", "9"), 2, "cannot be combined"),
    (("upscale",), 2, "Missing argument"),
]


@pytest.mark.parametrize(("args", "code", "needle"), ERRORS)
def test_json_errors_are_one_json_object_on_stdout(
    tmp_path: Path, args: tuple, code: int, needle: str
) -> None:
    src = save(tmp_path / "a.png", photo())
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    argv = [a.format(src=src, dir=tmp_path) for a in args]
    got, stdout, err = invoke(*argv, "--json")
    assert got == code, err
    (obj,) = [json.loads(line) for line in stdout.splitlines()]
    assert obj.keys() == {"type", "kind", "message", "exit_code"}
    assert obj["type"] == "error" and obj["exit_code"] == code
    assert obj["kind"] in (("usage", "device") if code == 2 else ("model",))
    assert needle in obj["message"] and needle in err  # the human message stays on stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "junk.pth"]


@pytest.mark.parametrize(("args", "code", "needle"), ERRORS)
def test_usage_and_model_errors(tmp_path: Path, args: tuple, code: int, needle: str) -> None:
    src = save(tmp_path / "a.png", photo())
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    argv = [a.format(src=src, dir=tmp_path) for a in args]
    got, out, err = invoke(*argv)
    assert got == code, err
    assert needle in err and out == ""  # JSON error objects only with --json
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "junk.pth"]


def test_ctrl_c_exits_130_and_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli import inference

    for i in range(4):
        save(tmp_path / "in" / f"{i}.png", photo(seed=i))
    calls = {"n": 0}
    original = inference.Upscaler.upscale

    def interrupt_on_third(self, pixels, on_tile=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, pixels, on_tile)

    monkeypatch.setattr(inference.Upscaler, "upscale", interrupt_on_third)
    code, stdout, err = invoke("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "--json")
    assert code == 130, err
    written = sorted(p.name for p in (tmp_path / "o").rglob("*"))
    assert written == ["0.png", "1.png"]  # complete files only, no temporaries
    for name in written:
        with Image.open(tmp_path / "o" / name) as im:
            im.load()
    assert jsonl(stdout)[1]["interrupted"] is True


def test_default_model_is_the_bundled_pocketsr_generator(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", photo(24, 32))
    code, out, err = invoke("upscale", src, "--json", "-q")
    assert code == 0, err
    (rec,), _ = jsonl(out)
    assert rec["model"] == "pocketsr-compact-x4"
    assert (rec["out_width"], rec["out_height"]) == (128, 96)
    code, out, err = invoke("upscale", src, "-s", "2", "--json", "-q", "--suffix", "_two")
    assert code == 0, err
    (rec,), _ = jsonl(out)
    assert rec["model"] == "pocketsr-compact-x2" and rec["out_width"] == 64


def record_of(path: Path) -> dict:
    """The pocketsr record an output carries (embedded, or a BMP's sidecar)."""
    from pocketsr_cli.imageio import read_provenance_text

    text = read_provenance_text(path)
    assert text is not None, f"{path} carries no record"
    return json.loads(text)


def test_a_factor_the_model_lacks_runs_the_nearest_larger_variant_and_resizes(
    tmp_path: Path,
) -> None:
    src = save(tmp_path / "in.png", photo(24, 32))
    code, out, err = invoke("upscale", src, "-s", "3", "--json")
    assert code == 0, err
    assert "pocketsr-compact has no ×3 variant: running ×4 and resizing to ×3" in err
    (rec,), _ = jsonl(out)
    assert rec["model"] == "pocketsr-compact-x4" and Path(rec["output"]).name == "in_x3.png"
    assert (rec["out_width"], rec["out_height"]) == (96, 72)
    record = record_of(tmp_path / "in_x3.png")
    assert (record["model"], record["model_scale"], record["target"]) == (
        "pocketsr-compact-x4",
        4,
        "x3",
    )


def test_a_factor_above_the_largest_variant_enlarges_with_lanczos(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", photo(24, 32))
    code, out, err = invoke("upscale", src, "-m", "pocketsr-compact", "-s", "8", "--json")
    assert code == 0, err
    line = "pocketsr-compact has no ×8 variant (largest ×4): running ×4 and enlarging to ×8 with"
    assert line in " ".join(err.split())
    (rec,), _ = jsonl(out)
    assert rec["model"] == "pocketsr-compact-x4" and rec["output"].endswith("in_x8.png")
    assert (rec["out_width"], rec["out_height"]) == (256, 192)


def test_scale_picks_the_variant_and_outscale_the_final_size(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", photo(24, 32))
    code, out, err = invoke(
        "upscale", src, "-m", "pocketsr-compact", "-s", "2", "--outscale", "1.5"
    )
    assert code == 0, err
    with Image.open(tmp_path / "in_x1.5.png") as im:
        assert im.size == (48, 36)
    assert record_of(tmp_path / "in_x1.5.png")["model"] == "pocketsr-compact-x2"
    # -s 3 has no variant: ×4 runs, and --outscale (not -s) sets the size.
    code, out, err = invoke(
        "upscale", src, "-m", "pocketsr-compact", "-s", "3", "--outscale", "2", "--json"
    )
    assert code == 0, err
    assert "pocketsr-compact has no ×3 variant: running ×4" in err and "resizing" not in err
    (rec,), _ = jsonl(out)
    assert rec["model"] == "pocketsr-compact-x4" and (rec["out_width"], rec["out_height"]) == (
        64,
        48,
    )
    # Without -s, --outscale keeps the model's own variant (×4 for the default), as before.
    code, out, err = invoke("upscale", src, "--outscale", "2", "--json", "--suffix", "_o")
    assert code == 0, err
    (rec,), _ = jsonl(out)
    assert rec["model"] == "pocketsr-compact-x4" and rec["out_width"] == 64


@pytest.mark.parametrize(
    ("option", "value", "size", "name"),
    [
        ("--width", "100", (100, 75), "in_w100.png"),
        ("--height", "60", (80, 60), "in_h60.png"),
        ("--long-edge", "50", (50, 38), "in_l50.png"),
    ],
)
def test_size_targets(
    tmp_path: Path, option: str, value: str, size: tuple[int, int], name: str
) -> None:
    src = save(tmp_path / "in.png", photo(24, 32))
    code, out, err = invoke("upscale", src, "-m", "lanczos", option, value, "--json")
    assert code == 0, err
    (rec,), _ = jsonl(out)
    assert Path(rec["output"]).name == name and (rec["out_width"], rec["out_height"]) == size
    with Image.open(tmp_path / name) as im:
        assert im.size == size
    assert record_of(tmp_path / name)["target"] == name[3:-4]


def test_long_edge_follows_the_longer_side_and_suffix_overrides(tmp_path: Path) -> None:
    src = save(tmp_path / "tall.png", photo(32, 24))  # portrait: 24 wide, 32 high
    code, _, err = invoke("upscale", src, "-m", "bicubic", "--long-edge", "50", "--suffix", "_big")
    assert code == 0, err
    with Image.open(tmp_path / "tall_big.png") as im:
        assert im.size == (38, 50)


def test_a_size_target_picks_each_images_smallest_sufficient_variant(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    save(folder / "a_big.png", photo(24, 32))  # needs ×2 to reach 64 wide
    save(folder / "b_small.png", photo(12, 16))  # needs ×4
    save(folder / "c_tiny.png", photo(6, 8, seed=3))  # needs ×8: ×4, then Lanczos
    code, out, err = invoke("upscale", folder, "--width", "64", "-o", tmp_path / "o", "--json")
    assert code == 0, err
    recs, summary = jsonl(out)
    got = {Path(r["input"]).name: (r["model"], r["out_width"], r["out_height"]) for r in recs}
    assert got == {
        "a_big.png": ("pocketsr-compact-x2", 64, 48),
        "b_small.png": ("pocketsr-compact-x4", 64, 48),
        "c_tiny.png": ("pocketsr-compact-x4", 64, 48),
    }
    assert summary["model"] == "pocketsr-compact-x2, pocketsr-compact-x4"
    assert record_of(tmp_path / "o" / "a_big.png")["model_scale"] == 2


def test_dry_run_shows_the_computed_size(tmp_path: Path) -> None:
    src = save(tmp_path / "in.jpg", photo(24, 32))
    code, out, err = invoke("upscale", src, "--long-edge", "4096", "--dry-run")
    assert code == 0, err
    assert "would write" in err and "32×24 → 4096×3072" in err and "in_l4096.jpg" in err
    code, out, err = invoke("upscale", src, "--height", "100", "--dry-run", "--json")
    (rec,), _ = jsonl(out)
    assert rec["status"] == "planned" and (rec["out_width"], rec["out_height"]) == (133, 100)
    assert rec["model"] == "pocketsr-compact-x4"  # ×4.17 is needed: the largest, then Lanczos
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jpg"]


# --- provenance ---------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif", "bmp"])
def test_every_output_records_how_it_was_made(tmp_path: Path, ext: str) -> None:
    from pocketsr_cli import __version__

    src = save(tmp_path / f"in.{ext}", photo())
    assert invoke("upscale", src, *FAST, "-q", "--strip-metadata")[0] == 0
    out = tmp_path / f"in_x2.{ext}"
    record = record_of(out)
    assert record["model"] == "bicubic" and record["model_sha256"] is None
    assert (record["model_scale"], record["target"], record["width"], record["height"]) == (
        2,
        "x2",
        64,
        48,
    )
    assert record["pocketsr"] == __version__ and record["ensemble"] == "none"
    assert ("quality" in record) == (ext in ("jpg", "webp"))
    assert (tmp_path / f"in_x2.{ext}.pocketsr.json").exists() == (ext == "bmp")
    # --no-provenance writes none (and removes the sidecar of an earlier BMP output).
    assert invoke("upscale", src, *FAST, "-q", "--overwrite", "--no-provenance")[0] == 0
    from pocketsr_cli.imageio import read_provenance_text

    assert read_provenance_text(out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"in.{ext}", f"in_x2.{ext}"]


def test_a_bmp_whose_sidecar_cannot_be_written_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was reported failed but left in place, whole and unrecorded: every later run then
    kept it as another program's and never redid it."""
    from pocketsr_cli.errors import ImageWriteError
    from pocketsr_cli.imageio import record as record_module

    src = save(tmp_path / "in.bmp", photo())

    def full(image: Path, record: str | None) -> None:
        raise ImageWriteError(f"cannot write {image}.pocketsr.json: No space left on device")

    monkeypatch.setattr(record_module, "stage_sidecar", full)
    code, _, err = invoke("upscale", src, *FAST)
    assert code == 1 and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bmp"]
    monkeypatch.undo()
    assert invoke("upscale", src, *FAST, "-q")[0] == 0  # the next run does it
    outputs = ["in.bmp", "in_x2.bmp", "in_x2.bmp.pocketsr.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == outputs
    # With --overwrite, a sidecar that cannot be written leaves the older output as it was.
    before = (tmp_path / "in_x2.bmp").read_bytes(), (tmp_path / outputs[2]).read_bytes()
    monkeypatch.setattr(record_module, "stage_sidecar", full)
    code, _, err = invoke("upscale", src, *FAST, "--overwrite", "-s", "2", "--quality", "80")
    assert code == 1 and "No space left on device" in err
    after = (tmp_path / "in_x2.bmp").read_bytes(), (tmp_path / outputs[2]).read_bytes()
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == outputs


def test_the_record_names_the_weights_and_keeps_the_cameras_xmp(tmp_path: Path) -> None:
    from pocketsr_cli.weights.resolve import find_spec

    xmp = (
        b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        b"<dc:creator>Ada</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
        b'<?xpacket end="w"?>'
    )
    src = save(tmp_path / "cam.jpg", photo(24, 32), xmp=xmp)
    assert invoke("upscale", src, "-q")[0] == 0
    out = tmp_path / "cam_x4.jpg"
    record = record_of(out)
    spec = find_spec("pocketsr-compact-x4")
    assert spec.weights is not None and record["model_sha256"] == spec.weights.sha256
    with Image.open(out) as im:
        assert b"<dc:creator>Ada</dc:creator>" in im.info["xmp"]
    # Upscaled again (named directly), the output carries one record: the new one.
    assert invoke("upscale", out, "-q", "-m", "bicubic", "-s", "2")[0] == 0
    with Image.open(tmp_path / "cam_x4_x2.jpg") as im:
        packet = im.info["xmp"]
    assert packet.count(b"pocketsr:record>") == 2 and b"Ada" in packet  # open + close tag
    assert record_of(tmp_path / "cam_x4_x2.jpg")["model"] == "bicubic"


def test_skip_existing_compares_the_record(tmp_path: Path) -> None:
    src = save(tmp_path / "in.jpg", photo())
    out = tmp_path / "in_x2.jpg"
    assert invoke("upscale", src, *FAST, "-q")[0] == 0
    stamp = out.stat().st_mtime_ns
    # Same settings: skipped as before.
    code, stdout, err = invoke("upscale", src, *FAST, "--json")
    (rec,), summary = jsonl(stdout)
    assert code == 0 and rec["status"] == "skipped" and rec["reason_code"] == "exists"
    assert summary["conflicts"] == 0 and "warning" not in err
    # Other settings: kept, said per image and in the summary, exit 0.
    code, stdout, err = invoke("upscale", src, "-m", "lanczos", "-s", "2")
    assert code == 0 and stdout == ""
    flat = " ".join(err.split())
    assert "skipped" in flat and "output exists but was made with other settings" in flat
    assert "model bicubic → lanczos" in flat and "use --overwrite" in flat
    assert "1 existing output(s) were kept" in flat
    code, stdout, err = invoke("upscale", src, *FAST, "--quality", "80", "--json", "-q")
    (rec,), summary = jsonl(stdout)
    assert rec["reason_code"] == "different-settings" and "quality 95 → 80" in rec["reason"]
    assert summary["skipped"] == 1 and summary["conflicts"] == 1 and code == 0
    assert "1 existing output(s) were kept" in " ".join(err.split())
    assert out.stat().st_mtime_ns == stamp
    # --no-provenance compares nothing: existing outputs are skipped by name.
    code, stdout, _ = invoke(
        "upscale", src, "-m", "lanczos", "-s", "2", "--json", "--no-provenance"
    )
    assert jsonl(stdout)[0][0]["reason_code"] == "exists"
    # --overwrite redoes it, with the new record.
    assert invoke("upscale", src, "-m", "lanczos", "-s", "2", "-q", "--overwrite")[0] == 0
    assert record_of(out)["model"] == "lanczos"


def _bitstream(path: Path) -> bytes:
    """A WebP's picture chunk: ``VP8L`` (lossless) or ``VP8 `` (lossy)."""
    data = path.read_bytes()
    return b"VP8L" if b"VP8L" in data else b"VP8 " if b"VP8 " in data else b"?"


def test_a_quality_asked_for_a_lossless_format_is_said_to_be_unused(tmp_path: Path) -> None:
    # --quality 80 --format png was silently ignored: the user believed the files smaller.
    src = save(tmp_path / "in.jpg", photo(), quality=90)
    for fmt in ("png", "tiff", "bmp"):
        code, _, err = invoke("upscale", src, *FAST, "--format", fmt, "--quality", "80", "-q")
        assert code == 0, err
        assert err.count("--quality 80 is not used") == 1, err  # once per run, not per image
        assert "lossless" in err, err
    for fmt in ("jpg", "webp"):
        code, _, err = invoke("upscale", src, *FAST, "--format", fmt, "--quality", "80", "-q")
        assert code == 0 and "not used" not in err, err
    code, _, err = invoke("upscale", src, *FAST, "--format", "png", "--overwrite", "-q")
    assert code == 0 and "quality" not in err, err  # not asked: nothing to say


def test_a_lossless_webp_stays_lossless_unless_a_quality_is_asked(tmp_path: Path) -> None:
    """It was written lossy at 95 without a word.  Kept as WebP (as itself, or asked as
    WebP) and without --quality it stays lossless, recorded so; --quality N asks for a
    lossy file at N, which a rerun without it tells from its own."""
    arr = photo()
    src = save(tmp_path / "l.webp", arr, lossless=True)
    out = tmp_path / "l_x1.webp"
    code, stdout, err = invoke("upscale", src, "-m", "bicubic", "-s", "1", "--json")
    (rec,), _ = jsonl(stdout)
    assert code == 0 and rec["status"] == "ok" and rec["warnings"] == [], err
    assert _bitstream(out) == b"VP8L" and record_of(out)["quality"] == "lossless"
    with Image.open(out) as im:  # x1 bicubic changes nothing, and nothing was lost
        np.testing.assert_array_equal(np.asarray(im), arr)
    code, stdout, _ = invoke("upscale", src, "-m", "bicubic", "-s", "1", "--json")
    assert jsonl(stdout)[0][0]["reason_code"] == "exists"  # a rerun knows its output
    code, stdout, _ = invoke(
        "upscale", src, "-m", "bicubic", "-s", "1", "--quality", "95", "--json"
    )
    (rec,), _ = jsonl(stdout)
    assert rec["reason_code"] == "different-settings" and "quality lossless → 95" in rec["reason"]
    assert invoke("upscale", src, *FAST, "--quality", "90", "-q")[0] == 0
    assert _bitstream(tmp_path / "l_x2.webp") == b"VP8 "
    assert record_of(tmp_path / "l_x2.webp")["quality"] == 90
    assert invoke("upscale", src, *FAST, "--format", "webp", "-o", tmp_path / "o", "-q")[0] == 0
    assert _bitstream(tmp_path / "o" / "l.webp") == b"VP8L"
    # A lossy WebP stays lossy; a PNG asked as WebP is lossy at the default 95.
    save(tmp_path / "lossy.webp", arr, quality=90)
    save(tmp_path / "p.png", arr)
    assert invoke("upscale", tmp_path / "lossy.webp", tmp_path / "p.png", *FAST, "-o",
                  tmp_path / "w", "--format", "webp", "-q")[0] == 0  # fmt: skip
    for name in ("lossy.webp", "p.webp"):
        assert _bitstream(tmp_path / "w" / name) == b"VP8 ", name
        assert record_of(tmp_path / "w" / name)["quality"] == 95


def test_the_ensemble_is_recorded_shown_and_compared(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", photo())
    out = tmp_path / "in_x2.png"
    code, stdout, err = invoke("upscale", src, *FAST, "--ensemble", "flip8", "--json")
    assert code == 0, err
    (rec,), summary = jsonl(stdout)
    assert (rec["ensemble"], rec["ensemble_weight"]) == ("flip8", None)
    assert (summary["ensemble"], summary["ensemble_weight"]) == ("flip8", None)
    assert "ensemble flip8" in " ".join(err.split())
    assert record_of(out)["ensemble"] == "flip8"
    # Another ensemble, or another weight, is other settings: kept, with the reason.
    code, stdout, _ = invoke("upscale", src, *FAST, "--ensemble", "pad", "--json", "-q")
    (rec,), _ = jsonl(stdout)
    assert rec["reason_code"] == "different-settings"
    assert "ensemble flip8 → pad" in rec["reason"]
    assert invoke("upscale", src, *FAST, "--ensemble", "pad", "-q", "--overwrite")[0] == 0
    assert (record_of(out)["ensemble"], record_of(out)["ensemble_weight"]) == ("pad", 0.5)
    args = ("--ensemble", "pad", "--ensemble-weight", "1.5", "--json", "-q")
    (rec,), _ = jsonl(invoke("upscale", src, *FAST, *args)[1])
    assert "ensemble weight 0.5 → 1.5" in rec["reason"]
    # The record of an earlier version's bare --ensemble ("ensemble": true) is pad at 0.5.
    legacy = {k: v for k, v in record_of(out).items() if k != "ensemble_weight"}
    info = PngImagePlugin.PngInfo()
    info.add_text("pocketsr", json.dumps(dict(legacy, ensemble=True)))
    with Image.open(out) as im:
        im.save(out, pnginfo=info)
    code, stdout, _ = invoke("upscale", src, *FAST, "--ensemble", "pad", "--json", "-q")
    assert jsonl(stdout)[0][0]["reason_code"] == "exists"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ensemble", "fancy"), "takes none, pad or flip8"),
        (("--ensemble", "-q"), "bare --ensemble of earlier versions is --ensemble pad"),
        (("--ensemble", "flip8", "--ensemble-weight", "0.7"), "applies to --ensemble pad"),
        (("--ensemble", "pad", "--ensemble-weight", "9"), "takes a number from 0 to 3, not '9'"),
        (("--ensemble-weight", "nan", "--ensemble", "pad"), "a number from 0 to 3, not 'nan'"),
    ],
)
def test_bad_ensembles_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    src = save(tmp_path / "in.png", photo())
    code, _, err = invoke("upscale", src, *FAST, *args)
    assert code == 2 and message in " ".join(err.split()), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def _a_rerun_knows_its_output(src: Path, out: Path) -> None:
    """The same run again finds ``src``'s output made with its settings (``exists``, no
    conflict), and one at another scale made with others (``different-settings``)."""
    code, stdout, _ = invoke("upscale", src.parent, "-o", out, *FAST, "--json")
    (rec,), summary = jsonl(stdout)
    assert code == 0 and rec["reason_code"] == "exists" and summary["conflicts"] == 0, rec
    _, stdout, _ = invoke("upscale", src.parent, "-o", out, "-m", "bicubic", "-s", "3", "--json")
    (rec,), _ = jsonl(stdout)
    assert rec["reason_code"] == "different-settings" and "×2 → ×3" in rec["reason"], rec


def test_a_jpeg_whose_camera_xmp_leaves_no_room_for_the_record_is_known_again(
    tmp_path: Path,
) -> None:
    """An input whose XMP packet fits a JPEG's 64 KiB segment alone, but not with the
    record, was written without the record: the next run called its own output "made by
    another program" (``unrecorded``) and kept it even with other settings.  The record
    now goes in a comment segment, so the next run knows the output for what it is."""
    from pocketsr_cli.imageio.jpeg_encode import XMP_MAX

    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/'
        b'elements/1.1/"><dc:source>%s</dc:source></rdf:Description></rdf:RDF></x:xmpmeta>'
    )
    packet %= b"c" * (XMP_MAX - 40 - len(packet))
    src = save(tmp_path / "in" / "a.jpg", photo(), xmp=packet, quality=95)
    out = tmp_path / "out"
    code, stdout, err = invoke("upscale", src.parent, "-o", out, *FAST, "--json")
    (rec,), _ = jsonl(stdout)
    assert code == 0 and rec["status"] == "ok", err
    with Image.open(out / "a.jpg") as im:
        assert im.info["xmp"] == packet  # the camera's, whole
    _a_rerun_knows_its_output(src, out)


@pytest.mark.parametrize("ext", ["webp", "tif"])
def test_a_webp_or_tiff_whose_camera_xmp_is_malformed_is_known_again(
    tmp_path: Path, ext: str
) -> None:
    """An input whose XMP packet is cut short (no ``</rdf:RDF>``, so the record cannot join
    it) was written as WebP or TIFF without the record: the next run called its own output
    "made by another program" (``unrecorded``) and kept it even with other settings.  The
    output's packet now holds the record (the malformed one is not copied, as its line
    says), so the next run knows the output for what it is."""
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/'
        b'elements/1.1/"><dc:source>camera</dc:source></rdf:Description>'
    )
    where = {"xmp": packet} if ext == "webp" else {"tiffinfo": {700: packet}}
    src = save(tmp_path / "in" / f"a.{ext}", photo(), **where)
    out = tmp_path / "out"
    code, stdout, err = invoke("upscale", src.parent, "-o", out, *FAST, "--json")
    (rec,), _ = jsonl(stdout)
    assert code == 0 and rec["status"] == "ok", err
    assert any("XMP packet is malformed" in w and "not copied" in w for w in rec["warnings"])
    _a_rerun_knows_its_output(src, out)


def test_an_output_without_a_record_is_never_replaced_silently(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", photo())
    edited = save(tmp_path / "in_x2.png", photo(48, 64, seed=9))  # retouched by hand
    before = edited.read_bytes()
    code, stdout, err = invoke("upscale", src, *FAST, "--json")
    (rec,), summary = jsonl(stdout)
    assert code == 0 and rec["status"] == "skipped" and rec["reason_code"] == "unrecorded"
    assert "no pocketsr record" in rec["reason"] and "--overwrite" in rec["reason"]
    assert summary["conflicts"] == 1 and "were kept" in err
    assert "use --overwrite to redo them" in " ".join(err.split())  # the flag, not the keyword
    assert edited.read_bytes() == before


def test_earlier_outputs_are_recognised_whatever_the_factor(tmp_path: Path) -> None:
    folder = tmp_path / "shoot"
    save(folder / "coffee.jpg", photo(seed=1))
    assert invoke("upscale", folder, *FAST, "-q")[0] == 0  # coffee_x2.jpg
    assert invoke("upscale", folder / "coffee.jpg", "-m", "bicubic", "--width", "40", "-q")[0] == 0
    save(folder / "tree_w2.jpg", photo(seed=2))  # a photo whose name merely looks like one
    # An earlier output renamed by hand: recognised by its record.
    (folder / "coffee_x2.jpg").rename(folder / "holiday.jpg")
    save(folder / "pic.bmp", photo(seed=4))
    assert invoke("upscale", folder / "pic.bmp", *FAST, "-q")[0] == 0  # + its sidecar
    code, stdout, err = invoke("upscale", folder, "-m", "bicubic", "-s", "4", "--json")
    assert code == 0, err
    recs, _ = jsonl(stdout)
    by_name = {Path(r["input"]).name: r for r in recs}
    # The sidecar pic_x2.bmp.pocketsr.json is not even reported as "not an image".
    assert sorted(by_name) == [
        "coffee.jpg",
        "coffee_w40.jpg",
        "holiday.jpg",
        "pic.bmp",
        "pic_x2.bmp",
        "tree_w2.jpg",
    ]
    assert by_name["coffee_w40.jpg"]["reason_code"] == "own-output"
    assert "'_w40'" in by_name["coffee_w40.jpg"]["reason"]
    assert by_name["pic_x2.bmp"]["reason_code"] == "own-output"
    assert by_name["holiday.jpg"]["reason_code"] == "own-output"
    assert "by its record" in by_name["holiday.jpg"]["reason"]
    assert by_name["tree_w2.jpg"]["status"] == "ok" and by_name["coffee.jpg"]["status"] == "ok"
    assert not any("_x4_x" in p.name or "_w40_x" in p.name for p in folder.iterdir())
    # Named directly, an earlier output is upscaled.
    code, stdout, _ = invoke(
        "upscale", folder / "holiday.jpg", "-m", "bicubic", "-s", "4", "--json"
    )
    assert code == 0 and jsonl(stdout)[0][0]["status"] == "ok"


def test_compile_option_reaches_the_upscaler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli import inference

    seen: list[bool] = []
    original = inference.Upscaler.__init__

    def spy(self: inference.Upscaler, *args: object, **kwargs: object) -> None:
        seen.append(bool(kwargs.get("compile")))
        kwargs["compile"] = False  # compiling for real takes tens of seconds on a CPU
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.Upscaler, "__init__", spy)
    src = save(tmp_path / "in.png", photo())
    assert invoke("upscale", src, *FAST, "-q")[0] == 0
    assert invoke("upscale", src, *FAST, "-q", "--compile", "--overwrite")[0] == 0
    assert seen == [False, True]


def test_the_print_resolution_is_kept(tmp_path: Path) -> None:
    """A scan at 300 dpi stays a 300-dpi file (it prints larger, as an editor's resample
    keeps the resolution): JFIF density, PNG pHYs, TIFF and BMP resolution."""
    src = tmp_path / "in"
    src.mkdir()
    pixels = Image.fromarray(photo())
    pixels.save(src / "scan.png", dpi=(300, 300))
    pixels.save(src / "cam.jpg", dpi=(240, 240), quality=90)
    pixels.save(src / "page.tif", dpi=(150, 150))
    for fmt in ("png", "jpg", "tif", "bmp"):
        code, _, err = invoke("upscale", src, "-o", tmp_path / fmt, "--format", fmt, *FAST)
        assert code == 0, err
        for stem, dpi in (("scan", 300), ("cam", 240), ("page", 150)):
            with Image.open(tmp_path / fmt / f"{stem}.{fmt}") as im:
                got = im.info.get("dpi")
                assert got is not None and all(abs(v - dpi) < 0.05 for v in got), (fmt, stem, got)


def test_a_jpeg_that_states_no_resolution_gets_none(tmp_path: Path) -> None:
    """JFIF with units 0 (an aspect ratio only) and no EXIF resolution: Pillow reports a
    made-up 72 dpi, which was written into the output as if the photo had said so. A
    resolution the EXIF states (units 0 in JFIF) is kept."""
    src = tmp_path / "in"
    src.mkdir()
    pixels = Image.fromarray(photo())
    camera = Image.Exif()
    camera[0x010F] = "PocketCam"  # EXIF, but no resolution in it
    pixels.save(src / "plain.jpg", quality=90, exif=camera)  # JFIF units 0, density 1:1
    exif = Image.Exif()
    exif[0x011A] = exif[0x011B] = 200.0
    exif[0x0128] = 2  # inches
    pixels.save(src / "exif.jpg", quality=90, exif=exif)
    del exif[0x0128]  # no unit: EXIF's default, inches (Pillow made it 72 dpi)
    pixels.save(src / "nounit.jpg", quality=90, exif=exif)
    buffer = io.BytesIO()
    pixels.save(buffer, "JPEG", quality=90, exif=exif)
    data = bytearray(buffer.getvalue())
    jfif = data.index(b"JFIF\x00")
    data[jfif + 7 : jfif + 12] = b"\x01\x00\x00\x00\x00"  # dpi, density 0: unstated
    (src / "zerojfif.jpg").write_bytes(bytes(data))
    exif[0x011A] = exif[0x011B] = 1 / 3  # a third of a dot per inch: no print size
    pixels.save(src / "tiny.jpg", quality=90, exif=exif)
    for fmt in ("jpg", "png"):
        code, _, err = invoke("upscale", src, "-o", tmp_path / fmt, "--format", fmt, *FAST)
        assert code == 0, err
        with Image.open(tmp_path / fmt / f"plain.{fmt}") as im:
            assert im.info.get("jfif_unit", 0) == 0, im.info  # JPEG: no unit, so no dpi
            assert fmt == "jpg" or "dpi" not in im.info, im.info  # PNG: no pHYs
        for stem in ("exif", "nounit", "zerojfif"):
            with Image.open(tmp_path / fmt / f"{stem}.{fmt}") as im:
                dpi = im.info.get("dpi")
                assert dpi is not None and round(dpi[0]) == 200, (stem, im.info)
        with Image.open(tmp_path / fmt / f"tiny.{fmt}") as im:
            assert im.info.get("jfif_unit", 0) == 0 and (fmt == "jpg" or "dpi" not in im.info)


def test_a_shell_pattern_run_again_skips_the_last_runs_outputs(tmp_path: Path) -> None:
    """``pocketsr upscale shoot/*.jpg`` twice: the second time the pattern also names the
    first run's a_x2.jpg, the output of a.jpg named beside it. That is a restart (a.jpg:
    exists; a_x2.jpg: its output), not a usage error; named alone it is upscaled."""
    for name in ("a.jpg", "c.jpg"):
        save(tmp_path / name, photo())
    first = sorted(tmp_path.glob("*.jpg"))
    assert invoke("upscale", *first, *FAST)[0] == 0
    again = sorted(tmp_path.glob("*.jpg"))  # a, a_x2, c, c_x2
    for extra in ((), ("--overwrite",)):
        code, stdout, err = invoke("upscale", *again, *FAST, "--json", *extra)
        assert code == 0, err
        recs, _ = jsonl(stdout)
        by_name = {Path(r["input"]).name: r for r in recs}
        for name in ("a_x2.jpg", "c_x2.jpg"):
            assert (by_name[name]["status"], by_name[name]["reason_code"]) == (
                "skipped",
                "own-output",
            )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a_x2.jpg", "c.jpg", "c_x2.jpg"]
    assert invoke("upscale", tmp_path / "a_x2.jpg", *FAST)[0] == 0  # named alone
    assert (tmp_path / "a_x2_x2.jpg").is_file()


def test_a_full_disk_stops_the_run_with_exit_1_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pocketsr_cli import pipeline
    from pocketsr_cli.errors import ImageWriteError

    for i in range(8):
        save(tmp_path / "in" / f"{i}.png", photo(seed=i))
    real_write = pipeline.write_atomic

    def full_after_two(path: Path, data: bytes, **kwargs: object) -> bool:
        if len(list((tmp_path / "o").glob("*.png"))) >= 2:
            cause = OSError(errno.ENOSPC, "No space left on device")
            raise ImageWriteError(f"cannot write {path}: No space left on device") from cause
        return real_write(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "write_atomic", full_after_two)
    args = ("upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST)
    code, stdout, err = invoke(*args, "--json")
    assert code == 1, err
    lines, summary = jsonl(stdout)
    why = f"the disk that holds {tmp_path / 'o'} is full (No space left on device)"
    assert summary["stopped"] == why and summary["interrupted"] is False
    assert summary["total"] == 8 and summary["ok"] == 2
    stopped = [line for line in lines if line["reason_code"] == "stopped"]
    assert stopped and all(line["status"] == "skipped" for line in stopped)
    assert [line["input"] for line in lines] == [f"{tmp_path / 'in'}/{i}.png" for i in range(8)]
    log = " ".join(err.split())
    assert log.count("stopped: ") == 1 and f"stopped: {why}, so " in log
    assert "make room (or make it writable) and run the same command again" in log
    # After making room, the same command finishes the rest.
    monkeypatch.setattr(pipeline, "write_atomic", real_write)
    code, stdout, err = invoke(*args, "--json")
    assert code == 0, err
    assert jsonl(stdout)[1]["ok"] == 6 and jsonl(stdout)[1]["stopped"] is None
    assert len(list((tmp_path / "o").glob("*.png"))) == 8


def test_an_opaque_alpha_image_whose_jpeg_name_is_taken_is_a_png_that_says_why(
    tmp_path: Path,
) -> None:
    rgb = photo(channels=3)
    save(tmp_path / "in" / "logo.png", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    save(tmp_path / "in" / "logo.jpg", rgb)
    code, out, err = invoke(
        "upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "--format", "jpg", "--json"
    )
    assert code == 0, err
    lines = {Path(r["input"]).name: r for r in jsonl(out)[0]}
    assert Path(lines["logo.png"]["output"]).name == "logo.png"
    assert Path(lines["logo.jpg"]["output"]).name == "logo.jpg"
    assert lines["logo.png"]["warnings"] == [
        "its alpha channel is opaque everywhere, but its JPEG name is an input or another "
        "input's output, so it is written as PNG, as planned"
    ]


def test_images_redrawn_in_fp32_after_a_nan_say_fp32(tmp_path: Path) -> None:
    """fp16 that overflows is redone in fp32 with a warning, but every image's JSON line,
    its output's record and its review card still said ``cpu fp16``: a script reading
    the log could not tell."""
    import torch
    from safetensors.torch import load_file

    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    weights = load_file(Path(__file__).parents[1] / "models" / "pocketsr-compact-x4.safetensors")
    weights["body.0.weight"] = weights["body.0.weight"] * 3000  # past fp16's range, not fp32's
    torch.save({"params": weights}, tmp_path / "hot.pth")
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "in" / "b.png", photo(seed=1))
    page = tmp_path / "out" / "review.html"
    code, out, err = invoke(
        "upscale", tmp_path / "in", "-o", tmp_path / "out", "-m", tmp_path / "hot.pth",
        "--device", "cpu", "--precision", "fp16", "--json", "--report", page,
    )  # fmt: skip
    assert code == 0, err
    assert "fp16 gave NaN/inf values" in err
    images, summary = jsonl(out)
    assert [line["device"] for line in images] == ["cpu fp32", "cpu fp32"]
    assert summary["device"] == "cpu fp32"  # what drew them, not the fp16 the run opened with
    for line in images:
        record = loads(read_provenance_text(Path(line["output"])) or "")
        assert record is not None and record["precision"] == "cpu fp32"
    text = page.read_text(encoding="utf-8")
    assert "cpu fp32" in text and "cpu fp16" not in text


def test_a_resamplers_8_bit_path_says_uint8_in_its_lines_records_header_and_summary(
    tmp_path: Path,
) -> None:
    """bicubic and lanczos draw 8-bit images on their 8-bit path, where --precision does
    not apply (Upscaler.precision_for), but each line, each output's record, the run's
    first line and its summary said ``cpu bf16``; a 16-bit image still takes the float
    path, in the precision asked."""
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    save(tmp_path / "in" / "flat.png", photo())
    deep = (photo(seed=1).astype(np.uint16) * 257)[..., ::-1]  # BGR for OpenCV
    cv2.imwrite(str(tmp_path / "in" / "deep.png"), deep)
    code, out, err = invoke(
        "upscale", tmp_path / "in", "-o", tmp_path / "o", *FAST, "--precision", "bf16", "--json"
    )
    assert code == 0, err
    images, summary = jsonl(out)
    devices = {Path(line["input"]).name: line["device"] for line in images}
    assert devices == {"flat.png": "cpu uint8", "deep.png": "cpu bf16"}
    for line in images:
        record = loads(read_provenance_text(Path(line["output"])) or "")
        assert record is not None and record["precision"] == line["device"]
    assert sorted(summary["device"].split(", ")) == ["cpu bf16", "cpu uint8"]
    assert "bicubic on cpu uint8 (16-bit: bf16)" in err


@pytest.mark.skipif(sys.platform == "win32", reason="nothing is swept without flock")
def test_a_probe_file_a_killed_check_left_is_swept_and_not_counted_as_a_runs_leftover(
    tmp_path: Path,
) -> None:
    """A run's sweep of an output folder takes the probe file a folder check killed outright
    left there too (``atomicfile.folder_write_problem``), and counted it in
    ``leftovers_removed``, said as a leftover temporary file of an interrupted run: no run
    was interrupted.  It is removed, and only a run's own leftovers are counted."""
    src = save(tmp_path / "in" / "a.jpg", photo())  # written beside it: no -o to check
    old = (time.time() - 3600,) * 2
    probe = src.parent / "..pocketsr-probe.0123456789ab.pocketsr-tmp"  # temp_path_for's name
    probe.write_bytes(b"")
    os.utime(probe, old)
    code, stdout, err = invoke("upscale", src, *FAST, "--json")
    assert code == 0, err
    _, summary = jsonl(stdout)
    assert summary["leftovers_removed"] == 0 and "leftover" not in err
    assert not probe.exists()
    probe.write_bytes(b"")
    os.utime(probe, old)
    left = src.parent / ".a_x4.jpg.0123456789ab.pocketsr-tmp"  # a killed run's output
    left.write_bytes(b"half a JPEG")
    os.utime(left, old)
    code, _, err = invoke("upscale", src, *FAST, "--overwrite")
    assert code == 0, err
    assert "removed 1 leftover temporary file(s) of an interrupted run" in " ".join(err.split())
    assert not probe.exists() and not left.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="nothing is swept without flock")
def test_a_run_says_how_many_leftovers_of_a_killed_run_it_removed(tmp_path: Path) -> None:
    """The temporary files a run killed outright had left were swept without a word: the
    user who saw them (20 MB each) never learnt where they went.  The log's last line and
    the ``--json`` summary say how many; a run that found none says nothing."""
    src = save(tmp_path / "in" / "a.jpg", photo())
    out = tmp_path / "out"

    def left(name: str) -> Path:
        path = out / f".{name}.0123456789ab.pocketsr-tmp"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a PNG")
        os.utime(path, (time.time() - 3600,) * 2)
        return path

    left("a.jpg")
    left("b.jpg")
    code, _, err = invoke("upscale", src, "-o", out, *FAST)
    assert code == 0
    assert "removed 2 leftover temporary file(s) of an interrupted run" in " ".join(err.split())
    left("a.jpg")
    code, stdout, err = invoke("upscale", src, "-o", out, *FAST, "--json")
    (rec,), summary = jsonl(stdout)
    assert rec["reason_code"] == "exists" and summary["leftovers_removed"] == 1
    assert "leftover" not in err
    code, stdout, err = invoke("upscale", src, "-o", out, *FAST)
    assert code == 0 and "leftover" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg"]


def test_an_unknown_ensemble_mode_is_shown_as_typed(tmp_path: Path) -> None:
    """The refusal named the mode lowercased ('fancy' for FANCY), not what the user typed."""
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    for command in (
        ["upscale", str(src), "-o", str(tmp_path / "out"), "-m", "bicubic", "--ensemble", "FANCY"],
        ["bench", "-m", "bicubic", "--size", "16x16", "--ensemble", "FANCY"],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "not 'FANCY'" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("~/here.png", "-m", "lanczos"),
            "error (usage): input not found: ~/here.png (the shell did not expand ~: write it "
            "unquoted, or give $HOME/here.png)",
        ),
        (
            ("here.png", "-m", "~/x.safetensors"),
            "error (model): model file not found: ~/x.safetensors (the shell did not expand ~: "
            "write it unquoted, or give $HOME/x.safetensors)",
        ),
        (
            ("here.png", "-m", "lanczos", "-o", "~/out"),
            "error (usage): -o/--output ~/out would make a folder named ~ here: the shell did "
            "not expand ~: write it unquoted, or give $HOME/out (or, for a folder named ~ "
            "here, $PWD/~/out)",
        ),
        (
            ("here.png", "-m", "lanczos", "-o", "~nobody/out"),
            "error (usage): -o/--output ~nobody/out would make a folder named ~nobody here: "
            "the shell did not expand ~nobody: write it unquoted, or give its full path (or, "
            "for a folder named ~nobody here, $PWD/~nobody/out)",
        ),
        (
            ("here.png", "-m", "lanczos", "-o", "out", "--report", "~/r.html"),
            "error (usage): --report ~/r.html would make a folder named ~ here: the shell did "
            "not expand ~: write it unquoted, or give $HOME/r.html (or, for a folder named ~ "
            "here, $PWD/~/r.html)",
        ),
    ],
)
def test_a_quoted_tilde_left_by_the_shell_is_said_not_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], said: str
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "here.png", photo())
    code, _, err = invoke("upscale", *args, "-s", "2")
    assert (code, err) == (3 if "(model)" in said else 2, said + "\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.png"]  # no folder ~ made


def test_an_output_folder_named_tilde_that_is_there_is_written_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path / "here.png", photo())
    (tmp_path / "~").mkdir()
    code, _, err = invoke("upscale", "here.png", "-m", "lanczos", "-s", "2", "-o", "~/out")
    assert code == 0, err
    assert (tmp_path / "~" / "out" / "here.png").is_file()


@pytest.mark.parametrize(
    ("model", "said"),
    [
        # The start of a name is offered (difflib alone found it too unlike).
        ("realesrgan", " (did you mean 'realesrgan-x4plus'?)"),
        ("realesr", " (did you mean 'realesr-general-x4v3' or 'realesrgan-x4plus'?)"),
        # A family's base stands for its variants.
        ("pocketsr", " (did you mean 'pocketsr-compact' or 'pocketsr-nano'?)"),
        # A variant the family lacks: the factors it has, and what -s does with its base.
        (
            "pocketsr-compact-x3",
            ": pocketsr-compact has no ×3 (×2, ×4); upscale -m pocketsr-compact -s 3 runs its "
            "×4 and resizes to ×3;",
        ),
        (
            "pocketsr-compact-x8",
            ": pocketsr-compact has no ×8 (×2, ×4); upscale -m pocketsr-compact -s 8 runs its "
            "×4 and enlarges with Lanczos to ×8;",
        ),
        ("pcsr-x2", ": pcsr has no ×2 (×4); upscale -m pcsr -s 2 runs its ×4 drawing ×2 itself;"),
    ],
)
def test_an_unknown_model_gets_the_names_it_begins_or_its_familys_factors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, said: str
) -> None:
    use_home(tmp_path, monkeypatch)  # the bundled models only
    save(tmp_path / "here.png", photo())
    code, _, err = invoke("upscale", tmp_path / "here.png", "-m", model)
    assert code == 3 and err.startswith(f"error (model): unknown model '{model}'{said}"), err


def test_models_info_of_a_missing_variant_gives_the_familys_factors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_home(tmp_path, monkeypatch)
    code, _, err = invoke("models", "info", "pocketsr-compact-x3")
    assert code == 3
    assert err.startswith(
        "error (model): unknown model 'pocketsr-compact-x3': pocketsr-compact has no ×3 "
        "(×2, ×4); available: "  # no -s in 'models info': no advice naming it
    ), err
