"""scripts/gpu_check.sh and scripts/gpu_check.py: the GPU check's CPU toy mode end to end
(so that the command a GPU session runs cannot rot), its CLI stand-in and its summary."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULT_FILES = {"gpu_check.json", "log.txt", "pytest.txt", "bench.jsonl", "folder.jsonl"}
RESULT_FILES |= {"forward.jsonl"}


def _gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_toy_mode_runs_every_check_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ, "DEVICE": "cpu", "SIZE": "small", "PYTHON": sys.executable,
        "OUT": str(out), "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh")],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == RESULT_FILES  # at most 8 files come back
    summary = json.loads((out / "gpu_check.json").read_text())
    gpu_check = _gpu_check()
    assert list(summary["checks"]) == list(gpu_check.CHECKS)
    failed = {k: v for k, v in summary["checks"].items() if v["status"] != "pass"}
    assert summary["ok"] and not failed, (failed, (out / "log.txt").read_text()[-3000:])
    figures = summary["figures"]
    assert figures["default_model"] == "pocketsr-compact-x4"
    keys = ("ms_per_4k_fp16_upscaler", "ms_per_4k_fp16_network", "images_per_s_4k_jpeg")
    for key in (*keys, "images_per_s_4k_jpeg_memory_given_back"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["upscale_cli_images_per_s_wall"] > 0
    phases = figures["startup_phases"]
    assert list(phases) == [
        "import_torch", "import_cli", "device_init", "model_load", "upscaler_open",
        "first_image", "second_image", "third_image",
    ]  # fmt: skip
    assert all(seconds >= 0 for seconds in phases.values())
    assert summary["pytest"]["passed"] >= 7 and summary["pytest"]["failed"] == 0
    bench = _lines(out / "bench.jsonl")
    steps = {r["step"] for r in bench if "seconds_per_4k" in r}
    assert steps == {
        "bench_bundled_fp16",
        "bench_bundled_fp32",
        "bench_arch_fp16",
        "bench_arch_fp32",
    }
    arch = {r["model"] for r in bench if r["step"] == "bench_arch_fp16"}
    assert arch == {"realesr-general-x4v3-arch.safetensors", "realesrgan-x4plus-arch.safetensors"}
    lines = _lines(out / "forward.jsonl")
    forward = [r for r in lines if r["kind"] == "forward"]
    assert all("error" not in r and r["finite"] for r in forward)
    transfers = {r["way"]: r for r in lines if r["kind"] == "transfer"}
    assert set(transfers) == {"planar", "host_layout"}  # pinned: CUDA only
    assert all(r["exact"] and r["ms"] > 0 for r in transfers.values())
    assert set(figures["transfer_ms_4k"]) == set(transfers)
    assert {(r["precision"], r["layout"]) for r in forward} == {
        (p, layout) for p in ("fp32", "fp16", "bf16") for layout in ("nchw", "channels_last")
    }


def test_cli_stand_in_gives_the_figures_the_summary_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the GPU image cannot import the CLI, gpu_check.py's stand-in takes its place."""
    gpu_check = _gpu_check()
    photos = tmp_path / "photos"
    gpu_check.make_photos(photos, 2, (24, 16))
    common = ["--device", "cpu", "--json", "--quiet", "--offline"]
    assert gpu_check.run_cli(["models", "list", "--json"]) == 0
    models = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"name": "bicubic", "default": False, "where": "bundled"} in models
    assert any(m["default"] for m in models)
    bench = ["bench", "-m", "bicubic", "--size", "16x8", "--repeat", "1", "--precision", "fp32"]
    assert gpu_check.run_cli([*bench, *common]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["model"] == "bicubic" and record["seconds_per_4k"] > 0
    folder = ["bench", "-m", "bicubic", "--folder", str(photos), "--format", "jpg", *common]
    assert gpu_check.run_cli(folder) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["mode"] == "folder" and record["images"] == 2 and record["images_per_s"] > 0
    upscale = ["upscale", str(photos), "-o", str(tmp_path / "up"), "-m", "bicubic"]
    assert gpu_check.run_cli([*upscale, "--format", "jpg", *common]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["type"] for line in lines] == ["image", "image", "summary"]
    assert lines[-1]["summary"]["ok"] == 2
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["photo_00.jpg", "photo_01.jpg"]


def test_summary_of_a_run_cut_short_lists_every_check(tmp_path: Path) -> None:
    gpu_check = _gpu_check()
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    (work / "steps.jsonl").write_text(
        '{"check": "env", "status": "pass", "rc": 0, "seconds": 1.0, "limit_s": 60, "note": ""}\n'
    )
    summary = gpu_check.summarize(work, out, {"device": "cuda"})
    assert list(summary["checks"]) == list(gpu_check.CHECKS)
    assert summary["checks"]["env"]["status"] == "pass"
    assert summary["checks"]["forward"]["status"] == "not run"
    assert not summary["ok"] and summary["figures"]["images_per_s_4k_jpeg"] is None
    assert json.loads((out / "gpu_check.json").read_text()) == summary


def test_architecture_files_load_as_their_families(tmp_path: Path) -> None:
    written = _gpu_check().make_arch_weights(tmp_path, small=True)
    assert [(w["arch"], w["family"]) for w in written] == [
        ("Compact", "spandrel:Compact"),
        ("ESRGAN", "spandrel:ESRGAN"),
    ]
