"""The bundled models draw an image's borders as well as its middle (manifest ``margin``)."""

from __future__ import annotations

import numpy as np
import pytest

from pocketsr_cli.api import Upscaler


@pytest.mark.parametrize(
    ("model", "margin"), [("pocketsr-compact-x4", 2), ("pocketsr-compact-x2", 1)]
)
def test_a_flat_grey_stays_flat_into_every_corner(model: str, margin: int) -> None:
    """Without the margin the zero padding's corner drew a patch of grain: 17 levels off
    at x4 and 10 at x2 in the bottom-left corner, against 3 in the middle."""
    up = Upscaler(model, precision="fp32")
    assert up._engine.model.size.margin == margin  # the manifest's hint reached the tiler
    for level in (30, 200):
        out = up.upscale(np.full((48, 64, 3), level, np.uint8)).astype(int)
        off = np.abs(out - level).max(axis=2)
        k = 4 * up.scale
        corners = [off[:k, :k], off[:k, -k:], off[-k:, :k], off[-k:, -k:]]
        assert max(int(c.max()) for c in corners) <= 6, (level, [int(c.max()) for c in corners])
        assert off.max() <= 6
