"""Tile seams: the default overlap is seamless, and a smaller one is warned of.

A tile's output is exact only where the tile holds the model's whole receptive field;
the feather reaches half the overlap past a core, so a model needs an overlap of about
twice the radius its output really depends on (its manifest's ``overlap`` hint, measured
against the untiled run: 16 for the default model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import pocketsr_cli
from pocketsr_cli.cli import app
from pocketsr_cli.descriptor import ModelDescriptor
from pocketsr_cli.devices import Compute
from pocketsr_cli.inference import Upscaler
from tests._imagegen import make_photo_like, save_pillow


class Blur(nn.Module):
    """A x2 model whose output depends on input pixels up to 4 away (two 5x5 box blurs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 5, padding=2, groups=3, bias=False, padding_mode="replicate")
        nn.init.constant_(self.conv.weight, 1 / 25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(self.conv(x)), scale_factor=2, mode="nearest")


def blur_upscaler(overlap: int, tile: int | None, need: int | None = 8) -> Upscaler:
    desc = ModelDescriptor(
        name="blur", family="test", module=Blur(), scale=2, seamless_overlap=need
    )
    warnings: list[str] = []
    compute = Compute(torch.device("cpu"), "fp32")
    up = Upscaler(desc, compute, tile=tile, overlap=overlap, on_warning=warnings.append)
    up.warnings = warnings  # type: ignore[attr-defined]
    return up


def test_an_image_cut_with_less_overlap_than_the_model_needs_is_warned_of_once() -> None:
    image = make_photo_like(40, 44)
    up = blur_upscaler(overlap=2, tile=16)
    out = up.upscale(image)
    assert up.warnings == [  # type: ignore[attr-defined]
        "tile_overlap=2 is less than the 8 pixels blur needs: its tiles differ from the "
        "whole image's result along their seams; use tile_overlap=8 or more and tile=32 "
        "or more for seamless tiles, or tile=0 to run images whole"
    ]
    whole = blur_upscaler(overlap=2, tile=0).upscale(image)
    assert np.abs(out.astype(int) - whole).max() > 2  # the seams it warns of are there
    up.upscale(image)
    assert len(up.warnings) == 1  # type: ignore[attr-defined]  # once per upscaler


@pytest.mark.parametrize(
    ("overlap", "tile", "need", "shape"),
    [
        (8, 32, 8, (40, 44)),  # the model's overlap: seamless
        (2, 0, 8, (40, 44)),  # whole images have no seams
        (2, 64, 8, (40, 44)),  # nor does an image smaller than a tile
        (2, None, 8, (40, 44)),  # nor one that auto runs whole (small, on the CPU)
        (2, 16, None, (40, 44)),  # a model that states no overlap: nothing to say
    ],
)
def test_no_seam_warning_where_there_are_no_seams(
    overlap: int, tile: int | None, need: int | None, shape: tuple[int, int]
) -> None:
    image = make_photo_like(*shape)
    up = blur_upscaler(overlap, tile, need)
    out = up.upscale(image)
    assert up.warnings == []  # type: ignore[attr-defined]
    if need is not None:
        whole = blur_upscaler(overlap, 0, need).upscale(image)
        assert np.abs(out.astype(int) - whole).max() <= 1


def test_the_default_models_default_overlap_is_seamless() -> None:
    """The default settings, tiles forced small (auto runs so small an image whole): the
    output is the untiled one to within the model's rounding, and nothing is warned."""
    # A photo's gradients under a strong fine texture (the texture shows seams best).
    noise = np.random.default_rng(5).integers(0, 256, (72, 72, 3))
    image = (make_photo_like(72, 72, seed=3) * 0.6 + noise * 0.4).astype(np.uint8)
    warnings: list[str] = []
    tiled = pocketsr_cli.Upscaler(device="cpu", tile=64, on_warning=warnings.append)
    whole = pocketsr_cli.Upscaler(device="cpu", tile=0)
    diff = np.abs(tiled.upscale(image).astype(int) - whole.upscale(image))
    assert diff.max() <= 2, diff.max()
    assert np.percentile(diff, 99.9) <= 1
    assert warnings == []


def test_the_command_line_warns_of_a_small_overlap_and_still_writes(tmp_path: Path) -> None:
    src = save_pillow(tmp_path / "a.png", make_photo_like(40, 36), "PNG")
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "--device", "cpu", "--tile", "16"]
    result = CliRunner().invoke(app, [*args, "--tile-overlap", "0"])
    assert result.exit_code == 0, result.stderr
    assert "--tile-overlap 0 is less than the 16 pixels pocketsr-compact-x4 needs" in result.stderr
    assert "use --tile-overlap 16 or more and --tile 64 or more" in result.stderr
    assert (tmp_path / "out" / "a.png").is_file()
    result = CliRunner().invoke(app, [*args, "--tile-overlap", "4", "--overwrite"])
    assert result.exit_code == 0 and "--tile-overlap 4 is less than" in result.stderr
