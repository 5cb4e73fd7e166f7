"""Mean anchoring: an upscale's local brightness put back to its input's.

A generator distilled from Real-ESRGAN inherits its habit of shifting the mean level where
it cleans noise and draws texture of its own: the default model darkened a gravel path by
7.8 levels (its teacher by 14), measured by ``scripts/mean_shift.py``.  The input already
says what the local mean must be: an output area-downscaled back to the input's size
should average as the input does.  :func:`anchor_means` adds to the output the smooth
difference between the two — a Gaussian of ``sigma`` input pixels, far coarser than any
detail the network draws, and than a JPEG's 8-pixel blocks (at ``sigma`` 4 their pattern
passes at under 1 %) — so texture, edges and noise are left exactly as drawn.

On the validation photos (``data/val`` and ``data/val_textured``, 768-px crops, ``real``
degradation; ``python scripts/anchor_sweep.py``) ``sigma`` 4 raised
the default model's PSNR-Y by 0.30 dB with detail, hf, bandcorr and the lattice ratio
unchanged, and its mean shift from 0.84 to 0.08 levels; the manifest's ``mean_anchor``
hint turns it on per model (``ModelDescriptor.mean_anchor``).

Cost and memory: both images are area-averaged, in float and a strip of rows at a time, to
a grid of ``sigma / 2`` input pixels, where the difference is blurred; it is then brought
up to the output's size a strip of rows at a time and added in place, so the extra memory
is a few output rows, whatever the image's size (about 0.1 s per 4K output on a 2-core
CPU, by ``pocketsr bench`` against the same network without it).  On a GPU, where an image
that runs in one piece is still on the device, :func:`anchor_tensor` does the same there,
with no pass over the output on the host, before the output is copied back (``Upscaler``
passes it to the tiler as its ``finish``); the two agree to a level where the grid divides
the image (two at odd sizes, where the area averages' cells fall differently).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from pocketsr_cli.imageio import opencv

if TYPE_CHECKING:
    import torch

__all__ = ["anchor_means", "anchor_tensor"]

_STRIP_ROWS = 256  # output rows brought up and added at a time


class _Grid(NamedTuple):
    """Where both versions compare an output with its input: cells of ``pixels`` input
    pixels (``rows`` x ``cols`` of them), blurred by a Gaussian of ``sigma`` cells cut at
    ``radius``, reflected at the borders (without repeating the edge) or, on a grid
    smaller than the kernel, with the edge repeated (``reflect`` False)."""

    pixels: int
    rows: int
    cols: int
    sigma: float
    radius: int
    reflect: bool


def _grid(sigma: float, height: int, width: int) -> _Grid:
    """The grid of an ``height x width`` input anchored at ``sigma`` input pixels: cells
    of ``sigma // 2`` pixels, so that the blur stays at least 2 cells wide.

    Raises:
        ValueError: ``sigma`` is not positive.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    pixels = max(1, int(sigma // 2))
    rows, cols = max(1, math.ceil(height / pixels)), max(1, math.ceil(width / pixels))
    radius = int(4 * sigma / pixels + 0.5)
    return _Grid(pixels, rows, cols, sigma / pixels, radius, radius < min(rows, cols))


def anchor_means(out: np.ndarray, src: np.ndarray, sigma: float, channels: int) -> None:
    """Shift ``out``'s first ``channels`` channels, in place, so that their local mean, a
    Gaussian of ``sigma`` ``src`` pixels, is ``src``'s.

    ``out`` is ``src`` upscaled: ``H' x W' x C`` and ``H x W x C`` arrays of one dtype
    (uint8 or uint16), any ratio between the sizes.  Other channels (alpha) are left
    alone; values are rounded and clipped to the dtype's range.

    Raises:
        ValueError: shapes, dtypes or ``sigma`` that do not fit.
    """
    if out.dtype != src.dtype or out.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected two uint8 or uint16 arrays, got {out.dtype}, {src.dtype}")
    if out.ndim != 3 or src.ndim != 3 or not 1 <= channels <= min(out.shape[2], src.shape[2]):
        raise ValueError(f"cannot anchor {channels} channels of {out.shape} to {src.shape}")
    grid = _grid(sigma, *src.shape[:2])
    cv2 = opencv()
    cells = (grid.cols, grid.rows)
    diff = _area_means(src, channels, cells) - _area_means(out, channels, cells)
    border = cv2.BORDER_REFLECT_101 if grid.reflect else cv2.BORDER_REPLICATE  # as torch's
    side = 2 * grid.radius + 1
    diff = cv2.GaussianBlur(diff, (side, side), grid.sigma, borderType=border)
    _add_brought_up(out, diff.reshape(grid.rows, grid.cols, channels), channels)


def _area_means(img: np.ndarray, channels: int, cells: tuple[int, int]) -> np.ndarray:
    """``img``'s first ``channels`` channels area-averaged to ``cells`` (width, height):
    ``cv2.resize``'s ``INTER_AREA`` computed in float32 (``h x w x channels``), a strip
    of rows at a time, so that no full-size float copy is made.

    Not ``INTER_AREA`` on the samples themselves: its 8-bit result is rounded, and by
    halving (a 2 x 2 cell, ``sigma`` 4 or 5) half-way sums round up, which would lift
    every anchored image by an eighth of a level.
    """
    cv2 = opencv()
    width_cells, height_cells = cells
    height = img.shape[0]
    pitch = height / height_cells  # rows per grid cell
    # Strips of about 32 grid rows (of _STRIP_ROWS rows at most): each row's shares are a
    # matrix product whose cost grows with the grid rows a strip spans.
    step = max(1, min(_STRIP_ROWS, int(32 * pitch)))
    sums = np.zeros((height_cells, width_cells * channels), np.float32)
    buffer = np.empty((min(step, height), img.shape[1], channels), np.float32)
    for r0 in range(0, height, step):
        rows = min(step, height - r0)
        strip = buffer[:rows]
        strip[...] = img[r0 : r0 + rows, :, :channels]
        across = cv2.resize(strip, (width_cells, rows), interpolation=cv2.INTER_AREA)
        # Each row's share of each grid row it overlaps (INTER_AREA's weights, down).
        first = int(r0 // pitch)
        last = min(height_cells, math.ceil((r0 + rows) / pitch))
        lo = np.arange(first, last)[:, None] * pitch
        y = np.arange(r0, r0 + rows)[None, :]
        share = np.minimum(y + 1, lo + pitch) - np.maximum(y, lo)
        share = np.clip(share, 0, None, out=share).astype(np.float32) / np.float32(pitch)
        sums[first:last] += share @ across.reshape(rows, width_cells * channels)
    return sums.reshape(height_cells, width_cells, channels)


def _add_brought_up(out: np.ndarray, diff: np.ndarray, channels: int) -> None:
    """Add ``diff`` (a coarse ``h x w x channels`` float32 grid) to ``out``'s first
    ``channels`` channels, resized to ``out``'s size (bilinear, pixel centres aligned as
    ``cv2.resize`` aligns them), a strip of rows at a time."""
    cv2 = opencv()
    height, width = out.shape[:2]
    sx, sy = diff.shape[1] / width, diff.shape[0] / height
    top = np.iinfo(out.dtype).max
    depth = cv2.CV_8U if out.dtype == np.uint8 else cv2.CV_16U
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for r0 in range(0, height, _STRIP_ROWS):
        rows = min(_STRIP_ROWS, height - r0)
        # Output (x, y) of the strip -> grid ((x + .5) sx - .5, (r0 + y + .5) sy - .5).
        matrix = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, (r0 + 0.5) * sy - 0.5]], np.float64)
        shift = cv2.warpAffine(
            diff if channels > 1 else diff[..., 0],
            matrix,
            (width, rows),
            flags=flags,
            borderMode=cv2.BORDER_REPLICATE,
        ).reshape(rows, width, channels)
        strip = out[r0 : r0 + rows, :, :channels]
        if channels == out.shape[2]:  # contiguous rows: OpenCV adds, rounds and clips
            strip[...] = cv2.add(strip, shift, dtype=depth).reshape(strip.shape)
        else:  # beside an alpha channel
            shift += strip
            np.clip(shift, 0, top, out=shift)
            strip[...] = np.rint(shift)


def anchor_tensor(out: torch.Tensor, src: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`anchor_means` on float tensors, on their device: ``out`` ``(1, C, H', W')``,
    ``src`` ``(1, C, H, W)`` (both in [0, 1]); returns ``out`` shifted (a new tensor of
    ``out``'s dtype; values are not clamped, the caller's conversion does that).

    It needs a tensor of ``out``'s size in float32, so :class:`Upscaler` runs it where
    memory is plentiful (a GPU) and :func:`anchor_means` on the CPU.

    Raises:
        ValueError: shapes or ``sigma`` that do not fit.
    """
    import torch
    import torch.nn.functional as F

    if out.dim() != 4 or src.dim() != 4 or out.shape[:2] != src.shape[:2] or out.shape[0] != 1:
        raise ValueError(f"cannot anchor {tuple(out.shape)} to {tuple(src.shape)}")
    grid = _grid(sigma, *src.shape[-2:])
    cells = (grid.rows, grid.cols)
    diff = F.adaptive_avg_pool2d(src.float(), cells) - F.adaptive_avg_pool2d(out.float(), cells)
    radius = grid.radius
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=out.device)
    kernel = torch.exp(-0.5 * (taps / grid.sigma) ** 2)
    kernel /= kernel.sum()
    channels = diff.shape[1]
    mode = "reflect" if grid.reflect else "replicate"  # as anchor_means
    for dim in (2, 3):  # rows, then columns
        pad = (0, 0, radius, radius) if dim == 2 else (radius, radius, 0, 0)
        shape = (1, 1, 2 * radius + 1, 1) if dim == 2 else (1, 1, 1, 2 * radius + 1)
        weight = kernel.view(shape).expand(channels, 1, *shape[2:]).contiguous()
        diff = F.conv2d(F.pad(diff, pad, mode=mode), weight, groups=channels)
    shift = F.interpolate(diff, size=tuple(out.shape[-2:]), mode="bilinear", align_corners=False)
    return (out.float() + shift).to(out.dtype)
