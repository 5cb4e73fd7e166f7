"""The PCSR family (archs/pcsr): any scale, routing, refinement, official layout, tiling."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _zoo import he_pcsr
from safetensors.torch import save_file

from pocketsr_cli.archs.pcsr import (
    CONFIGS,
    FAMILY,
    PCSR,
    Packing,
    PCSRConfig,
    Routing,
    RoutingStats,
    build,
    detect,
    infer,
)
from pocketsr_cli.archs.pcsr import network as pcsr_network
from pocketsr_cli.archs.pcsr.grid import as_ratio, output_length
from pocketsr_cli.archs.pcsr.routing import refine, route_adaptive
from pocketsr_cli.archs.pocketsr import build as build_pocketsr
from pocketsr_cli.errors import ModelError
from pocketsr_cli.registry import detect_family, get_family
from pocketsr_cli.sizing import scaled_length
from pocketsr_cli.tiling import TilePolicy, upscale_tiled
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

# Small networks of both backbones: every code path, a fraction of the official cost.
SMALL = {
    "carn": PCSRConfig(channels=8, groups=2, heavy=(16, 16), light=(6,), classifier=(6,)),
    "fsrcnn": PCSRConfig(
        backbone="fsrcnn", channels=8, shrink=4, maps=2, heavy=(16, 16), light=(6,), classifier=()
    ),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth areas, edges and noise: some pixels easy, some hard."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    smooth = torch.stack([yy, xx, (yy + xx) / 2])[None]
    edges = ((xx * 7).floor() % 2 == 0).float()[None, None].expand(1, 3, h, w)
    noise = torch.rand(1, 3, h, w, generator=gen)
    mask = (xx > 0.5).float()
    return (smooth * 0.6 + edges * 0.2 + noise * 0.2 * mask).clamp(0, 1)


def _model(backbone: str, seed: int = 0) -> PCSR:
    return he_pcsr(SMALL[backbone], 4, seed)


def _balance(model: PCSR, x: torch.Tensor, scale: float, heavy_share: float = 0.5) -> PCSR:
    """Shift the classifier's heavy logit so that about ``heavy_share`` of ``x``'s pixels
    route heavy at ``k = 0`` (random weights send almost everything one way).

    The threshold goes into the widest gap between margins near that share, so that no
    pixel sits within rounding of it and every comparison below is decided.
    """
    with torch.no_grad():
        margin = torch.logit(model.heavy_probability(x, scale).double()).flatten().sort()[0]
        n = margin.numel()
        lo, hi = int(n * (0.9 - heavy_share)), int(n * (1.1 - heavy_share))
        gaps = margin[lo + 1 : hi] - margin[lo : hi - 1]
        at = lo + int(gaps.argmax())
        model.classifier.imnet.layers[-1].bias[1] -= float(margin[at : at + 2].mean())
    return model


def _centres(n: int) -> torch.Tensor:
    """Pixel centres of an axis of ``n`` in [-1, 1] (LIIF's ``make_coord``)."""
    return -1 + (2 * torch.arange(n, dtype=torch.float32) + 1) / n


def _naive(model: PCSR, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official formulation, written out: per-pixel concatenated MLP inputs read with
    ``grid_sample``, every MLP at every pixel, bilinear base from ``grid_sample``.

    Returns the output without routing applied as ``(heavy_out, light_out)`` stacked on a
    new first axis, and the logit margin ``(N, H, W)``.
    """
    n, _, h, w = x.shape
    H, W = round(h * scale), round(w * scale)
    cy, cx = torch.meshgrid(_centres(H), _centres(W), indexing="ij")
    coord = torch.stack([cy, cx], dim=-1).view(1, -1, 2).expand(n, -1, -1)  # (y, x)
    grid = coord.flip(-1).unsqueeze(1)  # grid_sample wants (x, y)
    feat = model.encoder(x - model.rgb_mean)
    q_feat = F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0].transpose(1, 2)
    fy, fx = torch.meshgrid(_centres(h), _centres(w), indexing="ij")
    feat_coord = torch.stack([fy, fx])[None].expand(n, -1, -1, -1)
    q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)
    rel = (coord - q_coord[:, :, 0].transpose(1, 2)) * torch.tensor([h, w])
    cell = torch.tensor([2 / H * h, 2 / W * w]).expand(n, H * W, 2)
    inp = torch.cat([q_feat, rel, cell], dim=-1)
    base = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    base = base[:, :, 0].transpose(1, 2)
    logits = model.classifier.imnet(inp)
    outs = [base + s.imnet(inp) for s in (model.heavy_sampler, model.light_sampler)]
    images = torch.stack([o.transpose(1, 2).reshape(n, 3, H, W) for o in outs])
    return images, (logits[..., 1] - logits[..., 0]).view(n, H, W)


# -- scale and shapes ----------------------------------------------------------------------
def test_fsrcnn_backbone_in_place_inference_path_is_the_same_function() -> None:
    torch.manual_seed(3)
    net = build("fsrcnn")
    for prelu in (m for m in net.encoder.modules() if isinstance(m, torch.nn.PReLU)):
        prelu.weight.data.uniform_(0.05, 0.6)  # distinct slopes, as trained weights have
    x = torch.rand(2, 3, 19, 23) - 0.5
    reference = net.encoder(x)  # grad enabled: the modules as declared
    with torch.inference_mode():
        fast = net.encoder(x)
    assert torch.equal(fast, reference)


def test_scales_are_exact_fractions() -> None:
    assert as_ratio(2.5) == Fraction(5, 2) and as_ratio(3.7) == Fraction(37, 10)
    assert as_ratio(4) == 4 and as_ratio(1) == 1 and as_ratio(Fraction(7, 3)) == Fraction(7, 3)
    assert as_ratio(1 + 1 / 3) == Fraction(4, 3)  # nearest fraction with a small denominator
    for bad in (0.5, float("inf"), float("nan"), 0):
        with pytest.raises(ValueError, match="scale"):
            as_ratio(bad)
    assert output_length(101, Fraction(5, 2)) == 253  # 252.5, half up as every output size
    assert output_length(45, Fraction(37, 10)) == 167  # 166.5
    for ratio in (Fraction(3, 2), Fraction(5, 2), Fraction(37, 10), Fraction(101, 100)):
        for n in range(1, 300):
            assert output_length(n, ratio) == scaled_length(n, ratio), (n, ratio)


@pytest.mark.parametrize("scale", [1, 2, 2.5, 3, 3.7, 4])
@pytest.mark.parametrize("backbone", sorted(SMALL))
def test_shapes_at_integer_and_fractional_scales(backbone: str, scale: float) -> None:
    model = _model(backbone)
    x = torch.rand(2, 3, 13, 18)
    with torch.no_grad():
        y = model(x, scale=scale)
    assert y.shape == (2, 3, math.floor(13 * scale + 0.5), math.floor(18 * scale + 0.5))
    assert torch.isfinite(y).all()
    assert model.last_stats.total == 2 * y.shape[-2] * y.shape[-1]
    with torch.no_grad():
        assert model(x).shape == (2, 3, 52, 72)  # module(x): the trained integer scale
        assert model(x, scale=2.5, out_size=(40, 50)).shape == (2, 3, 40, 50)


@pytest.mark.parametrize("scale", [3, 2.4])
@pytest.mark.parametrize("backbone", sorted(SMALL))
def test_matches_the_official_formulation(backbone: str, scale: float) -> None:
    """Shared first layers, exact grid and separable base compute the official function
    (at scales where the official float coordinates land in the same pixels)."""
    x = _image(20, 25)
    model = _balance(_model(backbone), x, scale)
    model.routing = Routing(refine=False)
    with torch.no_grad():
        (heavy, light), margin = _naive(model, x, scale)
        y = model(x, scale=scale)
    expected = torch.where((margin > 0)[:, None], heavy, light)
    assert 0.3 < model.last_stats.heavy_fraction < 0.7
    assert torch.allclose(y, expected, atol=1e-5), float((y - expected).abs().max())


# -- routing -------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2.5, 4])
def test_sparse_routing_equals_dense_computation(
    scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gather -> MLP -> scatter on each path's pixels = both MLPs everywhere, selected."""
    # Batches of 97 heavy pixels (16 wide): batch borders inside rows and images.
    monkeypatch.setattr(pcsr_network, "CHUNK", 97 * 16)
    x = torch.cat([_image(16, 21, seed=1), _image(16, 21, seed=2)])
    model = _balance(_model("carn"), x, scale, heavy_share=0.4)
    with torch.no_grad():
        sparse = model(x, scale=scale)
        stats = model.last_stats
        model.sparse = False
        dense = model(x, scale=scale)
    assert 0.2 < stats.heavy_fraction < 0.6 and model.last_stats == stats
    assert torch.allclose(sparse, dense, atol=1e-6)


def test_k_extremes_route_all_heavy_or_all_light() -> None:
    x = _image(15, 20)
    model = _balance(_model("fsrcnn"), x, 2.4)
    fractions = []
    with torch.no_grad():
        (heavy, light), _ = _naive(model, x, 2.4)
        for k in (-1e6, -1.0, 0.0, 1.0, 1e6):
            model.routing = Routing(k=k, refine=False)
            y = model(x, scale=2.4)
            fractions.append(model.last_stats.heavy_fraction)
            if k == -1e6:
                assert torch.allclose(y, heavy, atol=1e-5)
            if k == 1e6:
                assert torch.allclose(y, light, atol=1e-5)
    assert fractions[0] == 1.0 and fractions[-1] == 0.0
    assert fractions == sorted(fractions, reverse=True)  # larger k, fewer heavy pixels
    assert 0.0 < fractions[2] < 1.0
    with pytest.raises(ValueError, match="finite"):
        Routing(k=float("inf"))


def test_adaptive_mode_splits_each_image_at_a_probability_threshold() -> None:
    x = torch.cat([_image(16, 20, seed=3), _image(16, 20, seed=4).flip(-1)])
    model = _model("carn")
    with torch.no_grad():
        p = model.heavy_probability(x, 3)[:, 0]
        model.routing = Routing(k=123.0, adaptive=True)  # k is unused in adaptive mode
        model(x, scale=3)
    heavy = route_adaptive(p)
    assert model.last_stats == RoutingStats(int(heavy.sum()), heavy.numel())
    for n in range(2):
        assert 0 < int(heavy[n].sum()) < heavy[n].numel()
        assert p[n][heavy[n]].min() > p[n][~heavy[n]].max()  # the upper cluster is heavy
        assert torch.equal(route_adaptive(p[n : n + 1])[0], heavy[n])  # images independent
    assert torch.equal(route_adaptive(0.3 * p + 0.5), heavy)  # min-max normalised
    assert not route_adaptive(torch.full((1, 4, 4), 0.7)).any()  # nothing stands out


def test_refinement_smooths_light_pixels_next_to_heavy_ones() -> None:
    gen = torch.Generator().manual_seed(5)
    out = torch.rand(1, 3, 7, 8, generator=gen)
    heavy = torch.zeros(1, 7, 8, dtype=torch.bool)
    heavy[0, 3, 4] = heavy[0, 0, 0] = True
    refined = refine(out.clone(), heavy)
    for r in range(7):
        for c in range(8):
            interior = 0 < r < 6 and 0 < c < 7
            near = bool(heavy[0, max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].any())
            if interior and near and not heavy[0, r, c]:
                expected = out[0, :, r - 1 : r + 2, c - 1 : c + 2].mean(dim=(1, 2))
            else:
                expected = out[0, :, r, c]
            assert torch.allclose(refined[0, :, r, c], expected), (r, c)
    assert torch.equal(refine(out[..., :2, :].clone(), heavy[..., :2, :]), out[..., :2, :])


def test_refinement_in_the_network_touches_only_light_pixels_next_to_heavy_ones() -> None:
    x = _image(14, 18)
    model = _balance(_model("fsrcnn"), x, 2.5, heavy_share=0.2)
    with torch.no_grad():
        model.routing = Routing(refine=False)
        plain = model(x, scale=2.5)
        heavy = model.heavy_probability(x, 2.5)[:, 0] > 0.5
        model.routing = Routing(refine=True)
        refined = model(x, scale=2.5)
    assert torch.equal(refined, refine(plain.clone(), heavy))
    changed = (refined != plain).any(dim=1)
    assert changed.any() and not (changed & heavy).any()


def test_stats_report_the_heavy_fraction_per_call_and_in_total() -> None:
    x = _image(10, 12)
    model = _balance(_model("fsrcnn"), x, 2)
    with torch.no_grad():
        model(x, scale=2)
        first = model.last_stats
        model.routing = Routing(k=-1e6)
        model(x, scale=3)
    assert 0 < first.heavy < first.total == 20 * 24
    assert model.last_stats == RoutingStats(30 * 36, 30 * 36)
    assert model.last_stats.heavy_fraction == 1.0
    assert model.total_stats == first + model.last_stats
    model.reset_stats()
    assert model.total_stats == RoutingStats() and RoutingStats().heavy_fraction == 0.0


def test_costs_weigh_backbone_and_sampler_like_the_official_cost_list() -> None:
    # The cost_list the official code (models/pcsr.py + flops.py) computes for its configs.
    light, heavy = build("carn").costs(4)
    assert light + heavy == pytest.approx(1.0)
    assert (light, heavy) == pytest.approx((0.318840, 0.681160), abs=1e-6)
    assert build("fsrcnn").costs(4) == pytest.approx((0.089962, 0.910038), abs=1e-6)


# -- official layout -----------------------------------------------------------------------
# Key -> shape of the official FSRCNN-PCSR state dict (save/fsrcnn-pcsr-phase1/iter_last.pth
# of github 3587jjh/PCSR, read for this table; the weights themselves are not used).
OFFICIAL_FSRCNN = {
    "encoder.head_conv.0.weight": (48, 3, 5, 5),
    "encoder.head_conv.0.bias": (48,),
    "encoder.head_conv.1.weight": (1,),
    "encoder.body_conv.0.0.weight": (12, 48, 1, 1),
    "encoder.body_conv.0.0.bias": (12,),
    "encoder.body_conv.0.1.weight": (1,),
    **{f"encoder.body_conv.{i}.weight": (12, 12, 3, 3) for i in range(1, 5)},
    **{f"encoder.body_conv.{i}.bias": (12,) for i in range(1, 5)},
    "encoder.body_conv.5.weight": (1,),
    "encoder.body_conv.6.0.weight": (48, 12, 1, 1),
    "encoder.body_conv.6.0.bias": (48,),
    "encoder.body_conv.6.1.weight": (1,),
    "heavy_sampler.imnet.layers.0.weight": (58, 52),
    **{f"heavy_sampler.imnet.layers.{i}.weight": (58, 58) for i in (2, 4, 6)},
    **{f"heavy_sampler.imnet.layers.{i}.bias": (58,) for i in (0, 2, 4, 6)},
    "heavy_sampler.imnet.layers.8.weight": (3, 58),
    "heavy_sampler.imnet.layers.8.bias": (3,),
    "light_sampler.imnet.layers.0.weight": (10, 52),
    **{f"light_sampler.imnet.layers.{i}.weight": (10, 10) for i in (2, 4)},
    **{f"light_sampler.imnet.layers.{i}.bias": (10,) for i in (0, 2, 4)},
    "light_sampler.imnet.layers.6.weight": (3, 10),
    "light_sampler.imnet.layers.6.bias": (3,),
    "classifier.imnet.layers.0.weight": (2, 52),
    "classifier.imnet.layers.0.bias": (2,),
}
# The official CARN-PCSR state dict: 116 tensors; a few of them (same file, carn-pcsr-phase1).
OFFICIAL_CARN_SOME = {
    "encoder.entry.weight": (52, 3, 3, 3),
    "encoder.b1.b1.body.0.weight": (52, 13, 3, 3),
    "encoder.b2.b1.body.4.weight": (52, 52, 1, 1),
    "encoder.b3.c3.0.weight": (52, 208, 1, 1),
    "encoder.b1.c1.1.num_batches_tracked": (),
    "encoder.c2.1.running_var": (52,),
    "heavy_sampler.imnet.layers.0.weight": (74, 56),
    "heavy_sampler.imnet.layers.8.weight": (3, 74),
    "light_sampler.imnet.layers.6.weight": (3, 20),
    "classifier.imnet.layers.4.weight": (2, 10),
}


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def test_presets_have_the_official_layout() -> None:
    fsrcnn = build("fsrcnn").state_dict()
    assert _shapes(fsrcnn) == OFFICIAL_FSRCNN
    carn = build("carn")
    shapes = _shapes(carn.state_dict())
    assert len(shapes) == 116 and OFFICIAL_CARN_SOME.items() <= shapes.items()
    assert sum(p.numel() for p in carn.parameters()) == 168_970
    assert sum(p.numel() for p in build("fsrcnn").parameters()) == 24_502


def _official_checkpoint(model: PCSR) -> dict[str, object]:
    """What the official train_pcsr.py saves: the weights nested under model.sd."""
    config = model.config
    encoder = (
        {"name": "carn", "args": {"nf": config.channels, "no_upsampling": True}}
        if config.backbone == "carn"
        else {"name": "fsrcnn", "args": {"d": config.channels, "no_upsampling": True}}
    )

    def sampler(hidden: tuple[int, ...]) -> dict[str, object]:
        mlp = {"name": "mlp", "args": {"hidden_list": list(hidden)}}
        return {"name": "liif-sampler", "args": {"imnet_spec": mlp}}

    args = {
        "encoder_spec": encoder,
        "heavy_sampler_spec": sampler(config.heavy),
        "light_sampler_spec": sampler(config.light),
        "classifier_spec": sampler(config.classifier),
    }
    return {
        "model": {"name": "pcsr-phase1", "args": args, "sd": model.state_dict()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]},
        "lr_scheduler": {"last_epoch": 500000, "T_period": [500000]},
        "iter": 500000,
    }


def _randomise_batch_norm(model: PCSR, seed: int) -> PCSR:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


@pytest.mark.parametrize("preset", sorted(CONFIGS))
def test_official_checkpoint_round_trip(preset: str, tmp_path: Path) -> None:
    torch.manual_seed(7)
    source = _randomise_batch_norm(build(preset).eval(), seed=8)
    pth = tmp_path / "iter_last.pth"
    torch.save(_official_checkpoint(source), pth)
    sd = read_state_dict(pth)
    assert detect(sd) and detect_family(sd) is FAMILY
    params = infer(sd)
    assert params.pop("scale") == 4 and params == CONFIGS[preset].to_params()
    descriptor = descriptor_from_state_dict(sd, pth.name)
    assert descriptor.family == "pcsr" and descriptor.scale == 4
    assert descriptor.params == sum(p.numel() for p in source.parameters())
    loaded = descriptor.module
    assert isinstance(loaded, PCSR) and not loaded.training
    # The bare state dict as safetensors (what `models import` would keep) loads alike.
    st = tmp_path / "pcsr.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(st))
    from_st = descriptor_from_state_dict(read_state_dict(st), st.name).module
    x = _image(12, 15)
    with torch.no_grad():
        for scale in (2.5, 4):
            expected = source(x, scale=scale)
            assert torch.equal(loaded(x, scale=scale), expected)
            assert torch.equal(from_st(x, scale=scale), expected)


def test_detection_and_loading_errors() -> None:
    sd = build("fsrcnn").state_dict()
    assert detect_family(build_pocketsr("nano", 2).state_dict()).name == "pocketsr"
    assert not detect({k: v for k, v in sd.items() if not k.startswith("classifier.")})
    assert not detect({k: v for k, v in sd.items() if not k.startswith("encoder.")})
    broken = dict(sd)
    broken["light_sampler.imnet.layers.2.weight"] = torch.zeros(10, 11)
    with pytest.raises(ModelError, match="not a valid pcsr model: light_sampler layer 1"):
        FAMILY.load(broken, "broken.pth")
    broken = dict(sd)
    broken["classifier.imnet.layers.0.weight"] = torch.zeros(3, 52)
    broken["classifier.imnet.layers.0.bias"] = torch.zeros(3)
    with pytest.raises(ModelError, match="classifier ends in 3 outputs"):
        FAMILY.load(broken, "broken.pth")


def test_build_parameters_round_trip_through_the_registry() -> None:
    family = get_family("pcsr")
    model = family.build({"preset": "fsrcnn", "heavy": [20, 20]}, 3)
    assert isinstance(model, PCSR) and model.scale == 3
    assert model.config == PCSRConfig.from_params(
        {**CONFIGS["fsrcnn"].to_params(), "heavy": [20, 20]}
    )
    for preset, config in CONFIGS.items():
        assert PCSRConfig.from_params(config.to_params()) == config
        assert PCSRConfig.from_params({"preset": preset}) == config
    with pytest.raises(ValueError, match="unknown PCSR build parameters"):
        PCSRConfig.from_params({"width": 3})
    with pytest.raises(ValueError, match="groups 5 must divide"):
        PCSRConfig(groups=5)
    with pytest.raises(ValueError, match="backbone"):
        build({"backbone": "edsr"})
    descriptor = family.instantiate("x", {"preset": "carn"}, 4, build("carn").state_dict())
    assert descriptor.module.receptive_radius == 21 and descriptor.tiling.value == "supported"


# -- tiling --------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", sorted(SMALL))
def test_receptive_radius_bounds_what_an_output_pixel_sees(backbone: str) -> None:
    """An output pixel at least ``receptive_radius`` LR pixels from a crop's edges is the
    same whether the network sees the crop or the whole image (refinement included)."""
    x = _image(80, 84, seed=3)
    model = _balance(_model(backbone), x, 2.5, heavy_share=0.4)
    radius, side = model.receptive_radius, 50
    top, left = 10, 14  # multiples of q = 2, so the crop's grid is the image's
    with torch.no_grad():
        whole = model(x, scale=2.5)
        part = model(x[:, :, top : top + side, left : left + side], scale=2.5)
    out = round(side * 2.5)
    shifted = whole[:, :, top * 5 // 2 :, left * 5 // 2 :][:, :, :out, :out]
    diff = (part - shifted).abs().amax(dim=1)[0]
    centres = (torch.arange(out) + 0.5) / 2.5  # each output pixel's LR position in the crop

    def inside(margin: int) -> torch.Tensor:
        return (centres >= margin) & (centres <= side - margin)

    keep = inside(radius)
    assert keep.sum() >= 10 and diff[keep][:, keep].max() < 1e-5
    if backbone == "fsrcnn":  # and the radius is not loose: two pixels less and it shows
        near = inside(radius - 2)
        assert diff[near][:, near].max() > 1e-3


def _tiled(
    model: PCSR, x: torch.Tensor, scale: float, tile_px: int, batch: int = 1
) -> tuple[torch.Tensor, int]:
    """``x`` at ``scale`` through the tiler's public function; also the number of tiles."""
    packing = Packing.for_scale(scale)
    tiles: list[int] = []
    out = upscale_tiled(
        packing.pack(x),
        packing.tile_fn(model),
        scale=packing.tiler_scale,
        tile=packing.blocks(tile_px),
        overlap=packing.overlap(model.receptive_radius),
        batch=batch,
        on_tile=lambda done, total: tiles.append(total),
    )
    return packing.unpack(out, *x.shape[-2:]), tiles[-1]


@pytest.mark.parametrize(
    ("backbone", "scale", "size", "tile_px"),
    [
        ("fsrcnn", 2.5, (45, 38), 36),  # q = 2: 75 channels, the last blocks padded
        ("fsrcnn", 3.7, (75, 83), 70),  # q = 10: 4107 channels, blocks of 10 x 10
        ("fsrcnn", 3, (31, 40), 30),  # integer: no packing, the tiler runs at x3
        ("carn", 1.5, (180, 185), 178),  # radius 21: 44-pixel overlaps, 2 x 3 tiles
    ],
)
def test_tiled_equals_untiled(
    backbone: str, scale: float, size: tuple[int, int], tile_px: int
) -> None:
    x = _image(*size, seed=6)
    model = _balance(_model(backbone), x, scale, heavy_share=0.4)  # refinement on
    with torch.no_grad():
        whole = model(x, scale=scale)
    tiled, tiles = _tiled(model, x, scale, tile_px, batch=2)
    assert tiles > 1
    height, width = (math.floor(side * scale + 0.5) for side in size)  # 112.5 makes 113
    assert tiled.shape == whole.shape == (1, 3, height, width)
    assert torch.allclose(tiled, whole, atol=1e-5), float((tiled - whole).abs().max())


def test_packing_meets_the_tile_policy_and_integer_outputs() -> None:
    """The memory probe of ``--tile auto`` and uint8 output go through the packed image."""
    x = _image(21, 26, seed=9)
    model = _balance(_model("fsrcnn"), x, 2.5)
    packing = Packing.for_scale(2.5)
    policy = TilePolicy("auto", overlap=packing.overlap(model.receptive_radius))
    out = policy.upscale(
        packing.pack(x),
        packing.tile_fn(model),
        scale=packing.tiler_scale,
        device="cpu",
        out_dtype=torch.uint8,
    )
    with torch.no_grad():
        whole = model(x, scale=2.5)
    expected = (whole * 255).round().clamp(0, 255).to(torch.uint8)
    got = packing.unpack(out, 21, 26)
    assert got.dtype == torch.uint8 and got.shape == expected.shape
    assert (got.int() - expected.int()).abs().max() <= 1
    assert packing.channels == 75 and Packing.for_scale(3).channels == 3
    assert packing.blocks(512) == 256 and packing.blocks(0) == 0


# -- speed ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_sparse_routing_saves_cpu_time(record_property: pytest.RecordProperty) -> None:
    """Official CARN-PCSR size, 96x96 -> 384x384: with 40% heavy pixels the forward pass
    takes less CPU time than with every pixel heavy, and more than with none.

    The margin is small with this backbone: since the heavy MLP runs in cache-sized
    batches, the CARN-M backbone, classifier and light MLP (all light) are ~75% of the
    all-heavy time, and a gathered heavy pixel costs ~1.5 dense ones (measured 2026-11:
    all heavy 0.225 s, 40% heavy 0.212 s, all light 0.169 s, one thread)."""
    torch.manual_seed(0)
    model = build("carn", 4).eval()
    x = _image(96, 96, seed=10)
    with torch.no_grad():
        margin = torch.logit(model.heavy_probability(x).double()).flatten()
    light_cost, heavy_cost = model.costs(4)
    k_40 = float(margin.quantile(0.6)) / math.log(heavy_cost / light_cost)

    def cpu_seconds(k: float) -> float:
        model.routing = Routing(k=k)
        start = time.process_time()
        with torch.no_grad():
            model(x)
        return time.process_time() - start

    cpu_seconds(0.0)  # warm-up
    runs: dict[str, list[float]] = {"all heavy": [], "40% heavy": [], "all light": []}
    fractions = {}
    for _ in range(5):
        for label, k in (("all heavy", -1e6), ("40% heavy", k_40), ("all light", 1e6)):
            runs[label].append(cpu_seconds(k))
            fractions[label] = model.last_stats.heavy_fraction
    best = {label: min(times) for label, times in runs.items()}
    figures = ", ".join(f"{label}: {best[label]:.3f} s ({fractions[label]:.0%})" for label in best)
    record_property("pcsr_cpu_seconds", figures)
    assert fractions["40% heavy"] == pytest.approx(0.4, abs=0.01)
    assert best["40% heavy"] < 0.97 * best["all heavy"], figures
    assert best["all light"] < best["40% heavy"], figures


def test_bilinear_base_at_a_whole_integer_scale_equals_the_gathers() -> None:
    from dataclasses import replace
    from fractions import Fraction

    from pocketsr_cli.archs.pcsr.grid import bilinear, query_axis

    x = torch.rand(2, 3, 7, 11)
    rows, cols = query_axis(7, 28, Fraction(4)), query_axis(11, 44, Fraction(4))
    assert rows.whole and cols.whole
    assert not query_axis(7, 32, Fraction(4)).whole  # overhang: the packed adapter's case
    assert not query_axis(7, 18, Fraction(5, 2)).whole
    gathered = bilinear(x, replace(rows, whole=False), replace(cols, whole=False))
    torch.testing.assert_close(bilinear(x, rows, cols), gathered, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", [4, 2.5])
def test_runs_under_autocast_like_the_upscaler_in_half_precision(scale: float) -> None:
    """``--precision fp16/bf16`` runs the module under autocast: the backbone's convolutions
    return half floats while the samplers' ``out=`` GEMMs stay in the weights' dtype (on an
    H200 the CUDA fp16 bench failed with "Expected out tensor to have dtype float")."""
    x = _image(16, 21)
    model = _balance(_model("carn"), x, scale, heavy_share=0.4)
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        routed = model(x, scale=scale)  # sparse routing: gather, both MLPs, scatter
    assert torch.isfinite(routed).all() and 0.0 < model.last_stats.heavy_fraction < 1.0
    for k in (-1e6, 1e6):  # one path everywhere: half features move no pixel's route
        model.routing = Routing(k=k, refine=False)
        with torch.no_grad():
            ref = model(x, scale=scale)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                half = model(x, scale=scale)
        assert half.dtype == torch.float32 and half.shape == ref.shape
        assert float((half - ref).abs().max()) < 0.03
