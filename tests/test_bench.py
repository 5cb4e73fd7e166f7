"""``pocketsr bench --folder`` end to end, peak-memory measurement, the model-time proxy.

Weight-free models only (``bicubic``, ``lanczos``) and tiny generated photos, on the CPU.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _imagegen import make_photo_like, save_opencv
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli.cli import app
from pocketsr_cli.evaluation import peakmem
from pocketsr_cli.evaluation.bench import TimedUpscaler
from pocketsr_cli.evaluation.peakmem import PeakMemory

runner = CliRunner()
HAS_STATM = Path("/proc/self/statm").exists()
SIZES = [(48, 64), (40, 52), (33, 45)]  # (h, w); the last one odd-sized


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A PNG, a JPEG (written with OpenCV) and a Pillow PNG, plus a note that is no image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    save_opencv(folder / "a.png", make_photo_like(*SIZES[0], seed=1))
    save_opencv(folder / "b.jpg", make_photo_like(*SIZES[1], seed=2), ext=".jpg")
    Image.fromarray(make_photo_like(*SIZES[2], seed=3)).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def temp_dirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The temporary folders the bench creates (recorded, to check that they are gone)."""
    created: list[Path] = []
    real = tempfile.TemporaryDirectory

    def recording(*args: Any, **kwargs: Any) -> tempfile.TemporaryDirectory[str]:
        handle = real(*args, **kwargs)
        created.append(Path(handle.name))
        return handle

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    return created


# ------------------------------------------------------------------------------ CLI, --folder


def test_folder_json_has_one_object_per_model(photos: Path, temp_dirs: list[Path]) -> None:
    before = listing(photos)
    code, out, err = invoke(
        "bench", "--folder", photos, "-m", "bicubic", "-m", "lanczos", "--json", "-q"
    )
    assert code == 0, err
    records = json_lines(out)
    assert [r["model"] for r in records] == ["bicubic", "lanczos"]
    out_mp = sum(16 * h * w for h, w in SIZES) / 1e6
    for r in records:
        assert r["mode"] == "folder" and r["device"] == "cpu" and r["format"] is None
        assert r["images"] == 3 and r["failed"] == 0 and r["first_error"] is None
        assert r["repeat"] == 1 and len(r["seconds"]) == 1
        assert r["wall_seconds"] == r["seconds"][0] > 0
        assert r["model_seconds"] > 0 and r["mp_per_s"] > 0 and r["images_per_s"] > 0
        assert r["out_megapixels"] == pytest.approx(out_mp)
        assert r["mp_per_s"] == pytest.approx(out_mp / r["wall_seconds"])
        assert r["input_mp_per_s"] == pytest.approx(r["mp_per_s"] / 16)
        assert r["seconds_per_image"] == pytest.approx(r["wall_seconds"] / 3)
        assert r["e2e_over_model"] == pytest.approx(r["wall_seconds"] / r["model_seconds"])
        assert r["device_peak_bytes"] is None
        if HAS_STATM:
            assert r["host_peak_bytes"] > 0 and r["host_peak_lifetime"] is False
    assert listing(photos) == before  # nothing written beside the inputs
    assert temp_dirs and not any(d.exists() for d in temp_dirs)  # outputs went, and are gone


def test_folder_run_times_each_ensemble(photos: Path) -> None:
    args = ("bench", "--folder", photos, "-m", "bicubic", "--json", "-q")
    code, out, err = invoke(*args, "--ensemble", "none", "--ensemble", "pad")
    assert code == 0, err
    plain, pad = json_lines(out)
    assert (plain["model"], pad["model"]) == ("bicubic", "bicubic +pad")
    assert (pad["ensemble"], pad["ensemble_weight"]) == ("pad", 0.5)
    assert plain["images"] == pad["images"] == 3 and pad["failed"] == 0


def test_folder_table_shows_throughput_and_peak_ram(photos: Path) -> None:
    code, out, err = invoke("bench", "--folder", photos, "-m", "lanczos", "--repeat", "2")
    assert code == 0, err
    assert "peak RAM" not in err  # the table is the report: stdout
    for text in ("MP/s out", "images/s", "s/image", "model s/image", "e2e/model", "peak RAM"):
        assert text in out
    assert "3 image(s)" in out and "best of 2 passes" in out and "lanczos" in out


def test_a_corrupt_image_is_reported_as_failed_and_exits_1(
    photos: Path, temp_dirs: list[Path]
) -> None:
    good = (photos / "b.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    before = listing(photos)
    code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", "--json", "-q")
    assert code == 1, err
    (record,) = json_lines(out)
    assert record["images"] == 3 and record["failed"] == 1
    assert record["first_error"].startswith(str(photos / "broken.jpg"))
    assert record["mp_per_s"] > 0
    assert f"failed  {photos / 'broken.jpg'}: " in err and "Traceback" not in err
    assert listing(photos) == before
    assert temp_dirs and not any(d.exists() for d in temp_dirs)


def test_a_folder_of_failures_reports_no_precision(tmp_path: Path) -> None:
    """Every image failing, the lanczos row said fp32 where a run with images says uint8:
    nothing ran, so nothing is said ('-', null), for a network as for a resampler."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for model in ("lanczos", "pocketsr-compact-x4"):
        code, out, err = invoke("bench", "--folder", folder, "-m", model, "--json", "-q")
        assert code == 1, err
        (record,) = json_lines(out)
        assert record["images"] == 0 and record["precision"] is None
    code, out, err = invoke("bench", "--folder", folder, "-m", "lanczos", "-q")
    assert code == 1, err
    (row,) = [line for line in out.splitlines() if "lanczos" in line]
    assert row.split("│")[2].strip() == "-" and "fp32" not in out


def test_every_failed_image_is_listed_with_its_reason(photos: Path) -> None:
    """Two truncated JPEGs: the JSON line and the human output named only the first
    (``first_error``); ``failures`` lists each, and stderr has a line for each."""
    good = (photos / "b.jpg").read_bytes()
    (photos / "broken1.jpg").write_bytes(good[: len(good) // 3])
    (photos / "broken2.jpg").write_bytes(good[: len(good) // 4])
    code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", "--json", "-q")
    assert code == 1, err
    (record,) = json_lines(out)
    assert record["failed"] == 2 and record["images"] == 3
    assert [f["input"] for f in record["failures"]] == [
        str(photos / "broken1.jpg"),
        str(photos / "broken2.jpg"),
    ]
    assert all("truncated" in f["error"] for f in record["failures"]), record["failures"]
    assert record["first_error"] == f"{photos / 'broken1.jpg'}: {record['failures'][0]['error']}"
    for quiet in ((), ("-q",)):
        # As upscale shows a failed input: its line (under -q too) and, without -q, again
        # under the table; bench showed each as a warning.
        code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", *quiet)
        assert code == 1 and "3 image(s)" not in err, err
        lines = err.splitlines()
        assert not [line for line in lines if line.startswith("warning:")], err
        for name in ("broken1.jpg", "broken2.jpg"):
            failed = [line for line in lines if line.startswith(f"failed  {photos / name}: ")]
            assert len(failed) == 1 and "file is truncated" in failed[0], err
            again = [line for line in lines if line.startswith(f"failed: {photos / name}: ")]
            assert len(again) == (0 if quiet else 1), err
    # With several rows, a file that fails the same way for each is listed once, for
    # every model (it was listed once per row, and again so under the table).
    code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", "-m", "lanczos")
    assert code == 1
    for name in ("broken1.jpg", "broken2.jpg"):
        lines = [line for line in err.splitlines() if f"{photos / name}" in line]
        heads = ("failed  ", "failed: ")
        assert [line.partition(": file is truncated")[0] for line in lines] == [
            f"{head}{photos / name} (every model)" for head in heads
        ], err
    # --json keeps each row's own failures.
    code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", "-m", "lanczos", "--json")
    assert [len(record["failures"]) for record in json_lines(out)] == [2, 2]


def test_an_image_failed_by_some_models_or_for_different_reasons_names_them(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image is listed once per reason, naming the rows it failed in for that reason:
    those of a third row (here a copy of lanczos's, with one failure gone and the other's
    reason changed) are not folded into the others'."""
    import dataclasses

    from pocketsr_cli.evaluation import bench as bench_module
    from pocketsr_cli.evaluation.bench import FailedImage

    good = (photos / "b.jpg").read_bytes()
    (photos / "broken1.jpg").write_bytes(good[: len(good) // 3])
    (photos / "broken2.jpg").write_bytes(good[: len(good) // 4])
    real = bench_module.bench_folder

    def with_a_third_row(*args: Any, **kwargs: Any) -> Any:
        report = real(*args, **kwargs)
        first = report.models[-1].failures[0]
        other = FailedImage(first.input, "out of memory")
        report.models.append(dataclasses.replace(report.models[-1], model="x", failures=[other]))
        return report

    monkeypatch.setattr(bench_module, "bench_folder", with_a_third_row)
    code, _, err = invoke("bench", "--folder", photos, "-m", "bicubic", "-m", "lanczos", "-q")
    assert code == 1
    one, two = photos / "broken1.jpg", photos / "broken2.jpg"
    lines = [line for line in err.splitlines() if line.startswith("failed  ")]
    assert [line.rpartition(": ")[0] for line in lines] == [
        f"failed  {one} (bicubic, lanczos)",
        f"failed  {one} (x)",
        f"failed  {two} (bicubic, lanczos)",
    ], err
    assert lines[1] == f"failed  {one} (x): out of memory", err


def test_unusable_files_and_a_format_switch_are_reported_as_upscale_reports_them(
    photos: Path,
) -> None:
    """A FIFO and a broken symbolic link were left out silently (upscale fails them), and
    an RGBA image asked as JPEG was written as PNG without upscale's warning."""
    import os

    os.mkfifo(photos / "pipe.png")
    (photos / "gone.png").symlink_to(photos / "nowhere.png")
    Image.new("RGBA", (24, 20), (200, 100, 50, 128)).save(photos / "d.png")
    args = ("bench", "--folder", photos, "-m", "bicubic", "--format", "jpg")
    code, out, err = invoke(*args)
    text = " ".join(err.split())
    assert code == 1 and "Traceback" not in err, err
    assert f"failed {photos / 'pipe.png'}: not a regular file but a named pipe (FIFO)" in text
    assert f"failed {photos / 'gone.png'}: broken symbolic link" in text
    assert f"skipped {photos / 'notes.txt'}: not an image file (.txt)" in text
    assert f"bicubic: {photos / 'd.png'}: JPEG cannot store transparency; writing PNG" in text
    assert "4 image(s)" in out
    code, out, err = invoke(*args, "--json", "-q")
    (record,) = json_lines(out)
    assert code == 1 and record["images"] == 4 and record["failed"] == 0
    assert record["ignored"] == 3
    # Which files, in upscale --json's words (they went to stderr only, as text).
    not_run = {Path(r["input"]).name: r for r in record["not_run"]}
    assert sorted(not_run) == ["gone.png", "notes.txt", "pipe.png"]
    assert not_run["pipe.png"]["status"] == "failed" and not_run["pipe.png"]["output"] is None
    assert "named pipe (FIFO)" in not_run["pipe.png"]["error"]
    assert not_run["gone.png"]["error"].startswith("broken symbolic link")
    notes = not_run["notes.txt"]
    assert notes["status"] == "skipped" and notes["error"] is None
    assert notes["reason"] == "not an image file (.txt)" and notes["reason_code"] is not None
    upscaled = json_lines(invoke("upscale", photos / "notes.txt", "--json", "-q")[1])[0]
    assert set(notes) <= set(upscaled)  # upscale's keys
    assert any("JPEG cannot store transparency" in w for w in record["warnings"])
    text = " ".join(err.split())
    assert "failed" in text and "pipe.png" in text and "notes.txt" not in text  # as upscale's


def test_output_format_and_colliding_stems(photos: Path) -> None:
    save_opencv(photos / "a.jpg", make_photo_like(20, 24, seed=4), ext=".jpg")  # a.png too
    code, out, err = invoke(
        "bench", "--folder", photos, "-m", "bicubic", "--format", "webp", "--json", "-q"
    )
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["format"] == "webp" and record["images"] == 4 and record["failed"] == 0


def _bitstream(data: bytes) -> bytes:
    """A WebP's picture chunk: ``VP8L`` (lossless) or ``VP8 `` (lossy)."""
    return b"VP8L" if b"VP8L" in data else b"VP8 " if b"VP8 " in data else b"?"


@pytest.mark.parametrize(
    ("extra", "quality", "kept", "bitstream"),
    [
        ((), 95, 1, b"VP8L"),  # as upscale: the lossless WebP stays lossless, the rest at 95
        (("--quality", "90"), 90, 0, b"VP8 "),  # a quality asked: lossy, as upscale
    ],
)
def test_a_lossless_webp_is_timed_as_upscale_writes_it(
    photos: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: tuple[str, ...],
    quality: int,
    kept: int,
    bitstream: bytes,
) -> None:
    from pocketsr_cli import pipeline

    Image.fromarray(make_photo_like(20, 24, seed=5)).save(photos / "d.webp", lossless=True)
    written: dict[str, bytes] = {}
    real_run = pipeline.run

    def run_and_look(jobs: Any, *args: Any, **kwargs: Any) -> Any:
        summary = real_run(jobs, *args, **kwargs)
        for job in jobs:  # the outputs, before the temporary folder goes
            if job.output.suffix == ".webp":
                written[job.input.name] = _bitstream(job.output.read_bytes())
        return summary

    monkeypatch.setattr(pipeline, "run", run_and_look)
    command = ("bench", "--folder", photos, "-m", "bicubic", *extra)
    code, out, err = invoke(*command, "--json", "-q")
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["images"] == 4 and record["failed"] == 0
    assert written == {"d.webp": bitstream}  # what was timed is what upscale writes
    assert (record["quality"], record["lossless_images"]) == (quality, kept)

    # A folder of lossless WebPs only: the record's word for their quality; the table says so.
    for name in ("a.png", "b.jpg", "c.png"):
        (photos / name).unlink()
    code, out, err = invoke(*command, "--json", "-q")
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["quality"] == (quality if extra else "lossless")
    code, out, err = invoke(*command)
    assert code == 0, err
    assert ("(lossless)" in " ".join(out.split())) is not bool(extra)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--folder", "{tmp}/missing"), "--folder not found"),
        (("--folder", "{tmp}/photos/a.png"), "not a folder"),
        (("--folder", "{tmp}/empty"), "no image files"),
        (("--folder", "{tmp}/photos", "--size", "64x64"), "--size and --baseline"),
        (("--folder", "{tmp}/photos", "--format", "gif"), "unknown --format 'gif'"),
        (("--format", "png"), "--folder runs only"),
    ],
)
def test_bad_folder_options_are_one_line_usage_errors(
    photos: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    code, out, err = invoke("bench", "-m", "bicubic", *(a.format(tmp=tmp_path) for a in args))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_folder_of_sub_folders_advises_no_recursive_option_bench_lacks(tmp_path: Path) -> None:
    """bench --folder searches no sub-folder and has no -r: the message said "add
    -r/--recursive", which bench then refused as no such option."""
    (tmp_path / "2024").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "2024" / "a.png")
    code, out, err = invoke("bench", "-m", "bicubic", "--folder", tmp_path)
    assert code == 2 and out == ""
    assert "it has 1 sub-folder(s): they are not searched" in err, err
    assert "--recursive" not in err and len(err.strip().splitlines()) == 1


def test_a_folder_of_other_files_names_sub_folders_only_when_it_has_some(
    tmp_path: Path,
) -> None:
    """A folder of non-image files said "(sub-folders are not searched)" though it had
    none; with some, it counts them as a folder of only sub-folders does."""
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = invoke("bench", "-m", "bicubic", "--folder", tmp_path)
    assert code == 2 and out == "" and f"no image files in {tmp_path}" in err, err
    assert "sub-folder" not in err
    (tmp_path / "2024").mkdir()
    code, out, err = invoke("bench", "-m", "bicubic", "--folder", tmp_path)
    assert code == 2 and "it has 1 sub-folder(s): they are not searched" in err, err


def test_sub_folders_left_out_are_warned_of_as_upscale_does_without_advising_r(
    photos: Path,
) -> None:
    """bench --folder left a folder's sub-folders out silently, where upscale without -r
    counts them; bench has no -r, so the warning advises none.  --json carries it in
    each model's warnings."""
    (photos / "2024").mkdir()
    save_opencv(photos / "2024" / "d.png", make_photo_like(*SIZES[0], seed=4))
    (photos / ".thumbs").mkdir()  # hidden: not counted, as upscale does not count it
    note = f"{photos} has 1 sub-folder not scanned"
    code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", "-m", "lanczos")
    assert code == 0, err
    assert f"warning: {note}\n" in err and err.count(note) == 1, err
    assert "recursive" not in err and "-r" not in err.split()
    args = ("bench", "--folder", photos, "-m", "bicubic", "-m", "lanczos", "--json", "-q")
    code, out, err = invoke(*args)
    assert code == 0, err
    assert [record["warnings"][:1] for record in json_lines(out)] == [[note], [note]]
    assert [record["images"] for record in json_lines(out)] == [3, 3]


@pytest.mark.parametrize("command", ["bench", "upscale"])
def test_a_format_refused_lists_the_choices_help_shows(
    photos: Path, tmp_path: Path, command: str
) -> None:
    """One list: the refusal of an unknown --format, --help and completion agree."""
    from pocketsr_cli.cli import _complete

    code, help_text, _ = invoke(command, "--help")
    flat = " ".join(help_text.split())
    choices = "same, png, jpg, jpeg, webp, tiff, tif, bmp"
    assert code == 0 and choices in flat
    assert ", ".join(_complete.formats("")) == choices
    where = ("--folder", str(photos)) if command == "bench" else (str(photos),)
    code, _, err = invoke(command, *where, "-m", "bicubic", "--format", "gif")
    assert code == 2 and f"choose one of: {choices}" in " ".join(err.split())


def test_synthetic_run_reports_peak_memory() -> None:
    code, out, err = invoke("bench", "-m", "bicubic", "--size", "32x24", "--repeat", "1", "--json")
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["mode"] == "synthetic" and record["device_peak_bytes"] is None
    if HAS_STATM:
        assert record["host_peak_bytes"] > 0
    code, out, err = invoke("bench", "-m", "bicubic", "--size", "32x24", "--repeat", "1")
    assert code == 0 and "peak RAM" in out and "s per 4K" in out, err


def test_a_small_size_says_its_s_per_4k_is_no_estimate_of_4k() -> None:
    """--size 120x68 scaled a ×4 output of 480×272 up 64 times to '4K' and reported
    tens of seconds for a model that takes a few there, without a word: the per-call
    costs of a tiny input are not per-pixel ones."""
    args = ("bench", "-m", "bicubic", "--size", "120x68", "--repeat", "1", "--device", "cpu")
    code, out, err = invoke(*args, "--json")
    assert code == 0, err
    (record,) = json_lines(out)
    assert record["extrapolation"] == pytest.approx(3840 * 2160 / (480 * 272))
    note = " ".join(err.split())
    assert "here by up to 64× (bicubic's 480×272 output)" in note
    assert "no estimate of 4K" in note and "the default, 960x540" in note
    # Printed as a warning, so in the record's warnings too (they were [])
    (warning,) = record["warnings"]
    assert warning.startswith("s per 4K scales") and " ".join(warning.split()) in note
    code, out, err = invoke(*args)
    assert code == 0 and "no estimate of 4K" in " ".join(out.split()), err
    # The title points at what is printed under it: a line starting 'warning:'
    assert "(see the warning below)" in " ".join(out.split())
    assert "warning: s per 4K scales" in " ".join(err.split())


def test_the_note_starts_past_a_quarter_of_4k() -> None:
    """The default size writes a ×2 model's output at a quarter of 4K: no note there."""
    from pocketsr_cli.evaluation.bench import BenchReport, BenchResult

    def report(out_width: int, out_height: int) -> BenchReport:
        result = BenchResult(
            model="m",
            family="f",
            scale=2,
            params=0,
            precision="fp32",
            out_width=out_width,
            out_height=out_height,
            seconds=[1.0],
            best=1.0,
            seconds_per_4k=1.0,
            macs_per_pixel=None,
            extrapolation=3840 * 2160 / (out_width * out_height),
        )
        return BenchReport(1, 1, 1, "cpu", 1, "m", models=[result])

    assert report(1920, 1080).extrapolation_note() is None
    assert report(3840, 2160).extrapolation_note() is None
    assert "by up to 5× (m's 1920×864 output)" in (report(1920, 864).extrapolation_note() or "")
    assert BenchReport(1, 1, 1, "cpu", 1, "m").extrapolation_note() is None


def test_a_resampler_reports_the_8_bit_path_it_ran_not_the_precision_asked(
    photos: Path,
) -> None:
    """bicubic and lanczos draw 8-bit images on their 8-bit path on a CPU, where --precision
    does not apply: their row says uint8; a 16-bit image goes through the network path, in
    the precision asked."""
    synthetic = ("--size", "32x24", "--repeat", "1", "--precision", "bf16", "--json", "-q")
    code, out, err = invoke("bench", "-m", "bicubic", "-m", "lanczos", *synthetic)
    assert code == 0, err
    assert [r["precision"] for r in json_lines(out)] == ["uint8", "uint8"]
    code, out, err = invoke("bench", "-m", "lanczos", *synthetic[:-2])
    assert code == 0 and "uint8" in out and "bf16" not in out, out
    code, out, err = invoke(
        "bench", "--folder", photos, "-m", "lanczos", "--precision", "bf16", "--json", "-q"
    )
    assert code == 0, err
    assert [r["precision"] for r in json_lines(out)] == ["uint8"]
    save_opencv(photos / "d.png", make_photo_like(24, 32, seed=4, dtype=np.uint16))
    code, out, err = invoke(
        "bench", "--folder", photos, "-m", "lanczos", "--precision", "bf16", "--json", "-q"
    )
    assert code == 0, err
    assert [r["precision"] for r in json_lines(out)] == ["uint8+bf16"]


# ------------------------------------------------------------------------------ PeakMemory


@pytest.mark.skipif(not HAS_STATM, reason="needs /proc/self/statm")
def test_peak_memory_sees_an_allocation_freed_inside_the_block() -> None:
    with PeakMemory() as empty:
        pass
    with PeakMemory() as big:
        block = np.ones(200_000_000 // 8)  # 200 MB, touched
        time.sleep(0.1)  # let the sampler see it
        del block  # freed before the block ends: only the sampler can have caught it
    assert empty.host_peak_bytes is not None and big.host_peak_bytes is not None
    assert big.host_peak_bytes - empty.host_peak_bytes >= 150_000_000
    assert not big.host_peak_lifetime and big.host_start_bytes is not None


@pytest.mark.skipif(not HAS_STATM, reason="needs /proc/self/statm")
def test_the_anonymous_peak_counts_allocations_and_not_a_file_read_through_a_mapping(
    tmp_path: Path,
) -> None:
    """What a block allocates is in its anonymous peak; pages of a mapped file (as library
    code is mapped) are in its RSS only."""
    import mmap

    data = tmp_path / "mapped"
    data.write_bytes(b"\1" * 100_000_000)
    with PeakMemory() as empty:
        pass
    with (
        PeakMemory() as mapped,
        data.open("rb") as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        assert sum(view[i] for i in range(0, len(view), 4096)) > 0  # every page touched
        time.sleep(0.1)
    with PeakMemory() as big:
        block = np.ones(100_000_000 // 8)
        time.sleep(0.1)
        del block

    def above(peak: PeakMemory, anonymous: bool) -> int:
        figures = (
            (peak.anonymous_peak_bytes, empty.anonymous_peak_bytes)
            if anonymous
            else (
                peak.host_peak_bytes,
                empty.host_peak_bytes,
            )
        )
        assert figures[0] is not None and figures[1] is not None
        return figures[0] - figures[1]

    assert above(mapped, anonymous=False) >= 75_000_000
    assert above(mapped, anonymous=True) < 25_000_000
    assert above(big, anonymous=True) >= 75_000_000


@pytest.mark.skipif(not HAS_STATM, reason="needs /proc/self/statm")
def test_peak_memory_counts_what_is_alive_at_exit() -> None:
    with PeakMemory() as empty:
        pass
    with PeakMemory() as big:
        block = np.ones(200_000_000 // 8)
    assert big.host_peak_bytes - empty.host_peak_bytes >= 150_000_000  # type: ignore[operator]
    del block


def test_peak_memory_on_cpu_has_no_device_figure() -> None:
    import torch

    with PeakMemory(torch.device("cpu")) as peak:
        pass
    assert peak.device_peak_bytes is None and peak.device_reserved_peak_bytes is None


@pytest.mark.skipif(sys.platform == "win32", reason="no getrusage on Windows")
def test_without_statm_the_lifetime_peak_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(peakmem, "_STATM", tmp_path / "no-statm")
    with PeakMemory() as peak:
        pass
    assert peak.host_start_bytes is None
    assert peak.host_peak_lifetime is True
    assert peak.host_peak_bytes is not None and peak.host_peak_bytes > 1_000_000


# ------------------------------------------------------------------------------ TimedUpscaler


class _SlowDouble:
    """An ``ImageUpscaler`` fake: ×2 nearest neighbour after a fixed delay."""

    scale = 2

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        time.sleep(self.delay)
        if on_tile is not None:
            on_tile(1, 1)
        if pixels.size == 0:
            raise RuntimeError("empty image")
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


def test_timed_upscaler_adds_up_the_time_spent_in_upscale() -> None:
    inner = _SlowDouble(0.02)
    timed = TimedUpscaler(inner)
    assert timed.scale == 2
    pixels = np.zeros((3, 4, 3), np.uint8)
    ticks: list[tuple[int, int]] = []
    out = timed.upscale(pixels, lambda done, total: ticks.append((done, total)))
    assert out.shape == (6, 8, 3) and ticks == [(1, 1)]
    timed.upscale(pixels)
    assert timed.calls == 2 and 0.04 <= timed.seconds < 1.0
    with pytest.raises(RuntimeError):  # errors pass through, their time still counts
        timed.upscale(np.zeros((0, 0, 3), np.uint8))
    assert timed.calls == 3 and timed.seconds >= 0.06
    timed.reset()
    assert (timed.calls, timed.seconds) == (0, 0.0)


def test_the_pipeline_admits_images_by_the_timed_upscalers_own_memory_profile() -> None:
    """bench --folder runs the pipeline on a TimedUpscaler: it must see the wrapped
    upscaler's profile (here lanczos's 8-bit path), not a stand-in's."""
    import torch

    from pocketsr_cli.factory import UpscalerSpec, open_upscaler
    from pocketsr_cli.pipeline import upscaler_memory

    spec = UpscalerSpec(torch.device("cpu"))
    upscaler = open_upscaler(spec.resolve("lanczos", 4), spec)
    own = upscaler_memory(upscaler)
    assert own.uint8_path and upscaler_memory(TimedUpscaler(upscaler)) == own


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """torch's thread count as it was before the test (--threads sets it process-wide)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("restore_threads")
def test_threads_option_sets_the_model_threads(photos: Path, tmp_path: Path) -> None:
    """bench, upscale and eval take --threads and run the model on that many; bench's
    record shows it."""
    import torch

    args = ("-m", "bicubic", "--size", "64x48", "--repeat", "1", "--json", "-q")
    code, out, err = invoke("bench", *args, "--threads", "1")
    assert code == 0, err
    assert [r["threads"] for r in json_lines(out)] == [1] and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    code, _, err = invoke(
        "upscale", photos, "-o", tmp_path / "out", "-m", "bicubic", "--threads", "1", "-q"
    )
    assert code == 0, err
    assert len(listing(tmp_path / "out")) == 3 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    code, _, err = invoke("eval", photos, "-m", "bicubic", "--threads", "1", "-q")
    assert code == 0, err
    assert torch.get_num_threads() == 1
    code, _, err = invoke("bench", "-m", "bicubic", "--threads", "0")
    assert code == 2 and "--threads" in err


def test_a_photo_too_large_advises_only_what_bench_folder_can_change(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused from its header, as upscale refuses it, but its message told the user to
    choose a smaller scale or size, which bench --folder cannot set (it has no -s, no
    --outscale, no --width): it names -m and --tile (spelling.offers), and not
    --max-memory or POCKETSR_MAX_MEMORY, which bench does not read."""
    from pocketsr_cli import memory

    Image.new("RGB", (2000, 2000)).save(photos / "big.png")  # ×4: 8000x8000, 180 MiB out
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 64 << 20)
    code, out, err = invoke("bench", "--folder", photos, "-m", "bicubic", "--json", "-q")
    assert code == 1, err
    (record,) = json_lines(out)
    assert record["failed"] == 1 and record["images"] == 3
    error = record["first_error"]
    assert error.startswith(f"{photos / 'big.png'}: needs about "), error
    assert "more than the 64 MiB of memory available; not decoded." in error
    assert error.endswith("Choose a model of a smaller factor (-m) or --tile"), error
    assert "scale or size" not in error and "MAX_MEMORY" not in error
