"""PCSR's fast paths against a straightforward reference: the phase-plane (lattice) forward
at whole integer scales, the general gather/scatter forward at the others, and the strip
refinement, so that no speed-up can change what the network computes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from _zoo import he_pcsr

from pocketsr_cli.archs.pcsr import PCSR, PCSRConfig, Routing
from pocketsr_cli.archs.pcsr import network as pcsr_network
from pocketsr_cli.archs.pcsr import routing as pcsr_routing
from pocketsr_cli.archs.pcsr.grid import as_ratio, bilinear, output_length, query_axis
from pocketsr_cli.archs.pcsr.lattice import Lattice, base_planes, lattice_for, to_image
from pocketsr_cli.archs.pcsr.routing import refine, route_by_cost
from pocketsr_cli.archs.pcsr.sampler import LiifSampler

SMALL = {
    "carn": PCSRConfig(channels=8, groups=2, heavy=(16, 16), light=(6, 5), classifier=(6,)),
    "fsrcnn": PCSRConfig(
        backbone="fsrcnn", channels=8, shrink=4, maps=2, heavy=(16, 16), light=(6,), classifier=()
    ),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth ramps, stripes and noise on half of each image: easy and hard pixels."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    smooth = torch.stack([yy, xx, (yy + xx) / 2])[None]
    stripes = ((xx * 7).floor() % 2 == 0).float()[None, None]
    noise = torch.rand(n, 3, h, w, generator=gen) * (xx > 0.5)
    return (smooth * 0.6 + stripes * 0.2 + noise * 0.2).clamp(0, 1)


def _model(backbone: str, seed: int = 0) -> PCSR:
    return he_pcsr(SMALL[backbone], 4, seed)


def _inputs(
    model: PCSR, x: torch.Tensor, scale: float, out_size: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official per-pixel MLP input ``(N, H, W, C + 4)`` (nearest feature, relative
    coordinate, cell) and the bilinear base ``(N, 3, H, W)``, one output pixel at a time
    in index form: no shared first layer, no phases, no blocks."""
    ratio = as_ratio(scale)
    n, _, h, w = x.shape
    height, width = out_size or (output_length(h, ratio), output_length(w, ratio))
    rows, cols = query_axis(h, height, ratio), query_axis(w, width, ratio)
    feat = model.encoder(x - model.rgb_mean)
    nearest = feat[:, :, rows.index][:, :, :, cols.index].permute(0, 2, 3, 1)
    rel_y = rows.rel.view(1, -1, 1, 1).expand(n, height, width, 1)
    rel_x = cols.rel.view(1, 1, -1, 1).expand(n, height, width, 1)
    cell = torch.full((n, height, width, 2), 2 / float(ratio))
    inp = torch.cat([nearest, rel_y, rel_x, cell], dim=-1)
    base = bilinear(x, replace(rows, whole=False), replace(cols, whole=False))
    return inp, base


def _reference_refine(out: torch.Tensor, heavy: torch.Tensor) -> torch.Tensor:
    """Each interior light pixel with a heavy pixel among its 8 neighbours becomes the mean
    of its 3x3 window of the unrefined output (written with unfold)."""
    n, c, h, w = out.shape
    if h < 3 or w < 3:
        return out.clone()
    windows = F.unfold(out, 3).view(n, c, 9, h - 2, w - 2)
    near = F.unfold(heavy[:, None].float(), 3).view(n, 9, h - 2, w - 2).amax(dim=1) > 0
    change = near & ~heavy[:, 1:-1, 1:-1]
    result = out.clone()
    inner = result[:, :, 1:-1, 1:-1]
    inner.copy_(torch.where(change[:, None], windows.mean(dim=2), inner))
    return result


def _reference(
    model: PCSR, x: torch.Tensor, scale: float, out_size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x, scale, out_size)`` written out: every MLP at every pixel on the
    concatenated input, k routing, selection, base, refinement.  Returns the output and
    the logit margins."""
    inp, base = _inputs(model, x, scale, out_size)
    logits = model.classifier.imnet(inp)
    margin = logits[..., 1] - logits[..., 0]
    heavy = route_by_cost(margin, model.routing.k, model.costs(scale))
    rgb = torch.where(
        heavy[..., None], model.heavy_sampler.imnet(inp), model.light_sampler.imnet(inp)
    )
    out = base + rgb.permute(0, 3, 1, 2)
    if model.routing.refine:
        out = _reference_refine(out, heavy)
    return out, margin


def _centre(model: PCSR, x: torch.Tensor, scale: float, share: float) -> float:
    """Shift the classifier's heavy logit so that about ``share`` of the pixels route heavy
    at ``k = 0``, with the threshold in the widest gap between nearby margins: no pixel is
    within rounding of it, so every path decides every pixel the same way.  Returns the
    gap's half-width."""
    with torch.no_grad():
        _, margin = _reference(model, x, scale)
    margin = margin.double().flatten().sort()[0]
    n = margin.numel()
    lo, hi = int(n * (0.95 - share)), int(n * (1.05 - share))
    gaps = margin[lo + 1 : hi] - margin[lo : hi - 1]
    at = lo + int(gaps.argmax())
    with torch.no_grad():
        model.classifier.imnet.layers[-1].bias[1] -= float(margin[at : at + 2].mean())
    return float(gaps.max()) / 2


CASES = [
    (4, None),  # lattice: module(x)
    (3, None),  # lattice at another integer scale
    (2.5, None),  # general path: a fractional scale
    (4, (70, 90)),  # general path: whole integer scale with an overhang (packed tiles)
]


@pytest.mark.parametrize("backbone", sorted(SMALL))
@pytest.mark.parametrize(("scale", "out_size"), CASES)
@pytest.mark.parametrize("sparse", [True, False])
def test_forward_equals_the_reference(
    backbone: str,
    scale: float,
    out_size: tuple[int, int] | None,
    sparse: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routed (about 40% heavy), all heavy and all light, refinement on and off, two images
    per batch, MLP batches that end inside rows, planes and images."""
    monkeypatch.setattr(pcsr_network, "CHUNK", 97 * 16)
    monkeypatch.setattr(pcsr_routing, "REFINE_STRIP", 3 * 2 * 61)
    x = _image(2, 17, 22, seed=3)
    model = _model(backbone)
    model.sparse = sparse
    assert _centre(model, x, scale, share=0.4) > 1e-4
    for routing in (
        Routing(k=0.0),
        Routing(k=0.0, refine=False),
        Routing(k=-1e6, refine=False),
        Routing(k=1e6),
    ):
        model.routing = routing
        with torch.no_grad():
            expected, margin = _reference(model, x, scale, out_size)
            got = model(x, scale=scale, out_size=out_size)
        heavy = route_by_cost(margin, routing.k, model.costs(scale))
        assert model.last_stats.heavy == int(heavy.sum()), routing
        assert model.last_stats.total == heavy.numel()
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=str(routing))
        if routing.k == 0:
            assert 0.2 < model.last_stats.heavy_fraction < 0.6


@pytest.mark.parametrize("backbone", sorted(SMALL))
def test_heavy_probability_and_adaptive_routing_on_the_lattice(backbone: str) -> None:
    x = _image(2, 12, 15, seed=4)
    model = _model(backbone)
    _centre(model, x, 4, share=0.4)
    with torch.no_grad():
        _, margin = _reference(model, x, 4)
        prob = model.heavy_probability(x)
        model.routing = Routing(adaptive=True, refine=False)
        got = model(x)
        stats = model.last_stats
        model.routing = Routing(k=-1e6, refine=False)
        all_heavy = model(x)
        model.routing = Routing(k=1e6, refine=False)
        all_light = model(x)
    torch.testing.assert_close(prob, torch.sigmoid(margin)[:, None], atol=1e-6, rtol=0)
    heavy = pcsr_routing.route_adaptive(prob[:, 0])
    torch.testing.assert_close(got, torch.where(heavy[:, None], all_heavy, all_light))
    assert stats.heavy == int(heavy.sum()) and 0 < stats.heavy < stats.total


def test_lattice_only_at_whole_integer_scales() -> None:
    feat = torch.zeros(2, 8, 5, 7)

    def grid(scale: float, size: tuple[int, int] | None = None) -> Lattice | None:
        ratio = as_ratio(scale)
        height, width = size or (output_length(5, ratio), output_length(7, ratio))
        return lattice_for(feat, query_axis(5, height, ratio), query_axis(7, width, ratio))

    assert grid(4) == Lattice(4, 2, 5, 7) and grid(1) == Lattice(1, 2, 5, 7)
    assert grid(2.5) is None and grid(4, (20, 29)) is None and grid(4, (21, 28)) is None
    lattice = Lattice(3, 2, 5, 7)
    raster = torch.arange(2 * 15 * 21).view(2, 15, 21)
    planes = lattice.from_raster(raster)
    assert planes.shape == (9, 70)
    # plane a s + b, position (n h + i) w + j holds output pixel (n, s i + a, s j + b)
    assert planes[2 * 3 + 1, (1 * 5 + 4) * 7 + 6] == raster[1, 3 * 4 + 2, 3 * 6 + 1]
    assert torch.equal(lattice.to_raster(planes), raster)


def test_no_lattice_where_its_planes_outnumber_their_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few LR pixels at a large factor run the general path: 1 pixel at x100 ran 10,000
    one-pixel planes (its memory probe, watching each of their operations, 60-90 s)."""
    for n, h, w, scale, used in [(2, 5, 7, 8, True), (1, 5, 7, 6, False), (1, 1, 1, 2, False)]:
        feat = torch.zeros(n, 8, h, w)
        ratio = as_ratio(scale)
        rows = query_axis(h, output_length(h, ratio), ratio)
        cols = query_axis(w, output_length(w, ratio), ratio)
        assert (lattice_for(feat, rows, cols) is not None) == used, (n, h, w, scale)
    model = _model("carn")
    called: list[str] = []
    real_base = pcsr_network.base_planes
    monkeypatch.setattr(
        pcsr_network, "base_planes", lambda *a: called.append("lattice") or real_base(*a)
    )
    x = _image(1, 2, 3, seed=1)
    with torch.inference_mode():
        out = model(x, scale=10)
    assert out.shape == (1, 3, 20, 30) and called == []
    with torch.inference_mode():
        model(_image(1, 6, 6, seed=1), scale=4)
    assert called == ["lattice"]


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
def test_the_base_by_planes_is_the_bilinear_base(scale: int) -> None:
    """Phase planes of the bilinear base, made into an image, are ``grid.bilinear`` (border
    rows and columns included), and a window's planes are the whole image's there."""
    x = _image(2, 9, 13, seed=3)
    lattice = Lattice(scale, 2, 9, 13)
    ratio = as_ratio(scale)
    rows, cols = query_axis(9, 9 * scale, ratio), query_axis(13, 13 * scale, ratio)
    planes = base_planes(x, lattice)
    assert planes.shape == (scale * scale, 3, 2 * 9 * 13)
    expected = bilinear(x, rows, cols)
    torch.testing.assert_close(to_image(planes, lattice), expected, atol=1e-6, rtol=0)
    window = base_planes(x[:, :, 2:8, 3:11], Lattice(scale, 2, 6, 8))
    whole = planes.view(scale * scale, 3, 2, 9, 13)[:, :, :, 3:7, 4:10]
    inner = window.view(scale * scale, 3, 2, 6, 8)[:, :, :, 1:5, 1:7]
    assert torch.equal(inner, whole)


@pytest.mark.parametrize("strip", [1, 2, 3 * 11, 1 << 16])
def test_refinement_strips_equal_the_reference(strip: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit for bit the same wherever the strips end, and the reference's values: the means
    are of the unrefined output even where a strip's window reads the strip before it."""
    monkeypatch.setattr(pcsr_routing, "REFINE_STRIP", strip)
    gen = torch.Generator().manual_seed(5)
    for shape in [(2, 3, 13, 11), (1, 3, 3, 3), (1, 3, 40, 3), (1, 3, 2, 9)]:
        out = torch.rand(shape, generator=gen)
        heavy = torch.rand(shape[0], *shape[2:], generator=gen) < 0.3
        got = refine(out.clone(), heavy)
        torch.testing.assert_close(got, _reference_refine(out, heavy), atol=1e-6, rtol=0)
        monkeypatch.setattr(pcsr_routing, "REFINE_STRIP", 1 << 20)
        assert torch.equal(got, refine(out.clone(), heavy))
        monkeypatch.setattr(pcsr_routing, "REFINE_STRIP", strip)


def test_folded_mlp_is_the_mlp_past_its_first_layer() -> None:
    """Biases folded into the GEMMs, buffers reused across batches of any size up to the
    capacity (a smaller batch after a larger one, and back), output into a column range of
    a larger array, input from rows with a ones column: the layers past the first, as
    ``imnet`` computes them."""
    gen = torch.Generator().manual_seed(7)
    for hidden in [(16, 16, 12), (6,), ()]:
        sampler = LiifSampler(8, 3, hidden)
        for p in sampler.parameters():
            p.data = torch.randn(p.shape, generator=gen)
        mlp = sampler.folded(capacity=50)
        tail = sampler.imnet.layers[1:]
        for m in [50, 7, 50, 1]:
            sums = torch.randn(m, sampler.widths[0], generator=gen)
            mlp.input(m).copy_(sums.t())
            into = torch.zeros(3, 80)
            got = mlp.run(m, out=into[:, 20 : 20 + m])
            expected = tail(sums.clone()).t() if len(tail) else sums.t()
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(into[:, 20 : 20 + m], expected, atol=1e-5, rtol=1e-5)
            assert not into[:, :20].any() and not into[:, 20 + m :].any()
            rows = torch.cat([sums, torch.ones(m, 1)], dim=1)  # gathered rows, ones column
            got = mlp.run(m, source=rows.t())
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="capacity"):
            mlp.input(51)
