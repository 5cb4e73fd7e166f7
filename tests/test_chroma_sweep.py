"""scripts/chroma_sweep.py: its table, its candidates and its measures do what the model
card says they do."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chroma_sweep.py"


@pytest.fixture(scope="module")
def sweep() -> dict[str, Any]:
    with mock.patch.object(sys, "path", [str(SCRIPT.parent), *sys.path]):  # as python runs it
        return runpy.run_path(str(SCRIPT), run_name="_tested")


def test_crops_with_no_neutral_edges_leave_the_neutral_columns_out(sweep: Any) -> None:
    nan = float("nan")
    rows = {"none": [(30.0, 29.0, 40.0, 1.0, 0.5, 0.4, 12.0, 20.0, nan)] * 2}
    assert sweep["summary"](rows)["none"][-2:] == ["-", "-"]
    rows["none"].append((30.0, 29.0, 40.0, 1.0, 0.5, 0.4, 14.0, 20.0, 9.0))
    cells = sweep["summary"](rows)["none"]
    assert cells[-3:] == ["14.00", "9.00", "9.00"]  # the worst p99, then the one crop's


def colour_ramp(side: int = 16) -> np.ndarray:
    """A grey with a red-to-blue ramp across it, ``side`` px (8-bit RGB)."""
    t = np.linspace(0, 1, side)[None, :, None]
    rgb = 128 + 60 * (t * np.array([-1.0, 0, 1]) + (1 - t) * np.array([1.0, 0, -1]))
    return np.repeat(rgb, side, 0).round().astype(np.uint8)


def test_the_smooth_bounds_are_the_repeated_ones_brought_up_bilinearly(sweep: Any) -> None:
    gen = np.random.default_rng(1)
    plane = gen.normal(0, 20, (12, 10)).astype(np.float32)
    lo3, hi3 = sweep["bounds3"](plane, (48, 40))
    lo, hi = sweep["bounds3_smooth"](plane, (48, 40))
    up = torch.nn.functional.interpolate
    for smooth, repeated in ((lo, lo3), (hi, hi3)):
        per_pixel = torch.from_numpy(np.ascontiguousarray(repeated[::4, ::4]))[None, None]
        want = up(per_pixel, scale_factor=4, mode="bilinear", align_corners=False)[0, 0]
        assert np.allclose(smooth, want.numpy(), atol=1e-3)
    assert (lo <= hi).all() and not np.allclose(lo, lo3)


def test_the_chroma_mesh_finds_colour_in_blocks_of_the_inputs_pixels(sweep: Any) -> None:
    lr = colour_ramp(16)
    blocks = np.repeat(np.repeat(lr, 4, 0), 4, 1)  # each input pixel's colour as a block
    smooth = cv2.resize(lr, (64, 64), interpolation=cv2.INTER_LINEAR)
    mean, top, step = sweep["chroma_mesh"](blocks, smooth, 4)
    assert mean > 0.5 and top >= mean and step > 1
    assert sweep["chroma_mesh"](smooth, smooth, 4) == (0, 0, 0)
    shifted = np.roll(blocks, 2, axis=1)  # blocks off the input's pitch: no step at it
    assert sweep["chroma_mesh"](shifted[:, 4:-4], smooth[:, 4:-4], 4)[2] < 0
