"""scripts/api_speed.py: the Python API's seconds per image, the first image a warm-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "api_speed.py"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_it_times_every_image_but_the_first_and_says_if_memory_is_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    env = {**os.environ, "POCKETSR_KEEP_FREED_MEMORY": "0"}
    done = _run(str(tmp_path), "-m", "bicubic", env=env)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert (line["model"], line["images"], line["input"], line["output"]) == (
        "bicubic",
        2,
        "16x12",
        "64x48",
    )
    assert line["keeps_freed_memory"] is False
    assert 0 <= line["best_s"] <= line["median_s"] <= 60


def test_one_image_is_not_enough(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    done = _run(str(tmp_path), "-m", "bicubic")
    assert done.returncode == 2 and "at least two images" in done.stderr
