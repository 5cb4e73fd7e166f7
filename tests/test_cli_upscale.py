"""End-to-end tests of ``pocketsr upscale`` through Typer's runner, on generated images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms
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


def test_strip_metadata(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = save(tmp_path / "m.jpg", photo(), icc_profile=icc)
    assert invoke("upscale", src, *FAST, "-q", "--strip-metadata")[0] == 0
    with Image.open(tmp_path / "m_x2.jpg") as im:
        assert "icc_profile" not in im.info and not im.getexif()


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
    assert invoke("upscale", src, *FAST, "-q", "--tile", "40", "--suffix", "_t")[0] == 0
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
    (("upscale", "{src}", "--format", "gif"), 2, "--format"),
    (("upscale", "{src}", "--quality", "0"), 2, "quality"),
    (("upscale", "{src}", "-o", "{dir}", "--suffix", ""), 2, "overwrite input"),
    (("upscale", "{src}", "-m", "no-such-model"), 3, "unknown model"),
    (("upscale", "{src}", "-m", "{dir}/missing.pth"), 3, "not found"),
    (("upscale", "{src}", "-m", "{dir}/junk.pth"), 3, "cannot read weights"),
    (("upscale", "{src}", "-m", "bicubic", "--bogus"), 2, "No such option"),
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


def test_default_model_at_a_factor_it_lacks_says_what_works(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", photo(24, 32))
    code, _, err = invoke("upscale", src, "-s", "3")
    assert code != 0 and "Traceback" not in err
    assert "no x3 variant" in err and "--outscale 3" in err and "-m lanczos" in err
    assert not (tmp_path / "in_x3.png").exists()


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
