"""Self-ensembles (``pocketsr_cli.ensemble``): modes and weights, what each pass sees, and
that tiles with their own passes blend to the untiled result."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pocketsr_cli.cli._flags import flag_spelling
from pocketsr_cli.cli._options import ensemble_choice, ensemble_choices
from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.ensemble import PAD_PASSES, Ensemble
from pocketsr_cli.errors import UsageError
from pocketsr_cli.spelling import spelled
from pocketsr_cli.tiling import upscale_tiled


def conv_net(scale: int = 2, convs: int = 3, seed: int = 0) -> torch.nn.Module:
    """``convs`` 3x3 convs (receptive-field radius ``convs`` input px) + pixel shuffle:
    neither flip- nor rotation-invariant, shift-equivariant at the input's pitch."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    channels = 3
    for i in range(convs):
        out = 3 * scale * scale if i == convs - 1 else 8
        layers += [torch.nn.Conv2d(channels, out, 3, padding=1), torch.nn.LeakyReLU(0.2)]
        channels = out
    return torch.nn.Sequential(*layers[:-1], torch.nn.PixelShuffle(scale)).eval()


class GridNet(torch.nn.Module):
    """Nearest ×2 plus a fixed 8×8 pattern tied to the input's own origin: the artefact
    of a ×8 pixel-(un)shuffle, which depends on where the image falls on the grid."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []
        self.pattern = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        h, w = x.shape[-2:]
        grid = self.pattern.repeat(1, 1, -(-h // 8), -(-w // 8))[..., :h, :w]
        return F.interpolate(x + 0.1 * grid, scale_factor=2, mode="nearest")


def image(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def one_pass(fn: GridNet, x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, _, top, _ = pad
    h, w = x.shape[-2:]
    y = fn(F.pad(x, pad, mode="reflect"))
    return y[..., 2 * top : 2 * (top + h), 2 * left : 2 * (left + w)]


# --- modes and weights ------------------------------------------------------------------


def test_modes_weights_and_labels() -> None:
    assert not Ensemble() and Ensemble().passes == 1 and Ensemble().label == "none"
    assert Ensemble.of(True) == Ensemble("pad") and Ensemble.of(False) == Ensemble()
    assert Ensemble.of("FLIP8") == Ensemble("flip8") and Ensemble("flip8").passes == 8
    pad = Ensemble.of("pad", 0.75)
    assert ensemble_choice(" PAD ", 0.75) == pad
    assert pad.passes == 2 and pad.label == "pad:0.75"
    assert pad.record() == {"ensemble": "pad", "ensemble_weight": 0.75}
    assert Ensemble("flip8").record() == {"ensemble": "flip8", "ensemble_weight": None}
    assert Ensemble("pad", 1.0).passes == Ensemble("pad", 0.0).passes == 1
    assert Ensemble("pad", 2.5).passes == 2  # extrapolation: both passes


@pytest.mark.parametrize("weight", [-0.1, 3.5, math.nan, math.inf])
def test_weights_outside_the_range_are_refused(weight: float) -> None:
    with pytest.raises(UsageError, match=r"^ensemble_weight must be"):
        Ensemble.of("pad", weight)  # the API's spelling by default
    with spelled(flag_spelling), pytest.raises(UsageError, match=r"^--ensemble-weight must be"):
        ensemble_choice("pad", weight)


@pytest.mark.parametrize("weight", ["a", "0.7", True])
def test_a_weight_that_is_no_number_is_a_usage_error(weight: object) -> None:
    """The API's ``ensemble_weight="a"`` raised Python's ValueError from ``float()``, and
    ``"0.7"`` or ``True`` were taken as numbers: the README promises a UsageError for a
    bad argument, as an out-of-range weight gets."""
    with pytest.raises(UsageError, match=r"^ensemble_weight must be a number from 0 to 3"):
        Ensemble.of("pad", weight)  # type: ignore[arg-type]


def test_bad_modes_and_misplaced_weights_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"^ensemble takes none, pad or flip8, not 'tta'$"):
        Ensemble.of("tta")
    with pytest.raises(UsageError, match=r"^ensemble_weight applies to ensemble='pad', not"):
        Ensemble.of("flip8", 0.7)
    with spelled(flag_spelling):
        with pytest.raises(UsageError, match="bare --ensemble of earlier versions"):
            ensemble_choice("-o")  # what `--ensemble -o out` would hand over
        with pytest.raises(UsageError, match="applies to --ensemble pad, not to flip8"):
            ensemble_choice("flip8", 0.7)
        with pytest.raises(UsageError, match="applies to --ensemble pad, not to fancy"):
            ensemble_choice("fancy", 0.7)  # the weight's complaint first, as before
        assert ensemble_choices(None, None) == [Ensemble()]
        assert ensemble_choices(["none", "pad", "pad", "flip8"], 1.5) == [
            Ensemble(),
            Ensemble("pad", 1.5),
            Ensemble("flip8"),
        ]
        with pytest.raises(UsageError, match="applies to --ensemble pad"):
            ensemble_choices(["none", "flip8"], 0.7)


# --- what the passes compute ------------------------------------------------------------


@pytest.mark.parametrize("weight", [0.5, 0.8, 2.0])
def test_pad_blends_the_two_padded_passes_by_the_weight(weight: float) -> None:
    net, x = GridNet(), image(16, 24)
    first, second = (one_pass(net, x, pad) for pad in PAD_PASSES)
    assert not torch.allclose(first, second)  # the grid moved by one pixel
    y = Ensemble("pad", weight).wrap(net, 2)(x)
    assert torch.allclose(y, weight * first + (1 - weight) * second, atol=1e-6)


def test_a_weight_of_one_runs_one_pass() -> None:
    net, x = GridNet(), image(16, 24)
    y = Ensemble("pad", 1.0).wrap(net, 2)(x)
    assert net.calls == [(1, 3, 24, 32)]  # only the [4, 4, 4, 4] pass
    assert torch.allclose(y, one_pass(GridNet(), x, PAD_PASSES[0]))


def test_pad_changes_only_the_border_of_a_shift_equivariant_network() -> None:
    net, x = conv_net(), image(24, 24)
    with torch.inference_mode():
        plain = net(x)
        pad = Ensemble("pad").wrap(net, 2)(x)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # 3 px radius, ×2
    assert torch.allclose(plain[inner], pad[inner], atol=1e-6)
    assert not torch.allclose(plain, pad, atol=1e-3)


def test_flip8_is_equivariant_to_flips_and_rotations() -> None:
    """The average over the group commutes with its members, even for a network that does
    not, on a non-square input."""
    net, x = conv_net(), image(12, 20)
    fn = Ensemble("flip8").wrap(net, 2)
    with torch.inference_mode():
        y = fn(x)
        assert not torch.allclose(y, net(x), atol=1e-4)
        assert torch.allclose(fn(x.flip(-1)), y.flip(-1), atol=1e-5)
        assert torch.allclose(fn(x.rot90(1, (-2, -1))), y.rot90(1, (-2, -1)), atol=1e-5)


def test_flip8_of_an_invariant_network_is_the_network() -> None:
    def nearest(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    x = image(10, 14)
    assert torch.allclose(Ensemble("flip8").wrap(nearest, 2)(x), nearest(x), atol=1e-6)


def test_every_pass_meets_the_size_requirements() -> None:
    seen: list[tuple[int, int]] = []

    def strict(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        assert h % 16 == 0 and w % 16 == 0 and min(h, w) >= 32, (h, w)
        seen.append((h, w))
        return F.interpolate(x, scale_factor=2, mode="nearest")

    need = SizeRequirements(minimum=32, multiple_of=16)
    x = image(32, 48)
    for mode in ("pad", "flip8"):
        assert Ensemble(mode).wrap(strict, 2, need)(x).shape == (1, 3, 64, 96)  # type: ignore[arg-type]
    # pad: 32 + 8 -> 48 and 48 + 8 -> 64; flip8: the tile and its transpose.
    assert set(seen) == {(48, 64), (32, 48), (48, 32)}


def test_image_statistics_reach_every_pass() -> None:
    got: list[object] = []

    def with_stats(x: torch.Tensor, stats: object) -> torch.Tensor:
        got.append(stats)
        return F.interpolate(x, scale_factor=2, mode="nearest")

    for mode in ("pad", "flip8"):
        Ensemble(mode).wrap(with_stats, 2)(image(8, 8), "stats")  # type: ignore[arg-type]
    assert got == ["stats"] * 10


def test_a_sliver_narrower_than_the_pad_is_replicated() -> None:
    y = Ensemble("pad").wrap(conv_net(), 2)(image(3, 40))
    assert y.shape == (1, 3, 6, 80) and torch.isfinite(y).all()


# --- inside the tiler -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pad", "flip8"])
@pytest.mark.parametrize(("height", "width", "tile"), [(40, 70, 32), (24, 70, 32), (44, 50, 30)])
def test_tiles_with_their_own_passes_blend_to_the_untiled_result(
    mode: str, height: int, width: int, tile: int
) -> None:
    """Radius 3 ≤ overlap / 2: exact, though every tile is padded (or turned) on its own
    and the (24, 70) tiles are not square."""
    fn = Ensemble(mode).wrap(conv_net(), 2)  # type: ignore[arg-type]
    x = image(height, width)
    whole = upscale_tiled(x, fn, scale=2, tile=0)
    tiled = upscale_tiled(x, fn, scale=2, tile=tile, overlap=8)
    assert torch.allclose(tiled, whole, atol=1e-5)
    assert not torch.allclose(upscale_tiled(x, conv_net(), scale=2, tile=0), whole, atol=1e-3)


def test_a_weight_out_of_range_is_said_before_the_missing_pad() -> None:
    """``--ensemble-weight 5`` alone: the range is the likelier slip (5 for .5)."""
    with pytest.raises(UsageError, match=r"must be a number from 0 to 3 .*not 5\.0"):
        Ensemble.of("none", 5)
    with pytest.raises(UsageError, match=r"applies to .*'pad', not to flip8"):
        Ensemble.of("flip8", 0.7)
