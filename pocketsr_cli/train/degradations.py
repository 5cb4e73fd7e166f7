"""Image degradations: the seeded second-order training pipeline and the eval degradations.

Images are float32 ``H×W×3`` RGB arrays in ``[0, 1]`` (uint8 is accepted where noted).
Every random choice is drawn from a caller-supplied :class:`numpy.random.Generator` in a
fixed order, so the same generator state gives the same output bit for bit (on one machine
and library build: OpenCV's resize and libjpeg are deterministic but not guaranteed
identical across builds).

Training pipeline (:func:`degrade`), from the description in the Real-ESRGAN paper
(Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021, section 3), parameter ranges as in its x4plus training configuration:

1. first order: blur (:mod:`~pocketsr_cli.train.kernels`) → random resize (up / down / keep,
   area / bilinear / bicubic) → Gaussian or Poisson noise (colour or gray) → JPEG;
2. second order: the same with narrower ranges, the blur applied with probability 0.8, the
   resize relative to the final LR size;
3. final: resize to exactly ``H/scale × W/scale`` (random mode) plus a sinc filter
   (probability 0.8), and JPEG — in either order, 50/50.

The result is quantised to 8 bits, as a saved LR image would be.

The deterministic eval degradations (``bicubic``, ``real``) live in the core,
:mod:`pocketsr_cli.evaluation.degrade` (``pocketsr eval`` must not import ``train/``); they
are re-exported here for training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from pocketsr_cli.evaluation.degrade import (  # noqa: F401  (re-exported for training code)
    EVAL_KINDS,
    EvalKind,
    bicubic_downscale,
    crop_to_multiple,
    degrade_eval,
    gaussian_blur,
)
from pocketsr_cli.train.kernels import BlurSpec, Kernel, random_blur_kernel, random_sinc_kernel

Image = npt.NDArray[np.float32]

RESIZE_MODES: dict[str, int] = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601, for gray Poisson noise


@dataclass(frozen=True)
class ResizeSpec:
    """Random resize: direction probabilities (up, down, keep) and factor ranges."""

    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    up: tuple[float, float] = (1.0, 1.5)
    down: tuple[float, float] = (0.15, 1.0)


@dataclass(frozen=True)
class NoiseSpec:
    """Additive noise: Gaussian with probability ``gaussian_prob``, otherwise Poisson.

    Attributes:
        gaussian_prob: probability of Gaussian (vs Poisson) noise.
        sigma: Gaussian standard deviation range, in 8-bit levels (÷255 when applied).
        poisson_scale: multiplier range of the Poisson noise (shot noise of an image with
            255 photons at full scale).
        gray_prob: probability that one noise field is shared by the three channels.
    """

    gaussian_prob: float = 0.5
    sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_prob: float = 0.4


@dataclass(frozen=True)
class DegradationConfig:
    """All distributions of the second-order pipeline (defaults: Real-ESRGAN x4plus)."""

    blur1: BlurSpec = field(default_factory=BlurSpec)
    resize1: ResizeSpec = field(default_factory=ResizeSpec)
    noise1: NoiseSpec = field(default_factory=NoiseSpec)
    jpeg1: tuple[int, int] = (30, 95)
    blur2_prob: float = 0.8
    blur2: BlurSpec = field(default_factory=lambda: BlurSpec(sigma=(0.2, 1.5)))
    resize2: ResizeSpec = field(
        default_factory=lambda: ResizeSpec(probs=(0.3, 0.4, 0.3), up=(1.0, 1.2), down=(0.3, 1.0))
    )
    noise2: NoiseSpec = field(
        default_factory=lambda: NoiseSpec(sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5))
    )
    jpeg2: tuple[int, int] = (30, 95)
    final_sinc_prob: float = 0.8
    final_sinc_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)


REAL_ESRGAN = DegradationConfig()


def to_float(img: npt.NDArray[np.generic]) -> Image:
    """uint8 → float32 in [0, 1]; float input is returned as float32 unchanged."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    return np.asarray(img, dtype=np.float32)


def to_uint8(img: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Clip to [0, 1] and round to 8 bits."""
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_hw3(img: npt.NDArray[np.generic], scale: int) -> None:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 image, got shape {img.shape}")
    h, w = img.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image sides {h}×{w} are not multiples of the scale {scale}")


def filter2d(img: Image, kernel: Kernel) -> Image:
    """Filter every channel with ``kernel`` (reflect-101 border)."""
    out = cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return np.asarray(out, dtype=np.float32)


def resize(img: Image, height: int, width: int, mode: str) -> Image:
    """OpenCV resize to ``height``×``width`` with mode ``area``, ``bilinear`` or ``bicubic``."""
    out = cv2.resize(img, (width, height), interpolation=RESIZE_MODES[mode])
    return np.asarray(out, dtype=np.float32)


def jpeg(img: Image, quality: int) -> Image:
    """Round-trip through an 8-bit JPEG of ``quality`` (OpenCV's libjpeg, 4:2:0)."""
    bgr = np.ascontiguousarray(to_uint8(img)[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - libjpeg does not fail on valid uint8 images
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:  # pragma: no cover - we just encoded it
        raise RuntimeError("JPEG decoding failed")
    return to_float(np.ascontiguousarray(decoded[..., ::-1], dtype=np.uint8))


def _random_mode(rng: np.random.Generator) -> str:
    return list(RESIZE_MODES)[int(rng.integers(len(RESIZE_MODES)))]


def _random_factor(rng: np.random.Generator, spec: ResizeSpec) -> float:
    direction = int(rng.choice(3, p=np.asarray(spec.probs)))
    if direction == 0:
        return float(rng.uniform(*spec.up))
    if direction == 1:
        return float(rng.uniform(*spec.down))
    return 1.0


def _random_noise(img: Image, rng: np.random.Generator, spec: NoiseSpec) -> Image:
    gaussian = rng.random() < spec.gaussian_prob
    gray = rng.random() < spec.gray_prob
    h, w = img.shape[:2]
    if gaussian:
        sigma = np.float32(rng.uniform(*spec.sigma) / 255.0)
        noise = rng.standard_normal((h, w, 1 if gray else 3), dtype=np.float32) * sigma
    else:
        scale = np.float32(rng.uniform(*spec.poisson_scale))
        base = np.clip(img @ _LUMA, 0, 1)[..., None] if gray else np.clip(img, 0, 1)
        counts = rng.poisson(base.astype(np.float64) * 255.0).astype(np.float32)
        noise = (counts / np.float32(255.0) - base) * scale
    return np.clip(img + noise, 0.0, 1.0).astype(np.float32)


def _blur(img: Image, rng: np.random.Generator, spec: BlurSpec) -> Image:
    return filter2d(img, random_blur_kernel(rng, spec))


def _jpeg(img: Image, rng: np.random.Generator, qualities: tuple[int, int]) -> Image:
    return jpeg(img, int(rng.integers(qualities[0], qualities[1] + 1)))


def degrade(
    hr: npt.NDArray[np.generic],
    scale: int,
    rng: np.random.Generator,
    config: DegradationConfig = REAL_ESRGAN,
) -> Image:
    """Second-order degradation of ``hr`` into an LR image ``scale`` times smaller.

    Args:
        hr: ``H×W×3`` RGB, float in [0, 1] or uint8; ``H`` and ``W`` multiples of ``scale``.
        scale: 2 or 4 (any positive integer works).
        rng: the only source of randomness; consumed in a fixed order.
        config: the parameter distributions.

    Returns:
        float32 ``H/scale × W/scale × 3`` in [0, 1], quantised to multiples of 1/255.

    Raises:
        ValueError: wrong shape or sides not divisible by ``scale``.
    """
    _check_hw3(hr, scale)
    img = to_float(hr)
    h, w = img.shape[:2]
    lr_h, lr_w = h // scale, w // scale

    # First order.
    img = _blur(img, rng, config.blur1)
    f = _random_factor(rng, config.resize1)
    img = resize(img, max(1, round(h * f)), max(1, round(w * f)), _random_mode(rng))
    img = _random_noise(img, rng, config.noise1)
    img = _jpeg(img, rng, config.jpeg1)

    # Second order: sizes relative to the final LR, so the last resize stays moderate.
    if rng.random() < config.blur2_prob:
        img = _blur(img, rng, config.blur2)
    f = _random_factor(rng, config.resize2)
    img = resize(img, max(1, round(lr_h * f)), max(1, round(lr_w * f)), _random_mode(rng))
    img = _random_noise(img, rng, config.noise2)

    # Final: back to the LR size with a sinc (or no) filter, and JPEG, in random order.
    sinc = (
        random_sinc_kernel(rng, config.final_sinc_sizes)
        if rng.random() < config.final_sinc_prob
        else None
    )
    mode = _random_mode(rng)
    quality = int(rng.integers(config.jpeg2[0], config.jpeg2[1] + 1))
    if rng.random() < 0.5:
        img = resize(img, lr_h, lr_w, mode)
        if sinc is not None:
            img = filter2d(img, sinc)
        img = jpeg(img, quality)
    else:
        img = jpeg(img, quality)
        img = resize(img, lr_h, lr_w, mode)
        if sinc is not None:
            img = filter2d(img, sinc)
    return to_float(to_uint8(img))


@dataclass(frozen=True)
class MildSpec:
    """Ranges of :func:`degrade_mild`: what a decent camera file looks like.

    A blur σ of 0 means no blur; ``jpeg_quality = None`` means no JPEG round trip.
    """

    blur_sigma: tuple[float, float] = (0.2, 1.5)
    noise_sigma: tuple[float, float] = (0.0, 4.0 / 255.0)
    jpeg_quality: tuple[int, int] | None = (60, 95)


# The light degradations the trainer can mix into a batch (``--mild-kind``): ``mild`` is
# the camera-file default; ``web`` the softer, noisier, harder-compressed files of phones
# and the web (a range around the ``real`` evaluation, which it does not pin);
# ``clean`` is the plain bicubic downscale of the ``bicubic`` evaluation —
# screenshots, renders, already-downscaled photos.
MILD_SPECS: dict[str, MildSpec] = {
    "mild": MildSpec(),
    "web": MildSpec(
        blur_sigma=(0.7, 1.8), noise_sigma=(1.0 / 255.0, 5.0 / 255.0), jpeg_quality=(50, 85)
    ),
    "clean": MildSpec(blur_sigma=(0.0, 0.0), noise_sigma=(0.0, 0.0), jpeg_quality=None),
}


def degrade_mild(
    hr: npt.NDArray[np.generic], scale: int, rng: np.random.Generator, spec: MildSpec = MildSpec()
) -> npt.NDArray[np.uint8]:
    """A light, randomised version of the ``real`` eval degradation.

    Gaussian blur (σ drawn from ``spec``), antialiased bicubic downscale by ``scale``,
    Gaussian colour noise, JPEG — the inputs most photographs actually are.  The
    second-order pipeline alone teaches a small model to smooth everything (it cannot
    tell mild inputs from heavily degraded ones the way the teacher can), so training
    mixes these in with the ground truth as target.
    """
    from pocketsr_cli.evaluation.degrade import jpeg_roundtrip

    img = to_float(hr)
    blur = float(rng.uniform(*spec.blur_sigma))
    if blur > 0:
        img = gaussian_blur(img, blur)
    lr = bicubic_downscale(img, scale)
    sigma = float(rng.uniform(*spec.noise_sigma))
    if sigma > 0:
        lr = lr + rng.standard_normal(lr.shape).astype(np.float32) * np.float32(sigma)
    if spec.jpeg_quality is None:
        return to_uint8(lr)
    quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
    return jpeg_roundtrip(to_uint8(lr), quality)


DEGRADATION_KINDS = ("second-order", *MILD_SPECS)
"""What a patch run or an online run may degrade with (:func:`degradation_config`)."""


def degradation_config(kind: str) -> DegradationConfig | MildSpec:
    """The degradation called ``kind``: ``second-order`` (Real-ESRGAN's pipeline,
    :data:`REAL_ESRGAN`) or a key of :data:`MILD_SPECS` (``mild``, ``clean``).

    Raises:
        ValueError: unknown kind.
    """
    if kind == "second-order":
        return REAL_ESRGAN
    if kind in MILD_SPECS:
        return MILD_SPECS[kind]
    raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATION_KINDS)}")
