"""Tests for the model-agnostic tiler (``pocketsr_cli.tiling``) and ``pocketsr_cli.memory``.

Models here are tiny seeded conv nets or pure functions, so the default run stays fast on a
2-core CPU.  Device-specific code (CUDA/MPS memory queries) is exercised with fakes.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pocketsr_cli import memory, tiling
from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.errors import ModelError, OutOfMemoryError, UsageError
from pocketsr_cli.tiling import (
    LiveTensorBytes,
    MemoryEstimate,
    TilePolicy,
    measure_memory,
    plan_axis,
    tile_side_for_memory,
    upscale_tiled,
)

TOL = 1 / 255


def conv_net(scale: int = 4, convs: int = 3, width: int = 8, seed: int = 0) -> torch.nn.Module:
    """``convs`` 3x3 convs (receptive-field radius ``convs`` input px) + pixel shuffle."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    channels = 3
    for i in range(convs):
        out = 3 * scale * scale if i == convs - 1 else width
        layers.append(torch.nn.Conv2d(channels, out, 3, padding=1))
        if i < convs - 1:
            layers.append(torch.nn.LeakyReLU(0.2))
        channels = out
    layers.append(torch.nn.PixelShuffle(scale))
    return torch.nn.Sequential(*layers).eval()


def nearest(scale: int):
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(scale, -1).repeat_interleave(scale, -2)

    return fn


def untiled(fn, image: torch.Tensor, size: SizeRequirements | None = None) -> torch.Tensor:
    """Reference: the whole image through ``fn``, framed by the margin (replicate) and
    padded (reflect/replicate) like the tiler."""
    size = size or SizeRequirements()
    m = size.margin
    x = F.pad(image, (m, m, m, m), mode="replicate") if m else image
    h, w = x.shape[-2:]
    ph, pw = size.padded(h) - h, size.padded(w) - w
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    with torch.no_grad():
        y = fn(x)
    s = y.shape[-1] // x.shape[-1]
    return y[..., m * s : (h - m) * s, m * s : (w - m) * s]


def smooth_image(h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


# ---------------------------------------------------------------------------------------
# Planning


@pytest.mark.parametrize("multiple_of", [1, 4, 8])
@pytest.mark.parametrize("overlap", [0, 3, 8])
def test_plan_axis_contract(overlap: int, multiple_of: int) -> None:
    for length in (1, 2, 7, 31, 64, 65, 100, 257):
        for tile in (0, 2 * overlap + 1, 2 * overlap + 5, 40, 64, 300):
            spans = plan_axis(length, tile, overlap, multiple_of)
            cores = [s.stop - s.start for s in spans]
            assert spans[0].start == 0 and spans[-1].stop == length
            assert all(a.stop == b.start for a, b in pairwise(spans))
            windows = {s.window_stop - s.window_start for s in spans}
            assert len(windows) == 1, "windows differ in size, cannot batch"
            window = windows.pop()
            aligned = all(s.window_start % multiple_of == 0 for s in spans)
            if aligned and length % multiple_of == 0:  # aligned plan: even in grid steps
                assert max(cores) - min(cores) <= multiple_of, "tiles are not even"
                assert len(spans) == 1 or window % multiple_of == 0
            else:
                assert max(cores) - min(cores) <= 1, "tiles are not even"
            limit = SizeRequirements(multiple_of=multiple_of).padded(tile)
            assert len(spans) == 1 or window <= limit
            for s in spans:
                assert 0 <= s.window_start <= s.start < s.stop <= s.window_stop <= length
                assert s.start - s.window_start >= overlap or s.window_start == 0
                assert s.window_stop - s.stop >= overlap or s.window_stop == length


@pytest.mark.parametrize("multiple_of", [2, 8, 16])
@pytest.mark.parametrize("overlap", [0, 5, 8, 16])
def test_plan_axis_aligns_windows_to_the_models_grid(overlap: int, multiple_of: int) -> None:
    for length in range(multiple_of, 400, multiple_of):
        for tile in range(2 * overlap + 1, 200, 7):
            reach = -(-overlap // multiple_of) * multiple_of
            room = SizeRequirements(multiple_of=multiple_of).padded(tile) - 2 * reach
            spans = plan_axis(length, tile, overlap, multiple_of)
            if len(spans) == 1 or room < multiple_of:
                continue  # one window, or no room for a core of one grid step
            assert all(s.window_start % multiple_of == 0 for s in spans), (length, tile)
            assert all(s.start % multiple_of == 0 for s in spans)


def _block_model(scale: int, block: int = 8):
    """A model that works on ``block``-px cells (pixel-unshuffle, 1x1 mix, shuffle back):
    needs inputs in multiples of ``block`` and sees no context, yet its output depends on
    where the cells fall."""
    torch.manual_seed(0)
    mix = torch.nn.Conv2d(3 * block * block, 3 * block * block, 1)

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(mix(F.pixel_unshuffle(x, block)), block)
        return y.repeat_interleave(scale, -1).repeat_interleave(scale, -2)

    return fn


def test_grid_model_tiled_equals_untiled() -> None:
    # Windows that started off the 8-px grid (as centred windows did) cut the cells
    # differently from the untiled run: the output would differ everywhere.
    fn, size = _block_model(scale=2), SizeRequirements(multiple_of=8)
    for h, w, tile in [(80, 104, 40), (61, 77, 36), (37, 53, 28)]:
        image = smooth_image(h, w)
        out = upscale_tiled(image, fn, scale=2, tile=tile, overlap=8, size=size)
        assert (out - untiled(fn, image, size)).abs().max() <= 1e-5


def test_plan_axis_single_tile_and_errors() -> None:
    assert plan_axis(50, 0, 8) == (tiling.Span(0, 50, 0, 50),)
    assert plan_axis(50, 80, 8) == (tiling.Span(0, 50, 0, 50),)
    assert len(plan_axis(100, 40, 8)) == 5  # 24-pixel cores: ceil(100 / 24)
    with pytest.raises(ValueError):
        plan_axis(100, 16, 8)
    with pytest.raises(ValueError):
        plan_axis(0, 16, 2)


# ---------------------------------------------------------------------------------------
# Tiled == untiled


@pytest.mark.parametrize(
    ("height", "width", "tile", "batch"),
    [
        (37, 53, 24, 1),  # odd sizes, many tiles
        (37, 53, 30, 3),  # batched
        (20, 30, 64, 1),  # tile larger than the image
        (1, 45, 20, 1),  # 1-pixel-high image
        (45, 1, 20, 2),  # 1-pixel-wide image
        (1, 1, 20, 1),
        (64, 64, 40, 4),
    ],
)
def test_tiled_equals_untiled(height: int, width: int, tile: int, batch: int) -> None:
    net = conv_net()  # radius 3 <= overlap / 2
    image = smooth_image(height, width)
    out = upscale_tiled(image, net, scale=4, tile=tile, overlap=8, batch=batch)
    assert out.shape == (1, 3, height * 4, width * 4)
    assert (out - untiled(net, image)).abs().max() <= TOL


def test_zero_overlap_exact_for_pointwise_model_only() -> None:
    image = smooth_image(29, 41)
    pointwise = conv_net(scale=2, convs=1)
    pointwise[0] = torch.nn.Conv2d(3, 12, 1)  # 1x1: no context needed
    out = upscale_tiled(image, pointwise, scale=2, tile=10, overlap=0)
    assert (out - untiled(pointwise, image)).abs().max() <= TOL
    # The same comparison catches a model whose receptive field does not fit.
    spatial = conv_net(scale=2, convs=3)
    out = upscale_tiled(image, spatial, scale=2, tile=10, overlap=0)
    assert (out - untiled(spatial, image)).abs().max() > TOL


def test_size_requirements_are_met_and_match_padded_whole_image() -> None:
    net = conv_net(scale=2)
    seen: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
        assert min(x.shape[-2:]) >= 16
        return net(x)

    size = SizeRequirements(minimum=16, multiple_of=8)
    for h, w in [(37, 53), (1, 30), (5, 5)]:
        image = smooth_image(h, w)
        out = upscale_tiled(image, fn, scale=2, tile=32, overlap=8, size=size)
        assert (out - untiled(net, image, size)).abs().max() <= TOL
    assert len(seen) > 3


@pytest.mark.parametrize(
    ("margin", "multiple_of", "tile", "batch"),
    [(2, 1, 0, 1), (2, 1, 24, 1), (2, 1, 30, 3), (3, 8, 32, 2), (1, 1, 20, 1)],
)
def test_a_margin_frames_the_image_in_its_border_pixels_whole_or_tiled(
    margin: int, multiple_of: int, tile: int, batch: int
) -> None:
    net = conv_net()  # zero padding: what the margin is for
    image = smooth_image(37, 53)
    size = SizeRequirements(multiple_of=multiple_of, margin=margin)
    out = upscale_tiled(image, net, scale=4, tile=tile, overlap=8, batch=batch, size=size)
    assert out.shape == (1, 3, 37 * 4, 53 * 4)
    assert (out - untiled(net, image, size)).abs().max() <= TOL
    bare = untiled(net, image, SizeRequirements(multiple_of=multiple_of))
    assert (out - bare).abs().max() > 10 * TOL  # the framing changes the borders


def test_a_margin_keeps_a_flat_image_flat_to_its_corners_where_zero_padding_darkens() -> None:
    blur = torch.nn.Conv2d(3, 3, 5, padding=2, bias=False, groups=3)
    torch.nn.init.constant_(blur.weight, 1 / 25)

    def model(x: torch.Tensor) -> torch.Tensor:
        return blur(x).repeat_interleave(2, -1).repeat_interleave(2, -2)

    image = torch.full((1, 3, 30, 41), 0.6)
    for tile in (0, 20):
        framed = upscale_tiled(
            image, model, scale=2, tile=tile, overlap=4, size=SizeRequirements(margin=2)
        )
        assert torch.allclose(framed, torch.full_like(framed, 0.6), atol=1e-6)
    bare = upscale_tiled(image, model, scale=2)
    assert bare[0, 0, 0, 0] == pytest.approx(0.6 * 9 / 25)


def test_finish_gets_the_output_without_its_margin_and_its_result_is_written() -> None:
    image = smooth_image(9, 11)
    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def finish(out: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(out.shape), tuple(source.shape)))
        assert torch.allclose(out, untiled(nearest(3), image), atol=1e-6)
        return out + 0.25

    size = SizeRequirements(multiple_of=4, margin=2)
    out = upscale_tiled(image, nearest(3), scale=3, size=size, finish=finish)
    assert seen == [((1, 3, 27, 33), (1, 3, 9, 11))]
    assert torch.allclose(out, untiled(nearest(3), image) + 0.25, atol=1e-6)


def test_size_requirements_frame_a_side_with_the_margin_then_pad_it() -> None:
    size = SizeRequirements(minimum=16, multiple_of=8, margin=2)
    assert (size.framed(1), size.framed(12), size.framed(13)) == (16, 16, 24)
    assert SizeRequirements().framed(37) == 37


# ---------------------------------------------------------------------------------------
# Blending


def _border_gradient(out: torch.Tensor, borders: list[int], band: int) -> tuple[float, float]:
    """Max |d/dx| of column means near ``borders`` (output px) and elsewhere.

    "Elsewhere" leaves out 24 px at the image edges, where the blur darkens anyway.
    """
    profile = out[0].mean(dim=(0, 1))
    grad = (profile[1:] - profile[:-1]).abs()
    near = torch.zeros_like(grad, dtype=torch.bool)
    for b in borders:
        near[max(0, b - band) : b + band] = True
    inner = torch.zeros_like(near)
    inner[24:-24] = True
    return grad[near].max().item(), grad[inner & ~near].max().item()


def test_no_seam_on_smooth_ramp() -> None:
    # A blur whose zero padding darkens every window edge: seams appear unless hidden.
    blur = torch.nn.Conv2d(3, 3, 5, padding=2, bias=False, groups=3)
    torch.nn.init.constant_(blur.weight, 1 / 25)

    def model(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(blur(x), scale_factor=4, mode="bilinear", align_corners=False)

    ramp = torch.linspace(0.1, 0.9, 96).expand(1, 3, 48, 96).contiguous()
    borders = [s.start * 4 for s in plan_axis(96, 40, 8)[1:]]
    out = upscale_tiled(ramp, model, scale=4, tile=40, overlap=8)
    at_border, elsewhere = _border_gradient(out, borders, band=16)
    assert at_border <= elsewhere * 1.001
    hard = upscale_tiled(ramp, model, scale=4, tile=40, overlap=0)
    borders0 = [s.start * 4 for s in plan_axis(96, 40, 0)[1:]]
    at_border, elsewhere = _border_gradient(hard, borders0, band=16)
    assert at_border > 2 * elsewhere, "the metric must see an unhidden seam"


def test_feather_hides_tile_dependent_output() -> None:
    # Like a generative model: the output shifts with each tile's content.
    def model(x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        return up + 0.05 * x.mean(dim=(1, 2, 3), keepdim=True)

    ramp = torch.linspace(0.1, 0.9, 96).expand(1, 3, 48, 96).contiguous()
    borders = [s.start * 4 for s in plan_axis(96, 40, 8)[1:]]
    at_border, elsewhere = _border_gradient(
        upscale_tiled(ramp, model, scale=4, tile=40, overlap=8), borders, band=16
    )
    assert at_border <= 1.5 * elsewhere
    borders = [s.start * 4 for s in plan_axis(96, 40, 0)[1:]]
    at_border, elsewhere = _border_gradient(
        upscale_tiled(ramp, model, scale=4, tile=40, overlap=0), borders, band=16
    )
    assert at_border > 3 * elsewhere


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "scale"), [(96, 40, 8, 4), (50, 13, 6, 3), (9, 5, 2, 2)]
)
def test_feather_weights_sum_to_one(length: int, tile: int, overlap: int, scale: int) -> None:
    spans = plan_axis(length, tile, overlap)
    total = torch.zeros(length * scale)
    for f in tiling.plan.feathers(spans, length, scale, overlap):
        total[f.lo : f.hi] += f.weights
        assert f.weights.min() >= 0
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_constant_image_stays_constant_to_the_edges() -> None:
    image = torch.full((1, 3, 33, 47), 0.25)
    out = upscale_tiled(image, nearest(3), scale=3, tile=20, overlap=6)
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-6)
    out8 = upscale_tiled(image, nearest(3), scale=3, tile=20, overlap=6, out_dtype=torch.uint8)
    assert out8.dtype == torch.uint8 and bool((out8 == 64).all())


# ---------------------------------------------------------------------------------------
# Output buffers


@pytest.mark.parametrize(
    ("dtype", "top"), [(torch.uint8, 255), (torch.uint16, 65535), (torch.int32, 65535)]
)
def test_integer_output_rounds_and_clamps(dtype: torch.dtype, top: int) -> None:
    net = conv_net(scale=2)
    image = smooth_image(25, 31) * 1.4 - 0.2  # the net's output leaves [0, 1] somewhere
    ref = untiled(net, image)
    assert ref.min() < 0 or ref.max() > 1
    out = upscale_tiled(image, net, scale=2, tile=24, overlap=8, out_dtype=dtype)
    assert out.dtype == dtype
    expected = (ref.clamp(0, 1) * top).round()
    # Equal but for float rounding at .5 ties (the untiled sum differs in the last bit).
    assert (out.to(torch.float64) - expected.double()).abs().max() <= 1


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_any_channel_count(channels: int) -> None:
    image = torch.rand(1, channels, 23, 35, generator=torch.Generator().manual_seed(3))
    out = upscale_tiled(image, nearest(2), scale=2, tile=16, overlap=4, out_dtype=torch.uint16)
    assert out.shape == (1, channels, 46, 70)
    assert (out.int() - (nearest(2)(image) * 65535).round().int()).abs().max() <= 1


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.float32])
@pytest.mark.parametrize("region", ["full width", "inner"])
def test_host_layout_is_the_output_buffers_and_copies_exactly(
    layout: torch.memory_format, dtype: torch.dtype, region: str
) -> None:
    # What Assembler._write sends from a device to the host: the block, cast and laid out
    # H x W x C on its own device, so the transfer needs no transposing pass on the CPU.
    from pocketsr_cli.tiling.assemble import host_layout

    values = torch.randint(0, 256, (1, 3, 12, 20), generator=torch.Generator().manual_seed(5))
    block = values.float().contiguous(memory_format=layout)[0]
    staged = host_layout(block, dtype)
    assert staged.shape == (12, 20, 3) and staged.dtype == dtype and staged.is_contiguous()
    out = tiling.allocate_output(3, 30, 20 if region == "full width" else 40, dtype)
    out.zero_()
    top, left = (5, 0) if region == "full width" else (5, 9)
    target = out[0, :, top : top + 12, left : left + 20]
    target.permute(1, 2, 0).copy_(staged)
    assert torch.equal(target.to(torch.int64), values[0])
    assert int(out.sum()) == int(values.sum())  # nothing written outside the target


def test_float_output_is_not_clamped() -> None:
    out = upscale_tiled(torch.full((1, 3, 8, 8), 0.5), lambda x: 3 * nearest(2)(x), scale=2)
    assert torch.allclose(out, torch.full_like(out, 1.5))


def test_wrong_model_shape_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="scale"):
        upscale_tiled(smooth_image(8, 8), nearest(2), scale=4)


def test_progress_reports_every_batch() -> None:
    calls: list[tuple[int, int]] = []
    upscale_tiled(
        smooth_image(40, 40),
        nearest(2),
        scale=2,
        tile=20,
        overlap=4,
        batch=2,
        on_tile=lambda d, t: calls.append((d, t)),
    )
    total = calls[-1][1]
    assert total == 16 and calls[-1][0] == total  # 4 x 4 tiles of 12-pixel cores
    assert [d for d, _ in calls] == sorted({d for d, _ in calls})


# ---------------------------------------------------------------------------------------
# Image-wide statistics


def test_stats_hook_runs_once_and_is_shared_by_every_tile() -> None:
    prepared: list[tuple[int, ...]] = []
    received: list[object] = []

    def prepare(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prepared.append(tuple(x.shape))
        return x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)

    def colour_match(x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        received.append(stats)
        mean, std = (s.to(x.device) for s in stats)
        return nearest(2)((x - mean) / std * 0.1 + 0.5)

    image = smooth_image(30, 50) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    policy = TilePolicy("fixed", tile=20, overlap=4)
    out = policy.upscale(image, colour_match, scale=2, device="cpu", prepare=prepare)
    assert prepared == [(1, 3, 30, 50)]
    assert len(received) > 4 and all(r is received[0] for r in received)
    ref = untiled(lambda x: colour_match(x, prepare(x)), image)
    assert (out - ref).abs().max() <= TOL


# ---------------------------------------------------------------------------------------
# Out-of-memory backoff


class FakeOOM:
    """A nearest-neighbour x2 'model' that fails above ``limit`` input pixels per call."""

    def __init__(self, limit: int, error: BaseException | None = None) -> None:
        self.limit = limit
        self.error = error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            raise self.error
        return nearest(2)(x)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory."),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
        MemoryError(),
    ],
)
def test_oom_halves_tile_and_next_image_starts_from_what_worked(error: BaseException) -> None:
    policy = TilePolicy("fixed", tile=64, overlap=4, floor=16)
    fake = FakeOOM(limit=40 * 40, error=error)
    image = smooth_image(100, 90)
    out = policy.upscale(image, fake, scale=2, device="cpu")
    assert torch.allclose(out, nearest(2)(image), atol=1e-6)
    assert policy.tile_side == 32
    assert fake.calls[0][2] * fake.calls[0][3] > fake.limit  # the 64-pixel try failed
    fake.calls.clear()
    policy.upscale(smooth_image(70, 70), fake, scale=2, device="cpu")
    assert all(c[2] <= 32 and c[3] <= 32 for c in fake.calls), "retried the failed size"


def test_oom_at_floor_fails_with_advice() -> None:
    policy = TilePolicy("fixed", tile=64, overlap=4, floor=16)
    fake = FakeOOM(limit=8 * 8)
    with pytest.raises(OutOfMemoryError, match=r"16-pixel tiles \(tried tile 64, 32, 16\)"):
        policy.upscale(smooth_image(100, 100), fake, scale=2, device="cpu")


def test_whole_image_mode_backs_off_to_tiles() -> None:
    policy = TilePolicy.for_side(0, overlap=4, floor=16)
    assert policy.mode == "whole"
    fake = FakeOOM(limit=60 * 60)
    image = smooth_image(100, 120)
    out = policy.upscale(image, fake, scale=2, device="cpu")
    assert torch.allclose(out, nearest(2)(image), atol=1e-6)
    assert fake.calls[0][2:] == (100, 120) and policy.tile_side == 60


def test_untileable_model_fails_at_once() -> None:
    fake = FakeOOM(limit=10)
    with pytest.raises(OutOfMemoryError, match="whole image"):
        TilePolicy("auto").upscale(
            smooth_image(50, 50), fake, scale=2, device="cpu", tileable=False
        )
    assert len(fake.calls) == 1


@pytest.mark.parametrize(("side", "given_back"), [(64, 1), (0, 0), (200, 0)])
def test_a_cpu_image_cut_into_tiles_gives_the_kept_memory_back(
    monkeypatch: pytest.MonkeyPatch, side: int, given_back: int
) -> None:
    """After its last tile (not before, not for one whole tile), so the encoder's copy of
    a big output is not added on top of the freed tile memory glibc keeps."""
    from pocketsr_cli.tiling import policy as policy_module

    calls: list[int] = []
    monkeypatch.setattr(policy_module, "give_back_freed", lambda: calls.append(1) or True)
    out = TilePolicy.for_side(side, overlap=4).upscale(
        smooth_image(100, 90), nearest(2), scale=2, device="cpu"
    )
    assert out.shape[2:] == (200, 180)
    assert len(calls) == given_back


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        raise RuntimeError("Given groups=1, weight of size [8, 4, 3, 3]")

    with pytest.raises(RuntimeError, match="groups"):
        TilePolicy("fixed", tile=64).upscale(smooth_image(80, 80), broken, scale=2, device="cpu")
    assert len(calls) == 1


def test_oom_halves_batch_before_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the policy does on a GPU that chose 4 tiles per forward pass.
    policy = TilePolicy("fixed", tile=32, overlap=4)
    monkeypatch.setattr(TilePolicy, "_start", lambda self, *a: (32, self._batch or 4))
    fake = FakeOOM(limit=2 * 32 * 32)
    image = smooth_image(100, 100)
    out = policy.upscale(image, fake, scale=2, device="cpu")
    assert torch.allclose(out, nearest(2)(image), atol=1e-6)
    assert [c[0] for c in fake.calls][:2] == [4, 2]
    assert policy._batch == 2 and policy.tile_side in (None, 32)


def test_tile_sides_make_policies() -> None:
    assert TilePolicy.for_side(None).mode == "auto"
    assert TilePolicy.for_side(0).mode == "whole"
    fixed = TilePolicy.for_side(256, overlap=16)
    assert (fixed.mode, fixed.tile) == ("fixed", 256)
    with pytest.raises(UsageError):
        TilePolicy.for_side(-3)
    with pytest.raises(UsageError, match="twice"):
        TilePolicy.for_side(32, overlap=16)


def test_tile_option_parsing_is_the_clis() -> None:
    from pocketsr_cli.cli._options import tile_side

    assert tile_side("auto") is None and tile_side(" AUTO ") is None
    assert tile_side("0") == 0 and tile_side("256", 16) == 256
    for bad in ("-3", "big", "1.5"):
        with pytest.raises(UsageError, match=r"^tile must be"):
            tile_side(bad)
    with pytest.raises(UsageError, match="computed many times over"):
        tile_side("32", 16)
    assert tile_side("64", 16) == 64 and tile_side("16", 0) == 16


# ---------------------------------------------------------------------------------------
# Memory estimates and auto tile size


def test_live_tensor_bytes_counts_peak_of_new_storage_only() -> None:
    weights = torch.ones(1000)
    with LiveTensorBytes() as counter:
        weights.mul_(2)  # in place on a pre-existing tensor: no new memory
        view = weights[:10]  # a view: no new memory
        a = torch.ones(256)  # 1 KiB
        b = a * 2  # +1 KiB, peak 2 KiB
        del a, b
        c = torch.ones(128)  # 512 B, below the peak
        del c, view
    assert counter.peak == 2048
    assert counter.live == 0


def test_the_cpu_memory_probe_does_not_load_dynamo() -> None:
    # torch's dispatch-mode wrapper would import torch._dynamo on the first op: 1-2 s of
    # every CPU run's first image.  A fresh process, since this one may have loaded it.
    code = (
        "import sys, torch\n"
        "from pocketsr_cli.tiling import LiveTensorBytes\n"
        "net = torch.nn.Conv2d(3, 4, 3, padding=1)\n"
        "with LiveTensorBytes() as counter, torch.inference_mode():\n"
        "    net(torch.rand(1, 3, 16, 16))\n"
        "print(counter.level, counter.peak, 'torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    level, peak, dynamo = result.stdout.split()
    assert level == "aten" and int(peak) >= 4 * 16 * 16 * 4 and dynamo == "False"


def test_the_probe_keeps_dynamo_out_of_its_mode_once_dynamo_is_loaded() -> None:
    import torch._dynamo  # what --compile loads

    with LiveTensorBytes() as counter:
        torch.ones(4)
    assert counter.level == "aten" and counter.peak == 16
    assert type(counter._mode)._should_skip_dynamo()


def test_live_tensor_bytes_falls_back_to_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    # Should torch's private dispatch API move, function-level counting takes over.
    with LiveTensorBytes() as counter:
        pass
    assert counter.level == "aten"
    monkeypatch.setattr(tiling.estimate, "_aten_mode", lambda watch: None)
    weights = torch.ones(1000)
    with LiveTensorBytes() as counter:
        weights.mul_(2)
        view = weights[:10]
        a = torch.ones(256)
        b = a * 2
        del a, b
        c = torch.ones(128)
        del c, view
    assert counter.level == "function"
    assert (counter.peak, counter.live) == (2048, 0)
    estimate = measure_memory(nearest(2), device="cpu", scale=2, channels=3)
    expected = 4 * 3 * (2 + 4) * tiling.estimate._CPU_OVERHEAD + 4 * 3 * (1 + 4)
    assert estimate.bytes_per_pixel == pytest.approx(expected, rel=0.02)


def test_measure_memory_on_cpu_matches_known_allocations() -> None:
    # Peak: the width-repeated copy (3*2 floats/px) alive with the output (3*4 floats/px).
    estimate = measure_memory(nearest(2), device="cpu", scale=2, channels=3)
    counted = 4 * 3 * (2 + 4)
    expected = counted * tiling.estimate._CPU_OVERHEAD + 4 * 3 * (1 + 4)
    assert estimate.bytes_per_pixel == pytest.approx(expected, rel=0.02)
    assert estimate.fixed_bytes < 4096


def test_measure_memory_passes_stats_to_the_model() -> None:
    seen = []

    def fn(x: torch.Tensor, stats: float) -> torch.Tensor:
        seen.append(stats)
        return nearest(2)(x)

    measure_memory(fn, device="cpu", scale=2, prepare=lambda x: float(x.std()))
    assert len(seen) == 2 and all(s > 0 for s in seen)


def test_tile_side_for_memory_bounds_and_rounding() -> None:
    est = MemoryEstimate(bytes_per_pixel=1000.0, fixed_bytes=10_000_000)
    size = SizeRequirements(minimum=16, multiple_of=12)
    sides = [
        tile_side_for_memory(est, budget, size=size, min_side=64, max_side=2048)
        for budget in (0, 2e7, 1e8, 1e9, 1e12)
    ]
    assert sides == sorted(sides)
    assert sides[0] == 72 and sides[-1] == 2040  # clamped, multiples of lcm(2, 12)
    assert all(s % 12 == 0 for s in sides)
    mid = tile_side_for_memory(est, 1e8, size=size)
    assert est.bytes_for(mid) <= 1e8 < est.bytes_for(mid + 12)


def test_auto_policy_uses_free_memory_and_probes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    net = conv_net(scale=2)
    probes = []
    real = tiling.measure_memory

    def counting(*args, **kwargs):
        probes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tiling.policy, "measure_memory", counting)
    # Room for roughly a 64-pixel tile: the auto size must tile a 150 x 130 image.
    estimate = real(net, device="cpu", scale=2)
    room = int(estimate.bytes_for(64) / 0.6)
    monkeypatch.setattr(tiling.policy, "free_bytes", lambda device: room)
    policy = TilePolicy("auto", overlap=8, floor=32)
    for h, w in [(150, 130), (61, 77)]:
        image = smooth_image(h, w)
        out = policy.upscale(image, net, scale=2, device="cpu", out_dtype=torch.uint8)
        ref = (untiled(net, image).clamp(0, 1) * 255).round()
        assert (out.float() - ref).abs().max() <= 1
    assert policy.tile_side is not None and 48 <= policy.tile_side <= 64
    assert len(probes) == 1


def test_auto_on_the_cpu_runs_an_image_whole_when_it_fits_and_tiles_bigger_ones_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass that fits ``cpu_budget_bytes`` runs as one piece whatever its shape; bigger
    images get tiles sized to ``cpu_tile_bytes``; after an out-of-memory backoff, tiles."""
    estimate = MemoryEstimate(bytes_per_pixel=1000.0)
    monkeypatch.setattr(tiling.policy, "measure_memory", lambda *a, **k: estimate)
    monkeypatch.setattr(tiling.policy, "free_bytes", lambda device: 10**12)
    policy = TilePolicy(
        "auto", overlap=4, floor=16, cpu_budget_bytes=1000 * 100 * 80, cpu_tile_bytes=1000 * 40**2
    )
    fake = FakeOOM(limit=10**9)
    for h, w in [(100, 80), (30, 260)]:  # 8000 and 7800 pixels: whole
        image = smooth_image(h, w)
        out = policy.upscale(image, fake, scale=2, device="cpu")
        assert torch.allclose(out, nearest(2)(image), atol=1e-6)
        assert fake.calls == [(1, 3, h, w)]
        fake.calls.clear()
    assert policy.tile_side == 40
    image = smooth_image(100, 90)  # 9000 pixels: tiles of 40
    out = policy.upscale(image, fake, scale=2, device="cpu")
    assert torch.allclose(out, nearest(2)(image), atol=1e-6)
    assert len(fake.calls) > 1 and all(c[2] <= 40 and c[3] <= 40 for c in fake.calls)
    fake.calls.clear()
    fake.limit = 90 * 70  # a whole 100 x 80 pass fails: from then on, tiles
    policy.upscale(smooth_image(100, 80), fake, scale=2, device="cpu")
    assert fake.calls[0] == (1, 3, 100, 80) and len(fake.calls) > 2
    fake.calls.clear()
    policy.upscale(smooth_image(100, 80), fake, scale=2, device="cpu")
    assert all(c[2] <= 40 and c[3] <= 40 for c in fake.calls)


def test_default_tile_is_the_cpu_start_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model's default tile needs no memory probe")

    monkeypatch.setattr(tiling.policy, "measure_memory", no_probe)
    policy = TilePolicy.for_side(None, overlap=4, default_tile=40)
    fake = FakeOOM(limit=10**9)
    image = smooth_image(100, 90)
    out = policy.upscale(image, fake, scale=2, device="cpu")
    assert torch.allclose(out, nearest(2)(image), atol=1e-6)
    assert policy.tile_side == 40 and all(c[2] <= 40 and c[3] <= 40 for c in fake.calls)
    # Fixed sizes win over it; one too small for the overlap is not used.
    assert TilePolicy.for_side(64, overlap=4, default_tile=40)._start(
        fake, torch.device("cpu"), 2, SizeRequirements(), 3, None
    ) == (64, 1)
    monkeypatch.setattr(tiling.policy, "measure_memory", measure_memory)
    small = TilePolicy.for_side(None, overlap=16, default_tile=32)
    side, _ = small._start(nearest(2), torch.device("cpu"), 2, SizeRequirements(), 3, None)
    assert side != 32


# ---------------------------------------------------------------------------------------
# memory.py


def test_is_out_of_memory() -> None:
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert memory.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert memory.is_out_of_memory(MemoryError())
    assert memory.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated"))
    assert memory.is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")
    )
    assert not memory.is_out_of_memory(RuntimeError("expected scalar type Half"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))


def test_meminfo_and_cgroup_parsing(tmp_path: Path) -> None:
    text = "MemTotal:  16000000 kB\nMemFree:  1000 kB\nMemAvailable:   8000000 kB\n"
    assert memory.parse_meminfo_available(text) == 8_000_000 * 1024
    assert memory.parse_meminfo_available("MemTotal: 5 kB\n") is None
    cg = tmp_path / "sys/fs/cgroup"
    cg.mkdir(parents=True)
    assert memory.cgroup_headroom_bytes(str(tmp_path)) is None
    (cg / "memory.max").write_text("max\n")
    (cg / "memory.current").write_text("400000\n")
    assert memory.cgroup_headroom_bytes(str(tmp_path)) is None
    (cg / "memory.max").write_text("1000000\n")
    assert memory.cgroup_headroom_bytes(str(tmp_path)) == 600_000


def test_free_bytes_cpu_is_positive() -> None:
    free = memory.free_bytes(torch.device("cpu"))
    assert free is not None and free > 0


def test_free_bytes_cuda_counts_allocator_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 500)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 200)
    assert memory.free_bytes(torch.device("cuda:0")) == 1300


def test_free_bytes_mps_is_capped_by_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 10_000, raising=False)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 4_000, raising=False)
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 5_000)
    assert memory.free_bytes(torch.device("mps")) == 5_000
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 50_000)
    assert memory.free_bytes(torch.device("mps")) == 6_000


def test_release_cached_empties_the_cuda_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    memory.release_cached(torch.device("cpu"))
    assert calls == []
    memory.release_cached(torch.device("cuda"))
    assert calls == [1]


def _accelerator() -> torch.device | None:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_accelerator() is None, reason="needs a CUDA or MPS device")
def test_on_accelerator_tiled_equals_untiled_and_memory_is_measured() -> None:
    device = _accelerator()
    assert device is not None
    net = conv_net().to(device)
    image = smooth_image(70, 90)
    ref = untiled(lambda x: net(x.to(device)).cpu(), image)
    for dtype in (torch.float32, torch.uint8):
        out = upscale_tiled(
            image, net, scale=4, tile=40, overlap=8, device=device, batch=3, out_dtype=dtype
        )
        expected = ref if dtype == torch.float32 else (ref.clamp(0, 1) * 255).round()
        assert (out.float() - expected).abs().max() <= (TOL if dtype == torch.float32 else 1)
    estimate = measure_memory(net, device=device, scale=4)
    assert estimate.bytes_per_pixel > 4 * 3 * 16
    free = memory.free_bytes(device)
    assert free is not None and free > 0


# ---------------------------------------------------------------------------------------
# A real-size job


@pytest.mark.slow
def test_full_hd_x4_auto_tiles_into_uint8_under_4_gib() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.LeakyReLU(0.2, inplace=True),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.LeakyReLU(0.2, inplace=True),
        torch.nn.Conv2d(32, 48, 3, padding=1),
        torch.nn.PixelShuffle(4),
    ).eval()
    image = torch.rand(1, 3, 1080, 1920)
    policy = TilePolicy("auto", overlap=16)
    tiles: list[int] = []
    start = time.perf_counter()
    out = policy.upscale(
        image,
        net,
        scale=4,
        device="cpu",
        out_dtype=torch.uint8,
        on_tile=lambda d, t: tiles.append(t),
    )
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    print(
        f"\n1920x1080 x4: {seconds:.1f} s, tile {policy.tile_side}, {tiles[-1]} tiles, "
        f"peak RSS {peak_gib:.2f} GiB"
    )
    assert out.shape == (1, 3, 4320, 7680) and out.dtype == torch.uint8
    assert peak_gib < 4
    assert math.isfinite(seconds)


def test_a_ulimit_on_address_space_caps_the_memory_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under ``ulimit -v`` every image failed with the allocator's raw text (or OpenCV's,
    encoding): the limit was not counted, so the memory gate let it through."""
    import resource

    status = "Name:\tpython\nVmSize:\t 1000000 kB\nVmRSS:\t 200000 kB\n"
    monkeypatch.setattr(resource, "getrlimit", lambda which: (3_000_000 * 1024, -1))
    assert memory.address_space_headroom_bytes(status) == 2_000_000 * 1024
    monkeypatch.setattr(memory, "_read_text", lambda path: status if "status" in path else None)
    monkeypatch.setattr(memory, "_psutil_available", lambda: 1 << 40)
    monkeypatch.setattr(memory, "cgroup_headroom_bytes", lambda root="": None)
    assert memory.host_available_bytes() == 2_000_000 * 1024
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(resource, "getrlimit", lambda which: unlimited)
    assert memory.address_space_headroom_bytes(status) is None


def test_a_tile_that_holds_the_images_side_holds_its_frame_too() -> None:
    """``--tile 30`` on a 30-px side: one window of the framed 34 px, not two of 30."""
    shapes: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape[-2:]))
        return nearest(2)(x)

    size = SizeRequirements(margin=2)
    image = smooth_image(30, 50)
    out = upscale_tiled(image, fn, scale=2, tile=30, overlap=4, size=size)
    assert (out - untiled(nearest(2), image)).abs().max() <= 1e-6
    assert {s[0] for s in shapes} == {34} and len(shapes) == len(plan_axis(54, 30, 4))
