"""Policy: the tile size and batch for each image, and the out-of-memory backoff."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.errors import OutOfMemoryError, UsageError
from pocketsr_cli.hostmem import give_back_freed
from pocketsr_cli.memory import free_bytes, is_out_of_memory, release_cached
from pocketsr_cli.spelling import DEVICE, PRECISION, TILE, TILE_OVERLAP
from pocketsr_cli.tiling.assemble import GIB, allocate_output
from pocketsr_cli.tiling.estimate import MemoryEstimate, measure_memory, tile_side_for_memory
from pocketsr_cli.tiling.run import FinishFn, ProgressFn, TileFn, upscale_tiled

if TYPE_CHECKING:
    import torch

TileMode = Literal["auto", "whole", "fixed"]
ShrinkFn = Callable[[int, tuple[int, ...]], None]
"""``on_shrink(side, tried)`` of :meth:`TilePolicy.upscale`: an out-of-memory backoff
retries with tiles of ``side``, below 4 × the overlap, after ``tried`` ran out of memory."""

# Used when a device will not say how much memory it has left.
_UNKNOWN_FREE_BYTES = 2 * GIB

DEFAULT_OVERLAP = 16
"""The overlap of a run that names none, unless its model needs more (its
``seamless_overlap``: ``inference.Upscaler``): the default model's own."""


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
            ``overlap * scale`` output pixels.  ``auto`` picks tiles of at least 4 ×
            ``overlap`` (:attr:`smallest_auto_side`), so that the overlaps take at most
            half a tile, as ``--tile N`` must.
        floor: smallest tile side the backoff tries before giving up.
        max_side: largest side ``auto`` picks; beyond it, tiles are batched instead.
        memory_fraction: share of the device's free memory a forward pass may plan to use.
        cpu_budget_bytes: cap on that budget on CPU, where running out of memory gets the
            process killed rather than an exception: in ``auto`` an image whose whole pass
            fits it runs as one piece (a 960x540 photo at x4 with the default model).
        cpu_tile_bytes: the budget of one tile on CPU, for images too big to run whole.
            Bigger tiles are no faster there, and smaller ones keep the memory their tiles
            reuse small: measured on a 12 MP photo at x4 with the default model, 512-pixel
            tiles (this budget) peaked at 1.67 GB resident in fp32 and in bf16, against
            1.94-2.10 GB for the 1000-pixel tiles of a 1 GiB budget, and ran faster in
            fp32 (89 s against 116 s: their blocks stay in the heap ``hostmem`` keeps,
            where the larger tiles' were mapped and faulted in afresh for every tile).
        max_batch: most tiles per forward pass (batching is only used off CPU).
        default_tile: the model's own tile side (its manifest's ``default_tile``): on the
            CPU, ``auto`` starts from it instead of measuring memory, so every machine
            tiles the model alike; ignored when smaller than 4 × ``overlap``.  GPUs
            size tiles from free memory whatever it says.
        probe_side: the side of the smaller memory probe (``measure_memory``), in the
            tiler's pixels: smaller where one stands for many (PCSR's packed blocks).
    """

    mode: TileMode = "auto"
    tile: int = 0
    overlap: int = 16
    floor: int = 64
    max_side: int = 2048
    memory_fraction: float = 0.6
    cpu_budget_bytes: int = GIB
    cpu_tile_bytes: int = 256 << 20
    max_batch: int = 8
    default_tile: int | None = None
    probe_side: int = 64
    _side: int | None = field(default=None, init=False, repr=False)
    _batch: int | None = field(default=None, init=False, repr=False)
    _estimate: MemoryEstimate | None = field(default=None, init=False, repr=False)
    _backed_off: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "whole", "fixed"):
            raise UsageError(f"tile mode must be auto, whole or fixed, not {self.mode!r}")
        if self.overlap < 0:
            raise UsageError(f"{TILE_OVERLAP} must be 0 or more, got {self.overlap}")
        if self.mode == "fixed" and self.tile <= 2 * self.overlap:
            raise UsageError(
                f"{TILE.given(self.tile)} must be larger than twice {TILE_OVERLAP} ({self.overlap})"
            )

    @classmethod
    def for_side(cls, side: int | None, overlap: int = 16, **settings: Any) -> TilePolicy:
        """The policy for a tile side: None sized from free memory (``auto``), 0 the whole
        image, N tiles of N input pixels.  (Reading ``--tile``'s text is the CLI's work:
        ``cli._options.tile_side``.)

        Raises:
            UsageError: ``N < 0``, or ``N <= 2 * overlap``.
        """
        if side is None:
            return cls("auto", overlap=overlap, **settings)
        if side < 0:
            raise UsageError(f"a tile side must be 0 or more pixels, not {side}")
        if side == 0:
            return cls("whole", overlap=overlap, **settings)
        return cls("fixed", tile=side, overlap=overlap, **settings)

    @property
    def smallest_auto_side(self) -> int:
        """The smallest tile side ``auto`` picks (before any out-of-memory backoff):
        ``floor``, or 4 × ``overlap`` where that is more (but not past ``max_side``, the
        model's own limit)."""
        return max(self.floor, min(4 * self.overlap, self.max_side))

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
        finish: FinishFn | None = None,
        on_shrink: ShrinkFn | None = None,
    ) -> torch.Tensor:
        """Upscale one image, retrying with smaller tiles after out-of-memory errors.

        ``prepare(image)``, when given, runs once on the whole image and ``fn`` is then
        called as ``fn(tile, stats)`` for every tile, so image-wide statistics (colour
        matching) are the same everywhere.  Otherwise ``fn(tile)``.  ``tileable=False``
        forces one tile and no backoff.  ``finish`` runs on the whole output when the
        image runs in one piece (:func:`upscale_tiled`).  Other arguments and the result:
        see :func:`upscale_tiled`.

        Backoff: an out-of-memory error halves the batch, then the tile side, and retries
        the image from scratch; below ``floor`` it gives up.  The size that worked is kept
        for the next image.  On the CPU, an image cut into several tiles ends by giving
        the freed memory kept for its tiles back (``hostmem.give_back_freed``).  The backoff
        may go below 4 × ``overlap`` (the smallest side ``auto`` and ``--tile N`` use), down
        to ``2 × overlap`` plus a step: each time it does, ``on_shrink(side, tried)`` is
        told the side it retries with (:meth:`below_overlaps`) and the sides that ran out
        of memory.

        Raises:
            OutOfMemoryError: even the smallest tile did not fit (message says what to try).
        """
        import torch

        device = torch.device(device)
        size = size or SizeRequirements()
        call: TileFn = fn if prepare is None else _bind_stats(fn, prepare(image))
        _, channels, height, width = image.shape
        longest = max(height, width)  # a tile at least this long runs it whole
        side, batch = (0, 1)
        if tileable:
            side, batch = self._start(fn, device, scale, size, channels, prepare)
            if self._runs_whole(device, size, height, width):
                side = 0
        step = math.lcm(2, size.multiple_of)
        floor = -(-max(self.floor, 2 * self.overlap + step, size.minimum) // step) * step
        out = allocate_output(channels, height * scale, width * scale, out_dtype or torch.float32)
        tried: list[int] = []
        while True:
            try:
                result = upscale_tiled(
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
                    finish=finish,
                )
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
            else:
                if device.type == "cpu" and 0 < side < longest:
                    # The tiles reused the freed memory kept for them; what comes next
                    # (the encoder's copy of a big output) should not come on top of it.
                    give_back_freed()
                return result
            # Outside the except block, so the traceback's tensors are gone before freeing.
            release_cached(device)
            current = side if 0 < side < longest else longest
            tried.append(current)
            if not tileable:
                raise OutOfMemoryError(self._advice(device, tried, whole=True))
            if batch > 1:
                batch //= 2
                self._batch = batch
                continue
            self._backed_off = True
            if side == 0 and self._side and self._side < current:
                side = self._side  # auto ran it whole: next, its tiles as sized from memory
                continue
            side = current // 2 // step * step
            if side < floor:
                raise OutOfMemoryError(self._advice(device, tried, whole=False))
            self._side = side
            if on_shrink is not None and self.below_overlaps(side):
                on_shrink(side, tuple(tried))

    def below_overlaps(self, side: int) -> bool:
        """Whether tiles of ``side`` are smaller than 4 × ``overlap``, which ``auto`` and
        ``--tile N`` never go below: their overlaps take more than half of each tile, so
        every pixel is computed more than 4 times over, and where the part a tile keeps is
        narrower than the overlap, the ramp that hands the output from one tile to the next
        is narrowed to it (``plan.feathers``)."""
        return side < 4 * self.overlap

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
        if self._side is None and self.mode == "fixed":
            self._side = self.tile
        if self._side is None and device.type == "cpu" and self._usable_default():
            self._side = self.default_tile
        if device.type == "cpu" and self._side is not None:
            return self._side, 1
        estimate = self.estimate(fn, device, scale, size, channels, prepare)
        budget = self._budget(device, tile=True)
        if self._side is None:
            self._side = tile_side_for_memory(
                estimate,
                budget,
                size=size,
                min_side=self.smallest_auto_side,
                max_side=self.max_side,
            )
        if self._batch is None:
            per_tile = estimate.bytes_for(size.padded(self._side)) - estimate.fixed_bytes
            fits = int((budget - estimate.fixed_bytes) // per_tile)
            self._batch = 1 if device.type == "cpu" else max(1, min(self.max_batch, fits))
        return self._side, self._batch

    def estimate(
        self,
        fn: Callable[..., torch.Tensor],
        device: torch.device,
        scale: int,
        size: SizeRequirements,
        channels: int,
        prepare: Callable[[torch.Tensor], Any] | None,
    ) -> MemoryEstimate:
        """The memory one pass of ``fn`` needs (``measure_memory``: two small probe passes
        the first time, kept for the policy's life)."""
        if self._estimate is None:
            self._estimate = measure_memory(
                fn,
                device=device,
                scale=scale,
                size=size,
                channels=channels,
                prepare=prepare,
                probe_side=self.probe_side,
            )
        return self._estimate

    def working_bytes(
        self, estimate: MemoryEstimate, size: SizeRequirements, height: int, width: int
    ) -> int:
        """The most one pass holds when this policy runs a ``height`` x ``width`` image on
        the CPU: the whole pass, at most one tile's with a fixed side (``--tile N``), else
        at most ``cpu_budget_bytes`` (a bigger image is cut into tiles below it)."""
        need = self._whole_pass(estimate, size, height, width)
        if self.mode == "fixed":
            side = size.padded(self.tile)
            rows = side if self.tile < height else size.framed(height)  # one tile: whole
            cols = side if self.tile < width else size.framed(width)
            return int(min(need, estimate.bytes_for_window(rows, cols)))
        return int(min(need, self.cpu_budget_bytes))

    @staticmethod
    def _whole_pass(
        estimate: MemoryEstimate, size: SizeRequirements, height: int, width: int
    ) -> float:
        return estimate.bytes_for_window(size.framed(height), size.framed(width))

    def _runs_whole(
        self, device: torch.device, size: SizeRequirements, height: int, width: int
    ) -> bool:
        """Whether ``auto`` runs this image in one piece on the CPU: its whole pass fits
        ``cpu_budget_bytes`` (and free memory), tiles were sized from memory, and no
        out-of-memory error has made this policy back off."""
        if self.mode != "auto" or device.type != "cpu" or self._backed_off:
            return False
        if self._estimate is None or self._side is None or self._side >= max(height, width):
            return False  # a model's own tile side, or one tile anyway
        return self._whole_pass(self._estimate, size, height, width) <= self._budget(device)

    def _usable_default(self) -> bool:
        return self.default_tile is not None and self.default_tile >= 4 * self.overlap

    def _budget(self, device: torch.device, *, tile: bool = False) -> float:
        """What one pass may use: a share of free memory, capped on the CPU at
        ``cpu_budget_bytes`` (a whole image) or ``cpu_tile_bytes`` (a tile)."""
        free = free_bytes(device)
        budget = (free if free is not None else _UNKNOWN_FREE_BYTES) * self.memory_fraction
        if device.type == "cpu":
            budget = min(budget, self.cpu_tile_bytes if tile else self.cpu_budget_bytes)
        return budget

    def _advice(self, device: torch.device, tried: list[int], *, whole: bool) -> str:
        sizes = ", ".join(str(s) for s in tried)
        remedy = memory_remedy(device)
        if whole:
            return (
                f"out of memory on {device}: this model needs the whole image at once "
                f"({sizes} px side); {remedy}"
            )
        return (
            f"out of memory on {device} even with {tried[-1]}-pixel tiles "
            f"(tried {TILE} {sizes}); {remedy}"
        )


def memory_remedy(device: torch.device) -> str:
    """What a user can do when ``device`` runs out of memory (the end of a message)."""
    if device.type == "cpu":
        return "close other programs to free RAM, or upscale a smaller image"
    return (
        f"close other programs using the GPU, try {PRECISION.given('fp16')}, or "
        f"{DEVICE.given('cpu')}"
    )


def _bind_stats(fn: Callable[..., torch.Tensor], stats: Any) -> TileFn:
    """``fn(x, stats)`` as a one-argument tile function."""

    def call(x: torch.Tensor) -> torch.Tensor:
        return fn(x, stats)

    return call
