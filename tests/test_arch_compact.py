"""The ``compact`` family: SRVGG plus a linear sub-pixel skip and an optional filter after
the shuffle.  A zero skip and an identity filter compute what spandrel's Compact computes;
a skip holds a linear interpolation exactly; the filter filters the enlarged image; files
are detected, loaded, folded to ×2 (not with a filter), deepened, and trained with the
skip and the filter at their own learning rates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from pocketsr_cli.archs.compact import FAMILY, SkipCompact, from_srvgg, with_post, with_pre
from pocketsr_cli.registry import detect_family
from pocketsr_cli.train import compact
from pocketsr_cli.train.export import write_weights
from pocketsr_cli.train.trainer import _param_groups
from pocketsr_cli.weights.community import import_spandrel
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict


def _srvgg(scale: int = 4, feat: int = 8, convs: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cls = import_spandrel().architectures.Compact.Compact
    net = cls(num_in_ch=3, num_out_ch=3, num_feat=feat, num_conv=convs, upscale=scale).eval()
    with torch.no_grad():  # slopes away from the default, so a dropped tensor shows
        for layer in net.body:
            if isinstance(layer, torch.nn.PReLU):
                layer.weight.uniform_(-0.5, 0.5)
    return net


def test_a_zero_skip_is_srvgg_tensor_for_tensor() -> None:
    srvgg = _srvgg()
    state = from_srvgg(srvgg.state_dict())
    assert detect_family(state) is FAMILY and detect_family(srvgg.state_dict()) is not FAMILY
    net = FAMILY.load(state, "skip").module
    assert isinstance(net, SkipCompact) and net.scale == 4
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(net(x), srvgg(x), rtol=0, atol=1e-6)


def test_the_skip_holds_a_linear_interpolation_exactly() -> None:
    """With the body's head at zero, a skip of 'bilinear minus nearest' per sub-pixel makes
    the network bilinear ×2 (align_corners=False) away from the border: the linear job the
    SRVGG body can only approximate through its PReLUs."""
    net = SkipCompact(num_feat=4, num_conv=1, scale=2).eval()
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
        taps = ((0.25, 0.75, 0.0), (0.0, 0.75, 0.25))  # sub-pixel 0: a - 1/4; 1: a + 1/4
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    ky = torch.tensor(taps[i])
                    kx = torch.tensor(taps[j])
                    kernel = torch.outer(ky, kx)
                    kernel[1, 1] -= 1.0  # minus the nearest base
                    net.skip.weight[c * 4 + i * 2 + j, c] = kernel
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        got = net(x)
        want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    inner = (..., slice(2, -2), slice(2, -2))  # the convolution's zero padding aside
    torch.testing.assert_close(got[inner], want[inner], rtol=0, atol=1e-6)


def test_files_load_by_detection_and_the_cli_adds_a_zero_skip(tmp_path: Path) -> None:
    srvgg = _srvgg()
    write_weights(srvgg.state_dict(), tmp_path / "srvgg.safetensors")
    compact.main(["skip", str(tmp_path / "srvgg.safetensors"), str(tmp_path / "skip.safetensors")])
    desc = descriptor_from_state_dict(read_state_dict(tmp_path / "skip.safetensors"), "skip")
    assert desc.family == "compact" and desc.scale == 4
    assert desc.params == sum(p.numel() for p in srvgg.parameters()) + 48 * 3 * 9 + 48
    with pytest.raises(ValueError, match="skip already"):
        from_srvgg(load_file(str(tmp_path / "skip.safetensors")))


def test_a_manifest_build_table_makes_the_network() -> None:
    desc = FAMILY.instantiate("m", {"num_feat": 8, "num_conv": 3}, 2)
    assert isinstance(desc.module, SkipCompact) and desc.scale == 2
    with pytest.raises(Exception, match="unknown"):
        FAMILY.instantiate("m", {"num_feats": 8}, 2)


def test_fold_to_x2_folds_the_skip_too() -> None:
    net = FAMILY.load(from_srvgg(_srvgg().state_dict()), "x4").module
    with torch.no_grad():
        net.skip.weight.uniform_(-0.5, 0.5)
        net.skip.bias.uniform_(-0.2, 0.2)
    x2 = FAMILY.load(compact.fold_to_x2(net.state_dict()), "x2").module
    assert x2.scale == 2
    x = torch.rand(2, 3, 7, 10)
    with torch.no_grad():
        torch.testing.assert_close(x2(x), F.avg_pool2d(net(x), 2), rtol=0, atol=1e-5)


def test_the_skip_learns_at_its_own_rate() -> None:
    net = SkipCompact(num_feat=4, num_conv=1, scale=2)
    groups = _param_groups(net, 1e-4, 30.0)
    assert len(groups) == 2 and groups[1]["params"] == [net.skip.weight, net.skip.bias]
    assert groups[1]["lr"] == pytest.approx(3e-3) and groups[1]["lr_mult"] == 30.0
    assert len(_param_groups(_srvgg(), 1e-4, 30.0)) == 1  # no skip: one group, as before


def test_an_identity_post_filter_changes_nothing_and_loads_by_detection(tmp_path: Path) -> None:
    srvgg = _srvgg()
    write_weights(srvgg.state_dict(), tmp_path / "srvgg.safetensors")
    dest = tmp_path / "post.safetensors"
    compact.main(["post", str(tmp_path / "srvgg.safetensors"), str(dest), "--size", "5"])
    desc = descriptor_from_state_dict(read_state_dict(dest), "post")
    assert desc.family == "compact" and desc.scale == 4
    net = desc.module
    assert isinstance(net, SkipCompact) and net.post is not None
    assert tuple(net.post.weight.shape) == (3, 1, 5, 5)
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(net(x), srvgg(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="post filter already"):
        with_post(load_file(str(dest)), 5)
    with pytest.raises(ValueError, match="odd"):
        with_post(srvgg.state_dict(), 4)
    with pytest.raises(ValueError, match="does not fold"):
        compact.fold_to_x2(load_file(str(dest)))


def test_the_post_filter_filters_the_enlarged_image_with_replicated_borders() -> None:
    net = SkipCompact(num_feat=4, num_conv=1, scale=2, post_size=3).eval()
    plain = SkipCompact(num_feat=4, num_conv=1, scale=2).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k != "post.weight"})
    kernel = torch.tensor([[0.0, -0.1, 0.0], [-0.1, 1.5, -0.1], [0.0, -0.1, 0.0]])
    with torch.no_grad():
        net.post.weight.copy_(kernel.expand(3, 1, 3, 3))
        x = torch.rand(1, 3, 6, 7)
        base = plain(x)
        want = F.conv2d(F.pad(base, (1, 1, 1, 1), mode="replicate"), net.post.weight, groups=3)
        torch.testing.assert_close(net(x), want, rtol=0, atol=1e-6)
        flat = torch.full((1, 3, 6, 7), 0.4)
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
        # a flat picture stays flat, borders included: the kernel sums to 1.1, so ×1.1
        torch.testing.assert_close(net(flat), torch.full((1, 3, 12, 14), 0.44), rtol=0, atol=1e-6)


def test_deepen_carries_the_skip_and_the_post_filter() -> None:
    state = with_post(from_srvgg(_srvgg().state_dict()), 3)
    state["skip.bias"] = torch.full_like(state["skip.bias"], 0.01)
    state["post.weight"] = state["post.weight"] * 0.9
    deep = compact.deepen(state)
    assert torch.equal(deep["skip.bias"], state["skip.bias"])
    assert torch.equal(deep["post.weight"], state["post.weight"])
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        got = FAMILY.load(deep, "deep").module(x)
        torch.testing.assert_close(got, FAMILY.load(state, "src").module(x), rtol=0, atol=1e-5)


def test_the_post_filter_learns_at_its_own_rate() -> None:
    net = SkipCompact(num_feat=4, num_conv=1, scale=2, post_size=5)
    groups = _param_groups(net, 1e-4, 30.0, 20.0)
    skip, post = [g["params"] for g in groups[1:]]
    assert skip == [net.skip.weight, net.skip.bias] and post == [net.post.weight]
    assert groups[2]["lr"] == pytest.approx(2e-3) and groups[2]["lr_mult"] == 20.0


def test_a_lift_filter_raises_the_visible_band_and_keeps_flat_areas() -> None:
    from pocketsr_cli.train.compact import band_lift_kernel
    from pocketsr_cli.train.losses import visible_band

    kernel = band_lift_kernel(9, 0.3)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(
        band_lift_kernel(9, 0.0), with_post(_srvgg().state_dict(), 9)["post.weight"][0, 0]
    )
    srvgg = _srvgg()
    lifted_state = with_post(srvgg.state_dict(), 9, band_lift_kernel(9, 0.3))
    lifted = FAMILY.load(lifted_state, "lifted").module
    torch.manual_seed(4)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        plain, out = srvgg(x), lifted(x)
        lifted.body[-1].weight.zero_()  # the output is then the nearest base alone
        lifted.body[-1].bias.zero_()
        flat = torch.full((1, 3, 8, 8), 0.3)
        torch.testing.assert_close(lifted(flat), torch.full((1, 3, 32, 32), 0.3), rtol=0, atol=1e-6)
    band_gain = (
        visible_band(out)[..., 8:-8, 8:-8].std() / visible_band(plain)[..., 8:-8, 8:-8].std()
    )
    assert 1.08 < band_gain < 1.2  # amplitude; energy about ×1.25, as `detail` measured


def test_a_pre_filter_is_the_network_on_the_filtered_input_and_survives_the_fold(
    tmp_path: Path,
) -> None:
    """``pre`` (the ×2 variant's unsharp input filter): the network run on the input filtered
    with replicated borders, loaded by detection, carried through the ×2 fold and deepen."""
    srvgg = _srvgg()
    write_weights(srvgg.state_dict(), tmp_path / "srvgg.safetensors")
    dest = tmp_path / "pre.safetensors"
    compact.main(["pre", str(tmp_path / "srvgg.safetensors"), str(dest), "--unsharp", "0.7", "0.5"])
    desc = descriptor_from_state_dict(read_state_dict(dest), "pre")
    net = desc.module
    assert desc.family == "compact" and isinstance(net, SkipCompact) and net.pre is not None
    kernel = compact.unsharp_kernel(5, 0.7, 0.5)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert kernel[2, 2] > 1.0 and kernel[1, 2] < 0.0  # the centre lifted, its ring lowered
    torch.testing.assert_close(net.pre.weight[:, 0], kernel.expand(3, 5, 5))
    x = torch.rand(2, 3, 9, 11)
    filtered = F.conv2d(F.pad(x, (2,) * 4, mode="replicate"), kernel.expand(3, 1, 5, 5), groups=3)
    with torch.no_grad():
        torch.testing.assert_close(net(x), srvgg(filtered), rtol=0, atol=1e-5)
        flat = torch.full((1, 3, 6, 7), 0.4)
        torch.testing.assert_close(net(flat), srvgg(flat), rtol=0, atol=1e-6)  # flat stays
        x2 = FAMILY.load(compact.fold_to_x2(load_file(str(dest))), "x2").module
        torch.testing.assert_close(x2(x), F.avg_pool2d(net(x), 2), rtol=0, atol=1e-5)
        deep = FAMILY.load(compact.deepen(load_file(str(dest))), "deep").module
        torch.testing.assert_close(deep(x), net(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pre filter already"):
        with_pre(load_file(str(dest)), 5)
    with pytest.raises(ValueError, match="positive"):
        compact.unsharp_kernel(5, 0.0, 0.5)


def test_composing_an_unsharp_mask_onto_a_trained_pre_filter() -> None:
    """``pre --compose``: one larger input filter = the trained one, then the mask."""
    state = with_pre(_srvgg().state_dict(), 3)
    torch.manual_seed(5)
    state["pre.weight"] = state["pre.weight"] + 0.05 * torch.randn(3, 1, 3, 3)
    mask = compact.unsharp_kernel(5, 0.7, 0.5)
    composed = compact.compose_pre(state, mask)
    assert tuple(composed["pre.weight"].shape) == (3, 1, 7, 7)
    x = torch.rand(1, 3, 20, 20)
    once = F.conv2d(x, composed["pre.weight"], groups=3)  # no padding: interior only
    twice = F.conv2d(F.conv2d(x, state["pre.weight"], groups=3), mask.expand(3, 1, 5, 5), groups=3)
    torch.testing.assert_close(once, twice, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="no pre filter"):
        compact.compose_pre(_srvgg().state_dict(), mask)
