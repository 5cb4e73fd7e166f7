"""Tests for ``pocketsr_cli.subpixel``: sub-pixel convolutions kept in fp32 under bf16."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.subpixel import keep_subpixel_fp32, subpixel_convs


class Functional(nn.Module):
    """Shuffles through F.pixel_shuffle: no module to find."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


def toy(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 12, 3, padding=1),
        nn.PixelShuffle(2),
    )  # fmt: skip


def test_finds_the_convolution_before_each_shuffle() -> None:
    assert subpixel_convs(toy()) == ["2"]
    assert subpixel_convs(Functional()) == []
    assert subpixel_convs(nn.Sequential(nn.PixelShuffle(2))) == []


def test_finds_the_default_models_last_convolution() -> None:
    from pocketsr_cli.weights.resolve import resolve_model

    module = resolve_model("pocketsr-compact-x4", None, offline=True).module
    convs = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    assert subpixel_convs(module) == [convs[-1]]


def test_under_bf16_the_subpixel_layer_computes_in_fp32_and_autocast_resumes() -> None:
    net = toy()
    x = torch.rand(1, 3, 8, 8)
    seen: list[torch.dtype] = []
    net[1].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = net(x)
    assert plain.dtype == torch.bfloat16 and seen == [torch.bfloat16]
    assert keep_subpixel_fp32(net) == ["2"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = net(x)
        assert torch.is_autocast_enabled("cpu")  # the hook gave autocast back
        after = net[0](x)
    assert kept.dtype == torch.float32 and after.dtype == torch.bfloat16
    # the fp32 layer on the bf16 features, exactly
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = net[1](net[0](x))
    expected = F.pixel_shuffle(net[2](features.float()), 2)
    assert torch.equal(kept, expected)


def test_other_precisions_are_untouched_and_hooks_are_added_once() -> None:
    net, reference = toy(), toy()
    keep_subpixel_fp32(net)
    keep_subpixel_fp32(net)
    assert len(net[2]._forward_pre_hooks) == 1 and len(net[2]._forward_hooks) == 1
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(net(x), reference(x))
    with torch.autocast("cpu", dtype=torch.float16):
        assert torch.equal(net(x), reference(x))


def test_bf16_upscaler_keeps_the_default_models_subpixel_layer_in_fp32() -> None:
    from pocketsr_cli.devices import Compute
    from pocketsr_cli.evaluation.bench import synthetic_photo
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.weights.resolve import resolve_model

    desc = resolve_model("pocketsr-compact-x4", None, offline=True)
    (tail,) = subpixel_convs(desc.module)
    dtypes: list[torch.dtype] = []
    desc.module.get_submodule(tail).register_forward_hook(
        lambda _m, _i, out: dtypes.append(out.dtype)
    )
    image = synthetic_photo(24, 16)
    fp32 = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=0).upscale(image)
    bf16 = Upscaler(desc, Compute(torch.device("cpu"), "bf16"), tile=0).upscale(image)
    assert dtypes == [torch.float32, torch.float32]
    diff = abs(fp32.astype(int) - bf16.astype(int))
    assert diff.max() <= 8 and diff.mean() < 0.5


def test_a_network_that_shuffles_functionally_names_its_layers() -> None:
    from pocketsr_cli.archs.compact.network import SkipCompact

    plain = SkipCompact(num_feat=8, num_conv=1, scale=2)
    assert subpixel_convs(plain) == ["body.4", "skip"]
    filtered = SkipCompact(num_feat=8, num_conv=1, scale=2, pre_size=3, post_size=3)
    assert subpixel_convs(filtered) == ["pre", "body.4", "skip", "post"]
    keep_subpixel_fp32(filtered)
    outputs: dict[str, torch.dtype] = {}
    for name in ("pre", "body.2", "body.4", "skip", "post"):
        filtered.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out.dtype)
        )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = filtered(torch.rand(1, 3, 8, 8))
    assert y.dtype == torch.float32
    assert outputs == {
        "pre": torch.float32, "body.2": torch.bfloat16, "body.4": torch.float32,
        "skip": torch.float32, "post": torch.float32,
    }  # fmt: skip
