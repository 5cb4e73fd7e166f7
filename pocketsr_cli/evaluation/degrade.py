"""The two evaluation degradations, deterministic bit for bit on one machine.

* ``bicubic``: antialiased bicubic downscale by ``scale`` (:func:`bicubic_downscale`);
* ``real``: Gaussian blur σ 1.2 (:func:`gaussian_blur`) → the same bicubic downscale →
  Gaussian noise σ 3/255 (RGB, independent per channel, from
  ``numpy.random.default_rng(seed)``) → rounded to 8 bits → JPEG quality 70
  (OpenCV's libjpeg, default 4:2:0 chroma subsampling) → decoded.

Both return an 8-bit LR image, as a saved photo would be, whatever the depth of the ground
truth.  The seed of an image is :func:`seed_for` its file name, so an image gets the same
noise whichever folder, order or ``--limit`` it is evaluated in.

Determinism: every step is a fixed-order float computation (numpy, OpenCV's separable
filter, libjpeg), so the same input and seed give the same bytes on one machine and library
build; other builds of OpenCV/libjpeg may differ in the last bit of a few pixels.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

EvalKind = Literal["bicubic", "real"]
EVAL_KINDS: tuple[EvalKind, ...] = ("bicubic", "real")

BLUR_SIGMA = 1.2
NOISE_SIGMA = 3.0 / 255.0
JPEG_QUALITY = 70

Float = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def to_float(img: npt.NDArray[np.generic]) -> Float:
    """uint8 / uint16 → float32 in [0, 1]; a float array is returned as float32 unchanged."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"expected uint8, uint16 or float pixels, got {img.dtype}")
    return np.asarray(img, dtype=np.float32)


def to_uint8(img: npt.NDArray[np.floating]) -> U8:
    """Float in [0, 1] → uint8: clipped, rounded half to even (``np.rint``)."""
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def crop_to_multiple(img: npt.NDArray[np.generic], scale: int) -> npt.NDArray[np.generic]:
    """Top-left crop (a view) so that both sides are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def seed_for(name: str) -> int:
    """The noise seed of an image: CRC-32 of its file name (stable across runs and folders)."""
    return zlib.crc32(name.encode("utf-8"))


def _keys_cubic(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Keys' cubic convolution with a = -0.5, the kernel of MATLAB's imresize and of Pillow.
    t = np.abs(t)
    inner = (1.5 * t - 2.5) * t * t + 1.0
    outer = ((-0.5 * t + 2.5) * t - 4.0) * t + 2.0
    return np.where(t <= 1.0, inner, np.where(t < 2.0, outer, 0.0))


def _down_taps(factor: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Offsets ``d`` and weights: output ``j`` = sum of ``w[d] * input[j * factor + d]``.

    Output pixel ``j`` is centred on input coordinate ``j * factor + (factor - 1) / 2``; the
    cubic is stretched by ``factor`` (antialiasing), and the weights are normalised to 1.
    """
    centre = (factor - 1) / 2.0
    lo = math.floor(centre - 2 * factor) + 1
    hi = math.ceil(centre + 2 * factor) - 1
    offsets = np.arange(lo, hi + 1, dtype=np.int64)
    weights = _keys_cubic((offsets - centre) / factor)
    return offsets, weights / weights.sum()


def bicubic_downscale(img: npt.NDArray[np.generic], factor: int) -> Float:
    """Antialiased bicubic downscale by an integer ``factor`` (MATLAB ``imresize`` style).

    Separable: each axis is filtered with the stretched Keys cubic (:func:`_down_taps`) and
    subsampled; borders are mirrored with the edge pixel repeated (numpy ``symmetric``, as
    MATLAB does).  Computed in float64 with a fixed summation order.

    Args:
        img: ``H×W×C`` (or ``H×W``) uint8, uint16 or float in [0, 1]; ``H`` and ``W``
            multiples of ``factor``.
        factor: a positive integer.

    Returns:
        float32 ``H/factor × W/factor (× C)``, not clipped (bicubic overshoots a little).

    Raises:
        ValueError: ``factor`` < 1, or sides that are not multiples of it.
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    x = to_float(img).astype(np.float64)
    h, w = x.shape[:2]
    if h % factor or w % factor:
        raise ValueError(f"image sides {h}×{w} are not multiples of {factor}")
    if factor == 1:
        return x.astype(np.float32)
    offsets, weights = _down_taps(factor)
    pad = int(max(-offsets.min(), offsets.max()))
    for axis in (0, 1):
        moved = np.moveaxis(x, axis, 0)
        n_out = moved.shape[0] // factor
        padded = np.pad(moved, [(pad, pad)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
        acc = np.zeros((n_out, *moved.shape[1:]), dtype=np.float64)
        for d, wt in zip(offsets.tolist(), weights.tolist(), strict=True):
            start = pad + d
            acc += wt * padded[start : start + n_out * factor : factor]
        x = np.moveaxis(acc, 0, axis)
    return np.ascontiguousarray(x, dtype=np.float32)


def gaussian_blur(img: Float, sigma: float) -> Float:
    """Separable Gaussian blur, ``2·ceil(4σ) + 1`` taps, reflect-101 border (float32 in/out)."""
    radius = math.ceil(4 * sigma)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    out = cv2.sepFilter2D(
        np.asarray(img, np.float32), -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101
    )
    return np.asarray(out, dtype=np.float32)


def jpeg_roundtrip(img: U8, quality: int) -> U8:
    """Encode an RGB uint8 image as JPEG of ``quality`` with OpenCV and decode it again."""
    bgr = np.ascontiguousarray(img[..., ::-1])
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # pragma: no cover - libjpeg does not fail on a valid uint8 image
        raise RuntimeError("JPEG round trip failed")
    return np.ascontiguousarray(decoded[..., ::-1], dtype=np.uint8)


def degrade_eval(hr: npt.NDArray[np.generic], kind: EvalKind, seed: int = 0, scale: int = 4) -> U8:
    """The eval degradation of a ground-truth image (see the module docstring).

    Args:
        hr: ``H×W×3`` RGB, uint8, uint16 or float in [0, 1]; sides multiples of ``scale``
            (crop with :func:`crop_to_multiple` first).
        kind: ``bicubic`` or ``real``.
        seed: seeds the noise of ``real`` (``bicubic`` ignores it); see :func:`seed_for`.
        scale: the downscale factor.

    Returns:
        The LR image: uint8 ``H/scale × W/scale × 3``.

    Raises:
        ValueError: unknown ``kind``, not ``H×W×3``, or sides not multiples of ``scale``.
    """
    if hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {hr.shape}")
    if kind not in EVAL_KINDS:
        raise ValueError(f"unknown eval degradation {kind!r}; expected one of {EVAL_KINDS}")
    img = to_float(hr)
    if kind == "bicubic":
        return to_uint8(bicubic_downscale(img, scale))
    lr = bicubic_downscale(gaussian_blur(img, BLUR_SIGMA), scale)
    noise = np.random.default_rng(seed).standard_normal(lr.shape, dtype=np.float32)
    return jpeg_roundtrip(to_uint8(lr + noise * np.float32(NOISE_SIGMA)), JPEG_QUALITY)


def degrade_or_jpeg(
    hr: npt.NDArray[np.generic], kind: EvalKind, seed: int, scale: int, jpeg: int | None
) -> U8:
    """:func:`degrade_eval`, or with ``jpeg`` a bicubic downscale saved by Pillow as a JPEG
    of that quality and decoded again (the validation sweeps' ``--jpeg Q``:
    ``scripts/anchor_sweep.py``, ``scripts/margin_sweep.py``)."""
    if jpeg is None:
        return degrade_eval(hr, kind, seed=seed, scale=scale)
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_uint8(bicubic_downscale(hr, scale))).save(buffer, "JPEG", quality=jpeg)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))
