"""The GPU training recipe (scripts/gpu_bundle.py + scripts/gpu_train.sh), run end to end on
the CPU at toy size, so the command a GPU session runs first cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
from safetensors.torch import load_file

from pocketsr_cli.train.compact import last_conv_index
from pocketsr_cli.train.validate import VAL_METRICS

REPO = Path(__file__).resolve().parents[1]


def _photo(path: Path, seed: int, size: tuple[int, int] = (220, 300)) -> None:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((*size, 3)) * 255).astype(np.uint8), (7, 7), 2.0)
    cv2.imwrite(str(path), img)


EXTRA_PHOTO = "Dragonfly_by_Bolly.jpg"  # named by scripts/extra_train_photos.txt


def _bundle(teacher_dir: Path, tmp_path: Path) -> Path:
    """scripts/gpu_bundle.py on four toy photos (LadyBird: validation), without wheels."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, name in enumerate(("Aqua.jpg", "Kite.jpg", "LadyBird.jpg", EXTRA_PHOTO)):
        _photo(photos / name, seed)
    bundle = tmp_path / "bundle"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_bundle.py"), "--photos", str(photos),
         "--teacher", str(teacher_dir), "--out", str(bundle), "--no-wheels", "--val-side", "96"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return bundle


def _toy_env(bundle: Path, out: Path) -> dict[str, str]:
    return {
        **os.environ, "PYTHON": sys.executable, "BUNDLE": str(bundle), "OUT": str(out),
        "DEVICE": "cpu", "MINUTES": "0.15", "BATCH": "2", "LR_SIZE": "16", "WORKERS": "1",
        "EVAL_EVERY": "1", "VAL_CROP": "64", "THREADS": "1",
    }  # fmt: skip


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bash scripts/<script>`` with ``env``, its output captured (not checked)."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script)],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def test_gpu_recipe_runs_end_to_end_on_cpu_at_toy_size(teacher_dir: Path, tmp_path: Path) -> None:
    bundle, out = _bundle(teacher_dir, tmp_path), tmp_path / "out"
    listing = json.loads((bundle / "bundle.json").read_text())["files"]
    extra = EXTRA_PHOTO
    assert {"photos/Aqua.jpg", "photos/Kite.jpg", f"photos/{extra}", "val/LadyBird.png"} <= set(
        listing
    )
    assert "extra.txt" in listing  # the trainer is told which extra photos count
    assert not any(name.startswith("photos/LadyBird") for name in listing)  # never trained on
    env = _toy_env(bundle, out)
    result = _run("gpu_train.sh", env)
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8, files  # what the GPU machine sends back
    x4 = load_file(str(out / "pocketsr-compact-x4.safetensors"))
    x2 = load_file(str(out / "pocketsr-compact-x2.safetensors"))
    head = f"body.{last_conv_index(x4)}.weight"
    assert x4[head].shape[0] == 48 and x2[head].shape[0] == 12
    metrics = [
        json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(metrics) >= 2  # at least one evaluation on the way and one at the end
    for entry in metrics:
        for kind in ("real", "bicubic"):
            assert set(entry[kind]) == {*VAL_METRICS, "detail_geo"}
    scored = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert {(r["degradation"], r["floor"]) for r in scored} == {
        ("real", True),
        ("real", False),
        ("bicubic", True),
        ("bicubic", False),
    }
    assert all(r["count"] == 1 and r["detail"] is not None for r in scored)
    # the evaluations' weights come back in exports.tar, each scored in metrics.jsonl: all
    # of them while they fit 15 MiB, else six spread over the run with the last among them
    with tarfile.open(out / "exports.tar") as tar:
        kept = sorted(Path(name).name for name in tar.getnames() if name.endswith(".safetensors"))
    scored_names = [Path(entry["kept"]).name for entry in metrics]
    assert set(kept) <= set(scored_names) and scored_names[-1] in kept
    assert len(kept) == min(len(scored_names), 6)
    assert (out / "exports.tar").stat().st_size < 16 * 2**20


def test_two_runs_side_by_side_come_back_within_eight_files(
    teacher_dir: Path, tmp_path: Path
) -> None:
    """scripts/gpu_train_two.sh (run P alone here: run R is gpu_train.sh as tested above):
    from the bundled model, packed so that each returned file stays under 16 MiB."""
    bundle, out = _bundle(teacher_dir, tmp_path), tmp_path / "out"
    result = _run("gpu_train_two.sh", {**_toy_env(bundle, out), "RUNS": "P"})
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["P.exports.tar", "P.last.pt", "P.log", "P.tar"]
    assert all((out / name).stat().st_size < 16 * 2**20 for name in files)
    with tarfile.open(out / "P.tar") as tar:
        config = json.loads(tar.extractfile("./run/config.json").read())  # type: ignore[union-attr]
    assert config["init"] == "models/pocketsr-compact-x4.safetensors"
    assert config["band_gain"] == 1.1 and config["weights"]["perceptual"] == 0.02


def test_the_recipe_trains_a_x2_network_from_the_fold(teacher_dir: Path, tmp_path: Path) -> None:
    """SCALE=2: online x2 patches (the teacher's x4 labels area-downscaled), a clean-input
    share with the ground truth as target, no fold, and the eval at x2."""
    bundle, out = _bundle(teacher_dir, tmp_path), tmp_path / "out"
    env = {
        **_toy_env(bundle, out), "SCALE": "2", "INIT": "models/pocketsr-compact-x2.safetensors",
        "EXTRA": "--mild-fraction 0.5 --mild-kind clean",
    }  # fmt: skip
    result = _run("gpu_train.sh", env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "pocketsr-compact-x4.safetensors").exists()
    x2 = load_file(str(out / "pocketsr-compact-x2.safetensors"))
    assert x2[f"body.{last_conv_index(x2)}.weight"].shape[0] == 12
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["scale"] == 2 and config["mild_fraction"] == 0.5
    scored = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert {r["scale"] for r in scored} == {2} and len(scored) == 4
    missing = _run("gpu_train.sh", {**env, "INIT": ""})
    assert missing.returncode == 2 and "needs INIT" in missing.stderr


def test_exports_are_thinned_evenly_keeping_the_first_and_the_last() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "thin_exports", REPO / "scripts" / "thin_exports.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert module.thinned(steps, 6) == [10, 30, 50, 60, 80, 100]
    assert module.thinned(steps, 12) == steps
    assert module.thinned(steps, 1) == [100] and module.thinned(steps, 2) == [10, 100]
