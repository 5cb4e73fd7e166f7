"""The parameter-free resamplers used as models (archs/resize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pocketsr_cli.archs.resize import Resize


@pytest.mark.parametrize(
    ("kernel", "pil"), [("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)]
)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_pillow_away_from_borders(kernel: str, pil: int, scale: int) -> None:
    # Smooth content: Pillow rounds and clips to 8 bits between its two passes, which only
    # matters where the filter overshoots (noise), so compare on photo-like gradients.
    rng = np.random.default_rng(scale)
    coarse = rng.random((5, 7, 3)).astype(np.float32)
    arr = np.asarray(Image.fromarray((coarse * 200 + 25).astype(np.uint8)).resize((26, 20)))
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    ours = Resize(kernel, scale)(x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().numpy()
    ref = np.asarray(Image.fromarray(arr).resize((26 * scale, 20 * scale), pil)).astype(float)
    m = 4 * scale  # Pillow renormalises the filter at the borders; we replicate edge pixels
    assert np.abs(ours - ref)[m:-m, m:-m].max() <= 2


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
def test_flat_stays_flat_and_shapes(kernel: str) -> None:
    x = torch.full((2, 1, 5, 7), 0.25)
    y = Resize(kernel, 3)(x)
    assert y.shape == (2, 1, 15, 21)
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-6)
    assert torch.equal(Resize(kernel, 1)(x), x)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Resize("nearest", 2)
    with pytest.raises(ValueError):
        Resize("bicubic", 0)
