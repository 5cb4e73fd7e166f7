"""Parameter-free resamplers (``bicubic``, ``lanczos``) as models.

They make the whole pipeline usable and testable without weights, and serve as the quality
floor in ``pocketsr eval``.

What the two names mean:

- **8-bit images on the CPU** (:meth:`Resize.upscale_uint8`: what ``pocketsr upscale``
  writes for 8-bit inputs and what ``pocketsr eval`` scores): Pillow's ``Image.resize``
  with ``Image.BICUBIC`` (Keys' cubic, a = -0.5) or ``Image.LANCZOS`` (Lanczos-3), applied
  to each channel on its own (alpha is not premultiplied, unlike Pillow's RGBA mode).  Like
  Pillow, it rounds and clamps to 8 bits between the horizontal and the vertical pass, and
  at the image borders it drops the taps that fall outside and renormalises the rest.
  ``lanczos`` *is* Pillow's resize.  ``bicubic`` is torch's 8-bit antialiased bicubic, a
  port of Pillow's algorithm that runs several times faster than Pillow: its fixed-point
  filter weights are shorter than Pillow's, so on the benchmark photos about two outputs
  in a million are one level off Pillow's at x4 (none at x2 and x3), and on pixel noise up
  to a few in a thousand, by two levels at most.
- **Float tensors** (:meth:`Resize.forward`: 16-bit images, other devices, ``--ensemble``,
  ``Upscaler.upscale_tensor``, training): the same kernels in float32 without the
  intermediate rounding, the edge pixels replicated outwards.  On the benchmark photos
  (x4) one value in six is one level off the 8-bit result (its two roundings); about one in
  two thousand (bicubic; one in a thousand, Lanczos) is further off, up to 14 (bicubic) or
  27 (Lanczos) levels, where a filter's overshoot at a hard edge next to black or white is
  clamped between the 8-bit passes.  The outer two (bicubic) or three (Lanczos) input
  pixels differ a little more often (the border rules differ), but not by more.

The float filters are applied per output phase (one small 1-D filter per output phase and
axis, as weighted sums of shifted views), so their cost is linear in the output size and
they tile exactly like a convolutional network with a receptive field of a few pixels.
The 8-bit path needs no tiling: it reads an 8-bit image of any size and writes the 8-bit
result, nothing else, in one pass per axis.

:data:`FAMILY` is the ``resize`` architecture family (no weights: built from the
manifest's ``[build]`` ``kernel`` and any scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.descriptor import Family

KERNELS = ("bicubic", "lanczos")


def _cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    # Keys' cubic with a = -0.5, the convention of Pillow and Matlab's imresize.
    t = t.abs()
    t2, t3 = t * t, t * t * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def _lanczos3(t: torch.Tensor) -> torch.Tensor:
    out = torch.sinc(t) * torch.sinc(t / 3)
    return torch.where(t.abs() < 3, out, torch.zeros_like(t))


_SUPPORT = {"bicubic": (2, _cubic), "lanczos": (3, _lanczos3)}
# The smallest --tile-overlap whose float tiles came within 2 levels of the whole image
# (bicubic exact from 4; Lanczos up to 5 at 2), as bicubic.toml and lanczos.toml state.
_MEASURED_OVERLAPS = {"bicubic": 2, "lanczos": 4}


def _phase_weights(scale: int, kernel: str) -> torch.Tensor:
    """Filter taps ``(scale, 2R + 1)``: output phase ``p`` of input pixel ``i`` reads
    ``i - R .. i + R`` (pixel centres aligned, ``align_corners=False``), rows sum to 1."""
    radius, fn = _SUPPORT[kernel]
    phase = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = fn(phase[:, None] - offsets[None, :])
    return (w / w.sum(dim=1, keepdim=True)).float()


def _resample(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """Upsample ``(B, H, W)`` by ``scale`` along ``dim`` (1: height, 2: width);
    ``weights`` is ``(scale, taps)`` (see :func:`_phase_weights`).

    Each output phase is a weighted sum of ``taps`` shifted views of the edge-replicated
    input, accumulated in place into its interleaved slot of the result: a few passes over
    memory, no im2col and no transposes — several times faster on the CPU than the same
    filter as a one-channel convolution.
    """
    scale, taps = weights.shape
    radius = taps // 2
    b, h, w = x.shape
    length = x.shape[dim]
    pad = (radius, radius, 0, 0) if dim == 2 else (0, 0, radius, radius)
    padded = F.pad(x.unsqueeze(1), pad, mode="replicate").squeeze(1)
    # Phase p of input position i lands at output position i * scale + p.
    shape = (b, h, w, scale) if dim == 2 else (b, h, scale, w)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    for phase, row in enumerate(weights.tolist()):
        acc = out[..., phase] if dim == 2 else out[:, :, phase, :]
        for k, weight in enumerate(row):
            view = padded.narrow(dim, k, length)
            if k == 0:
                torch.mul(view, weight, out=acc)
            else:
                acc.add_(view, alpha=weight)
    return out.reshape((b, h, w * scale) if dim == 2 else (b, h * scale, w))


class Resize(nn.Module):
    """Upscale ``(N, C, H, W)`` by an integer ``scale`` with a bicubic or Lanczos-3 filter."""

    def __init__(self, kernel: str = "bicubic", scale: int = 4) -> None:
        super().__init__()
        if kernel not in _SUPPORT:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
        if scale < 1 or int(scale) != scale:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.kernel = kernel
        self.scale = int(scale)

    @property
    def receptive_radius(self) -> int:
        """Input pixels either side that influence an output pixel."""
        return int(_SUPPORT[self.kernel][0])

    @property
    def seamless_overlap(self) -> int:
        """The tile overlap its float path was measured to need: bicubic 2, Lanczos 4."""
        return _MEASURED_OVERLAPS[self.kernel]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x.clone()
        n, c, h, w = x.shape
        weights = _phase_weights(self.scale, self.kernel)
        # Along the width first, while the image is small, then along the height.
        y = _resample(x.reshape(n * c, h, w), weights, dim=2)
        y = _resample(y, weights, dim=1)
        return y.reshape(n, c, h * self.scale, w * self.scale)

    def upscale_uint8(self, pixels: np.ndarray) -> np.ndarray:
        """``H x W x C`` uint8 (any size, any ``C``) -> ``H*s x W*s x C`` uint8: Pillow's
        filter per channel (see the module docstring), the whole image in one call.

        The result is a new, writable, C-contiguous array.
        """
        if pixels.ndim != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"expected H x W x C uint8 pixels, got {pixels.dtype} {pixels.shape}")
        if self.scale == 1:
            return pixels.copy()
        if self.kernel == "bicubic":
            return _torch_bicubic_uint8(pixels, self.scale)
        return _pillow_uint8(pixels, self.scale, self.kernel)


def _torch_bicubic_uint8(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Torch's 8-bit path for ``antialias=True`` bicubic (Pillow's algorithm, vectorised).

    Its vectorised kernel works on channels-last images and returns one, so the result is
    ``H x W x C`` without a copy.  Torch takes the memory format from the strides, batch
    included: ``(1, H, W, C)`` permuted is channels-last, ``(H, W, C)`` permuted and then
    unsqueezed is not (the batch stride would be ``1``), and a ``(1, C, H, W)`` output in
    NCHW would cost a transposing copy about twice the resampling itself.  A gray image is
    passed as a contiguous ``(1, 1, H, W)``: torch's channels-last path is slow for one
    channel (4K: 32 ms against 19 ms, the same bytes).
    """
    if not pixels.flags.writeable or not pixels.flags.c_contiguous:
        pixels = np.array(pixels, order="C")  # torch.from_numpy warns about read-only arrays
    h, w, channels = pixels.shape
    if channels == 1:
        x = torch.from_numpy(pixels.reshape(1, 1, h, w))
    else:
        x = torch.from_numpy(pixels.reshape(1, h, w, channels)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        y = F.interpolate(
            x, size=(h * scale, w * scale), mode="bicubic", align_corners=False, antialias=True
        )
    if channels == 1:
        return y.reshape(h * scale, w * scale, 1).numpy()
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


_COPY_ROWS = 64
"""Rows of Pillow's RGB result copied into the array at a time (:func:`_pillow_uint8`).
Each band's crop and bytes are freed in the upscaling thread's heap, which the encoder's
thread does not reuse: 256 rows left 15 MB there after 4000x3000, 64 rows 6.6 MB (the
whole image at once 3.6 MB, but 36 MB more at the peak)."""


def _pillow_uint8(pixels: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """Pillow's resize, one 8-bit band at a time (RGB in one call: same result, faster).

    Pillow's RGBA and LA modes would premultiply alpha, and it has no two-band mode for
    gray plus alpha, so other channel counts go band by band.

    The RGB result is copied out of Pillow's image (4 bytes a pixel) in bands of
    :data:`_COPY_ROWS` rows: ``np.array`` of the whole image goes through
    ``Image.tobytes``, which holds its chunks and their join at once (6 bytes an output
    pixel on top of Pillow's image and the result: 10 in all, 7 this way).
    """
    from PIL import Image

    resample = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[kernel]
    h, w, channels = pixels.shape
    size = (w * scale, h * scale)
    if channels == 3:
        image = Image.fromarray(np.ascontiguousarray(pixels)).resize(size, resample)
        rgb = np.empty((h * scale, w * scale, 3), np.uint8)
        for top in range(0, h * scale, _COPY_ROWS):
            bottom = min(top + _COPY_ROWS, h * scale)
            rows = image.crop((0, top, w * scale, bottom)).tobytes()
            rgb[top:bottom] = np.frombuffer(rows, np.uint8).reshape(bottom - top, w * scale, 3)
        return rgb
    out = np.empty((h * scale, w * scale, channels), np.uint8)
    for k in range(channels):
        band = Image.fromarray(np.ascontiguousarray(pixels[..., k]))
        out[..., k] = np.asarray(band.resize(size, resample))
    return out


def _build(params: Mapping[str, Any], scale: int) -> Resize:
    return Resize(kernel=str(params.get("kernel", "bicubic")), scale=scale)


FAMILY = Family("resize", build=_build)
