"""chroma.clamp_chroma: an upscale's colour kept within its input's nearby, luma kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pocketsr_cli.archs.resize import Resize
from pocketsr_cli.chroma import clamp_chroma
from pocketsr_cli.descriptor import ModelDescriptor
from pocketsr_cli.devices import Compute
from pocketsr_cli.inference import Upscaler

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    return (x * LUMA).sum(dim=1)


def nearest(x: torch.Tensor, scale: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")


def grey_edge() -> torch.Tensor:
    """A dark grey | light grey edge, 8 x 8."""
    x = torch.full((1, 3, 8, 8), 0.3)
    x[..., 4:] = 0.7
    return x


def test_a_fringe_on_a_grey_edge_goes_and_the_luma_stays() -> None:
    src = grey_edge()
    out = nearest(src, 4)
    out[:, 2, :, 14:18] += 0.2  # a blue-violet line along the edge
    out[:, 0, :, 18:20] += 0.1  # and a warm companion
    before = luma(out)
    guarded = clamp_chroma(out.clone(), src)
    assert torch.allclose(luma(guarded), before, atol=1e-6)
    spread = guarded.amax(dim=1) - guarded.amin(dim=1)
    assert spread.max() < 1e-6  # neutral, as all of the input is


def test_a_colour_edge_keeps_what_the_network_drew_between_its_colours() -> None:
    src = torch.zeros(1, 3, 8, 8)
    src[:, 0, :, :4] = 0.8  # red | green
    src[:, 1, :, 4:] = 0.6
    drawn = torch.nn.functional.interpolate(src, scale_factor=4, mode="bilinear")
    assert torch.allclose(clamp_chroma(drawn.clone(), src), drawn, atol=1e-6)
    # Redder than any input pixel near it: brought back to the reddest of them.
    out = drawn.clone()
    out[:, 0, :, :8] += 0.15
    out[:, 1:, :, :8] -= 0.05
    guarded = clamp_chroma(out.clone(), src)
    assert torch.allclose(luma(guarded), luma(out), atol=1e-6)
    src_cr = src[:, 0] - luma(src)
    assert (guarded[:, 0] - luma(guarded)).max() <= src_cr.max() + 1e-6


def test_the_bounds_are_the_three_by_three_input_pixels_around() -> None:
    src = torch.full((1, 3, 9, 9), 0.5)
    src[0, :, 4, 4] = torch.tensor([0.9, 0.4, 0.2])  # one orange input pixel
    out = nearest(torch.full((1, 3, 9, 9), 0.5), 2)
    out[:, 0] += 0.1  # a warm cast everywhere
    out[:, 1] -= 0.05
    guarded = clamp_chroma(out, src)
    spread = (guarded.amax(dim=1) - guarded.amin(dim=1))[0]
    near = torch.zeros(18, 18, dtype=torch.bool)
    # Input pixels 3..5 (output 6..11), and the output pixel beyond them on either side,
    # a quarter of the way from the next input pixel's centre to theirs.
    near[5:13, 5:13] = True
    assert spread[near].min() > 0.03 and spread[~near].max() < 1e-6
    assert spread[5, 5] < spread[5, 8] < spread[8, 8]  # fading in bilinearly
    assert torch.all(spread[6:12, 6:12] > 0.149)  # within the window's own pixels: all kept


def bounds(src: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B - Y and R - Y's min and max over each 3 x 3 input window, brought up bilinearly."""
    y = luma(src)
    diffs = torch.stack([src[:, 2] - y, src[:, 0] - y], dim=1)
    hi = torch.nn.functional.max_pool2d(diffs, 3, stride=1, padding=1)
    lo = -torch.nn.functional.max_pool2d(-diffs, 3, stride=1, padding=1)
    up = {"scale_factor": scale, "mode": "bilinear", "align_corners": False}
    return (
        torch.nn.functional.interpolate(lo, **up),  # type: ignore[arg-type]
        torch.nn.functional.interpolate(hi, **up),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_chroma_is_clamped_into_the_bounds_brought_up_bilinearly(scale: int) -> None:
    gen = torch.Generator().manual_seed(scale)
    src = torch.rand(2, 3, 11, 7, generator=gen)
    out = torch.rand(2, 3, 11 * scale, 7 * scale, generator=gen)
    guarded = clamp_chroma(out.clone(), src)
    lo, hi = bounds(src, scale)
    y = luma(out)
    want = torch.stack([out[:, 2] - y, out[:, 0] - y], dim=1).clamp(lo, hi)
    got = torch.stack([guarded[:, 2] - luma(guarded), guarded[:, 0] - luma(guarded)], dim=1)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(luma(guarded), y, atol=1e-5)


def test_a_gradient_drawn_too_warm_comes_out_as_a_gradient_not_in_steps() -> None:
    """Bounds repeated over each input pixel's output pixels drew the input's pixels into
    a colour gradient that the network draws too warm: flat s px, then a step."""
    t = torch.linspace(0, 1, 12).view(1, 1, 12)
    src = torch.stack([0.3 + 0.4 * t, 0.5 + 0 * t, 0.7 - 0.4 * t], dim=1).expand(1, 3, 6, 12)
    out = torch.nn.functional.interpolate(src, scale_factor=4, mode="bilinear")
    out[:, 0] += 0.1  # warmer than the next input pixel's colour, all along
    guarded = clamp_chroma(out.clone(), src)
    cr = (guarded[:, 0] - luma(guarded))[0, 12, 6:-6]  # a row, off the image's edges
    steps = cr.diff()
    assert torch.all(steps > 0)  # still rising at every output pixel
    assert float(steps.max()) < 1.5 * float(steps.min())  # evenly: no step per input pixel


def test_shapes_that_are_not_an_upscale_are_refused() -> None:
    src = grey_edge()
    with pytest.raises(ValueError, match="cannot guard"):
        clamp_chroma(torch.zeros(1, 3, 30, 32), src)
    with pytest.raises(ValueError, match="cannot guard"):
        clamp_chroma(torch.zeros(1, 1, 32, 32), src[:, :1])


class Tints(nn.Module):
    """A x2 network that upscales and tints by brightness (blue where dark, yellow where
    bright): colour where the input has none, as the default model's fringes."""

    def __init__(self) -> None:
        super().__init__()
        self.up = Resize("bicubic", 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(x)
        tint = 0.15 * (0.5 - luma(y))
        return torch.stack([y[:, 0] - tint, y[:, 1] - tint, y[:, 2] + 2 * tint], dim=1)


def half_grey(h: int = 40, w: int = 48, seed: int = 3) -> np.ndarray:
    """Random greys on the left, random colours on the right (8-bit RGB)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 235, (h, w, 3), dtype=np.uint8)
    img[:, : w // 2] = img[:, : w // 2, :1]
    return img


@pytest.mark.parametrize("guard", [None, "clamp"])
def test_the_upscaler_guards_a_model_whose_manifest_asks(guard: str | None) -> None:
    desc = ModelDescriptor(name="t", family="test", module=Tints(), scale=2, chroma_guard=guard)
    up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"))
    src = half_grey()
    rgba = np.dstack([src, np.full(src.shape[:2], 255, np.uint8)])
    wide = src.astype(np.uint16) * 257
    for pixels, level in ((src, 1), (rgba, 1), (wide, 257)):
        out = up.upscale(pixels).astype(np.int64)
        grey = out[:, : out.shape[1] // 2 - 4, :3]  # the grey half, off the colour border
        spread = grey.max(axis=2) - grey.min(axis=2)
        if guard is None:
            assert spread.max() > 20 * level
        else:
            assert spread.max() <= 2 * level
        assert out[:, -out.shape[1] // 3 :, :3].std(axis=2).mean() > 10 * level  # colour kept


def test_a_guarded_image_in_tiles_is_the_image_in_one_piece() -> None:
    desc = ModelDescriptor(name="t", family="test", module=Tints(), scale=2, chroma_guard="clamp")
    src = half_grey(72, 88, seed=5)
    whole = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=0).upscale(src)
    tiles = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=32, overlap=8)
    tiled = tiles.upscale(src)
    assert tiles.policy.tile_side == 32
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_bands_of_rows_give_the_whole_image_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the guard works a band of input rows at a time; the bands' seams, a
    last band shorter than the rest and a batch of tiles change nothing."""
    from pocketsr_cli import chroma

    gen = torch.Generator().manual_seed(3)
    src = torch.rand(2, 3, 45, 19, generator=gen)
    out = torch.rand(2, 3, 45 * 3, 19 * 3, generator=gen)
    whole = clamp_chroma(out.clone(), src)
    monkeypatch.setattr(chroma, "_CPU_BAND", 4)
    banded = clamp_chroma(out.clone(), src)
    assert torch.allclose(banded, whole, atol=1e-6)
    assert not torch.allclose(whole, out, atol=1e-3)  # the guard did change something
