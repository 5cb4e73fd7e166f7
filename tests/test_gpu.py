"""The GPU path: half precision, the NaN guard, tiling, batching and the out-of-memory
backoff, run through :class:`~pocketsr_cli.inference.Upscaler` on a CUDA or MPS device.

Every test is marked ``gpu`` and skipped without an accelerator.  ``POCKETSR_GPU_TESTS_DEVICE``
names a device to run them on instead (``cpu``: scripts/gpu_check.sh's toy mode does, so
that these tests cannot rot where no GPU is lent); on the CPU the images are tiny, and the
tiling tests use a 3-convolution Compact instead of the default model, whose 18-pixel
receptive field would need hundreds of tiles there.

Pixels are compared as uint8.  fp32 results must agree within one level (rounding; cuDNN's
TF32 is switched off so that fp32 means fp32).  Half-precision results must agree with
their reference at PSNR >= 45 dB (RMSE <= 1.4 levels): fp16 keeps 11 significant bits,
so after 18 layers the typical error is a fraction of a level (63 dB measured on the
CPU), and an overflow, a wrong dtype or a seam shows up as a PSNR well below 40 dB; a
maximum-difference bound would instead fail on the few isolated pixels that legitimately
round the other way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.descriptor import ModelDescriptor, describe_module
from pocketsr_cli.devices import Compute, mps_available
from pocketsr_cli.evaluation.bench import synthetic_photo
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.weights.load import descriptor_from_state_dict
from pocketsr_cli.weights.resolve import resolve_model

DEVICE_ENV = "POCKETSR_GPU_TESTS_DEVICE"
HALF_PSNR_DB = 45.0


def _device() -> torch.device | None:
    forced = os.environ.get(DEVICE_ENV, "").strip()
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return None


DEVICE = _device()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE is None, reason=f"needs a CUDA or MPS device (or {DEVICE_ENV})"),
]
TOY = DEVICE is not None and DEVICE.type == "cpu"


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> torch.device:
    """The device under test, with TF32 off so that fp32 is exact enough to compare."""
    assert DEVICE is not None
    if DEVICE.type == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    return DEVICE


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (``inf`` when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def assert_agree(out: np.ndarray, ref: np.ndarray, precision: str) -> None:
    """fp32: within one level everywhere; half precision: PSNR >= 45 dB (module doc)."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    diff = np.abs(out.astype(int) - ref.astype(int))
    if precision == "fp32":
        assert diff.max() <= 1, f"max difference {diff.max()} levels"
    else:
        value = psnr(out, ref)
        assert value >= HALF_PSNR_DB, f"PSNR {value:.1f} dB (max difference {diff.max()})"


def upscaler(desc: ModelDescriptor, device: torch.device, precision: str, **kw: object) -> Upscaler:
    warnings: list[str] = []
    up = Upscaler(desc, Compute(device, precision), on_warning=warnings.append, **kw)  # type: ignore[arg-type]
    up.warnings = warnings  # type: ignore[attr-defined]
    return up


def default_model() -> ModelDescriptor:
    return resolve_model(None, None, offline=True)


def tiling_model() -> ModelDescriptor:
    """The default model on an accelerator, without its mean anchoring (whose host and
    device versions differ by a level of rounding: its own test below); a seeded
    3-convolution Compact on the CPU."""
    if not TOY:
        return dataclasses.replace(default_model(), mean_anchor=None)
    from pocketsr_cli.weights.community import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    return descriptor_from_state_dict(Compact(num_feat=8, num_conv=1).state_dict(), "toy-compact")


def overlap_for(desc: ModelDescriptor) -> int:
    """An even overlap twice the network's receptive radius: tiles then equal the whole."""
    radius = sum(
        (m.kernel_size[0] - 1) // 2 * m.dilation[0]
        for m in desc.module.modules()
        if isinstance(m, nn.Conv2d)
    )
    return 2 * radius + 2


@contextlib.contextmanager
def windows_seen(module: nn.Module) -> Iterator[list[tuple[int, ...]]]:
    """Records the shape of every input ``module`` is called with."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    try:
        yield seen
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------
# Precision


def test_half_precision_agrees_with_fp32_on_the_default_model(device: torch.device) -> None:
    desc = default_model()
    assert desc.supports_half  # otherwise --precision auto would never pick fp16
    image = synthetic_photo(*((64, 48) if TOY else (480, 270)), seed=1)
    ref = upscaler(desc, device, "fp32").upscale(image)
    half = upscaler(desc, device, "fp16")
    out = half.upscale(image)
    assert half.warnings == []  # type: ignore[attr-defined]  # no fp32 fallback: a real fp16 run
    assert_agree(out, ref, "fp16")


class OverflowsInHalf(nn.Module):
    """×2 nearest upscaling computed as ``2 * (1e5 x) / 1e5 - (1e5 x) / 1e5`` by two 1×1
    convolutions: exact in fp32; in fp16, pixels above 0.655 overflow to inf and then
    become ``inf - inf = NaN``, the "black image" failure of real fp16 networks."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Conv2d(3, 6, 1, bias=False)
        self.small = nn.Conv2d(6, 3, 1, bias=False)
        eye = torch.eye(3)[:, :, None, None]
        with torch.no_grad():
            self.big.weight.copy_(torch.cat([eye, eye]) * 1e5)
            self.small.weight.copy_(torch.cat([eye * 2e-5, eye * -1e-5], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.small(self.big(x)), scale_factor=2, mode="nearest")


def test_nan_in_half_precision_falls_back_to_fp32_with_a_warning(device: torch.device) -> None:
    desc = describe_module(OverflowsInHalf(), "overflows-in-half", "test", 2)
    image = synthetic_photo(48, 32, seed=2)
    assert image.max() > 0.7 * 255  # some pixels do overflow
    up = upscaler(desc, device, "fp16", tile=0)
    out = up.upscale(image)
    assert len(up.warnings) == 1 and "fp32" in up.warnings[0]  # type: ignore[attr-defined]
    nearest = image.repeat(2, axis=0).repeat(2, axis=1)
    assert np.abs(out.astype(int) - nearest).max() <= 1
    up.upscale(image)  # the rest of the run stays fp32: no second warning
    assert len(up.warnings) == 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# Tiles


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tiled_equals_untiled(device: torch.device, precision: str) -> None:
    desc = tiling_model()
    overlap = overlap_for(desc)
    image = synthetic_photo(*((72, 56) if TOY else (640, 400)), seed=3)
    whole = upscaler(desc, device, precision, tile=0).upscale(image)
    tile = 2 * overlap + (16 if TOY else 96)
    tiled_up = upscaler(desc, device, precision, tile=tile, overlap=overlap)
    with windows_seen(desc.module) as seen:
        tiled = tiled_up.upscale(image)
    assert len(seen) > 1  # it did tile
    assert_agree(tiled, whole, precision)


@pytest.mark.parametrize("tiled", [False, True])
def test_device_result_equals_the_cpu_result(device: torch.device, tiled: bool) -> None:
    # The result crosses to the host laid out as the host buffer is (tiling.assemble's
    # host_layout); a transposed or misplaced block would show here, not between devices.
    desc = tiling_model()
    overlap = overlap_for(desc)
    image = synthetic_photo(*((72, 56) if TOY else (640, 400)), seed=4)
    tile = 2 * overlap + (16 if TOY else 96) if tiled else 0
    on_device = upscaler(desc, device, "fp32", tile=tile, overlap=overlap).upscale(image)
    on_cpu = upscaler(desc, torch.device("cpu"), "fp32", tile=0).upscale(image)
    assert_agree(on_device, on_cpu, "fp32")


def test_mean_anchoring_runs_on_the_device_and_agrees_with_the_host(device: torch.device) -> None:
    """The default model's anchoring (``anchor.py``) runs where its output is when the image
    runs in one piece on an accelerator, and gives what the CPU's host version gives."""
    desc = default_model()
    assert desc.mean_anchor is not None
    image = synthetic_photo(*((64, 48) if TOY else (640, 400)), seed=5)
    up = upscaler(desc, device, "fp32", tile=0)
    on_device = up.upscale(image)
    assert up._anchored is (device.type != "cpu")
    on_cpu = upscaler(desc, torch.device("cpu"), "fp32", tile=0).upscale(image)
    # The device's version adds the shift before rounding, the host's after: a level more.
    assert np.abs(on_device.astype(int) - on_cpu.astype(int)).max() <= 2
    assert psnr(on_device, on_cpu) >= 50


def test_the_chroma_guard_on_the_device_is_the_cpu_banded_one(device: torch.device) -> None:
    """The default model's chroma guard (``chroma.py``) runs on each tile where the network
    left it: on an accelerator the whole tile in one piece, on the CPU in bands of rows;
    both give the same colours."""
    from pocketsr_cli.chroma import clamp_chroma

    desc = default_model()
    assert desc.chroma_guard == "clamp"
    gen = torch.Generator().manual_seed(6)
    src = torch.rand(2, 3, 70, 45, generator=gen)
    out = torch.rand(2, 3, 280, 180, generator=gen)
    on_cpu = clamp_chroma(out.clone(), src)
    on_device = clamp_chroma(out.to(device), src.to(device)).cpu()
    assert torch.allclose(on_device, on_cpu, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_batched_tiles_equal_one_tile_at_a_time(device: torch.device, precision: str) -> None:
    desc = tiling_model()
    overlap = overlap_for(desc)
    image = synthetic_photo(*((64, 48) if TOY else (640, 480)), seed=4)
    tile = 2 * overlap + (8 if TOY else 112)
    one = upscaler(desc, device, precision, tile=tile, overlap=overlap)
    one.policy.max_batch = 1
    with windows_seen(desc.module) as single:
        ref = one.upscale(image)
    assert len(single) > 1 and all(shape[0] == 1 for shape in single)
    batched = upscaler(desc, device, precision, tile=tile, overlap=overlap)
    with windows_seen(desc.module) as seen:
        out = batched.upscale(image)
    if device.type != "cpu":  # the policy batches tiles only off the CPU
        assert max(shape[0] for shape in seen) > 1
    assert_agree(out, ref, precision)


@contextlib.contextmanager
def memory_cap(device: torch.device, module: nn.Module, pixels: int) -> Iterator[None]:
    """Make windows of more than ``pixels`` input pixels run out of memory.

    On CUDA a real cap: the process may allocate only about what the default model needs
    for such a window in fp32 (measured from a window of that size).  On the CPU the
    network's pre-hook raises the CPU allocator's out-of-memory error instead.
    """
    if device.type != "cuda":

        def refuse(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if args[0].shape[0] * args[0].shape[-2] * args[0].shape[-1] > pixels:
                raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to ...")

        handle = module.register_forward_pre_hook(refuse)
        try:
            yield
        finally:
            handle.remove()
        return
    side = int(pixels**0.5)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        module(torch.rand(1, 3, side, side, device=device))
    need = torch.cuda.max_memory_allocated(device)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    # The cap wants an indexed device ("cuda" alone raises ValueError; seen on an H200).
    index = torch.cuda.current_device() if device.index is None else device.index
    torch.cuda.set_per_process_memory_fraction(min(1.0, 1.5 * need / total), index)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()


def test_out_of_memory_backs_off_to_smaller_tiles(device: torch.device) -> None:
    if device.type == "mps":
        pytest.skip("the memory cap is implemented for CUDA (and simulated on the CPU)")
    desc = tiling_model()
    overlap = overlap_for(desc)
    image = synthetic_photo(*((256, 192) if TOY else (2048, 2048)), seed=5)
    tile = 2 * overlap + (24 if TOY else 432)
    ref = upscaler(desc, device, "fp32", tile=tile, overlap=overlap).upscale(image)
    capped = upscaler(desc, device, "fp32", overlap=overlap)  # --tile auto: trusts free memory
    # Above the memory probes' 96-pixel windows, well below the whole image.
    cap = (2 * overlap + (96 if TOY else 944)) ** 2
    with windows_seen(desc.module) as seen, memory_cap(device, desc.module, cap):
        out = capped.upscale(image)
    final = capped.policy.tile_side
    tried = max(shape[-1] for shape in seen)
    assert final is not None and tried > final, f"no backoff: tried {tried}, kept {final}"
    assert_agree(out, ref, "fp32")
