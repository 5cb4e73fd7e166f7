"""inference.Upscaler: channels, dtypes, precision fallback, ensemble."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from pocketsr_cli.alphafill import fill_hidden_colour
from pocketsr_cli.archs.resize import Resize
from pocketsr_cli.descriptor import ModelDescriptor, Tiling
from pocketsr_cli.devices import Compute
from pocketsr_cli.inference import Upscaler


def upscaler(
    module: nn.Module,
    scale: int = 2,
    precision: str = "fp32",
    *,
    tiling: Tiling = Tiling.SUPPORTED,
    default_tile: int | None = None,
    **kw: object,
) -> Upscaler:
    desc = ModelDescriptor(
        name="t",
        family="test",
        module=module,
        scale=scale,
        tiling=tiling,
        default_tile=default_tile,
    )
    warnings: list[str] = []
    up = Upscaler(desc, Compute(torch.device("cpu"), precision), on_warning=warnings.append, **kw)  # type: ignore[arg-type]
    up.warnings = warnings  # type: ignore[attr-defined]
    return up


class HalfBlowsUp(nn.Module):
    """Returns inf whenever it runs in reduced precision (like fp16 overflow in a real net)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        nn.init.dirac_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.up = Resize("bicubic", 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.dtype != torch.float32:
            return self.up(y.float()) * float("inf")
        return self.up(y)


def test_nan_in_half_precision_is_recomputed_in_fp32() -> None:
    up = upscaler(HalfBlowsUp(), precision="bf16", tile=0)
    img = (np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8)
    out = up.upscale(img)
    assert out.shape == (32, 40, 3)
    ref = upscaler(HalfBlowsUp(), tile=0).upscale(img)
    assert np.array_equal(out, ref)
    assert len(up.warnings) == 1 and "fp32" in up.warnings[0]  # type: ignore[attr-defined]
    up.upscale(img)  # stays in fp32: no second warning
    assert len(up.warnings) == 1  # type: ignore[attr-defined]


class HalfBlowsUpWhereBright(HalfBlowsUp):
    """In reduced precision: inf where its input is bright (an overflow on part of an
    image only), and a few levels lighter elsewhere (half precision drawing otherwise than
    fp32, made visible); counts its fp32 passes."""

    def __init__(self) -> None:
        super().__init__()
        self.fp32_passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.dtype == torch.float32:
            self.fp32_passes += 1
            return self.up(y)
        if x.float().mean() > 0.5:
            return self.up(y.float()) * float("inf")
        return self.up(y.float()) + 4 / 255


@pytest.mark.parametrize("bright_first", [False, True])
def test_an_image_partly_drawn_in_half_precision_is_drawn_again_in_fp32(
    bright_first: bool,
) -> None:
    """Its dark tiles were drawn in bf16, its bright ones (after the NaN/inf) in fp32, and
    its record said fp32: it is drawn again, all in fp32, and is the fp32 run's image.
    Where no tile had been drawn in half precision yet, it is not drawn twice."""
    rng = np.random.default_rng(5)
    img = np.concatenate([rng.integers(20, 60, (16, 16, 3)), rng.integers(190, 230, (16, 16, 3))])
    img = (img[::-1] if bright_first else img).astype(np.uint8)
    net, ref_net = HalfBlowsUpWhereBright(), HalfBlowsUpWhereBright()
    out = upscaler(net, precision="bf16", tile=16, overlap=4).upscale(img)
    ref = upscaler(ref_net, tile=16, overlap=4).upscale(img)
    assert np.array_equal(out, ref)
    if bright_first:  # its first tile gave inf: every tile was drawn in fp32 once
        assert net.fp32_passes == ref_net.fp32_passes


def test_an_image_drawn_again_in_fp32_counts_its_tiles_on() -> None:
    """Its progress started over from the first tile when it was drawn again (the bar
    went from full back to nearly empty, its ETA thrown off): the redraw's tiles now go on
    from the first drawing's, with a total that counts both."""
    rng = np.random.default_rng(5)
    img = np.concatenate([rng.integers(20, 60, (16, 16, 3)), rng.integers(190, 230, (16, 16, 3))])
    img = img.astype(np.uint8)  # dark tiles first: drawn in bf16, then the bright ones give inf
    seen: list[tuple[int, int]] = []
    upscaler(HalfBlowsUpWhereBright(), precision="bf16", tile=16, overlap=4).upscale(
        img, lambda done, total: seen.append((done, total))
    )
    once: list[tuple[int, int]] = []
    upscaler(HalfBlowsUpWhereBright(), tile=16, overlap=4).upscale(
        img, lambda done, total: once.append((done, total))
    )
    tiles = once[-1][1]
    assert tiles > 1 and once[-1] == (tiles, tiles)
    dones = [done for done, _ in seen]
    assert dones == sorted(set(dones))  # never back, never twice
    assert seen[-1] == (2 * tiles, 2 * tiles)  # drawn twice, all of it counted


class WaitsWhereBright(HalfBlowsUpWhereBright):
    """:class:`HalfBlowsUpWhereBright` whose reduced-precision pass on a bright input
    waits, once inside, until ``go`` is set before giving inf."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.go = threading.Event(), threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv(x).dtype != torch.float32 and x.float().mean() > 0.5:
            self.inside.set()
            assert self.go.wait(10)
        return super().forward(x)


def test_another_threads_half_precision_passes_do_not_make_an_image_drawn_again() -> None:
    """Two threads share an upscaler: while one image's bf16 pass runs (and gives inf),
    another thread's image is drawn in bf16.  The first image's one tile was drawn in fp32
    only, so it is not drawn again (it was: the count of half-precision passes was the
    upscaler's, not the thread's)."""
    rng = np.random.default_rng(7)
    bright = rng.integers(190, 230, (16, 16, 3)).astype(np.uint8)
    dark = rng.integers(20, 60, (16, 16, 3)).astype(np.uint8)
    net = WaitsWhereBright()
    up = upscaler(net, precision="bf16", tile=0)
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def bright_image() -> None:
        try:
            up.upscale(bright, lambda done, total: seen.append((done, total)))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=bright_image)
    worker.start()
    try:
        assert net.inside.wait(10)
        up.upscale(dark)  # in bf16: the other thread's pass has not given inf yet
    finally:
        net.go.set()
        worker.join(10)
    assert not errors and not worker.is_alive()
    assert seen == [(1, 1)] and net.fp32_passes == 1  # recomputed in fp32 once, no redraw


class OutOfMemoryInFp32Once(HalfBlowsUpWhereBright):
    """:class:`HalfBlowsUpWhereBright` whose first fp32 pass runs out of memory."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv(x).dtype == torch.float32 and not getattr(self, "ran_out", False):
            self.ran_out = True
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(x)


def test_tiles_drawn_in_half_precision_by_an_attempt_out_of_memory_do_not_count() -> None:
    """The tiler's first attempt drew dark tiles in bf16, then a bright tile gave inf and
    its fp32 recompute ran out of memory: the retry, in smaller tiles, draws all of the
    image in fp32, so it is not drawn again (it was: the failed attempt's tiles counted)."""
    rng = np.random.default_rng(5)
    img = np.concatenate([rng.integers(20, 60, (16, 16, 3)), rng.integers(190, 230, (16, 16, 3))])
    img = img.astype(np.uint8)  # dark tiles first: drawn in bf16, then the bright ones give inf
    net = OutOfMemoryInFp32Once()
    up = upscaler(net, precision="bf16", tile=16, overlap=2)
    up.policy.floor = 8
    seen: list[tuple[int, int]] = []
    out = up.upscale(img, lambda done, total: seen.append((done, total)))
    assert up.policy.tile_side == 8  # it backed off from 16 to 8
    once: list[tuple[int, int]] = []
    ref_net = HalfBlowsUpWhereBright()
    ref = upscaler(ref_net, tile=8, overlap=2).upscale(
        img, lambda done, total: once.append((done, total))
    )
    assert np.array_equal(out, ref)
    assert seen[-1] == once[-1]  # the retry's tiles, not the first attempt's on top
    assert net.fp32_passes == ref_net.fp32_passes  # no image drawn again


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_channels_and_dtypes(channels: int, dtype: type) -> None:
    peak = np.iinfo(dtype).max
    rng = np.random.default_rng(channels)
    img = (rng.random((10, 12, channels)) * peak).astype(dtype)
    out = upscaler(Resize("bicubic", 2)).upscale(img)
    assert out.shape == (20, 24, channels) and out.dtype == dtype
    # Flat input stays flat in every channel (alpha included).
    flat = np.full((10, 12, channels), peak // 3, dtype)
    assert np.all(upscaler(Resize("bicubic", 2)).upscale(flat) == peak // 3)


def test_alpha_is_resampled_not_hallucinated() -> None:
    """Alpha goes through a bicubic filter even when the model does something else."""

    class Invert(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 1 - Resize("bicubic", 2)(x)

    img = np.zeros((8, 8, 4), np.uint8)
    img[..., 3] = 255
    out = upscaler(Invert()).upscale(img)
    assert np.all(out[..., :3] == 255) and np.all(out[..., 3] == 255)


@pytest.mark.parametrize("ensemble", [True, "pad", "flip8"])
def test_ensemble_matches_plain_for_a_shift_invariant_model(ensemble: str | bool) -> None:
    img = (np.random.default_rng(3).random((24, 24, 3)) * 255).astype(np.uint8)
    plain = upscaler(Resize("bicubic", 2), tile=0).upscale(img).astype(int)
    ens = upscaler(Resize("bicubic", 2), tile=0, ensemble=ensemble).upscale(img).astype(int)
    # Identical away from the borders, where the padding differs (bicubic is also
    # symmetric, so its flips and rotations agree too).
    assert np.abs(plain - ens)[8:-8, 8:-8].max() <= 1


@pytest.mark.parametrize("ensemble", ["pad", "flip8"])
@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_ensemble_with_gray_alpha_and_tiles(ensemble: str, channels: int, dtype: type) -> None:
    """Gray runs the ensemble on R = G = B and folds back; alpha is resampled, never run
    through the ensemble, so it is the plain run's alpha; tiles, each with its own passes,
    blend to the untiled result (the net's radius, 2, is at most half the overlap)."""
    peak = np.iinfo(dtype).max
    rng = np.random.default_rng(channels)
    img = (rng.random((30, 26, channels)) * peak).astype(dtype)
    plain = upscaler(_tiny_net(), tile=0).upscale(img)
    whole = upscaler(_tiny_net(), tile=0, ensemble=ensemble).upscale(img)
    tiled = upscaler(_tiny_net(), tile=20, overlap=6, ensemble=ensemble).upscale(img)
    assert whole.shape == (60, 52, channels) and whole.dtype == dtype
    colour = slice(0, 1) if channels in (1, 2) else slice(0, 3)
    assert not np.array_equal(whole[..., colour], plain[..., colour])
    if channels in (2, 4):
        assert np.array_equal(whole[..., -1], plain[..., -1])
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_tiling_hints_reach_the_tiler() -> None:
    img = (np.random.default_rng(3).random((70, 60, 3)) * 255).astype(np.uint8)
    ref = upscaler(Resize("bicubic", 2), tile=0).upscale(img).astype(int)

    def close(up: Upscaler) -> bool:  # tiles blend to the untiled result, to rounding
        return bool(np.abs(up.upscale(img).astype(int) - ref).max() <= 1)

    # the CPU starts from the model's tile (one of at least 4 x the overlap, 16 here)
    up = upscaler(Resize("bicubic", 2), default_tile=64)
    assert close(up) and up.policy.tile_side == 64
    assert upscaler(Resize("bicubic", 2), default_tile=40).policy.tile_side != 40
    discouraged = upscaler(Resize("bicubic", 2), tiling=Tiling.DISCOURAGED, tile=48)
    assert close(discouraged) and discouraged.policy.tile_side == 48
    assert not discouraged.warnings  # type: ignore[attr-defined]
    whole = upscaler(Resize("bicubic", 2), tiling=Tiling.INTERNAL, tile=48)
    assert close(whole) and "must see the whole image" in whole.warnings[0]  # type: ignore[attr-defined]


def test_rejects_bad_arrays() -> None:
    up = upscaler(Resize("bicubic", 2))
    with pytest.raises(ValueError):
        up.upscale(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        up.upscale(np.zeros((4, 4, 3), np.float32))


def test_pocketsr_weights_carry_their_size_requirements() -> None:
    """A loaded pocketsr state dict pads odd images to its multiple-of through the tiler."""
    from pocketsr_cli.archs.pocketsr import build
    from pocketsr_cli.errors import ModelError
    from pocketsr_cli.weights.load import descriptor_from_state_dict

    state = build("nano", 4).state_dict()
    desc = descriptor_from_state_dict(state, "nano")
    assert desc.size.multiple_of == 8 and desc.family == "pocketsr"
    up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=0)
    assert up.upscale(np.zeros((13, 21, 3), np.uint8)).shape == (52, 84, 3)
    broken = dict(state)
    broken["head.weight"] = broken["head.weight"][:1]
    with pytest.raises(ModelError):
        descriptor_from_state_dict(broken, "broken")


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.PReLU(8),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.PixelShuffle(2),
    ).eval()


def test_compile_failure_falls_back_to_the_plain_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network torch.compile cannot handle still upscales, uncompiled, with one warning."""

    def broken_compile(module: nn.Module) -> object:
        def call(*args: object) -> torch.Tensor:
            raise RuntimeError("backend compiler failed\nlong traceback")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    img = (np.random.default_rng(5).random((12, 16, 3)) * 255).astype(np.uint8)
    up = upscaler(_tiny_net(), tile=0, compile=True)
    assert np.array_equal(up.upscale(img), upscaler(_tiny_net(), tile=0).upscale(img))
    assert len(up.warnings) == 1 and "backend compiler failed" in up.warnings[0]  # type: ignore[attr-defined]
    assert up.compile_seconds > 0  # the failed attempt is part of the warm-up
    up.upscale(img)
    assert len(up.warnings) == 1  # type: ignore[attr-defined]


def test_compile_out_of_memory_is_left_to_the_tiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-memory error inside a compiled call is not mistaken for a compile failure."""
    calls: list[int] = []

    def oom_once(module: nn.Module) -> object:
        def call(x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[-1])
            if len(calls) == 1:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return module(x)

        return call

    monkeypatch.setattr(torch, "compile", oom_once)
    img = (np.random.default_rng(6).random((24, 32, 3)) * 255).astype(np.uint8)
    up = upscaler(_tiny_net(), tile=16, overlap=2, compile=True)
    up.policy.floor = 8
    plain = upscaler(_tiny_net(), tile=8, overlap=2).upscale(img)
    assert np.abs(up.upscale(img).astype(int) - plain).max() <= 1
    assert up.warnings == []  # type: ignore[attr-defined]
    assert up.policy.tile_side == 8 and calls[0] > 8  # it backed off from 16 to 8


class OutOfMemoryAbove(nn.Module):
    """:func:`_tiny_net` that runs out of memory on inputs of more than ``limit`` pixels."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.net, self.limit = _tiny_net(), limit
        self.sides: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sides.append(x.shape[-1])
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


def test_tiles_shrunk_below_four_overlaps_by_the_memory_backoff_are_told_once() -> None:
    """The backoff may halve tiles below 4 x the overlap, the smallest ``auto`` and
    ``--tile N`` use (down to 2 x the overlap and a step), where each pixel is computed
    many times over: a run went on, silently, many times slower.  The first time it
    does, the run is told, once; the tiles still match the whole image's result."""
    img = (np.random.default_rng(7).random((40, 48, 3)) * 255).astype(np.uint8)
    net = OutOfMemoryAbove(limit=20 * 20)
    up = upscaler(net, tile=40, overlap=8)
    up.policy.floor = 8  # (the backoff's own floor: 2 x 8 + a step, 18)
    out = up.upscale(img)
    assert up.policy.tile_side == 20 and net.sides[0] == 40  # backed off from 40 to 20
    (warning,) = up.warnings  # type: ignore[attr-defined]
    assert "out of memory on cpu in 40-pixel tiles and goes on in 20-pixel tiles" in warning
    assert "less than 4 × tile_overlap (8)" in warning and "about 25 times over" in warning
    whole = upscaler(_tiny_net(), tile=0).upscale(img)
    assert np.abs(out.astype(int) - whole).max() <= 1
    up.upscale(img)  # from the tiles that worked: nothing new to tell
    assert len(up.warnings) == 1  # type: ignore[attr-defined]
    fresh = upscaler(OutOfMemoryAbove(limit=20 * 20), tile=80, overlap=8)
    fresh.policy.floor = 8
    fresh.upscale(np.concatenate([img, img, img]))  # 80 -> 40 (not below 4 x 8) -> 20
    assert len(fresh.warnings) == 1 and fresh.policy.tile_side == 20  # type: ignore[attr-defined]
    assert "in 40-pixel tiles and goes on in 20-pixel tiles" in fresh.warnings[0]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_compiled_network_matches_eager_and_times_its_warm_up() -> None:
    """torch.compile on the CPU (about 20 s of compiling on a small machine): same pixels,
    the warm-up counted once per input signature."""
    img = (np.random.default_rng(4).random((16, 20, 3)) * 255).astype(np.uint8)
    eager = upscaler(_tiny_net(), tile=0).upscale(img)
    up = upscaler(_tiny_net(), tile=0, compile=True)
    assert np.abs(up.upscale(img).astype(int) - eager).max() <= 1
    warm_up = up.compile_seconds
    assert warm_up > 0 and up.warnings == []  # type: ignore[attr-defined]
    up.upscale(img)
    assert up.compile_seconds == warm_up  # same signature: no new compile


# -- resamplers: the whole-image 8-bit path ------------------------------------------------


def resampler(kernel: str, scale: int = 3, **kw: object) -> Upscaler:
    """A bicubic or Lanczos model as the resolver makes it (``FAMILY.instantiate``)."""
    from pocketsr_cli.archs.resize import FAMILY

    desc = FAMILY.instantiate(kernel, {"kernel": kernel}, scale)
    return Upscaler(desc, Compute(torch.device("cpu"), "fp32"), **kw)  # type: ignore[arg-type]


def float_only(up: Upscaler, **kw: object) -> Upscaler:
    """The same model without its 8-bit path: what every other model gets."""
    from dataclasses import replace

    desc = replace(up.model, upscale_uint8=None)
    return Upscaler(desc, Compute(torch.device("cpu"), "fp32"), **kw)  # type: ignore[arg-type]


def test_only_resamplers_state_an_8_bit_path() -> None:
    from pocketsr_cli.descriptor import describe_module

    assert resampler("bicubic").model.upscale_uint8 is not None
    assert resampler("lanczos").model.upscale_uint8 is not None
    assert describe_module(_tiny_net(), "net", "test", 2).upscale_uint8 is None
    assert resampler("bicubic").uint8_path and resampler("lanczos").uint8_path
    assert not resampler("bicubic", ensemble=True).uint8_path
    assert not upscaler(_tiny_net()).uint8_path


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_resamplers_take_8_bit_images_whole(
    monkeypatch: pytest.MonkeyPatch, kernel: str, channels: int
) -> None:
    """No float network, no tiles (a fixed --tile is moot), alpha in the same 8-bit pass
    (bicubic, whatever the colour's filter): the result is the resampler's own 8-bit
    answer, progress reported as one tile."""
    img = (np.random.default_rng(channels).random((23, 31, channels)) * 255).astype(np.uint8)
    seen = fill_hidden_colour(img) if channels in (2, 4) else img  # alpha 0 refilled first
    expected = Resize(kernel, 3).upscale_uint8(seen)
    if channels in (2, 4):
        expected[..., -1:] = Resize("bicubic", 3).upscale_uint8(
            np.ascontiguousarray(seen[..., -1:])
        )

    def no_float(self: Resize, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the float path ran")

    monkeypatch.setattr(Resize, "forward", no_float)
    warnings: list[str] = []
    up = resampler(kernel, tile=8, overlap=2, on_warning=warnings.append)
    tiles: list[tuple[int, int]] = []
    out = up.upscale(img, lambda done, total: tiles.append((done, total)))
    assert np.array_equal(out, expected) and out.dtype == np.uint8
    assert tiles == [(1, 1)] and warnings == []


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_resamplers_keep_the_float_path_for_16_bit_images(channels: int) -> None:
    """16-bit pixels, and the ensemble's padded passes, still run the float network (tiled,
    exactly as before)."""
    rng = np.random.default_rng(channels)
    deep = (rng.random((40, 36, channels)) * 65535).astype(np.uint16)
    up = resampler("bicubic", tile=16, overlap=4)
    out = up.upscale(deep)
    assert out.dtype == np.uint16 and out.shape == (120, 108, channels)
    assert np.array_equal(out, float_only(up, tile=16, overlap=4).upscale(deep))
    whole = float_only(up, tile=0).upscale(deep).astype(int)
    assert np.abs(whole - out).max() <= 1  # tiles blend to the untiled result, to rounding
    img = (deep >> 8).astype(np.uint8)
    ens = resampler("bicubic", ensemble=True, tile=0).upscale(img)
    assert np.array_equal(ens, float_only(up, ensemble=True, tile=0).upscale(img))


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_neutral_colour_image_stays_neutral(channels: int, dtype: type) -> None:
    """A gray photo saved in colour (R = G = B everywhere) runs as gray: a network that
    tints (as the default model draws colour fringes on grey edges) gives it back with
    three equal channels, the gray file's values; a colour image keeps the tint."""
    peak = np.iinfo(dtype).max
    rng = np.random.default_rng(channels)
    gray = (rng.random((14, 18, 1)) * peak).astype(dtype)
    img = np.repeat(gray, 3, axis=2)
    if channels == 4:
        img = np.dstack([img, (rng.random((14, 18)) * peak).astype(dtype)])
    out = upscaler(_tiny_net(), tile=0).upscale(img)
    assert out.shape == (28, 36, channels)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    as_gray = upscaler(_tiny_net(), tile=0).upscale(img[..., 2:])  # gray (+ alpha)
    assert np.array_equal(out[..., 0], as_gray[..., 0])
    assert np.array_equal(out[..., 3:], as_gray[..., 1:])
    img[0, 0, 0] ^= 1  # one sample off: colour, run as it is
    tinted = upscaler(_tiny_net(), tile=0).upscale(img)
    assert not np.array_equal(tinted[..., 0], tinted[..., 1])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
def test_gray_fold_is_the_rounded_channel_mean_in_bands(dtype: torch.dtype) -> None:
    """The fold of a gray image's three result channels, 256 rows at a time, equals the
    whole-image float mean it replaced (rows not a multiple of the band included)."""
    from pocketsr_cli.inference import _fold_to_gray

    peak = 255 if dtype == torch.uint8 else 65535
    y = torch.randint(0, peak + 1, (1, 3, 601, 37), generator=torch.Generator().manual_seed(0))
    y = y.to(dtype)
    expected = y.float().mean(dim=1, keepdim=True).round_().to(dtype)
    assert torch.equal(_fold_to_gray(y), expected)
    assert torch.equal(_fold_to_gray(y, rows=7), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_samples_become_the_same_floats_as_a_host_conversion(dtype: type) -> None:
    from pocketsr_cli.inference import _to_tensor

    peak = float(np.iinfo(dtype).max)
    plane = np.random.default_rng(3).integers(0, int(peak) + 1, (9, 7, 3)).astype(dtype)
    x = _to_tensor(plane, peak)
    expected = torch.from_numpy(plane.astype(np.float32) / np.float32(peak))
    assert x.dtype == torch.float32 and x.shape == (1, 3, 9, 7)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x[0].permute(1, 2, 0), expected)


def test_the_input_goes_to_the_compute_device_when_it_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the CPU, 8-bit samples cross to the device and become floats there, unless the
    float image would take over 1/8 of the memory free there (tiles then cross one by one).
    The meta device stands in for a GPU: it has tensors without data."""
    import pocketsr_cli.inference as inference

    desc = ModelDescriptor(name="t", family="test", module=Resize("bicubic", 2), scale=2)
    up = Upscaler(desc, Compute(torch.device("meta"), "fp32"))
    plane = np.zeros((30, 40, 3), np.uint8)
    float_bytes = 4 * plane.size
    monkeypatch.setattr(inference, "free_bytes", lambda device: 8 * float_bytes)
    assert up._input(plane, 255.0).device.type == "meta"
    monkeypatch.setattr(inference, "free_bytes", lambda device: 8 * float_bytes - 1)
    on_host = up._input(plane, 255.0)
    assert on_host.device.type == "cpu" and on_host.shape == (1, 3, 30, 40)
    monkeypatch.setattr(inference, "free_bytes", lambda device: None)  # unknown: try
    assert up._input(plane, 255.0).device.type == "meta"


def test_a_whole_image_on_the_cpu_reaches_the_network_without_a_copy() -> None:
    seen: list[int] = []

    class Record(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.data_ptr())
            return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    up = upscaler(Record(), tile=0)
    x = torch.rand(1, 3, 12, 10).contiguous(memory_format=torch.channels_last)
    up.upscale_tensor(x)
    assert seen == [x.data_ptr()]


@pytest.mark.parametrize("channels", [2, 4])
def test_a_resamplers_8_bit_path_draws_alpha_bicubic_as_the_16_bit_path(channels: int) -> None:
    """``-m lanczos`` on 8-bit images ran alpha through Lanczos-3 with the colour: its
    ringing put alpha 4-8 into the transparent side of an edge (a faint band of the colour
    under it) and 247-250 into the opaque side.  Alpha is bicubic, as on every other path
    (16-bit images, models) and as the README says."""
    from pocketsr_cli import api

    alpha = np.zeros((20, 40), np.uint8)
    alpha[:, 20:] = 255
    img = np.dstack([np.full((20, 40, channels - 1), 200, np.uint8), alpha])
    up = api.Upscaler("lanczos", device="cpu")
    out = up.upscale(img)[..., -1].astype(int)
    assert np.all(out[:, :78] == 0) and np.all(out[:, 82:] == 255)
    wide = up.upscale(img.astype(np.uint16) * 257)[..., -1] / 257
    assert np.abs(out - wide).max() <= 1
    assert np.all(up.upscale(img)[..., : channels - 1] == 200)
