"""The pixel-space PocketSR variant (preset ``pix``, GenDR-Pix's layout): shapes, init,
detect/load round trip and tiling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.archs.pocketsr import CONFIGS, PocketSR, PocketSRConfig, build, detect, infer
from pocketsr_cli.archs.pocketsr.pixel import PixelEncoder, PixelHead
from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.registry import detect_family
from pocketsr_cli.tiling import upscale_tiled
from pocketsr_cli.weights.load import descriptor_from_state_dict

PIX = CONFIGS["pix"]


def _randomized(model: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Non-trivial weights: the zero-initialised head would hide most mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def test_preset_is_the_pixel_layout_around_nanos_unet() -> None:
    nano = CONFIGS["nano"]
    assert PIX.pixel and PIX.unshuffle == 8 and PIX.dec_widths == ()
    assert (PIX.widths, PIX.depths, PIX.kinds) == (nano.widths, nano.depths, nano.kinds)
    model = build("pix", 4)
    assert isinstance(model.encoder, PixelEncoder) and isinstance(model.head, PixelHead)
    assert len(model.decoder) == 0
    assert model.encoder.conv.in_channels == 3 * 8 * 8  # 192, as GenDR-Pix's U-Net input


@pytest.mark.parametrize(("scale", "multiple"), [(4, 8), (2, 16), (3, 32)])
def test_shapes(scale: int, multiple: int) -> None:
    # The U-Net grid is 1/8 of the output, three levels deep: output sides must be
    # multiples of 32, so input sides multiples of 32 / gcd(32, scale).
    model = _randomized(build("pix", scale))
    assert model.multiple_of == model.minimum_size == multiple
    h, w = multiple, 3 * multiple
    with torch.no_grad():
        y = model(torch.rand(2, 3, h, w))
        assert y.shape == (2, 3, h * scale, w * scale)
        assert torch.isfinite(y).all()
        with pytest.raises(ValueError, match=f"multiples of {multiple}"):
            model(torch.rand(1, 3, h, w + multiple // 2))


@pytest.mark.parametrize("scale", [2, 4])
def test_init_is_bicubic_upsampling(scale: int) -> None:
    model = build("pix", scale).eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        y = model(x)
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert (y - ref).abs().max() < 1e-6


@pytest.mark.parametrize("scale", [2, 4])
def test_state_dict_round_trip(scale: int) -> None:
    model = _randomized(build("pix", scale), seed=scale)
    sd = model.state_dict()
    assert detect(sd)
    params = infer(sd)
    assert params.pop("scale") == scale  # not in any shape: read from pocketsr_arch
    assert PocketSRConfig.from_params(params) == PIX
    again = build(params, scale)
    again.load_state_dict(sd)  # strict: same keys, same shapes
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model(x))


def test_round_trip_through_safetensors_and_loader(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    four_levels = {"widths": (32, 48, 64, 64), "depths": (1,) * 4, "kinds": ("res",) * 4}
    config = replace(PIX, attn_heads=4, **four_levels)
    model = _randomized(build(config, 4), seed=3)
    path = tmp_path / "pix.safetensors"
    save_file(model.state_dict(), str(path))
    desc = descriptor_from_state_dict(load_file(str(path)), "pix")
    assert desc.family == "pocketsr" and desc.scale == 4
    assert desc.size == SizeRequirements(minimum=16, multiple_of=16)
    assert desc.params == sum(p.numel() for p in model.parameters())
    assert isinstance(desc.module, PocketSR) and desc.module.config == config
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(desc.module(x), model(x))


def test_layouts_are_told_apart() -> None:
    pix, nano = build("pix", 4).state_dict(), build("nano", 4).state_dict()
    assert detect_family(pix) is not None and detect_family(pix).name == "pocketsr"
    assert infer(pix)["pixel"] and not infer(nano)["pixel"]
    broken = {k: v for k, v in pix.items() if k != "head.conv.weight"}
    assert not detect(broken)
    short = dict(pix, pocketsr_arch=pix["pocketsr_arch"][:4])  # the scale entry is missing
    with pytest.raises(ValueError, match="format"):
        infer(short)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="dec_widths must be empty"):
        replace(PIX, dec_widths=(24,))
    with pytest.raises(ValueError, match="antilattice"):
        replace(PIX, antilattice=True)
    with pytest.raises(ValueError, match="unshuffle"):
        replace(PIX, unshuffle=6)
    params = PIX.to_params()
    assert PocketSRConfig.from_params(params) == PIX
    assert PocketSRConfig.from_params({"preset": "pix"}) == PIX


def _untiled(model: nn.Module, image: torch.Tensor, size: SizeRequirements) -> torch.Tensor:
    """The whole image, padded at the bottom/right like the tiler pads it."""
    h, w = image.shape[-2:]
    x = F.pad(image, (0, size.padded(w) - w, 0, size.padded(h) - h), mode="reflect")
    with torch.no_grad():
        y = model(x)
    s = y.shape[-1] // x.shape[-1]
    return y[..., : h * s, : w * s]


@pytest.mark.parametrize(("scale", "tile", "overlap"), [(4, 64, 16), (2, 96, 32)])
def test_tiled_equals_untiled(scale: int, tile: int, overlap: int) -> None:
    # Local attention keeps the output a function of a neighbourhood (the global form sees
    # the whole tile); the tiler's windows start on the model's 8-px (x4) or 16-px (x2)
    # grid, so every tile puts the pixel-unshuffle's blocks where the whole image has them.
    model = _randomized(build(replace(PIX, attn_window=3), scale), seed=scale)
    size = SizeRequirements(minimum=model.minimum_size, multiple_of=model.multiple_of)
    image = torch.rand(1, 3, 72, 104, generator=torch.Generator().manual_seed(1))
    ref = _untiled(model, image, size)
    out = upscale_tiled(image, model, scale=scale, tile=tile, overlap=overlap, size=size)
    assert out.shape == ref.shape
    diff = (out - ref).abs()
    assert diff.mean() < 2e-4 and diff.max() < 0.02


def test_feature_taps_and_annealing_reach_the_pixel_layout() -> None:
    from pocketsr_cli.train.anneal import swappable_blocks
    from pocketsr_cli.train.taps import feature_taps, tap_channels, tap_names

    model = _randomized(build("pix", 4))
    taps = feature_taps(model, torch.rand(1, 3, 16, 24))
    names = tap_names(PIX)
    assert names[0] == "encoder" and not any(n.startswith("decoder") for n in names)
    assert [t.shape[1] for t in taps] == [tap_channels(PIX)[n] for n in names]
    assert taps[0].shape[-2:] == (8, 12)  # the U-Net grid: 1/8 of the 64 x 96 output
    assert "unet.mid.attn" in [name for name, _ in swappable_blocks(model)]
