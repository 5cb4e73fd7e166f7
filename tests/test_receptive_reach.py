"""scripts/receptive_reach.py: the evidence behind ``descriptor.derived_overlap`` reads
a pixel-unshuffled ESRGAN (x2plus, x1) in input pixels, as the derivation counts it."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch

from tests._imagegen import make_photo_like, save_pillow
from tests._zoo import save_safetensors

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "receptive_reach.py"


@pytest.fixture(scope="module")
def reach() -> dict[str, Any]:
    with mock.patch.object(sys, "path", [str(SCRIPT.parent), *sys.path]):  # as python runs it
        return runpy.run_path(str(SCRIPT), run_name="_tested")


def esrgan_file(path: Path, shuffle: int | None) -> Path:
    """A randomly initialised one-block ESRGAN of 4 features: x4, or with the input
    pixel-unshuffled by ``shuffle`` (x2plus: 2, x1: 4)."""
    from pocketsr_cli.weights.community import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3 * (shuffle or 1) ** 2, num_filters=4, num_blocks=1, scale=4)
    save_safetensors(path, net.state_dict())
    return path


def test_an_unshuffled_esrgan_is_measured_in_input_pixels(
    reach: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The script fed a pixel-unshuffled ESRGAN (x1, ESRGAN x2plus) its crop as it is:
    the first convolution, which takes 48 or 12 channels, met 3, and the script stopped.
    It now unshuffles first, with a crop as many times larger, and the x1's one block
    reaches about 4 times as far in input pixels as the x4's: what ``derived_overlap``
    assumes when it gives the x1 4 x the x4's overlap (160 for 40)."""
    image = save_pillow(tmp_path / "p.png", make_photo_like(400, 400), "PNG")
    x4 = esrgan_file(tmp_path / "x4.safetensors", None)
    x1 = esrgan_file(tmp_path / "x1.safetensors", 4)
    assert reach["main"]([str(x4), str(x1), "--image", str(image), "--threads", "1"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    got = {name: np.array(values, dtype=float) for name, _depth, *values in rows}
    assert set(got) == {"x4.safetensors", "x1.safetensors"}
    ratio = got["x1.safetensors"] / got["x4.safetensors"]
    assert (ratio > 3).all() and (ratio < 5).all(), ratio
