"""``pocketsr eval`` and ``pocketsr bench`` through Typer's runner, on generated photos."""

from __future__ import annotations

import json
import math
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _imagegen import make_photo_like, save_opencv
from _zoo import compact_state, save_safetensors, use_home, write_manifest
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli.cli import app
from pocketsr_cli.evaluation.run import collect_images, evaluate
from pocketsr_cli.factory import UpscalerSpec
from pocketsr_cli.weights.cache import user_models_dir

runner = CliRunner()
METRIC_KEYS = {"psnr_y", "ssim_y", "detail", "hf", "bandcorr", "lattice_ratio", "sharpness"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small photo-like PNGs (one with sides that are not multiples of 4) and a note."""
    folder = tmp_path_factory.mktemp("hr")
    for i, (h, w) in enumerate([(96, 128), (128, 96), (98, 130)]):
        save_opencv(folder / f"photo{i}.png", make_photo_like(h, w, seed=i))
    (folder / "notes.txt").write_text("not an image")
    return folder


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_eval_table_scores_the_model_and_the_bicubic_floor(photos: Path) -> None:
    code, out, err = invoke("eval", photos, "-m", "lanczos")
    assert code == 0, err
    assert "PSNR-Y" not in err  # the table is the report: stdout
    for text in ("PSNR-Y", "SSIM-Y", "detail", "hf", "bandcorr", "lattice ratio", "s/image"):
        assert text in out
    assert "bicubic (floor)" in out and "lanczos" in out
    assert "3 photo(s), bicubic ×4" in out


def test_eval_json_has_one_object_per_model_with_per_image_scores(photos: Path) -> None:
    code, out, err = invoke("eval", photos, "-m", "lanczos", "--json", "-q")
    assert code == 0, err
    records = json_lines(out)
    assert [r["model"] for r in records] == ["bicubic", "lanczos"]
    assert [r["floor"] for r in records] == [True, False]
    for r in records:
        assert r["degradation"] == "bicubic" and r["scale"] == 4 and r["count"] == 3
        assert METRIC_KEYS | {"seconds_per_image", "params", "device"} <= r.keys()
        names = ["photo0.png", "photo1.png", "photo2.png"]
        assert [i["image"] for i in r["images"]] == names
        # beside the file name, the path as given, as upscale --json names an input
        assert [i["input"] for i in r["images"]] == [str(photos / n) for n in names]
        for image in r["images"]:
            assert METRIC_KEYS | {"seconds", "width", "height"} <= image.keys()
            assert 15 < image["psnr_y"] < 60 and 0 < image["ssim_y"] < 1
            assert 0 < image["sharpness"] < 1 and image["lattice_ratio"] > 0
        # photo2 is 130×98: cropped to 128×96 before degrading
        assert (r["images"][2]["width"], r["images"][2]["height"]) == (128, 96)
        mean = sum(i["psnr_y"] for i in r["images"]) / 3
        assert r["psnr_y"] == pytest.approx(mean)
    bicubic, lanczos = records
    assert bicubic["psnr_y"] != lanczos["psnr_y"]
    assert lanczos["sharpness"] > bicubic["sharpness"]  # Lanczos-3 rings a little sharper


def test_eval_real_degradation_is_deterministic(photos: Path) -> None:
    def scores() -> list[tuple[str, str, float, float, float, float]]:
        code, out, err = invoke("eval", photos, "--degradation", "real", "-m", "lanczos", "--json")
        assert code == 0, err
        return [
            (r["model"], i["image"], i["psnr_y"], i["ssim_y"], i["sharpness"], i["lattice_ratio"])
            for r in json_lines(out)
            for i in r["images"]
        ]

    first = scores()
    assert len(first) == 6
    assert first == scores()
    code, out, _ = invoke("eval", photos, "-m", "lanczos", "--json")
    assert code == 0
    assert [r["psnr_y"] for r in json_lines(out)] != [first[0][2], first[3][2]]


def test_eval_limit_and_explicit_bicubic(photos: Path) -> None:
    code, out, err = invoke("eval", photos, "-m", "bicubic", "--limit", "1", "-s", "2", "--json")
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["model"] == "bicubic" and record["floor"] is False
    assert record["scale"] == 2 and record["count"] == 1


def test_eval_usage_and_model_errors(photos: Path, tmp_path: Path) -> None:
    code, _, err = invoke("eval", tmp_path / "missing", "-m", "lanczos")
    assert code == 2 and "not a folder" in err
    code, _, err = invoke("eval", tmp_path, "-m", "lanczos")  # a folder with no images
    assert code == 2 and "no image files" in err
    code, _, _ = invoke("eval", photos, "--degradation", "gauss")
    assert code == 2
    code, _, err = invoke("eval", photos, "-m", "no-such-model")
    assert code == 3 and "unknown model" in err


def test_evaluate_reports_progress_and_skips_unreadable_files(photos: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    paths = [collect_images(photos)[0], bad]
    steps: list[tuple[int, int]] = []
    warnings: list[str] = []
    report = evaluate(
        paths,
        ["lanczos"],
        UpscalerSpec(torch.device("cpu")),
        "real",
        on_progress=lambda done, total, _label: steps.append((done, total)),
        on_warning=warnings.append,
    )
    assert steps == [(1, 4), (2, 4), (4, 4)]
    assert report.images == ["photo0.png"]
    assert report.skipped[0][0] == "broken.png" and "broken.png" in warnings[0]
    assert [m.model for m in report.models] == ["bicubic", "lanczos"]
    assert all(math.isfinite(m.mean("psnr_y")) for m in report.models)


def test_eval_limit_counts_scored_images_not_unreadable_files(photos: Path, tmp_path: Path) -> None:
    """--limit N scores N images: a file that cannot be read is reported (and fails the
    run, 1), and the next one takes its place."""
    folder = tmp_path / "hr"
    folder.mkdir()
    (folder / "a-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for name in ("photo0.png", "photo1.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "z-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # never reached
    code, out, err = invoke("eval", folder, "-m", "bicubic", "--limit", "1", "-s", "2", "--json")
    assert code == 1, err
    (record,) = json_lines(out)
    assert [i["image"] for i in record["images"]] == ["photo0.png"]
    assert f"failed {folder / 'a-broken.png'}:" in " ".join(err.split())
    assert "z-broken.png" not in err
    assert [f["input"] for f in record["not_scored"]] == [str(folder / "a-broken.png")]

    steps: list[tuple[int, int]] = []
    paths = collect_images(folder)
    report = evaluate(
        paths,
        ["bicubic"],
        UpscalerSpec(torch.device("cpu")),
        scale=2,
        limit=2,
        on_progress=lambda done, total, _label: steps.append((done, total)),
    )
    assert report.images == ["photo0.png", "photo1.png"]
    assert [name for name, _ in report.skipped] == ["a-broken.png"]
    assert steps == [(0, 2), (1, 2), (2, 2)]


def test_bench_json(photos: Path) -> None:
    args = ("bench", "-m", "bicubic", "-m", "lanczos", "--size", "40x24", "--repeat", "2")
    code, out, err = invoke(*args, "--json", "--device", "cpu")
    assert code == 0, err
    records = json_lines(out)
    assert [r["model"] for r in records] == ["bicubic", "lanczos"]
    for r in records:
        assert (r["width"], r["height"], r["out_width"], r["out_height"]) == (40, 24, 160, 96)
        assert r["baseline"] == "bicubic" and r["device"] == "cpu"
        assert len(r["seconds"]) == 2 and r["best"] == min(r["seconds"])
        assert r["seconds_per_4k"] == pytest.approx(r["best"] * 3840 * 2160 / (160 * 96))
        assert r["params"] == 0 and r["macs_per_pixel"] is None  # functional convolutions
    assert records[0]["ratio"] == 1.0
    assert records[1]["ratio"] == pytest.approx(
        records[1]["seconds_per_4k"] / records[0]["seconds_per_4k"]
    )


def test_eval_scores_each_ensemble_beside_the_plain_model(photos: Path) -> None:
    args = ("eval", photos, "-m", "lanczos", "--limit", "1", "-s", "2", "--json", "-q")
    code, out, err = invoke(*args, "--ensemble", "none", "--ensemble", "pad", "--ensemble", "flip8")
    assert code == 0, err
    records = json_lines(out)
    names = [r["model"] for r in records]
    assert names == ["bicubic", "lanczos", "lanczos +pad", "lanczos +flip8"]
    assert [r["ensemble"] for r in records] == ["none", "none", "pad", "flip8"]
    assert [r["ensemble_weight"] for r in records] == [None, None, 0.5, None]
    # Lanczos is shift-equivariant and symmetric: the ensembles change only the border.
    for r in records[2:]:
        assert r["psnr_y"] == pytest.approx(records[1]["psnr_y"], abs=0.3)
    code, out, err = invoke(*args, "--ensemble", "pad", "--ensemble-weight", "0.25")
    assert code == 0, err
    assert [r["model"] for r in json_lines(out)] == ["bicubic", "lanczos +pad:0.25"]
    code, _, err = invoke(*args, "--ensemble", "flip8", "--ensemble-weight", "0.25")
    assert code == 2 and "applies to --ensemble pad" in err


def test_bench_times_each_ensemble_as_a_ratio_to_the_plain_model() -> None:
    args = ("bench", "-m", "lanczos", "--size", "40x24", "--repeat", "1", "--json")
    code, out, err = invoke(*args, "--ensemble", "none", "--ensemble", "flip8", "--device", "cpu")
    assert code == 0, err
    plain, flip = json_lines(out)
    assert (plain["model"], flip["model"]) == ("lanczos", "lanczos +flip8")
    assert (plain["ensemble"], flip["ensemble"]) == ("none", "flip8")
    assert flip["baseline"] == "lanczos" and plain["ratio"] == 1.0
    assert flip["ratio"] == pytest.approx(flip["seconds_per_4k"] / plain["seconds_per_4k"])


def test_bench_table_baseline_and_errors() -> None:
    code, out, err = invoke("bench", "-m", "lanczos", "--size", "32x32", "--baseline", "bicubic")
    assert code == 0, err
    assert "ratio vs bicubic" not in err  # the table goes to stdout (the size note to stderr)
    assert "ratio vs bicubic" in out and "lanczos" in out and "s per 4K" in out
    assert invoke("bench", "--size", "960")[0] == 2
    code, _, err = invoke("bench", "-m", "bicubic", "--size", "", "--repeat", "1")
    assert code == 2 and "--size must look like 960x540" in err  # not the default size
    assert invoke("bench", "--size", "32x32", "--repeat", "0")[0] == 2
    assert invoke("bench", "-m", "no-such-model", "--size", "32x32")[0] == 3


def test_crop_scores_the_centred_window(tmp_path: Path) -> None:
    from pocketsr_cli.evaluation.run import ground_truth

    arr = np.zeros((100, 80, 3), np.uint8)
    arr[40:60, 30:50] = 255
    Image.fromarray(arr).save(tmp_path / "c.png")
    gt = ground_truth(tmp_path / "c.png", 4, crop=20)
    assert gt.shape == (20, 20, 3) and gt.min() == 255
    assert ground_truth(tmp_path / "c.png", 4, crop=500).shape == (100, 80, 3)


def test_two_weights_files_of_one_name_get_two_rows(photos: Path, tmp_path: Path) -> None:
    import shutil

    bundled = Path(__file__).parents[1] / "models" / "pocketsr-compact-x4.safetensors"
    a, b = tmp_path / "a" / "w.safetensors", tmp_path / "b" / "w.safetensors"
    for path in (a, b):
        path.parent.mkdir()
        shutil.copy(bundled, path)
    code, out, err = invoke("eval", photos, "-m", a, "-m", b, "--json", "-q", "--limit", "1")
    assert code == 0, err
    assert [r["model"] for r in json_lines(out)] == ["bicubic", "w.safetensors", str(b)]
    again = f"{a.parent}/./{a.name}"  # the same file spelt another way: the same row
    code, out, err = invoke("eval", photos, "-m", a, "-m", again, "--json", "-q", "--limit", "1")
    assert code == 0, err
    assert [r["model"] for r in json_lines(out)] == ["bicubic", "w.safetensors"]


def test_bench_ratio_text_stays_readable_for_fast_models() -> None:
    from pocketsr_cli.cli.bench import _ratio

    assert _ratio(1.0) == "1.00×" and _ratio(28.8) == "28.80×"
    assert _ratio(0.293 / 63.508) == "1/217" and _ratio(0.117) == "0.12×"


def test_photos_smaller_than_the_crop_are_said_to_be_scored_whole(photos: Path) -> None:
    """--crop 512 on photos of about 100 px scored them whole without a word: a note says
    how many, once, and --json names them.  130 px wide at --crop 100: cropped along its
    width, whole along its height (98), so it is one of them too."""
    code, out, err = invoke("eval", photos, "--crop", "512", "-m", "lanczos", "-q")
    assert code == 0, err
    note = " ".join(err.split())
    assert note.count("photo(s) scored are smaller than --crop 512") == 1
    assert "all 3 photo(s)" in note and "scored whole along it" in note
    code, out, err = invoke("eval", photos, "--crop", "100", "-m", "lanczos", "-q", "--json")
    assert code == 0, err
    records = json_lines(out)
    for record in records:
        assert record["crop"] == 100
        assert record["smaller_than_crop"] == ["photo0.png", "photo1.png", "photo2.png"]
    assert "all 3 photo(s) scored are smaller than --crop 100" in " ".join(err.split())
    code, out, err = invoke("eval", photos, "--crop", "96", "-m", "lanczos", "-q", "--json")
    assert code == 0 and "smaller than" not in err, err
    assert json_lines(out)[0]["smaller_than_crop"] == []
    code, out, err = invoke("eval", photos, "-m", "lanczos", "-q", "--json")
    assert json_lines(out)[0]["crop"] is None and "smaller than" not in err


def test_resize_scores_a_x4_model_at_x2_as_outscale_would(photos: Path) -> None:
    bundled = Path(__file__).parents[1] / "models" / "pocketsr-compact-x4.safetensors"
    code, _, err = invoke("eval", photos, "-s", "2", "-m", bundled, "-q", "--limit", "1")
    assert code == 2 and "x4 model" in err and "Traceback" not in err  # the options, not the file
    message = " ".join(err.split())
    assert "x4 model; -s 2 is not available; here --resize scores its x4 result resized to x2" in (
        message
    )
    assert "--outscale" not in message  # upscale's option: eval has none
    code, out, err = invoke(
        "eval", photos, "-s", "2", "-m", bundled, "--resize", "--json", "-q", "--limit", "1"
    )
    assert code == 0, err
    rows = json_lines(out)
    assert [r["model"] for r in rows] == ["bicubic", "pocketsr-compact-x4.safetensors (x4→x2)"]
    resized = rows[1]
    # scale: the eval's factor, the same in every row; model_scale: each model's own.
    assert [(r["scale"], r["model_scale"]) for r in rows] == [(2, 2), (2, 4)]
    assert resized["images"][0]["width"] == rows[0]["images"][0]["width"]
    assert resized["psnr_y"] > 20 and resized["detail"] is not None


def test_a_pcsr_model_is_scored_at_the_factor_it_draws_natively(photos: Path) -> None:
    """As ``upscale -m pcsr-x4 -s 3`` runs it: drawn at x3, no resize, no --resize needed."""
    code, out, err = invoke(
        "eval", photos, "-s", "3", "-m", "pcsr-x4", "--json", "-q", "--limit", "1", "--crop", "96"
    )
    assert code == 0, err
    rows = json_lines(out)
    assert [r["model"] for r in rows] == ["bicubic", "pcsr-x4 (x3 native)"]
    assert [(r["scale"], r["model_scale"]) for r in rows] == [(3, 3), (3, 4)]
    assert rows[1]["images"][0]["width"] == rows[0]["images"][0]["width"]
    assert rows[1]["psnr_y"] > 20


def test_eval_scores_in_fp32_on_a_cpu_where_upscale_and_bench_pick_bf16(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli import devices

    monkeypatch.setattr(devices, "cpu_bf16_supported", lambda: True)
    code, out, err = invoke("eval", photos, "--limit", "1", "--json", "-q", "--device", "cpu")
    assert code == 0, err
    default = [r for r in json_lines(out) if r["model"] == "pocketsr-compact-x4"]
    assert [r["precision"] for r in default] == ["fp32"]
    code, out, err = invoke(
        "bench", "--size", "32x24", "--repeat", "1", "--json", "-q", "--device", "cpu"
    )
    assert code == 0, err
    assert [r["precision"] for r in json_lines(out) if r["model"] == "pocketsr-compact-x4"] == [
        "bf16"
    ]


def test_eval_reports_the_8_bit_path_a_resampler_ran_as_its_precision(photos: Path) -> None:
    """The degraded photos are 8-bit: bicubic and lanczos draw them on their 8-bit path on
    a CPU, whatever --precision says."""
    code, out, err = invoke(
        "eval", photos, "-m", "lanczos", "--limit", "1", "--precision", "bf16", "--json", "-q"
    )
    assert code == 0, err
    assert [(r["model"], r["precision"]) for r in json_lines(out)] == [
        ("bicubic", "uint8"),
        ("lanczos", "uint8"),
    ]


@pytest.mark.parametrize("scale", ["4", "2"])
def test_the_readme_comparison_script_runs(photos: Path, tmp_path: Path, scale: str) -> None:
    """scripts/compare_crops.py, which makes the README's and the cards' side-by-side crops,
    resolves models as eval does: it must keep up with resolve_models (PCSR natively)."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "scripts" / "compare_crops.py"
    out = tmp_path / "sheet.png"
    args = ["--models", "lanczos", "pcsr-x4", "--box", "8", "8", "48", "--scale", scale]
    done = subprocess.run(
        [sys.executable, str(script), str(photos / "photo0.png"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(out) as sheet:  # input, bicubic, lanczos, pcsr-x4, ground truth
        assert sheet.width == 5 * (48 + 4)


def test_a_named_variant_is_scored_as_that_network_or_refused(photos: Path) -> None:
    """-m pocketsr-compact-x2 is the ×2 network: at ×4 (the first model's scale) it is
    not swapped for its ×4 sibling under its own name; --resize scores it resized, and
    the base name still picks the variant."""
    args = ("eval", photos, "-q", "--limit", "1", "--crop", "64", "--json")
    code, _, err = invoke(*args, "-m", "pocketsr-compact-x4", "-m", "pocketsr-compact-x2")
    assert code == 2 and "Traceback" not in err
    assert "pocketsr-compact-x2 is a ×2 model" in " ".join(err.split())
    assert "-m pocketsr-compact" in err
    code, out, err = invoke(
        *args, "-m", "pocketsr-compact-x4", "-m", "pocketsr-compact-x2", "--resize"
    )
    assert code == 0, err
    rows = json_lines(out)
    assert [r["model"] for r in rows] == [
        "bicubic",
        "pocketsr-compact-x4",
        "pocketsr-compact-x2 (x2→x4)",
    ]
    assert rows[1]["psnr_y"] != rows[2]["psnr_y"]
    code, out, err = invoke(*args, "-s", "2", "-m", "pocketsr-compact", "-m", "pocketsr-compact-x2")
    assert code == 0, err
    assert [r["model"] for r in json_lines(out)] == ["bicubic", "pocketsr-compact-x2"]


def test_a_variant_named_at_another_factor_than_s_is_a_usage_error(photos: Path) -> None:
    """'eval -s 2 -m pocketsr-compact-x4' exited 3 (model error) though the model resolved:
    the option combination is at fault (2), and the message says what to give."""
    args = ("eval", photos, "-s", "2", "-m", "pocketsr-compact-x4", "-q", "--limit", "1")
    code, out, err = invoke(*args, "--json")
    assert code == 2, err
    (record,) = json_lines(out)
    assert record["kind"] == "usage" and record["exit_code"] == 2
    assert "--resize scores its x4 result resized to x2" in record["message"]


def test_without_s_a_resampler_takes_the_factor_of_the_first_model_with_one(
    photos: Path,
) -> None:
    """-m lanczos -m pocketsr-compact-x2 ran at lanczos's ×4 and refused the ×2 network
    in words that never said -s; a resampler runs at any factor, so the eval is at ×2,
    the rows in the order asked.  Two models of fixed factors that differ are still
    refused, with where the factor came from and what chooses another."""
    args = ("eval", photos, "-q", "--limit", "1", "--crop", "64", "--json")
    code, out, err = invoke(*args, "-m", "lanczos", "-m", "pocketsr-compact-x2")
    assert code == 0, err
    rows = json_lines(out)
    assert [r["model"] for r in rows] == ["bicubic", "lanczos", "pocketsr-compact-x2"]
    assert {(r["scale"], r["model_scale"]) for r in rows} == {(2, 2)}
    code, out, err = invoke(*args, "-m", "lanczos", "-m", "bicubic")  # resamplers alone: ×4
    assert code == 0, err
    assert [(r["model"], r["scale"]) for r in json_lines(out)] == [("lanczos", 4), ("bicubic", 4)]
    code, _, err = invoke(
        *args, "-m", "lanczos", "-m", "pocketsr-compact-x2", "-m", "pocketsr-compact-x4"
    )
    assert code == 2
    assert (
        "×2 is the factor of -m pocketsr-compact-x2, the first model with one, as -s is not "
        "given: --resize scores its x4 result resized to x2, or -s chooses the factor"
    ) in " ".join(err.split())


def test_bench_refuses_a_size_that_cannot_fit_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """--size 100000x100000 was a MemoryError traceback (or the kernel's OOM killer):
    the photo and each model's upscale are weighed against the memory available first."""
    from pocketsr_cli import memory
    from pocketsr_cli.evaluation.bench import SYNTHETIC_BYTES_PER_PIXEL

    photo = SYNTHETIC_BYTES_PER_PIXEL * 256 * 192
    args = ("bench", "-m", "bicubic", "--size", "256x192", "--repeat", "1", "--device", "cpu")
    monkeypatch.setattr(memory, "host_available_bytes", lambda **_: photo - 1)
    code, out, err = invoke(*args)
    assert code == 2 and "Traceback" not in err and out == ""
    assert "--size 256x192 needs about" in err and "synthetic photo" in err
    # The photo fits; its x4 output (48 bytes per input pixel alone) does not.
    monkeypatch.setattr(memory, "host_available_bytes", lambda **_: photo)
    code, out, err = invoke(*args)
    assert code == 2 and out == ""
    assert "to upscale with bicubic (×4: 1024×768)" in " ".join(err.split())
    assert "choose a smaller --size" in " ".join(err.split())


def test_a_folder_of_images_too_small_to_score_says_why(tmp_path: Path) -> None:
    """Nothing to work on, as a folder with no image files: a usage error (2), which
    upscale gives a folder with nothing to upscale; an image that cannot be read fails
    (1), as it fails upscale."""
    for name, size in (("one.png", (1, 1)), ("three.png", (3, 2))):
        Image.new("RGB", size).save(tmp_path / name)
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic")
    text = " ".join(err.split())
    assert code == 2 and out == "" and "Traceback" not in err
    assert "none of the 2 file(s)" in text and f"{tmp_path / 'one.png'}: too small to" in text
    assert "32×32" in text and "error (usage)" in text
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic", "--json", "-q")
    (record,) = json_lines(out)
    assert record["type"] == "error" and record["kind"] == "usage"
    assert record["exit_code"] == 2

    (tmp_path / "two.png").write_bytes(b"not a PNG")
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic")
    text = " ".join(err.split())
    assert code == 1 and out == "" and "error (failed)" in text
    assert "none of the 3 file(s)" in text
    assert f"(first, {tmp_path / 'two.png'}: not a recognised image" in text


def test_a_photo_that_cannot_be_read_fails_the_run_after_the_others_are_scored(
    photos: Path, tmp_path: Path
) -> None:
    """As upscale: the exit code says an input failed (1), the results are still printed
    and --json names the files not scored, with why; a photo too small to score is only
    skipped (0 when the others were scored).  eval exited 0 with a warning."""
    save_opencv(tmp_path / "a-good.png", make_photo_like(64, 64, seed=1))
    Image.new("RGB", (20, 20)).save(tmp_path / "b-small.png")
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic")
    assert code == 0, err
    small = f"skipped {tmp_path / 'b-small.png'}: too small to score"
    assert "bicubic" in out and small in " ".join(err.split())

    (tmp_path / "c-broken.png").write_bytes(b"not a PNG")
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic")
    message = " ".join(err.split())
    assert code == 1, err
    assert "bicubic" in out and "1 photo(s)" in out  # the table is still printed
    assert f"failed {tmp_path / 'c-broken.png'}: not a recognised image" in message
    assert small in message

    code, out, err = invoke("eval", tmp_path, "-m", "bicubic", "--json", "-q")
    assert code == 1, err
    (record,) = json_lines(out)
    assert record["count"] == 1
    small, broken = record["not_scored"]
    # As upscale --json and bench --folder's failures: the path as given, upscale's words
    # (they were "image": "c-broken.png", "error": "cannot read it: not a recognised ...")
    assert "image" not in small and "image" not in broken
    assert small["input"] == str(tmp_path / "b-small.png") and small["status"] == "skipped"
    assert small["error"] is None and small["reason"].startswith("too small to score")
    assert broken["input"] == str(tmp_path / "c-broken.png") and broken["status"] == "failed"
    assert broken["reason"] is None and broken["error"].startswith("not a recognised image")


def test_a_failed_photo_is_shown_as_upscale_shows_a_failed_input(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its line as it fails (``failed  PATH: why``, under -q too) and, without -q, again
    under the table (``failed: PATH: why``), named by its path as given, as upscale and
    bench --folder show one; eval showed it as a warning, twice, where a warning is work
    changed, not an input lost, then by its bare file name (``failed  b-broken.png``)."""
    monkeypatch.chdir(tmp_path)
    Path("mixed").mkdir()
    save_opencv(Path("mixed/a-good.png"), make_photo_like(64, 64, seed=1))
    png = (photos / "photo0.png").read_bytes()
    Path("mixed/b-broken.png").write_bytes(png[:100])  # truncated
    for command in ("eval", "upscale"):
        for quiet in ((), ("-q",)):
            args = ("-o", "out", "--overwrite") if command == "upscale" else ()
            code, out, err = invoke(command, "mixed", "-m", "bicubic", *args, *quiet)
            assert code == 1, err
            assert command == "upscale" or "1 photo(s)" in out, err
            lines = err.splitlines()
            assert not [line for line in lines if line.startswith("warning:")], err
            failed = [line for line in lines if line.startswith("failed  mixed/b-broken.png: ")]
            assert len(failed) == 1 and "b-broken.png: file is truncated" in failed[0], err
            summary = [line for line in lines if line.startswith("failed: mixed/b-broken.png: ")]
            assert len(summary) == (0 if quiet else 1), err


def test_a_photo_skipped_or_not_scored_is_named_by_its_path_as_given(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a failed photo's line names it (``failed  mixed/b-broken.png``): the warning of
    a photo too small to score and the error when no photo could be scored named only
    the file name (``skipped tiny.png``, ``(first, broken.png: ...)``)."""
    monkeypatch.chdir(tmp_path)
    for folder in ("mixed", "small", "broken"):
        Path(folder).mkdir()
    save_opencv(Path("mixed/good.png"), make_photo_like(64, 64, seed=1))
    Image.new("RGB", (20, 20)).save("mixed/tiny.png")
    Image.new("RGB", (20, 20)).save("small/tiny.png")
    Path("broken/broken.png").write_bytes((photos / "photo0.png").read_bytes()[:100])

    code, out, err = invoke("eval", "mixed", "-m", "bicubic", "-q")
    assert code == 0 and "1 photo(s)" in out, err
    assert err.startswith("warning: skipped mixed/tiny.png: too small to score: 20×20"), err
    code, out, err = invoke("eval", "small", "-m", "bicubic")
    text = " ".join(err.split())
    assert code == 2 and out == "" and "error (usage)" in text, err
    assert "in small could be scored (first, small/tiny.png: too small to score" in text
    code, out, err = invoke("eval", "broken", "-m", "bicubic")
    text = " ".join(err.split())
    assert code == 1 and out == "" and "error (failed)" in text, err
    assert "in broken could be scored (first, broken/broken.png: file is truncated" in text
    code, out, _ = invoke("eval", "broken", "-m", "bicubic", "--json", "-q")
    (record,) = json_lines(out)
    assert code == 1 and record["type"] == "error" and record["exit_code"] == 1
    assert "(first, broken/broken.png: file is truncated" in record["message"]


def test_hidden_files_are_not_scored(tmp_path: Path) -> None:
    """As upscale and bench --folder leave them out: a folder copied from a Mac holds a
    ``._NAME`` resource fork beside each photo, which eval reported as unreadable, and a
    hidden image was scored as one of the photos."""
    save_opencv(tmp_path / "photo.png", make_photo_like(64, 64, seed=1))
    save_opencv(tmp_path / ".thumb.png", make_photo_like(64, 64, seed=2))
    (tmp_path / "._photo.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert collect_images(tmp_path) == [tmp_path / "photo.png"]
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic", "--json")
    assert code == 0 and "._photo.png" not in err, err
    (record,) = json_lines(out)
    assert record["count"] == 1 and [i["image"] for i in record["images"]] == ["photo.png"]
    (tmp_path / "photo.png").unlink()
    code, _, err = invoke("eval", tmp_path, "-m", "bicubic")
    assert code == 2 and f"no image files in {tmp_path}" in " ".join(err.split())


def test_sub_folders_left_out_are_warned_of_as_upscale_does_without_advising_r(
    tmp_path: Path,
) -> None:
    """eval left a folder's sub-folders out silently, where upscale without -r counts
    them; eval has no -r, so the warning advises none (said once images are found)."""
    save_opencv(tmp_path / "photo.png", make_photo_like(64, 64, seed=1))
    for sub in ("2024", "2025", ".thumbs"):  # the hidden one is not counted
        (tmp_path / sub).mkdir()
        save_opencv(tmp_path / sub / "more.png", make_photo_like(64, 64, seed=2))
    code, out, err = invoke("eval", tmp_path, "-m", "bicubic", "--json")
    assert code == 0, err
    assert f"warning: {tmp_path} has 2 sub-folders not scanned\n" in err, err
    assert "recursive" not in err
    (record,) = json_lines(out)
    assert [i["image"] for i in record["images"]] == ["photo.png"]
    warned: list[str] = []
    assert collect_images(tmp_path / "2024", on_warning=warned.append) and warned == []


def test_a_newline_in_a_folder_name_stays_escaped_on_its_line(tmp_path: Path) -> None:
    """eval's warnings and errors printed a folder named 'a<newline>b' over two lines, where
    upscale's lines for an input show it as 'a\\nb' (_ui.shown)."""
    folder = tmp_path / "a\nb"
    (folder / "sub").mkdir(parents=True)
    save_opencv(folder / "photo.png", make_photo_like(64, 64, seed=1))
    save_opencv(folder / "tiny.png", make_photo_like(16, 16, seed=2))
    code, _, err = invoke("eval", folder, "-m", "bicubic", "-q")
    assert code == 0, err
    shown = f"{tmp_path}/a\\nb"
    assert err.splitlines() == [
        f"warning: {shown} has 1 sub-folder not scanned",
        f"warning: skipped {shown}/tiny.png: too small to score: 16×16 px, 16×16 once "
        "cropped to a multiple of 4; the scores need 32×32 at least",
    ]
    code, _, err = invoke("eval", tmp_path / "x\ny", "-m", "bicubic")
    assert (code, err) == (2, f"error (usage): not a folder: {tmp_path}/x\\ny\n")


def test_bench_runs_no_network_pass_before_the_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up column is the first upscale's seconds (with --compile, the compiling):
    weighing a --size against the memory must not run the network (the tiler's probe
    passes) before it."""
    from pocketsr_cli.inference import Upscaler

    events: list[str] = []
    upscale, network = Upscaler.upscale, Upscaler._network

    def recorded_upscale(self: Upscaler, *args: object, **kwargs: object) -> object:
        events.append("upscale")
        return upscale(self, *args, **kwargs)  # type: ignore[arg-type]

    def recorded_network(self: Upscaler, *args: object, **kwargs: object) -> object:
        events.append("network")
        return network(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Upscaler, "upscale", recorded_upscale)
    monkeypatch.setattr(Upscaler, "_network", recorded_network)
    args = ("bench", "-m", "pocketsr-nano-x2", "--size", "32x24", "--repeat", "1", "--json")
    code, _, err = invoke(*args, "--device", "cpu")
    assert code == 0, err
    assert events[0] == "upscale" and "network" in events


def test_bench_shows_the_upscalers_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network torch.compile cannot compile runs uncompiled, with a warning: the synthetic
    bench said nothing, its title still reading "(torch.compile)"."""

    def failing_compile(module: object, **_: object) -> object:
        def run(*_args: object) -> object:
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    args = ("bench", "-m", "pocketsr-nano-x2", "--size", "32x24", "--repeat", "1")
    code, out, err = invoke(*args, "--device", "cpu", "--compile", "--json")
    assert code == 0, err
    (record,) = json_lines(out)
    compiled, small = record["warnings"]  # the model's own, then the run's (32x24: tiny)
    assert "no C++ compiler found" in compiled and "no estimate of 4K" in small
    assert "pocketsr-nano-x2: torch.compile failed" in " ".join(err.split())
    code, out, err = invoke(*args, "--device", "cpu", "--compile")
    assert code == 0 and "torch.compile failed" in err and "torch.compile failed" not in out


def test_bench_times_each_model_once_and_tells_two_files_of_one_name_apart(
    tmp_path: Path,
) -> None:
    import shutil

    args = ("bench", "--size", "16x12", "--repeat", "1", "--json", "-q", "--device", "cpu")
    code, out, err = invoke(*args, "-m", "pocketsr-compact", "-m", "pocketsr-compact-x4")
    assert code == 0, err
    assert [r["model"] for r in json_lines(out)] == ["pocketsr-compact-x4"]
    code, out, err = invoke(*args, "-m", "pocketsr-compact-x4", "--baseline", "pocketsr-compact")
    assert code == 0, err
    (row,) = json_lines(out)
    assert row["baseline"] == "pocketsr-compact-x4" and row["ratio"] == 1.0
    bundled = Path(__file__).parents[1] / "models" / "pocketsr-nano-x2.safetensors"
    a, b = tmp_path / "a" / "w.safetensors", tmp_path / "b" / "w.safetensors"
    for path in (a, b):
        path.parent.mkdir()
        shutil.copy(bundled, path)
    code, out, err = invoke(*args, "-m", a, "-m", b, "--baseline", b)
    assert code == 0, err
    rows = json_lines(out)
    assert [r["model"] for r in rows] == ["w.safetensors", str(b)]
    assert rows[1]["ratio"] == 1.0 and all(r["baseline"] == str(b) for r in rows)
    again = f"{b.parent}/./{b.name}"  # b spelt another way: timed once, and the baseline
    code, out, err = invoke(*args, "-m", a, "-m", b, "-m", again, "--baseline", again)
    assert code == 0, err
    rows = json_lines(out)
    assert [r["model"] for r in rows] == ["w.safetensors", str(b)]
    assert rows[1]["ratio"] == 1.0 and all(r["baseline"] == str(b) for r in rows)


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_the_tile_overlap_a_tile_message_points_to_is_an_option(photos: Path, command: str) -> None:
    """--tile 32 is refused with 'use --tile 64 or more, or a smaller --tile-overlap': eval
    and bench take --tile-overlap, as upscale does."""
    what = ["--size", "40x24", "--repeat", "1"] if command == "bench" else [photos, "--limit", "1"]
    args = (command, *what, "-m", "lanczos", "-q", "--json", "--tile", "32")
    code, _, err = invoke(*args)
    assert code == 2 and "or a smaller --tile-overlap" in " ".join(err.split())
    code, out, err = invoke(*args, "--tile-overlap", "8")
    assert code == 0, err
    assert json_lines(out)


@pytest.mark.parametrize("command", [("upscale", "in.png"), ("eval", "."), ("bench",)])
def test_an_image_given_as_the_model_is_named_an_image_by_every_command(
    command: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.jpg")
    Image.new("RGB", (40, 30)).save(tmp_path / "in.png")
    code, _, err = invoke(*command, "-m", "photo.jpg")
    assert code == 3, err
    message = " ".join(err.split())
    assert "photo.jpg is an image (JPEG), not a model: -m takes a model name" in message
    assert "(pocketsr upscale photo.jpg)" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "photo.jpg"]  # no output


def _reads_with_little_memory(monkeypatch: pytest.MonkeyPatch, available: int) -> list[str]:
    """Pretend ``available`` bytes are free, and record the files ``imageio.read_image``
    decodes when called through the package (eval's ground truth, bench's warm-up)."""
    from pocketsr_cli import imageio, memory

    monkeypatch.setattr(memory, "host_available_bytes", lambda **_: available)
    reads: list[str] = []
    real = imageio.read_image

    def read_image(path: Path, **kwargs: object) -> object:
        reads.append(Path(path).name)
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(imageio, "read_image", read_image)
    return reads


@pytest.fixture
def big_and_small(tmp_path: Path) -> Path:
    """A 512×512 photo, which at ×4 needs tens of MiB, and a 64×64 one, well under 1."""
    folder = tmp_path / "hr"
    folder.mkdir()
    save_opencv(folder / "a_big.png", make_photo_like(512, 512, seed=1))
    save_opencv(folder / "b_small.png", make_photo_like(64, 64, seed=2))
    return folder


def test_eval_skips_a_photo_too_large_for_the_memory_undecoded(
    big_and_small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As upscale admits an image: its need predicted from its header, a clear reason for
    it, nothing decoded."""
    reads = _reads_with_little_memory(monkeypatch, 8 << 20)
    code, out, err = invoke("eval", big_and_small, "-m", "lanczos", "--json", "-q")
    assert code == 1, err  # the photo that does not fit fails, as in upscale
    assert [r["count"] for r in json_lines(out)] == [1, 1]
    message = " ".join(err.split())
    assert f"failed {big_and_small / 'a_big.png'}: needs about" in message
    assert "to score 512×512 px, more than the 8 MiB available; not decoded" in message
    assert "--crop N scores an N×N window of it" in message
    assert reads == ["b_small.png"]


def test_bench_folder_warms_up_on_an_image_that_fits_in_memory(
    big_and_small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up decoded the first image whatever its size, outside the pipeline's
    admission: now it takes the first one the pipeline would admit."""
    reads = _reads_with_little_memory(monkeypatch, 8 << 20)
    code, out, err = invoke("bench", "--folder", big_and_small, "-m", "bicubic", "--json", "-q")
    assert code == 1, err  # the image that does not fit fails, as in upscale
    (row,) = json_lines(out)[:1]
    assert row["images"] == 1 and row["failed"] == 1 and "needs about" in row["first_error"]
    assert "--max-memory" not in row["first_error"]  # upscale's: bench has none
    # The warm-up (and the pipeline) decoded the image that fits, never the first one.
    assert "a_big.png" not in reads and "b_small.png" in reads


def test_bench_folder_counts_the_networks_first_passes_in_its_warm_up(
    big_and_small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up's memory check of the first image measures the tiles' working set,
    which runs the network (with --compile, compiles it) before the warm-up upscale: that
    is warm-up too, and the warm-up column left it out."""
    import time

    from pocketsr_cli.tiling import policy

    measure = policy.measure_memory

    def slow_measure(*args: object, **kwargs: object) -> object:
        time.sleep(2.0)  # as a first, compiling pass would: far over the upscale's
        return measure(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(policy, "measure_memory", slow_measure)
    (big_and_small / "a_big.png").unlink()  # one small image: quick
    args = ("bench", "--folder", big_and_small, "-m", "pocketsr-nano-x2", "--repeat", "1")
    code, out, err = invoke(*args, "--device", "cpu", "--json", "-q")
    assert code == 0, err
    (row,) = json_lines(out)[:1]
    assert row["warmup_seconds"] >= 2.0


def test_a_folder_of_sub_folders_only_says_they_are_not_searched(tmp_path: Path) -> None:
    """eval said only "no image files in DIR" of a folder whose photos are in sub-folders,
    where bench --folder counts them; it now says it as bench does, naming no -r."""
    (tmp_path / "sub").mkdir()
    save_opencv(tmp_path / "sub" / "photo.png", make_photo_like(64, 64, seed=1))
    code, _, err = invoke("eval", tmp_path, "-m", "bicubic")
    message = " ".join(err.split())
    assert code == 2, err
    assert (
        f"no image files in {tmp_path} (it has 1 sub-folder(s): they are not searched)" in message
    )
    assert "recursive" not in message and " -r" not in message


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("eval", "~/photos", "-m", "bicubic"),
            "error (usage): not a folder: ~/photos (the shell did not expand ~: write it "
            "unquoted, or give $HOME/photos)",
        ),
        (
            ("bench", "--folder", "~/photos", "-m", "bicubic"),
            "error (usage): --folder not found: ~/photos (the shell did not expand ~: write it "
            "unquoted, or give $HOME/photos)",
        ),
        (
            ("eval", "~nobody/photos", "-m", "bicubic"),
            "error (usage): not a folder: ~nobody/photos (the shell did not expand ~nobody: "
            "write it unquoted, or give its full path)",
        ),
    ],
)
def test_a_quoted_tilde_left_by_the_shell_is_said_not_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], said: str
) -> None:
    """As upscale says it of its inputs: eval and bench --folder said only that the folder
    was not there (or not a folder)."""
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(*args)
    assert (code, err) == (2, said + "\n")


HF_NO_ROOM = (
    "Not enough free disk space to download the file. The expected file size is: 0.07 MB. "
    "The target location /hf/hub/blobs only has 0.01 MB free disk space."
)


@pytest.mark.parametrize(
    "command",
    [
        ("eval", "{photos}"),
        ("bench", "--size", "32x24", "--repeat", "1"),
        ("bench", "--folder", "{photos}"),
    ],
)
def test_huggingface_hubs_warnings_while_a_model_downloads_are_warning_lines(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    """eval and bench resolve their models with no download bar: what huggingface_hub
    warned of as it fetched an ``hf://`` model (twice, its temporary file's folder and its
    blob's) reached the user as Python prints a warning (file, line number, source line);
    it is one warning line, as ``upscale`` and ``models download`` say it."""
    use_home(tmp_path, monkeypatch)
    data = save_safetensors(tmp_path / "hf" / "hfm.safetensors", compact_state(scale=2))
    write_manifest(user_models_dir(), "hfm", data, urls=("hf://o/r/hfm.safetensors",))
    module = types.ModuleType("huggingface_hub")
    origin = "/venv/lib/python3.11/site-packages/huggingface_hub/file_download.py"

    def hf_hub_download(**kwargs: Any) -> str:
        for _ in range(2):
            warnings.warn_explicit(HF_NO_ROOM, UserWarning, origin, 773)
        return str(tmp_path / "hf" / "hfm.safetensors")

    module.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    args = [a.format(photos=photos) for a in command]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Python's once-per-place filter hides nothing here
        code, out, err = invoke(*args, "-m", "hfm", "--json", "-q")
    assert code == 0, err
    assert [str(w.message) for w in caught] == []  # none left to Python to print
    said = [line for line in err.splitlines() if "huggingface_hub" in line]
    assert said == [f"warning: huggingface_hub: {HF_NO_ROOM}"]  # once, and kept under -q
    assert json_lines(out)
