"""Tiled inference for any upscaler: frame and pad, plan, run, feather-blend, assemble.

The tiler knows no model.  It takes a callable ``fn(x) -> y`` mapping a float tensor
``(N, C, h, w)`` on the compute device to ``(N, C, h * scale, w * scale)``, the scale and
the model's :class:`SizeRequirements`, and upscales an image ``(1, C, H, W)`` of any size,
held on the CPU or on the compute device, in pieces that fit in memory; the result is
assembled on the CPU.

Vocabulary (all sizes in *input* pixels unless they say otherwise):

- **margin** ``k`` (``SizeRequirements.margin``, 0 for most models): the whole image is
  first framed in ``k`` replicated border pixels on every side, and the frame's output is
  dropped as the tiles are assembled.  Every other size below is in the framed image.
- **tile** ``N``: the largest window the model is shown, overlap included, so memory use is
  a function of ``N`` alone (plus padding up to the model's ``multiple_of``).  ``0`` or
  ``N >= side`` (the image's own side) means one tile across that side, its frame and
  padding included.
- **core**: the part of the image a tile is responsible for.  Cores are *even*: an axis of
  length ``L`` is cut into ``n`` cores whose sizes differ by at most one pixel, instead of
  ``N``-sized pieces plus a thin remainder.
- **grid**: a model that needs sides in multiples of ``m`` (``SizeRequirements``) usually
  works on an ``m``-pixel grid (pixel-unshuffle, strided levels), so windows start at
  multiples of ``m`` (cores then differ by at most ``m``): each tile sees every pixel at
  the grid phase it has in the untiled run.
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

Modules, in the order an image meets them: ``plan`` (spans and feather weights),
``run`` (:func:`upscale_tiled`: pad, cut windows, batch them through ``fn``),
``assemble`` (the output buffer and seam blending), ``estimate`` (memory per pixel and the
tile side that fits) and ``policy`` (:class:`TilePolicy`).  Callers import from this
package; the modules are its sections.
"""

from pocketsr_cli.tiling.assemble import GIB, allocate_output, output_max
from pocketsr_cli.tiling.estimate import (
    LiveTensorBytes,
    MemoryEstimate,
    measure_memory,
    tile_side_for_memory,
)
from pocketsr_cli.tiling.plan import Span, plan_axis
from pocketsr_cli.tiling.policy import (
    DEFAULT_OVERLAP,
    ShrinkFn,
    TileMode,
    TilePolicy,
    memory_remedy,
)
from pocketsr_cli.tiling.run import ProgressFn, TileFn, upscale_tiled

__all__ = [
    "DEFAULT_OVERLAP",
    "GIB",
    "LiveTensorBytes",
    "MemoryEstimate",
    "ProgressFn",
    "ShrinkFn",
    "Span",
    "TileFn",
    "TileMode",
    "TilePolicy",
    "allocate_output",
    "measure_memory",
    "memory_remedy",
    "output_max",
    "plan_axis",
    "tile_side_for_memory",
    "upscale_tiled",
]
