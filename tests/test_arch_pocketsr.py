"""The PocketSR-style generator family (archs/pocketsr): shapes, init, descriptors, costs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.archs.pocketsr import (
    CONFIGS,
    PocketSR,
    PocketSRConfig,
    build,
    count_macs,
    detect,
    infer,
)
from pocketsr_cli.archs.pocketsr.blocks import LinearAttention
from pocketsr_cli.archs.pocketsr.lited import SubPixelHead, antilattice_taps
from pocketsr_cli.archs.pocketsr.stats import image_sums, smallest_window
from pocketsr_cli.registry import detect_family
from pocketsr_cli.train.anneal import AnnealedBlock, replace_block, swappable_blocks
from pocketsr_cli.train.taps import feature_taps, tap_channels, tap_names
from pocketsr_cli.weights.load import descriptor_from_state_dict

MODELS = Path(__file__).resolve().parents[1] / "models"
PRESETS = sorted(CONFIGS)
LATENT = [p for p in PRESETS if not CONFIGS[p].pixel]  # LiteED layout (pix: test_pix.py)
SCALES = (2, 4)


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights: the zero-initialised head would hide most mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def _odd_size(model: PocketSR) -> tuple[int, int]:
    """Valid sides that are odd multiples of the model's requirement (1x and 3x)."""
    m = model.multiple_of
    return m, 3 * m


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, int], PocketSR]:
    torch.manual_seed(0)
    return {(p, s): build(p, s).eval() for p in PRESETS for s in SCALES}


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("preset", PRESETS)
def test_shapes_on_odd_valid_sizes(models: dict, preset: str, scale: int) -> None:
    model = models[preset, scale]
    h, w = _odd_size(model)
    with torch.no_grad():
        y = model(torch.rand(2, 3, h, w))
    assert y.shape == (2, 3, h * scale, w * scale)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("antilattice", [True, False])
def test_init_is_bilinear_upsampling(scale: int, antilattice: bool) -> None:
    model = build(replace(CONFIGS["nano"], antilattice=antilattice), scale).eval()
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        y = model(x)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert (y - ref).abs().max() < 1e-5


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("preset", PRESETS)
def test_state_dict_round_trip(preset: str, scale: int) -> None:
    model = _randomized(build(preset, scale), seed=scale)
    sd = model.state_dict()
    assert detect(sd)
    params = infer(sd)
    assert params.pop("scale") == scale
    assert PocketSRConfig.from_params(params) == CONFIGS[preset]
    again = build(params, scale)
    again.load_state_dict(sd)  # strict: same keys, same shapes
    x = torch.rand(1, 3, *_odd_size(model))
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model(x))


def test_round_trip_through_safetensors_and_loader(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    config = replace(CONFIGS["nano"], attn_window=5, antilattice=False, kinds=("dw",) * 3)
    model = _randomized(build(config, 2), seed=3)
    path = tmp_path / "nano.safetensors"
    save_file(model.state_dict(), str(path))
    desc = descriptor_from_state_dict(load_file(str(path)), "nano")
    assert desc.family == "pocketsr"
    assert desc.scale == 2
    assert desc.params == sum(p.numel() for p in model.parameters())
    assert isinstance(desc.module, PocketSR)
    assert desc.module.config == config
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(desc.module(x), model(x))


def _srvgg_dict(num_conv: int = 4, feat: int = 8) -> dict[str, torch.Tensor]:
    sd = {"body.0.weight": torch.zeros(feat, 3, 3, 3), "body.0.bias": torch.zeros(feat)}
    for i in range(1, 2 * num_conv + 2, 2):
        sd[f"body.{i}.weight"] = torch.zeros(feat)  # PReLU
        sd[f"body.{i + 1}.weight"] = torch.zeros(feat, feat, 3, 3)
        sd[f"body.{i + 1}.bias"] = torch.zeros(feat)
    return sd


def _esrgan_dict() -> dict[str, torch.Tensor]:
    sd = {
        "conv_first.weight": torch.zeros(8, 3, 3, 3),
        "conv_body.weight": torch.zeros(8, 8, 3, 3),
        "conv_up1.weight": torch.zeros(8, 8, 3, 3),
        "conv_hr.weight": torch.zeros(8, 8, 3, 3),
        "conv_last.weight": torch.zeros(3, 8, 3, 3),
    }
    sd["body.0.rdb1.conv1.weight"] = torch.zeros(4, 8, 3, 3)
    return sd


def test_detect_rejects_other_architectures() -> None:
    assert not detect(_srvgg_dict())
    assert not detect(_esrgan_dict())
    assert not detect({})
    assert detect_family(_srvgg_dict()) is None
    assert detect_family(_esrgan_dict()) is None
    sd = build("nano", 4).state_dict()
    assert detect_family(sd) is not None and detect_family(sd).name == "pocketsr"
    sd["pocketsr_arch"] = sd["pocketsr_arch"].float()  # a float "tag" is not ours
    assert not detect(sd)


def test_infer_refuses_newer_format() -> None:
    sd = build("nano", 4).state_dict()
    sd["pocketsr_arch"] = sd["pocketsr_arch"].clone()
    sd["pocketsr_arch"][0] = 99
    with pytest.raises(ValueError, match="format 99"):
        infer(sd)


@pytest.mark.parametrize("preset", PRESETS)
def test_multiple_of_is_honoured(models: dict, preset: str) -> None:
    model = models[preset, 4]
    config = CONFIGS[preset]
    grid = config.unshuffle * 2 ** (len(config.widths) - 1)
    assert model.multiple_of == (grid // 4 if config.pixel else grid)  # pixel: of the output
    m = model.multiple_of
    with torch.no_grad():
        assert model(torch.rand(1, 3, m, m)).shape == (1, 3, 4 * m, 4 * m)
        with pytest.raises(ValueError, match=f"multiples of {m}"):
            model(torch.rand(1, 3, m, m + m // 2))


def test_mac_counter_on_known_layers() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, 10, 12) == 10 * 12 * 8 * 3 * 9
    dw = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 3, padding=1, groups=6))
    assert count_macs(dw, 4, 5) == 20 * (6 * 3 + 6 * 9)


def test_mac_counter_on_the_network() -> None:
    model = build("nano", 4)
    small, large = count_macs(model, 32, 64), count_macs(model, 64, 128)
    assert large == pytest.approx(4 * small, rel=0.01)  # linear in pixels (global attn ~0)
    # Budget guard: nano must stay far below SRVGG-compact's ~620k MACs per LR pixel.
    assert count_macs(model, 540, 960) / (540 * 960) < 100_000
    head = model.head
    conv_per_px = head.weight.shape[0] * (head.weight.shape[1]) * head.kernel**2
    assert count_macs(model, 32, 64) > 32 * 64 * conv_per_px  # the functional head counted


@pytest.mark.parametrize("preset", LATENT)
def test_feature_taps(models: dict, preset: str) -> None:
    model = models[preset, 4]
    config = CONFIGS[preset]
    h, w = _odd_size(model)
    taps = feature_taps(model, torch.rand(1, 3, h, w))
    names = tap_names(config)
    channels = tap_channels(config)
    assert len(taps) == len(names) == len(channels)
    u = config.unshuffle
    for name, t in zip(names, taps, strict=True):
        assert t.shape[1] == channels[name], name
        if name.startswith(("down", "up")):
            level = int(name[-1])
            assert t.shape[-2:] == (h // (u * 2**level), w // (u * 2**level)), name
    assert taps[0].shape[-2:] == (h // u, w // u)
    assert taps[-1].shape[-2:] == (h, w)  # last decoder stage: LR resolution


def test_feature_taps_carry_gradients() -> None:
    model = _randomized(build("nano", 4)).train()
    taps = feature_taps(model, torch.rand(1, 3, 16, 16))
    sum(t.square().mean() for t in taps).backward()
    assert model.encoder.conv1.weight.grad is not None


def test_feature_taps_leave_the_network_as_it_was() -> None:
    model = _randomized(build("tiny", 4))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        taps = feature_taps(model, x)
        assert torch.equal(taps[0], model.encoder(x))
        assert torch.equal(taps[tap_names(model.config).index("mid")], _mid(model, x))
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed again


def test_feature_taps_follow_a_block_swapped_by_annealing() -> None:
    model = _randomized(build("tiny", 4))
    attn = model.unet.mid.attn
    assert attn is not None
    annealed = AnnealedBlock(attn, nn.Identity())
    replace_block(model, "unet.mid.attn", annealed)
    annealed.alpha.fill_(0.0)  # all light: the identity
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        taps = feature_taps(model, x)
        mid = taps[tap_names(model.config).index("mid")]
        h = model.encoder(x)
        for down in model.unet.down_levels():
            h = down.downsample(down.blocks(h))
        assert torch.equal(mid, model.unet.mid.blocks(h))


def _mid(model: PocketSR, x: torch.Tensor) -> torch.Tensor:
    """The U-Net bottleneck's output (after attention), computed by hand."""
    h = model.encoder(x)
    for down in model.unet.down_levels():
        h = down.downsample(down.blocks(h))
    h = model.unet.mid.blocks(h)
    return model.unet.mid.attn(h) if model.unet.mid.attn is not None else h


def test_bf16_forward_is_finite_and_close() -> None:
    model = _randomized(build("nano", 4), seed=1)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.1


def test_antilattice_fold_matches_shuffle_then_filter() -> None:
    torch.manual_seed(0)
    scale, c = 4, 5
    head = SubPixelHead(c, scale, antilattice=True)
    with torch.no_grad():
        head.weight.normal_()
        head.bias.normal_()
    feats, lr = torch.randn(1, c, 6, 7), torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        got = head(feats, lr)
        # Explicit: conv on an extended grid, shuffle, filter the residual, crop, add bilinear.
        x = F.pad(torch.cat([feats, lr], 1), (2, 2, 2, 2), mode="replicate")
        bias = head.bias.repeat_interleave(scale * scale)
        y = F.pixel_shuffle(F.conv2d(x, head.weight, bias), scale)
        taps = antilattice_taps(scale).float()
        k = taps.numel()
        y = F.conv2d(y, taps.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)
        y = F.conv2d(y, taps.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
        crop = (y.shape[-1] - 7 * scale) // 2
        y = y[..., crop : crop + 6 * scale, crop : crop + 7 * scale]
        ref = y + F.interpolate(lr, scale_factor=scale, mode="bilinear", align_corners=False)
    assert (got - ref).abs().max() < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_antilattice_leaves_no_grid_on_flat_input(scale: int) -> None:
    # Whatever the weights, flat features and a flat image must give a flat output away
    # from the borders: a per-phase pattern is exactly what the filter removes.
    torch.manual_seed(scale)
    flat_feats, flat_lr = torch.full((1, 4, 8, 8), 0.7), torch.full((1, 3, 8, 8), 0.3)
    for antilattice, flat in ((True, True), (False, False)):
        head = SubPixelHead(4, scale, antilattice)
        with torch.no_grad():
            head.weight.normal_()
            y = head(flat_feats, flat_lr)[..., 2 * scale : -2 * scale, 2 * scale : -2 * scale]
        spread = (y.amax(dim=(2, 3)) - y.amin(dim=(2, 3))).max()
        assert (spread < 1e-4) == flat


def test_local_attention_with_a_covering_window_is_global() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 16, 5, 7)
    glob, local = LinearAttention(16, 2, 0), LinearAttention(16, 2, 15)
    local.load_state_dict(glob.state_dict())
    with torch.no_grad():
        assert (glob(x) - local(x)).abs().max() < 1e-5
        local.window = 3  # a real neighbourhood differs
        assert (glob(x) - local(x)).abs().max() > 1e-3


def test_global_attention_attends_within_each_input_of_a_batch() -> None:
    """Each input of a batch takes the means of its own pixels, as alone; given one
    image's sums, every input takes those, as the input they were taken over does."""
    torch.manual_seed(1)
    attn = LinearAttention(32, 4, 0)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.5)
        x = torch.randn(3, 32, 6, 9)
        x[1] *= 3  # inputs unlike one another: a mix-up of their means shows
        together = attn(x)
        alone = torch.cat([attn(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
        sums = attn.sums(x[1:2])
        given = attn(x, sums)
        torch.testing.assert_close(given[1:2], alone[1:2], rtol=1e-4, atol=1e-4)
        assert (given[0] - alone[0]).abs().max() > 1e-2  # not its own means


def test_swappable_blocks_can_be_replaced() -> None:
    model = _randomized(build("tiny", 4))
    blocks = swappable_blocks(model)
    names = [n for n, _ in blocks]
    assert len(set(names)) == len(names)
    assert "unet.mid.attn" in names and "unet.up.0.blocks.1" in names
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)

    class Wrapped(nn.Module):  # stands in for AnnealedBlock(original, replacement, alpha)
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.inner(t)

    for name, block in blocks:
        assert replace_block(model, name, Wrapped(block)) is block
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(isinstance(model.get_submodule(n), Wrapped) for n in names)


def test_config_validation_and_params() -> None:
    with pytest.raises(ValueError, match="dec_widths"):
        PocketSRConfig(unshuffle=4)
    with pytest.raises(ValueError, match="one entry per level"):
        PocketSRConfig(widths=(8, 16), depths=(1,), kinds=("res", "res"))
    with pytest.raises(ValueError, match="attn_heads"):
        PocketSRConfig(attn_heads=3)
    with pytest.raises(ValueError, match="unknown PocketSR preset"):
        build("huge", 4)
    config = PocketSRConfig.from_params({"preset": "tiny", "dec_depth": 1, "widths": [8, 16, 32]})
    assert config.widths == (8, 16, 32) and config.dec_depth == 1
    assert config.enc_width == CONFIGS["tiny"].enc_width
    with pytest.raises(ValueError, match="unknown PocketSR build parameters"):
        PocketSRConfig.from_params({"width": 3})
    for preset in PRESETS:
        params = CONFIGS[preset].to_params()
        assert all(isinstance(v, int | str | bool | list) for v in params.values())
        assert PocketSRConfig.from_params(params) == CONFIGS[preset]


def test_registry_builds_from_manifest_params() -> None:
    from pocketsr_cli.registry import get_family

    family = get_family("pocketsr")
    model = family.build({"preset": "nano"}, 2)
    assert isinstance(model, PocketSR) and model.scale == 2
    assert model.config == CONFIGS["nano"]


# --- image-wide attention statistics (stats.py) -------------------------------------------

GLOBAL = [p for p in PRESETS if CONFIGS[p].global_attention]


def _padded_like_the_tiler(x: torch.Tensor, m: int) -> torch.Tensor:
    """What the tiler runs an unframed image as: reflected at the bottom and right."""
    return F.pad(x, (0, -x.shape[-1] % m, 0, -x.shape[-2] % m), mode="reflect")


def test_global_attention_presets_are_the_ones_with_image_stats() -> None:
    assert GLOBAL and "nano" in GLOBAL and "base" not in GLOBAL  # base: a 9-px window
    for preset in PRESETS:
        model = build(preset, 2)
        assert (model.image_stats is not None) == (preset in GLOBAL), preset
        desc = descriptor_from_state_dict(model.state_dict(), preset)
        assert (desc.image_stats is not None) == (preset in GLOBAL), preset


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("preset", GLOBAL)
def test_image_sums_taken_in_windows_are_the_whole_images(preset: str, scale: int) -> None:
    """Window by window, each adding only the cells it holds the receptive field of, the
    sums come out as the whole (padded) image's: the reach is not underestimated."""
    model = _randomized(build(preset, scale), seed=2)
    attn = model.unet.mid.attn
    assert isinstance(attn, LinearAttention)
    image = torch.rand(1, 3, 139, 117, generator=torch.Generator().manual_seed(3))
    least = smallest_window(model)
    with torch.no_grad():
        whole = attn.sums(model.lowest_features(_padded_like_the_tiler(image, model.multiple_of)))
        for window in ((least, least), (least + model.multiple_of, least + 40)):
            parts = image_sums(model, image, window)
            assert parts.count == whole.count
            assert torch.allclose(parts.kv, whole.kv, rtol=1e-5, atol=1e-6 * whole.count)
            assert torch.allclose(parts.k, whole.k, rtol=1e-5, atol=1e-6 * whole.count)


def test_a_window_that_holds_the_whole_image_attends_to_itself() -> None:
    """The untiled result does not change: a window holding the whole image (padded by
    the pad ensemble, or turned by flip8) ignores the statistics, bit for bit, and takes
    no statistics pass."""
    model = _randomized(build("nano", 2), seed=4)
    image = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        stats = model.image_stats(image)  # type: ignore[misc]
        assert torch.equal(model(image, stats), model(image))
        padded = F.pad(image, (4, 4, 4, 4), mode="reflect")
        assert torch.equal(model(padded, stats), model(padded))
        turned = image.rot90(1, (-2, -1)).contiguous()
        assert torch.equal(model(turned, stats), model(turned))
    assert stats._sums == {}


def test_a_tile_with_the_image_statistics_is_the_whole_image_inside() -> None:
    """A window of an image, given the image's statistics, computes what the whole image
    does away from its borders; without them (training's crops) it attends to itself.
    The bundled nano-x2 weights: random ones attend too faintly to tell."""
    from safetensors.torch import load_file

    model = build("nano", 2)
    model.load_state_dict(load_file(MODELS / "pocketsr-nano-x2.safetensors"))
    model.eval()
    noise = torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(6))
    image = 0.3 * noise + 0.7 * torch.linspace(0, 1, 320).view(1, 1, 1, 320)  # uneven
    top, left, side, keep = 64, 96, 160, 48  # keep: LR pixels compared around the centre
    crop = image[:, :, top : top + side, left : left + side]
    lo, hi = side - keep, side + keep  # the centre's output pixels (x2)
    with torch.no_grad():
        whole = model(image)[..., 2 * top :, 2 * left :][..., lo:hi, lo:hi]
        alone = model(crop)[..., lo:hi, lo:hi]
        shared = model(crop, model.image_stats(image))[..., lo:hi, lo:hi]  # type: ignore[misc]
    assert (shared - whole).abs().max() < 1e-5
    assert (alone - whole).abs().max() > 5 / 255  # what the statistics mend


def test_the_statistics_pass_runs_in_windows_no_larger_than_the_tile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass is a prefix of a tile's own pass on windows no larger than the tile (nor
    smaller than the smallest window), so it needs less memory than the tile the tiler
    sized; and it runs once per image, in the first tile."""
    model = _randomized(build("nano", 2), seed=7)
    seen: list[tuple[int, int]] = []
    descend = model.lowest_features

    def watched(x: torch.Tensor) -> torch.Tensor:
        seen.append((x.shape[-2], x.shape[-1]))
        return descend(x)

    monkeypatch.setattr(model, "lowest_features", watched)
    image = torch.rand(1, 3, 150, 170)
    stats = model.image_stats(image)  # type: ignore[misc]
    tile = torch.rand(2, 3, 136, 128)
    with torch.no_grad():
        model(tile, stats)
        count = len(seen)
        model(tile, stats)
    assert count > 1 and len(seen) == count  # taken once, in windows
    assert all(h <= 136 and w <= 128 for h, w in seen)
    seen.clear()
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64), model.image_stats(image))  # type: ignore[misc]
    least = smallest_window(model)
    assert max(max(s) for s in seen) == least and least > 64
