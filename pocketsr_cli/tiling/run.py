"""Running: pad the image once, cut windows, run them in batches, assemble the output."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.errors import ModelError
from pocketsr_cli.tiling.assemble import Assembler, allocate_output
from pocketsr_cli.tiling.plan import feathers, plan_axis

if TYPE_CHECKING:
    import torch

TileFn = Callable[["torch.Tensor"], "torch.Tensor"]
ProgressFn = Callable[[int, int], None]
FinishFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


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
    finish: FinishFn | None = None,
) -> torch.Tensor:
    """Upscale ``image`` (float ``(1, C, H, W)`` in [0, 1], on the CPU or on ``device``)
    tile by tile.

    The image is first framed by ``size.margin`` replicated pixels on every side, then
    padded at the bottom/right to meet ``size`` (reflect; replicate where an axis is too
    short to reflect), so tiled and untiled runs see the same borders; the output of both
    is cropped away.
    ``fn`` gets float32 windows ``(n, C, h, w)`` on ``device``, ``n <= batch``, that meet
    ``size`` (windows are padded again only if ``tile`` is below ``size.minimum``), and
    must return ``(n, C, h * scale, w * scale)``; it runs under ``torch.inference_mode``.
    Tile ``(r, c)`` is reported through ``on_tile(done, total)`` after its batch ran.

    Returns a CPU tensor ``(1, C, H * scale, W * scale)`` of ``out_dtype`` (float32 by
    default; float results are not clamped, integer ones are rounded and clamped from
    [0, 1] to [0, :func:`output_max`]).  ``out`` may be passed to reuse a buffer.

    When the image runs as one window, ``finish(output, image)``, if given, replaces the
    whole output (as ``fn`` left it, on ``device``, cropped to ``H * scale x W * scale``;
    ``image`` as given, on ``device``; it runs under ``torch.inference_mode``) before it is
    written to ``out``: a whole-image step done where the output already is
    (``anchor.anchor_tensor`` on a GPU).  Not called when the image is cut into several
    windows.

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
    source = image
    # Padding the whole image once (not each edge tile) makes every tiling of an image see
    # the same borders as the untiled run, and lets windows be whole multiples.
    image = _frame(image.to(torch.float32), size.margin)
    image = _pad_to(image, size.framed(height), size.framed(width))
    origin = size.margin * scale  # where ``out`` starts in the framed image's output
    # A tile that holds the image's side holds it with its frame too: one window, not two
    # for the frame's few pixels (``--tile 512`` on a 512-px photo).
    row_spans = plan_axis(image.shape[2], 0 if tile >= height else tile, overlap, size.multiple_of)
    col_spans = plan_axis(image.shape[3], 0 if tile >= width else tile, overlap, size.multiple_of)
    rows = feathers(row_spans, image.shape[2], scale, overlap)
    cols = feathers(col_spans, image.shape[3], scale, overlap)
    assembler = Assembler(out, rows, cols, origin=origin)
    order = [(r, c) for r in range(len(row_spans)) for c in range(len(col_spans))]
    row_w = [f.weights.to(device) for f in rows]
    col_w = [f.weights.to(device) for f in cols]
    for first in range(0, len(order), batch):
        group = order[first : first + batch]
        cut = [
            image[
                :,
                :,
                row_spans[r].window_start : row_spans[r].window_stop,
                col_spans[c].window_start : col_spans[c].window_stop,
            ]
            for r, c in group
        ]
        # A lone window is passed as the view it is (the whole image: no copy at all).
        windows = cut[0] if len(cut) == 1 else torch.cat(cut)
        result = _run(fn, windows, device, scale, size)
        if finish is not None and len(order) == 1:
            whole = result[:, :, origin : origin + height * scale, origin : origin + width * scale]
            with torch.inference_mode():
                whole.copy_(finish(whole, source.to(device)))
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


def _frame(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``x`` with ``margin`` pixels replicated on every side (``x`` itself for 0)."""
    import torch.nn.functional as F

    return F.pad(x, (margin,) * 4, mode="replicate") if margin else x


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad bottom/right by reflection (replication where the axis is too short to reflect)."""
    import torch.nn.functional as F

    pad_h, pad_w = height - x.shape[2], width - x.shape[3]
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < x.shape[3] else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < x.shape[2] else "replicate")
    return x
