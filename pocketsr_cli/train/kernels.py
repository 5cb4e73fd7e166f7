"""Blur kernels of the Real-ESRGAN degradation model, and their random sampling.

All kernels are square, odd-sized, float64 and sum to one.  Written from the kernel
definitions in the Real-ESRGAN paper (Wang et al., ICCVW 2021, section 3.1):

* Gaussian: ``exp(-0.5 * xᵀ Σ⁻¹ x)`` with ``Σ = R(θ) diag(σx², σy²) R(θ)ᵀ``
  (isotropic when ``σx == σy``);
* generalised Gaussian: ``exp(-0.5 * (xᵀ Σ⁻¹ x) ** β)`` (β < 1 heavier tails, β > 1 flatter top);
* plateau: ``1 / (1 + (xᵀ Σ⁻¹ x) ** β)``;
* sinc: the ideal circular low-pass filter ``ω J₁(ω r) / (2π r)`` with cutoff ω (radians per
  pixel), which reproduces ringing and overshoot artefacts.

Every kernel above is point-symmetric (``k[i, j] == k[-i, -j]``), so correlation (what
``cv2.filter2D`` computes) and convolution give the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Kernel = npt.NDArray[np.float64]
KernelType = Literal[
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"
]
KERNEL_TYPES: tuple[KernelType, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)

_J1_NODES = 256  # midpoint nodes; the integrand is periodic, so the error decays exponentially


def bessel_j1(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Bessel function of the first kind, order one, for ``|x| <= ~100``.

    Evaluated from Bessel's integral ``J₁(x) = (1/π) ∫₀^π cos(τ - x sin τ) dτ`` by the
    midpoint rule (exact to ~1e-15 in that range), so that numpy is the only dependency.
    """
    xs = np.asarray(x, dtype=np.float64)
    tau = (np.arange(_J1_NODES, dtype=np.float64) + 0.5) * (math.pi / _J1_NODES)
    values = np.cos(tau - xs[..., None] * np.sin(tau)).mean(axis=-1)
    return np.asarray(values, dtype=np.float64)


def _grid(size: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    r = np.arange(size, dtype=np.float64) - size // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    return yy, xx


def _normalised(k: npt.NDArray[np.float64]) -> Kernel:
    return np.asarray(k / k.sum(), dtype=np.float64)


def mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, theta: float) -> Kernel:
    """``xᵀ Σ⁻¹ x`` on a ``size``×``size`` grid centred on the middle pixel.

    Σ has standard deviations ``sigma_x`` along the direction at angle ``theta`` (radians,
    from the x axis) and ``sigma_y`` across it.
    """
    yy, xx = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u = c * xx + s * yy  # coordinates in the rotated frame
    v = -s * xx + c * yy
    return np.asarray((u / sigma_x) ** 2 + (v / sigma_y) ** 2, dtype=np.float64)


def gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, beta: float = 1.0
) -> Kernel:
    """(Generalised) Gaussian kernel; ``beta == 1`` is the ordinary Gaussian."""
    return _normalised(np.exp(-0.5 * mahalanobis_sq(size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, beta: float = 1.0
) -> Kernel:
    """Plateau-shaped kernel ``1 / (1 + d² ** beta)``."""
    return _normalised(1.0 / (1.0 + mahalanobis_sq(size, sigma_x, sigma_y, theta) ** beta))


def sinc_kernel(size: int, omega: float) -> Kernel:
    """Ideal circular low-pass (2-D "sinc", Airy pattern) with cutoff ``omega`` rad/pixel."""
    if not 0.0 < omega <= math.pi:
        raise ValueError(f"sinc cutoff must be in (0, pi], got {omega}")
    yy, xx = _grid(size)
    r = np.hypot(yy, xx)
    safe = np.where(r == 0, 1.0, r)
    k = np.where(
        r == 0, omega**2 / (4 * math.pi), omega * bessel_j1(omega * safe) / (2 * math.pi * safe)
    )
    return _normalised(k)


@dataclass(frozen=True)
class BlurSpec:
    """Distribution of one blur stage's kernel.

    Attributes:
        sizes: kernel sizes drawn uniformly (odd).
        type_probs: probabilities of :data:`KERNEL_TYPES`, in that order.
        sigma: range of σ (each of σx, σy for anisotropic kernels).
        beta_generalized: range of β for generalised Gaussians; half the draws come from
            ``[lo, 1]`` and half from ``[1, hi]`` so both tail shapes are equally common.
        beta_plateau: range of β for plateau kernels.
        sinc_prob: probability of a sinc kernel instead of the types above.
    """

    sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    type_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    beta_generalized: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1


def random_sinc_kernel(rng: np.random.Generator, sizes: tuple[int, ...]) -> Kernel:
    """A sinc kernel of random size; small kernels get cutoffs of at least π/3."""
    size = int(rng.choice(sizes))
    low = math.pi / 3 if size < 13 else math.pi / 5  # too low a cutoff on a small grid is a box
    return sinc_kernel(size, float(rng.uniform(low, math.pi)))


def random_blur_kernel(rng: np.random.Generator, spec: BlurSpec) -> Kernel:
    """Draw one kernel from ``spec`` (all randomness from ``rng``, in a fixed order)."""
    if rng.random() < spec.sinc_prob:
        return random_sinc_kernel(rng, spec.sizes)
    size = int(rng.choice(spec.sizes))
    kind = KERNEL_TYPES[int(rng.choice(len(KERNEL_TYPES), p=np.asarray(spec.type_probs)))]
    sigma_x = float(rng.uniform(*spec.sigma))
    if kind.endswith("aniso"):
        sigma_y = float(rng.uniform(*spec.sigma))
        theta = float(rng.uniform(-math.pi, math.pi))
    else:
        sigma_y, theta = sigma_x, 0.0
    if kind.startswith("generalized"):
        lo, hi = spec.beta_generalized
        beta = float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))
        return gaussian_kernel(size, sigma_x, sigma_y, theta, beta)
    if kind.startswith("plateau"):
        beta = float(rng.uniform(*spec.beta_plateau))
        return plateau_kernel(size, sigma_x, sigma_y, theta, beta)
    return gaussian_kernel(size, sigma_x, sigma_y, theta)
