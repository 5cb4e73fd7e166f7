"""The review page in a real browser: headless Chromium opens a page made by ``pocketsr
report``, its ``#selftest`` script walks every card with the keyboard (``j``, ``c``),
waits for every picture, moves the slider by key, input and pointer, and writes what
happened into the DOM (read back with ``--dump-dom``); a screenshot then shows the crop's
pixels exactly as written, before left of the moved divider and after right of it.

Chromium is Debian's ``chromium`` package, which ``.ci/run`` installs (or the browser
named by ``POCKETSR_CHROMIUM``); where none is installed or it cannot start, the test
skips and says so.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _imagegen import make_photo_like
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli.cli import app

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 1000)
CROP = 96


def find_chromium() -> str | None:
    named = os.environ.get("POCKETSR_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium installed (looked for $POCKETSR_CHROMIUM, "
            f"{', '.join(BROWSERS)}); .ci/run installs Debian's chromium package where "
            "apt-get can"
        )
    try:
        probe = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{path} does not start: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"{path} --version failed: {(probe.stderr or probe.stdout).strip()[-300:]}")
    return path


def headless(chromium: str, profile: Path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url``; its stdout."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=30000",
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A page of a real (bicubic ×2) run: three photos, a corrupt file, a text file; two
    crops per image, pictures in ``review_files/``."""
    root = tmp_path_factory.mktemp("browser")
    shoot = root / "shoot"
    shoot.mkdir()
    for i in range(3):
        Image.fromarray(make_photo_like(90, 120, seed=10 + i)).save(shoot / f"photo {i}.png")
    (shoot / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (shoot / "readme.txt").write_text("not a photo")
    runner = CliRunner()
    out = root / "out"
    result = runner.invoke(
        app, ["upscale", str(shoot), "-o", str(out), "-m", "bicubic", "-s", "2", "--json"]
    )
    assert result.exit_code == 1, result.stderr  # broken.jpg
    log = root / "run.jsonl"
    log.write_text(result.stdout)
    page = root / "review.html"
    args = ["report", str(log), "-o", str(page), "--files", "--crop", str(CROP), "--crops", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return page


def test_every_picture_loads_and_the_slider_moves(chromium: str, page: Path) -> None:
    dom = headless(chromium, page.parent / "profile-dom", page.as_uri() + "#selftest", "--dump-dom")
    found = re.search(r'data-selftest="([^"]*)"', dom)
    assert found, "the page's self-test did not finish:\n" + dom[-3000:]
    report = json.loads(html.unescape(found.group(1)))
    assert report["errors"] == []
    assert report["cards"] == 5 and report["visited"] == 5 and report["nav"] is True
    # Three pictured cards: up to two crops (before + after each) and a thumbnail.
    assert report["broken"] == []
    pictures = page.read_text().count("<img ")
    assert pictures >= 3 * 3 + 2
    assert report["images"] == report["loaded"] == pictures
    slider = report["slider"]
    assert slider["start"] == 50 and slider["key"] == 45
    assert slider["shiftKey"] == pytest.approx(45 + 100 / CROP)  # one output pixel
    assert slider["input"] == 20 and slider["sliderValue"] == 20
    assert slider["pointer"] == pytest.approx(75, abs=1)
    assert (slider["before"], slider["back"], slider["after"]) == (100, 75, 0)
    assert slider["clipStart"] != slider["clipEnd"]
    exact = report["exact"]
    assert exact["dpr"] == 1 and exact["cssWidth"] == exact["natural"] == exact["w"] == CROP
    assert exact["rendering"] == "pixelated"
    assert report["zoom"] == {"zoom": 2, "cssWidth": 2 * CROP}


def find_row(shot: np.ndarray, needle: np.ndarray) -> tuple[int, int] | None:
    """``(y, x)`` where ``needle`` (``L×3``) appears in a row of ``shot``, or None."""
    first = np.all(shot == needle[0], axis=2)
    for y, x in zip(*np.nonzero(first), strict=True):
        if np.array_equal(shot[y, x : x + len(needle)], needle):
            return int(y), int(x)
    return None


def test_the_screenshot_shows_the_crop_pixel_for_pixel(chromium: str, page: Path) -> None:
    shot_path = page.parent / "shot.png"
    headless(
        chromium,
        page.parent / "profile-shot",
        page.as_uri() + "#selftest",
        f"--screenshot={shot_path}",
    )
    with Image.open(shot_path) as im:
        assert im.size == WINDOW
        shot = np.asarray(im.convert("RGB"))
    assert shot.std() > 10  # not a blank page
    # After the self-test the first pictured card's divider sits at 25 %: before on its
    # left, after on its right, each exactly the pixels written (100 %, no smoothing).
    folder = page.parent / "review_files"
    first = min(folder.glob("*-0-after.png"))
    after = np.asarray(Image.open(first).convert("RGB"))
    before = np.asarray(Image.open(first.with_name(first.name.replace("after", "before"))))
    row, left = CROP // 2, int(CROP * 0.3)
    hit = find_row(shot, after[row, left : CROP - 2])
    assert hit is not None, "the after crop is not on screen pixel for pixel"
    y, x = hit
    x0 = x - left  # the frame's left edge on screen
    np.testing.assert_array_equal(
        shot[y, x0 + 1 : x0 + int(CROP * 0.22)], before[row, 1 : int(CROP * 0.22)]
    )
    for dy in (-row + 1, CROP - row - 2):  # the whole crop is there, top to bottom
        np.testing.assert_array_equal(shot[y + dy, x : x + 20], after[row + dy, left : left + 20])
