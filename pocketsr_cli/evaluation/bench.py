"""Timing models on one fixed input: :func:`bench`.

Every model upscales the same synthetic photo-like image (:func:`synthetic_photo`, 960×540
by default, so a ×4 model writes exactly 3840×2160) through the whole image path of
:class:`~pocketsr_cli.inference.Upscaler` — conversion, tiling, padding, blending — in this
one process, one model after the other.  One warm-up run per model is not timed (it pays
for lazy initialisation, allocator growth and kernel selection); then ``repeat`` runs are
timed and the fastest is kept, the usual estimate of what the hardware can do when
nothing else interferes.

Speed is reported as seconds per 4K output, ``best × 3840·2160 / output pixels`` (exact
for ×4 on 960×540; proportional for other scales and sizes), and as a ratio to a baseline
model, because absolute seconds only mean something on the machine that measured them
(SPEC: "on the same machine in the same run, reported as ratios").

Nothing here prints; progress goes through a callback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pocketsr_cli.errors import UsageError

UHD_PIXELS = 3840 * 2160
DEFAULT_SIZE = (960, 540)

# (runs done, runs in all, label): one run is one upscale, warm-ups included.
ProgressCallback = Callable[[int, int, str], None]


def parse_size(text: str) -> tuple[int, int]:
    """``"960x540"`` (or ``960×540``, ``960X540``) → ``(960, 540)`` as (width, height).

    Raises:
        UsageError: not ``WxH`` with both sides at least 8.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if m is None:
        raise UsageError(f"--size must look like 960x540 (width x height), not {text!r}")
    width, height = int(m.group(1)), int(m.group(2))
    if min(width, height) < 8:
        raise UsageError(f"--size sides must be at least 8 pixels, got {width}x{height}")
    return width, height


def synthetic_photo(width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A deterministic ``height × width × 3`` uint8 image with a photograph's ingredients.

    Smooth colour gradients (sky, walls), soft-edged discs and bars (objects, with hard and
    blurred edges), a band of fine texture (foliage, fabric) and a little sensor noise —
    so that content-adaptive models route pixels roughly as they would on a photo.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    img = np.stack([0.25 + 0.5 * v, 0.35 + 0.3 * u, 0.75 - 0.45 * v], axis=2)
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.03, 0.18) * min(width, height)
        softness = rng.uniform(0.5, 6.0)
        dist = np.hypot(xx - cx, yy - cy)
        mask = np.clip((radius - dist) / softness + 0.5, 0.0, 1.0)[..., None]
        img = img * (1 - mask) + mask * rng.uniform(0.05, 0.95, 3).astype(np.float32)
    for _ in range(4):
        x0 = int(rng.integers(0, max(width - 8, 1)))
        bar = slice(x0, x0 + int(rng.integers(2, max(3, width // 40))))
        img[:, bar] = img[:, bar] * 0.4 + 0.6 * rng.uniform(0.0, 1.0, 3).astype(np.float32)
    texture = np.zeros((height, width), np.float32)
    for _ in range(6):
        fx, fy = rng.uniform(0.2, 1.4, 2)
        texture += np.sin(xx * fx + rng.uniform(0, 6.3)) * np.cos(yy * fy + rng.uniform(0, 6.3))
    band = (v > 0.6)[..., None].astype(np.float32)
    img = img + band * 0.04 * texture[..., None]
    img = img + rng.normal(0.0, 0.01, img.shape).astype(np.float32)
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class BenchResult:
    """One model's timings.

    Attributes:
        seconds: every timed run (warm-up excluded), in order.
        best: the fastest of them.
        seconds_per_4k: ``best`` scaled to a 3840×2160 output.
        ratio: ``seconds_per_4k`` ÷ the baseline's (1.0 for the baseline).
        macs_per_pixel: multiply-accumulates per input (LR) pixel; ``None`` when the
            network has no countable layer (see :mod:`~pocketsr_cli.evaluation.macs`).
    """

    model: str
    family: str
    scale: int
    params: int
    precision: str
    out_width: int
    out_height: int
    seconds: list[float]
    best: float
    seconds_per_4k: float
    macs_per_pixel: float | None
    ratio: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchReport:
    """Everything :func:`bench` measured (``threads``: torch's CPU threads)."""

    width: int
    height: int
    repeat: int
    device: str
    threads: int
    baseline: str
    models: list[BenchResult] = field(default_factory=list)


def bench(
    models: Sequence[str],
    size: tuple[int, int] = DEFAULT_SIZE,
    repeat: int = 3,
    device: str = "auto",
    *,
    precision: str = "auto",
    tile: str | int = "auto",
    baseline: str | None = None,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
) -> BenchReport:
    """Time each model on :func:`synthetic_photo` of ``size`` (width, height).

    Args:
        models: registry names or weights files; empty means the default model.
        size: input width and height.
        repeat: timed runs per model (the fastest counts).
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|fp16|bf16``.
        tile: ``--tile`` as for ``upscale``.
        baseline: the model the ratios refer to (added first when not in ``models``);
            default: the first model.
        offline: never download weights.
        on_progress: called after every run, warm-ups included.

    Raises:
        UsageError: ``repeat`` < 1, bad device, precision or tile.
        ModelError: a model cannot be resolved or loaded (before anything is timed).
    """
    import torch

    from pocketsr_cli.devices import choose_device, compute_for
    from pocketsr_cli.evaluation.macs import macs_per_pixel
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.tiling import TilePolicy
    from pocketsr_cli.weights.resolve import resolve_model

    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")
    TilePolicy.from_option(tile)
    torch_device = choose_device(device)
    refs: list[str | None] = list(dict.fromkeys(models)) or [None]
    if baseline is not None and baseline not in refs:
        refs.insert(0, baseline)
    descriptors = [resolve_model(ref, None, offline=offline) for ref in refs]
    base_index = refs.index(baseline) if baseline is not None else 0

    width, height = size
    image = synthetic_photo(width, height)
    report = BenchReport(
        width=width,
        height=height,
        repeat=repeat,
        device=str(torch_device),
        threads=torch.get_num_threads(),
        baseline=descriptors[base_index].name,
    )
    total = len(descriptors) * (repeat + 1)
    done = 0
    for desc in descriptors:
        compute = compute_for(torch_device, precision, desc)
        upscaler = Upscaler(desc, compute, tile=tile)
        times: list[float] = []
        out_shape: tuple[int, ...] = ()
        for run in range(repeat + 1):
            start = time.perf_counter()
            out = upscaler.upscale(image)  # returns host memory: the device has finished
            elapsed = time.perf_counter() - start
            out_shape = out.shape
            if run > 0:
                times.append(elapsed)
            done += 1
            if on_progress is not None:
                label = "warm-up" if run == 0 else f"run {run}/{repeat}"
                on_progress(done, total, f"{desc.name} {label}")
        del out
        best = min(times)
        out_h, out_w = int(out_shape[0]), int(out_shape[1])

        def forward(
            x: torch.Tensor, module: Any = desc.module, stats: Any = desc.image_stats
        ) -> Any:
            return module(x) if stats is None else module(x, stats(x))

        report.models.append(
            BenchResult(
                model=desc.name,
                family=desc.family,
                scale=desc.scale,
                params=desc.params,
                precision=compute.precision,
                out_width=out_w,
                out_height=out_h,
                seconds=times,
                best=best,
                seconds_per_4k=best * UHD_PIXELS / (out_w * out_h),
                macs_per_pixel=macs_per_pixel(
                    desc.module,
                    desc.size.padded(64),
                    device=compute.device,
                    call=forward,
                ),
            )
        )
    reference = report.models[base_index].seconds_per_4k
    for result in report.models:
        result.ratio = result.seconds_per_4k / reference if reference > 0 else float("inf")
    return report
