"""scripts/ring_sweep.py: the ring-guard candidates it compares, and its halo measure, do
what the model card says they do."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ring_sweep.py"


@pytest.fixture(scope="module")
def sweep() -> dict[str, Any]:
    with mock.patch.object(sys, "path", [str(SCRIPT.parent), *sys.path]):  # as python runs it
        return runpy.run_path(str(SCRIPT), run_name="_tested")


def step() -> torch.Tensor:
    """A grey 0.2 | 0.8 step, 6 x 6 input pixels."""
    x = torch.full((1, 3, 6, 6), 0.2)
    x[..., 3:] = 0.8
    return x


def ringing(src: torch.Tensor) -> torch.Tensor:
    """``src`` x2 (nearest) with a dark outline and a bright rim along the step, and
    colour: a halo of 0.1 on each side."""
    out = src.repeat_interleave(2, -2).repeat_interleave(2, -1).clone()
    out[..., 5] -= 0.1
    out[..., 6] += 0.1
    out[:, 0] += 0.05  # a warm cast, luma kept, which no ring guard may touch
    out[:, 1] -= 0.05 * 0.299 / 0.587
    return out


def chroma(rgb: torch.Tensor) -> torch.Tensor:
    y = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    return torch.stack([rgb[:, 2] - y, rgb[:, 0] - y])


def test_the_clamp_takes_the_halo_to_the_inputs_range_and_moves_luma_only(sweep: Any) -> None:
    src = step()
    out = ringing(src)
    luma = sweep["luma"]
    guarded = sweep["limiter"]()(out.clone(), src)
    y = luma(guarded)
    assert float(y.min()) == pytest.approx(float(luma(src).min()), abs=1e-6)
    assert float(y.max()) == pytest.approx(float(luma(src).max()), abs=1e-6)
    assert torch.allclose(chroma(guarded), chroma(out), atol=1e-6)
    # Away from the step, where nothing left the input's range, all is kept as it was.
    assert torch.equal(guarded[..., :4], out[..., :4])
    assert torch.equal(guarded[..., 8:], out[..., 8:])


def test_a_margin_or_a_kept_fraction_leaves_that_much_of_the_halo(sweep: Any) -> None:
    src = step()
    out = ringing(src)
    luma, limiter = sweep["luma"], sweep["limiter"]
    top = float(luma(src).max())
    excess = float(luma(out).max()) - top
    margin = float(luma(limiter(margin=0.1)(out.clone(), src)).max()) - top
    soft = float(luma(limiter(keep=0.5)(out.clone(), src)).max()) - top
    knee = float(luma(limiter(knee=0.1)(out.clone(), src)).max()) - top
    assert margin == pytest.approx(0.1 * 0.6, abs=1e-6)  # 0.1 of the window's span
    assert soft == pytest.approx(0.5 * excess, abs=1e-6)
    assert 0 < knee < min(excess, 0.1 * 0.6)


def test_the_windows_are_the_input_pixels_around(sweep: Any) -> None:
    y = torch.zeros(1, 1, 5, 5)
    y[0, 0, 2, 2] = 1.0
    lo3, hi3 = sweep["window3"](y, 2)
    lo2, hi2 = sweep["window2"](y, 2)
    assert hi3.shape == hi2.shape == (1, 1, 10, 10)
    assert torch.equal(hi3[0, 0].nonzero()[:, 0].unique(), torch.arange(2, 8))
    # The 2 x 2 nearest: output pixels 3..6 lie between input pixels 1..3 and their
    # neighbour towards pixel 2's centre.
    assert torch.equal(hi2[0, 0].nonzero()[:, 0].unique(), torch.arange(3, 7))
    assert float(lo3.max()) == float(lo2.max()) == 0.0


def test_the_halo_measure_counts_what_leaves_the_truths_range_near_edges(sweep: Any) -> None:
    gt = np.full((32, 32, 3), 60, np.uint8)
    gt[:, 16:] = 180
    out = gt.copy()
    out[:, 14] = 40  # a dark outline 20 levels under the truth's 5 x 5 minimum
    over99, under99, over_mean, under_mean = sweep["halo"](out, gt)
    assert over99 == over_mean == 0
    assert under99 == pytest.approx(20, abs=0.01)
    assert 0 < under_mean < 20
    assert sweep["halo"](gt, gt) == (0, 0, 0, 0)


def test_each_candidate_reuses_the_networks_pass(sweep: Any) -> None:
    calls = []

    class Doubling(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape)
            return ringing(x)

    guarded = sweep["Guarded"](Doubling())
    src = step()
    plain = guarded(src)
    guarded.guard = sweep["limiter"]()
    clamped = guarded(src)
    guarded.guard = None
    assert torch.equal(guarded(src), plain)  # the kept output was not clamped in place
    assert len(calls) == 1
    assert float(sweep["luma"](clamped).max()) < float(sweep["luma"](plain).max())


def test_a_window_over_the_crop_is_cut_to_it(sweep: Any) -> None:
    """``--sheets`` with a ``--crop`` smaller than ``--window``: the whole crop is shown."""
    a = np.zeros((40, 48, 3), np.uint8)
    b = a.copy()
    b[30:34, 40:44] = 90
    top, left, side, change = sweep["changed_window"](a, b, 144)
    assert (top, side) == (0, 40) and left <= 40 and left + side >= 44  # holds the change
    assert change == pytest.approx(90 * 16 / 40**2)
    img = sweep["sheet"]({"a": a, "b": b}, top, left, side, 3, across=2)
    assert img.shape == (40 * 3 + 6, 2 * (40 * 3 + 6), 3)
    # A window inside the crop is still one where the images differ most.
    top, left, side, change = sweep["changed_window"](a, b, 8)
    assert side == 8 and 26 <= top <= 30 and 36 <= left <= 40
    assert change == pytest.approx(90 * 16 / 64)
