"""Memory estimates: what a forward pass needs per input pixel, and the tile that fits.

Measurement only; :mod:`pocketsr_cli.tiling.policy` decides what to do with it.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pocketsr_cli.descriptor import SizeRequirements

if TYPE_CHECKING:
    import torch

# Measured: a 3-conv + pixel-shuffle net on CPU grew peak RSS by 500 B per input pixel
# where the live-tensor count said 384; oneDNN scratch buffers and allocator slack are
# invisible to the count.
_CPU_OVERHEAD = 1.5


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
        return self.bytes_for_window(side, side, batch)

    def bytes_for_window(self, height: int, width: int, batch: int = 1) -> float:
        """Estimated peak bytes for ``batch`` windows of ``height`` x ``width`` input pixels."""
        return self.fixed_bytes + self.bytes_per_pixel * batch * height * width


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
      forward is counted (:class:`LiveTensorBytes`, at the ATen level where torch allows)
      from creation until its storage is released, and the peak of the live total is
      taken.  This sees all tensors, whatever the model does, but not kernels' private
      scratch memory (oneDNN, Metal), so on CPU the result is multiplied by 1.5 (measured:
      +30 % peak RSS for a conv net).

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

    Storages are tracked from the op that creates them until the last Python-visible tensor
    using them is freed.  Tensors that existed before (inputs, weights) and views or
    in-place results on them are not counted.  Not thread-safe; for probes only.

    Ops are watched at the ATen level where torch allows it (:attr:`level` ``"aten"``): a
    ``TorchDispatchMode`` sees every tensor, composite functions' intermediates included.
    That class lives in a private torch module, so should it move or stop working, the
    public ``torch.overrides.TorchFunctionMode`` takes over (``"function"``): it sees what
    each torch function returns but not what composite functions allocate inside, so it
    may count somewhat less.
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.level: str | None = None
        self._refs: dict[int, int] = {}
        self._mode: Any = None

    def __enter__(self) -> LiveTensorBytes:
        def watch(
            mode: Any,
            func: Callable[..., Any],
            types: Any,
            args: tuple[Any, ...] = (),
            kwargs: dict[str, Any] | None = None,
        ) -> Any:
            result = func(*args, **(kwargs or {}))
            self._observe(args, kwargs, result)
            return result

        self._mode = _aten_mode(watch)
        self.level = "aten"
        if self._mode is None:
            from torch.overrides import TorchFunctionMode

            self._mode = type("_LiveTensors", (TorchFunctionMode,), {"__torch_function__": watch})()
            self._mode.__enter__()
            self.level = "function"
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)

    def _observe(self, args: Any, kwargs: Any, result: Any) -> None:
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))}
        for t in _tensors(result):
            if t.device.type == "meta":
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


def _aten_mode(watch: Callable[..., Any]) -> Any:
    """An entered ``TorchDispatchMode`` calling ``watch`` for every ATen op, or None when
    torch's private dispatch API is not there or not as expected.

    torch wraps a mode's ``__torch_dispatch__`` so that Dynamo never traces it, and that
    wrapper imports ``torch._dynamo`` on its first call: 1-2 s of a CPU run's first image
    (the probe is the only user of Dynamo in a run without ``--compile``).  The mode opts
    out through the class hook torch provides for it while Dynamo is not loaded: then
    nothing in the process is compiling, so there is nothing to keep out of a trace.
    """
    try:
        from torch.utils._python_dispatch import TorchDispatchMode

        attributes = {
            "__torch_dispatch__": watch,
            "_should_skip_dynamo": classmethod(lambda _cls: "torch._dynamo" in sys.modules),
        }
        mode = type("_LiveTensors", (TorchDispatchMode,), attributes)()
        mode.__enter__()
    except Exception:  # moved, renamed or changed: the caller falls back to the public API
        return None
    return mode


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts (what ops take and return)."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


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
