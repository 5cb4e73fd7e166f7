"""Tiled inference for any upscaler: plan, pad, run, feather-blend, assemble.

The tiler knows no model.  It takes a callable ``fn(x) -> y`` mapping a float tensor
``(N, C, h, w)`` on the compute device to ``(N, C, h * scale, w * scale)``, the scale and
the model's :class:`SizeRequirements`, and upscales a CPU image ``(1, C, H, W)`` of any size
in pieces that fit in memory.

Vocabulary (all sizes in *input* pixels unless they say otherwise):

- **tile** ``N``: the largest window the model is shown, overlap included, so memory use is
  a function of ``N`` alone (plus padding up to the model's ``multiple_of``).  ``0`` or
  ``N >= side`` means one tile across that side.
- **core**: the part of the image a tile is responsible for.  Cores are *even*: an axis of
  length ``L`` is cut into ``n`` cores whose sizes differ by at most one pixel, instead of
  ``N``-sized pieces plus a thin remainder.
- **overlap** ``o``: context each window has beyond its core at an interior border (a window
  that reaches the image edge has the real edge instead, exactly as the whole image would).
  All windows of a plan have one size, so several can go through the model in one batch.
- **feather**: across each interior border a raised-cosine ramp, ``o * scale`` output pixels
  wide and centred on the border, hands the output over from one tile to the next.  The
  outer half of the context never reaches the output, so a model whose receptive field
  radius is at most ``o / 2`` gives exactly the untiled result; for a generative model whose
  output depends on the whole tile, the ramp hides the difference between tiles.  Image
  borders get full weight (no ramp), so edges never darken.

Memory: the output goes straight into one buffer of the final dtype (float, or
``uint8``/``uint16``/``int32`` with rounding and clamping).  Where a tile is alone it is
quantised on the compute device and copied in; only the feather bands are summed in float32
on the host, in strips ``o * scale`` output pixels high (or wide): never a full-size float
accumulator or weight buffer.

:class:`TilePolicy` adds the decisions: the tile size from free device memory (``--tile
auto``), batching, and the out-of-memory backoff that remembers the size that worked.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.errors import ModelError, OutOfMemoryError, UsageError
from pocketsr_cli.memory import free_bytes, is_out_of_memory, release_cached

if TYPE_CHECKING:
    import torch

TileFn = Callable[["torch.Tensor"], "torch.Tensor"]
ProgressFn = Callable[[int, int], None]
TileMode = Literal["auto", "whole", "fixed"]

GIB = 1 << 30
# Measured: a 3-conv + pixel-shuffle net on CPU grew peak RSS by 500 B per input pixel
# where the live-tensor count said 384; oneDNN scratch buffers and allocator slack are
# invisible to the count.
_CPU_OVERHEAD = 1.5
# Used when a device will not say how much memory it has left.
_UNKNOWN_FREE_BYTES = 2 * GIB


# --------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class Span:
    """One tile along one axis: its core ``[start, stop)`` inside its window, in input px."""

    start: int
    stop: int
    window_start: int
    window_stop: int


def plan_axis(length: int, tile: int, overlap: int, multiple_of: int = 1) -> tuple[Span, ...]:
    """Cut an axis into even tiles.

    Contract: cores partition ``[0, length)`` and differ in size by at most one pixel; every
    window has the same size, at most ``SizeRequirements(multiple_of=m).padded(tile)``, lies
    inside ``[0, length)``, contains its core, and extends at least ``overlap`` pixels past
    each core border that is not the image edge (or reaches the image edge).  Windows are
    made a multiple of ``multiple_of`` when the axis is long enough, so that only short axes
    need padding.  ``tile <= 0`` or ``tile >= length`` gives one tile.

    Raises:
        ValueError: ``length < 1``, ``overlap < 0``, or ``0 < tile <= 2 * overlap`` on an
            axis that needs more than one tile.
    """
    if length < 1:
        raise ValueError(f"cannot tile an axis of length {length}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile <= 0 or tile >= length:
        return (Span(0, length, 0, length),)
    usable = tile - 2 * overlap
    if usable < 1:
        raise ValueError(f"tile {tile} must be larger than twice the overlap ({overlap})")
    count = -(-length // usable)
    bounds = [i * length // count for i in range(count + 1)]
    biggest = max(b - a for a, b in pairwise(bounds))
    window = min(length, biggest + 2 * overlap)
    rounded = -(-window // multiple_of) * multiple_of
    if rounded <= length:
        window = rounded
    spans = []
    for a, b in pairwise(bounds):
        # Centre the core in its window; clamping at an edge only adds real image edge.
        start = min(max(a - (window - (b - a)) // 2, 0), length - window)
        spans.append(Span(a, b, start, start + window))
    return tuple(spans)


@dataclass(frozen=True)
class _Feather:
    """Weights of one span along one axis over its output extent ``[lo, hi)``."""

    lo: int
    hi: int
    weights: torch.Tensor  # float32, length hi - lo


def _feathers(spans: Sequence[Span], length: int, scale: int, overlap: int) -> list[_Feather]:
    """Raised-cosine weights per span.

    Neighbours' ramps are complementary and never reach past the neighbouring core, so at
    every output pixel the weights of an axis sum to one (to float rounding) and, being
    separable, so do the 2-D weights: the blend is normalised by construction and the
    tiler needs no weight-sum buffer.
    """
    import torch

    smallest_core = min(s.stop - s.start for s in spans)
    # Ramps never reach past the neighbouring core, so at most two tiles meet anywhere.
    half = min(overlap * scale // 2, smallest_core * scale // 2)
    out_len = length * scale
    result = []
    for span in spans:
        first, last = span.start > 0, span.stop < length
        lo = max(0, span.start * scale - half) if first else 0
        hi = min(out_len, span.stop * scale + half) if last else out_len
        centres = torch.arange(lo, hi, dtype=torch.float64) + 0.5
        weights = torch.ones_like(centres)
        if first and half > 0:
            weights *= _rising((centres - (span.start * scale - half)) / (2 * half))
        if last and half > 0:
            weights *= 1.0 - _rising((centres - (span.stop * scale - half)) / (2 * half))
        result.append(_Feather(lo, hi, weights.to(torch.float32)))
    return result


def _rising(t: torch.Tensor) -> torch.Tensor:
    """0 -> 1 raised-cosine ramp over ``t`` in [0, 1]; flat outside."""
    import torch

    return 0.5 - 0.5 * torch.cos(math.pi * t.clamp(0.0, 1.0))


# --------------------------------------------------------------------------------------
# Output buffers


def output_max(dtype: torch.dtype) -> float | None:
    """Integer value that 1.0 maps to in a buffer of ``dtype``; ``None`` for float dtypes.

    ``uint8`` -> 255; ``uint16`` and ``int32`` (the stand-in where ``uint16`` lacks kernels)
    -> 65535.
    """
    import torch

    if dtype.is_floating_point:
        return None
    table = {torch.uint8: 255.0, torch.int32: 65535.0}
    uint16 = getattr(torch, "uint16", None)
    if uint16 is not None:
        table[uint16] = 65535.0
    if dtype not in table:
        raise ValueError(f"unsupported output dtype {dtype}")
    return table[dtype]


def allocate_output(channels: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU buffer ``(1, C, H, W)`` laid out channels-last, so that
    ``out[0].permute(1, 2, 0)`` is the ``H x W x C`` image without another copy.

    Raises:
        OutOfMemoryError: the host cannot hold the result at all (smaller tiles would not help).
    """
    import torch

    try:
        return torch.empty(
            (1, channels, height, width), dtype=dtype, memory_format=torch.channels_last
        )
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        size = channels * height * width * torch.empty((), dtype=dtype).element_size()
        raise OutOfMemoryError(
            f"the {width}x{height} result needs {size / GIB:.1f} GiB of RAM that this "
            "machine does not have; use a smaller scale or 8-bit output"
        ) from None


class _Assembler:
    """Writes tile outputs, in raster order, into the final buffer; blends only the seams.

    Along each axis a tile's output extent ``[lo, hi)`` is a *solo* range, where its
    weight is exactly one and no other tile reaches, framed by the feather bands it shares
    with its neighbours.  The solo rectangle is quantised on the compute device and copied
    straight into ``out``.  Only the frame is weighted and summed in float32 on the host:
    horizontal bands in full-width strips (one per tile-row border, written out once the
    tile row below is done) and vertical bands in a small buffer shared by neighbours in a
    row.  Nothing full-size is ever held in float.
    """

    def __init__(
        self, out: torch.Tensor, rows: Sequence[_Feather], cols: Sequence[_Feather]
    ) -> None:
        """``rows``/``cols`` may reach past ``out`` (padding); that part is dropped."""
        self.out = out
        self.max = output_max(out.dtype)
        self.rows, self.cols = rows, cols
        self.row_solo = _solo_ranges(rows)
        self.col_solo = _solo_ranges(cols)
        self.strips: dict[int, torch.Tensor] = {}  # border r (above tile row r) -> rows
        self.right: torch.Tensor | None = None  # vertical band right of the last tile

    def add(self, r: int, c: int, y: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> None:
        """Add tile ``(r, c)``'s output ``y`` over its extent, weighted by ``wy`` x ``wx``.

        All three live on the compute device; tiles must come in raster order.
        """
        import torch

        row, col = self.rows[r], self.cols[c]
        (r0, r1), (c0, c1) = self.row_solo[r], self.col_solo[c]
        t0, t1, l0, l1 = r0 - row.lo, r1 - row.lo, c0 - col.lo, c1 - col.lo
        self._write(r0, c0, y[:, t0:t1, l0:l1])
        width = self.cols[-1].hi
        host = torch.device("cpu")
        if t0 > 0:
            top = (y[:, :t0] * (wy[:t0, None] * wx[None, :])).to(host, torch.float32)
            self.strips[r][:, :, col.lo : col.hi] += top
        if t1 < y.shape[1]:
            if r + 1 not in self.strips:
                self.strips[r + 1] = torch.zeros((y.shape[0], y.shape[1] - t1, width))
            bottom = (y[:, t1:] * (wy[t1:, None] * wx[None, :])).to(host, torch.float32)
            self.strips[r + 1][:, :, col.lo : col.hi] += bottom
        if l0 > 0:
            left = (y[:, t0:t1, :l0] * wx[:l0]).to(host, torch.float32)
            if self.right is not None:
                left[:, :, : self.right.shape[2]] += self.right
            self._write(r0, col.lo, left)
        self.right = (y[:, t0:t1, l1:] * wx[l1:]).to(host, torch.float32)
        if c == len(self.cols) - 1:
            self.right = None
            strip = self.strips.pop(r, None)
            if strip is not None:
                self._write(row.lo, 0, strip)

    def _write(self, top: int, left: int, block: torch.Tensor) -> None:
        """Quantise ``block`` (on whatever device it is) and copy it to ``out`` at (top, left)."""
        import torch

        h = min(block.shape[1], self.out.shape[2] - top)
        w = min(block.shape[2], self.out.shape[3] - left)
        if h <= 0 or w <= 0:
            return
        block = block[:, :h, :w]
        if self.max is not None:
            block = (block * self.max).round_().clamp_(0.0, self.max)
            if self.out.dtype == torch.uint8 and block.device.type != "cpu":
                # 4x less to transfer; on the CPU, copy_ converts in the same pass.
                block = block.to(torch.uint8)
        self.out[0, :, top : top + h, left : left + w].copy_(block)


def _solo_ranges(feathers: Sequence[_Feather]) -> list[tuple[int, int]]:
    """Per span, the output range only it covers: ``[previous.hi, next.lo)``."""
    ends = [f.lo for f in feathers[1:]] + [feathers[-1].hi]
    starts = [0] + [f.hi for f in feathers[:-1]]
    return list(zip(starts, ends, strict=True))


# --------------------------------------------------------------------------------------
# Running


def upscale_tiled(
    image: torch.Tensor,
    fn: TileFn,
    *,
    scale: int,
    tile: int = 0,
    overlap: int = 16,
    size: SizeRequirements | None = None,
    device: torch.device | str = "cpu",
    out_dtype: torch.dtype | None = None,
    batch: int = 1,
    on_tile: ProgressFn | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Upscale ``image`` (CPU float ``(1, C, H, W)`` in [0, 1]) tile by tile.

    The image is first padded at the bottom/right to meet ``size`` (reflect; replicate
    where an axis is too short to reflect), so tiled and untiled runs see the same borders.
    ``fn`` gets float32 windows ``(n, C, h, w)`` on ``device``, ``n <= batch``, that meet
    ``size`` (windows are padded again only if ``tile`` is below ``size.minimum``), and
    must return ``(n, C, h * scale, w * scale)``; it runs under ``torch.inference_mode``.
    Tile ``(r, c)`` is reported through ``on_tile(done, total)`` after its batch ran.

    Returns a CPU tensor ``(1, C, H * scale, W * scale)`` of ``out_dtype`` (float32 by
    default; float results are not clamped, integer ones are rounded and clamped from
    [0, 1] to [0, :func:`output_max`]).  ``out`` may be passed to reuse a buffer.

    Out-of-memory errors propagate unchanged (``TilePolicy`` turns them into retries).

    Raises:
        ModelError: ``fn`` returned the wrong shape.
        ValueError: bad image shape, ``scale``, ``batch`` or tile/overlap combination.
    """
    import torch

    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected an image shaped (1, C, H, W), got {tuple(image.shape)}")
    if scale < 1 or batch < 1:
        raise ValueError(f"scale and batch must be >= 1, got {scale} and {batch}")
    size = size or SizeRequirements()
    device = torch.device(device)
    _, channels, height, width = image.shape
    if out is None:
        out = allocate_output(channels, height * scale, width * scale, out_dtype or torch.float32)
    # Padding the whole image once (not each edge tile) makes every tiling of an image see
    # the same borders as the untiled run, and lets windows be whole multiples.
    image = _pad_to(image.to(torch.float32), size.padded(height), size.padded(width))
    row_spans = plan_axis(image.shape[2], tile, overlap, size.multiple_of)
    col_spans = plan_axis(image.shape[3], tile, overlap, size.multiple_of)
    rows = _feathers(row_spans, image.shape[2], scale, overlap)
    cols = _feathers(col_spans, image.shape[3], scale, overlap)
    assembler = _Assembler(out, rows, cols)
    order = [(r, c) for r in range(len(row_spans)) for c in range(len(col_spans))]
    row_w = [f.weights.to(device) for f in rows]
    col_w = [f.weights.to(device) for f in cols]
    for first in range(0, len(order), batch):
        group = order[first : first + batch]
        windows = torch.cat(
            [
                image[
                    :,
                    :,
                    row_spans[r].window_start : row_spans[r].window_stop,
                    col_spans[c].window_start : col_spans[c].window_stop,
                ]
                for r, c in group
            ]
        )
        result = _run(fn, windows, device, scale, size)
        for k, (r, c) in enumerate(group):
            top = rows[r].lo - row_spans[r].window_start * scale
            left = cols[c].lo - col_spans[c].window_start * scale
            piece = result[k, :, top : top + row_w[r].numel(), left : left + col_w[c].numel()]
            assembler.add(r, c, piece, row_w[r], col_w[c])
        del result
        if on_tile is not None:
            on_tile(first + len(group), len(order))
    return out


def _run(
    fn: TileFn, windows: torch.Tensor, device: torch.device, scale: int, size: SizeRequirements
) -> torch.Tensor:
    """Pad to ``size``, run ``fn`` on ``device``, check the shape, crop the padding away."""
    import torch

    n, channels, h, w = windows.shape
    x = _pad_to(windows, size.padded(h), size.padded(w)).to(device)
    with torch.inference_mode():
        y = fn(x)
    expected = (n, channels, x.shape[2] * scale, x.shape[3] * scale)
    if tuple(y.shape) != expected:
        raise ModelError(
            f"the model returned {tuple(y.shape)} for an input of {tuple(x.shape)}, "
            f"expected {expected} (is its scale really {scale}?)"
        )
    return y[:, :, : h * scale, : w * scale]


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad bottom/right by reflection (replication where the axis is too short to reflect)."""
    import torch.nn.functional as F

    pad_h, pad_w = height - x.shape[2], width - x.shape[3]
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < x.shape[3] else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < x.shape[2] else "replicate")
    return x


# --------------------------------------------------------------------------------------
# Memory estimates


@dataclass(frozen=True)
class MemoryEstimate:
    """Device memory one forward pass needs: ``fixed_bytes + bytes_per_pixel * n * side**2``.

    ``bytes_per_pixel`` counts per *input* pixel of the padded window, including the tiler's
    own per-tile buffers on the device.
    """

    bytes_per_pixel: float
    fixed_bytes: int = 0

    def bytes_for(self, side: int, batch: int = 1) -> float:
        """Estimated peak bytes for ``batch`` windows of ``side`` x ``side`` input pixels."""
        return self.fixed_bytes + self.bytes_per_pixel * batch * side * side


def measure_memory(
    fn: Callable[..., torch.Tensor],
    *,
    device: torch.device | str,
    scale: int,
    size: SizeRequirements | None = None,
    channels: int = 3,
    prepare: Callable[[torch.Tensor], Any] | None = None,
    probe_side: int = 64,
) -> MemoryEstimate:
    """Measure what ``fn`` needs per input pixel, from two small probe forwards.

    Two square probes (``probe_side`` and 1.5x that, padded to ``size``) are run; the slope
    of peak memory between them is the per-pixel cost and the intercept the fixed cost, so
    per-call constants (workspaces, statistics) are not mistaken for per-pixel costs.

    How peak memory is measured:

    - CUDA: ``torch.cuda.max_memory_allocated`` around the forward, relative to what was
      allocated before it (weights excluded, cuDNN workspaces included).
    - CPU, MPS and others: no allocator statistics exist, so every tensor created during the
      forward is counted at the ATen level (a ``TorchDispatchMode``) from creation until its
      storage is released, and the peak of the live total is taken.  This sees all tensors,
      whatever the model does, but not kernels' private scratch memory (oneDNN, Metal), so
      on CPU the result is multiplied by 1.5 (measured: +30 % peak RSS for a conv net).

    The tiler's own per-tile device buffers (the input window and the quantised copy of the
    output, ``C * (1 + scale**2)`` floats per input pixel) are added.  ``prepare``, when
    given, is applied to the probe as the tiler would, and ``fn`` is then called as
    ``fn(x, stats)``.
    """
    import torch

    size = size or SizeRequirements()
    device = torch.device(device)
    small = size.padded(max(probe_side, 8))
    large = size.padded(small + small // 2)
    peaks = [_probe_peak(fn, device, channels, side, prepare) for side in (small, large)]
    slope = (peaks[1] - peaks[0]) / (large * large - small * small)
    if slope <= 0:  # noise, or a model whose cost does not grow: charge it all per pixel
        slope = peaks[1] / (large * large)
    fixed = max(0, int(peaks[1] - slope * large * large))
    if device.type == "cpu":
        slope *= _CPU_OVERHEAD
    slope += 4 * channels * (1 + scale * scale)
    return MemoryEstimate(bytes_per_pixel=slope, fixed_bytes=fixed)


def _probe_peak(
    fn: Callable[..., torch.Tensor],
    device: torch.device,
    channels: int,
    side: int,
    prepare: Callable[[torch.Tensor], Any] | None,
) -> int:
    """Peak bytes allocated while ``fn`` runs on one ``side`` x ``side`` probe."""
    import torch

    # A smooth ramp, not noise or a constant: statistics hooks divide by std.
    ramp = torch.linspace(0.0, 1.0, side)
    x = (ramp[None, :] * ramp[:, None]).expand(1, channels, side, side).contiguous()
    args: tuple[Any, ...] = () if prepare is None else (prepare(x),)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        x = x.to(device)
        with torch.inference_mode():
            y = fn(x, *args)
        torch.cuda.synchronize(device)
        del x, y
        return int(torch.cuda.max_memory_allocated(device) - before)
    counter = LiveTensorBytes()
    with counter, torch.inference_mode():
        y = fn(x.to(device), *args)
        del y
    return counter.peak


class LiveTensorBytes:
    """Context manager counting bytes of tensor storage created inside it, and their peak.

    Storages are tracked from the ATen op that creates them until the last Python-visible
    tensor using them is freed.  Tensors that existed before (inputs, weights) and views or
    in-place results on them are not counted.  Not thread-safe; for probes only.
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._mode: Any = None

    def __enter__(self) -> LiveTensorBytes:
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(
                self,
                func: Callable[..., Any],
                types: Any,
                args: tuple[Any, ...] = (),
                kwargs: dict[str, Any] | None = None,
            ) -> Any:
                result = func(*args, **(kwargs or {}))
                counter._observe(args, kwargs, result)
                return result

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)

    def _observe(self, args: Any, kwargs: Any, result: Any) -> None:
        import torch
        from torch.utils._pytree import tree_flatten

        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(result)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            try:
                storage = t.untyped_storage()
            except (RuntimeError, NotImplementedError):  # sparse/nested: no plain storage
                continue
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if key in self._refs:
                self._refs[key] += 1
            elif key in inputs or nbytes == 0:
                continue
            else:
                self._refs[key] = 1
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, key, nbytes)

    def _release(self, key: int, nbytes: int) -> None:
        count = self._refs.get(key)
        if count is None:
            return
        if count > 1:
            self._refs[key] = count - 1
        else:
            del self._refs[key]
            self.live -= nbytes


def tile_side_for_memory(
    estimate: MemoryEstimate,
    budget: float,
    *,
    size: SizeRequirements | None = None,
    min_side: int = 64,
    max_side: int = 2048,
) -> int:
    """Largest tile side whose estimated peak fits ``budget`` bytes.

    Contract: the result is even and a multiple of ``size.multiple_of``, and lies in
    ``[min_side, max_side]`` (both rounded to that step; ``min_side`` wins if the budget is
    too small, so the out-of-memory backoff gets the last word).
    """
    size = size or SizeRequirements()
    step = math.lcm(2, size.multiple_of)
    low = -(-max(min_side, size.minimum) // step) * step
    high = max(low, max_side // step * step)
    pixels = max(0.0, budget - estimate.fixed_bytes) / estimate.bytes_per_pixel
    side = math.isqrt(int(pixels)) // step * step
    return min(max(side, low), high)


# --------------------------------------------------------------------------------------
# Policy


@dataclass
class TilePolicy:
    """Chooses tile size and batch per image, and backs off on out-of-memory errors.

    One policy serves one model on one device (it caches the model's memory estimate and
    the last tile size that worked); make a new one when either changes.

    Attributes:
        mode: ``auto`` (tile size from free memory), ``whole`` (the whole image as one tile
            while it fits) or ``fixed`` (``tile`` pixels).
        tile: tile side in input pixels for ``fixed`` (overlap included, see module doc).
        overlap: context pixels per interior tile border; feather width is
            ``overlap * scale`` output pixels.
        floor: smallest tile side the backoff tries before giving up.
        max_side: largest side ``auto`` picks; beyond it, tiles are batched instead.
        memory_fraction: share of the device's free memory a forward pass may plan to use.
        cpu_budget_bytes: cap on that budget on CPU, where bigger tiles are no faster and
            running out of memory gets the process killed rather than an exception.
        max_batch: most tiles per forward pass (batching is only used off CPU).
    """

    mode: TileMode = "auto"
    tile: int = 0
    overlap: int = 16
    floor: int = 64
    max_side: int = 2048
    memory_fraction: float = 0.6
    cpu_budget_bytes: int = GIB
    max_batch: int = 8
    _side: int | None = field(default=None, init=False, repr=False)
    _batch: int | None = field(default=None, init=False, repr=False)
    _estimate: MemoryEstimate | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "whole", "fixed"):
            raise UsageError(f"tile mode must be auto, whole or fixed, not {self.mode!r}")
        if self.overlap < 0:
            raise UsageError(f"--tile-overlap must be 0 or more, got {self.overlap}")
        if self.mode == "fixed" and self.tile <= 2 * self.overlap:
            raise UsageError(
                f"--tile {self.tile} must be larger than twice --tile-overlap ({self.overlap})"
            )

    @classmethod
    def from_option(cls, value: str | int, overlap: int = 16, **settings: Any) -> TilePolicy:
        """Build from ``--tile auto|0|N``.

        Raises:
            UsageError: anything else, or ``N <= 2 * overlap``.
        """
        text = str(value).strip().lower()
        if text == "auto":
            return cls("auto", overlap=overlap, **settings)
        if not text.isdigit():
            raise UsageError(f"--tile must be auto, 0 or a number of pixels, not {value!r}")
        side = int(text)
        if side == 0:
            return cls("whole", overlap=overlap, **settings)
        return cls("fixed", tile=side, overlap=overlap, **settings)

    @property
    def tile_side(self) -> int | None:
        """Tile side the next image will start from; ``None`` until known or for ``whole``."""
        return self._side

    def upscale(
        self,
        image: torch.Tensor,
        fn: Callable[..., torch.Tensor],
        *,
        scale: int,
        device: torch.device | str,
        size: SizeRequirements | None = None,
        prepare: Callable[[torch.Tensor], Any] | None = None,
        out_dtype: torch.dtype | None = None,
        on_tile: ProgressFn | None = None,
        tileable: bool = True,
    ) -> torch.Tensor:
        """Upscale one image, retrying with smaller tiles after out-of-memory errors.

        ``prepare(image)``, when given, runs once on the whole CPU image and ``fn`` is then
        called as ``fn(tile, stats)`` for every tile, so image-wide statistics (colour
        matching) are the same everywhere.  Otherwise ``fn(tile)``.  ``tileable=False``
        forces one tile and no backoff.  Other arguments and the result: see
        :func:`upscale_tiled`.

        Backoff: an out-of-memory error halves the batch, then the tile side, and retries
        the image from scratch; below ``floor`` it gives up.  The size that worked is kept
        for the next image.

        Raises:
            OutOfMemoryError: even the smallest tile did not fit (message says what to try).
        """
        import torch

        device = torch.device(device)
        size = size or SizeRequirements()
        call: TileFn = fn if prepare is None else _bind_stats(fn, prepare(image))
        _, channels, height, width = image.shape
        side, batch = (0, 1)
        if tileable:
            side, batch = self._start(fn, device, scale, size, channels, prepare)
        step = math.lcm(2, size.multiple_of)
        floor = -(-max(self.floor, 2 * self.overlap + step, size.minimum) // step) * step
        out = allocate_output(channels, height * scale, width * scale, out_dtype or torch.float32)
        tried: list[int] = []
        while True:
            try:
                return upscale_tiled(
                    image,
                    call,
                    scale=scale,
                    tile=side,
                    overlap=self.overlap,
                    size=size,
                    device=device,
                    batch=batch,
                    on_tile=on_tile,
                    out=out,
                )
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
            # Outside the except block, so the traceback's tensors are gone before freeing.
            release_cached(device)
            current = side if 0 < side < max(height, width) else max(height, width)
            tried.append(current)
            if not tileable:
                raise OutOfMemoryError(self._advice(device, tried, whole=True))
            if batch > 1:
                batch //= 2
                self._batch = batch
                continue
            side = current // 2 // step * step
            if side < floor:
                raise OutOfMemoryError(self._advice(device, tried, whole=False))
            self._side = side

    def _start(
        self,
        fn: Callable[..., torch.Tensor],
        device: torch.device,
        scale: int,
        size: SizeRequirements,
        channels: int,
        prepare: Callable[[torch.Tensor], Any] | None,
    ) -> tuple[int, int]:
        """Tile side (0 = whole image) and batch to start the next image with."""
        if self.mode == "whole":
            return self._side or 0, 1
        if self._side is None:
            self._side = self.tile if self.mode == "fixed" else None
        if device.type == "cpu" and self._side is not None:
            return self._side, 1
        if self._estimate is None:
            self._estimate = measure_memory(
                fn, device=device, scale=scale, size=size, channels=channels, prepare=prepare
            )
        budget = self._budget(device)
        if self._side is None:
            self._side = tile_side_for_memory(
                self._estimate, budget, size=size, min_side=self.floor, max_side=self.max_side
            )
        if self._batch is None:
            estimate = self._estimate
            per_tile = estimate.bytes_for(size.padded(self._side)) - estimate.fixed_bytes
            fits = int((budget - estimate.fixed_bytes) // per_tile)
            self._batch = 1 if device.type == "cpu" else max(1, min(self.max_batch, fits))
        return self._side, self._batch

    def _budget(self, device: torch.device) -> float:
        free = free_bytes(device)
        budget = (free if free is not None else _UNKNOWN_FREE_BYTES) * self.memory_fraction
        if device.type == "cpu":
            budget = min(budget, self.cpu_budget_bytes)
        return budget

    def _advice(self, device: torch.device, tried: list[int], *, whole: bool) -> str:
        sizes = ", ".join(str(s) for s in tried)
        if device.type == "cpu":
            remedy = "close other programs to free RAM, or upscale a smaller image"
        else:
            remedy = "close other programs using the GPU, try --precision fp16, or --device cpu"
        if whole:
            return (
                f"out of memory on {device}: this model needs the whole image at once "
                f"({sizes} px side); {remedy}"
            )
        return (
            f"out of memory on {device} even with {tried[-1]}-pixel tiles "
            f"(tried --tile {sizes}); {remedy}"
        )


def _bind_stats(fn: Callable[..., torch.Tensor], stats: Any) -> TileFn:
    """``fn(x, stats)`` as a one-argument tile function."""

    def call(x: torch.Tensor) -> torch.Tensor:
        return fn(x, stats)

    return call
