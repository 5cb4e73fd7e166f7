"""Quality metrics as defined in docs/measurement.md.

Every function takes ``H×W×C`` uint8 or uint16 arrays (``C`` = 3 for RGB; ``C`` = 1 gray
is read as R = G = B; a fourth alpha channel is ignored) and returns a float.  The two
images of a pair may differ in depth: each is scaled by its own peak (255 or 65535) to the
8-bit range before anything else, so a 16-bit ground truth scores like its 8-bit rounding.

Choices, in the conventions of the super-resolution literature (Matlab ``rgb2ycbcr``, the
SSIM paper's reference code, BasicSR):

* **Y** is BT.601 luma in the "studio" range:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in [0, 255], so Y lies
  in [16, 235].  It is not rounded.
* **Border**: ``border`` pixels (default 4) are cut from every side of Y before any metric
  except :func:`lattice_ratio` (which windows its crop instead).
* **PSNR-Y**: ``10 log10(255² / MSE)``; ``inf`` for identical images.
* **SSIM-Y**: Wang et al. 2004 with an 11×11 Gaussian window, σ = 1.5, ``K1 = 0.01``,
  ``K2 = 0.03``, ``L = 255``; the statistics are computed only where the window fits
  entirely ("valid"), and the SSIM map is averaged.
* **Sharpness**: mean gradient magnitude of Y of the output ÷ that of the ground truth.
  The gradient is the forward difference on each axis,
  ``sqrt((Y[i, j+1] - Y[i, j])² + (Y[i+1, j] - Y[i, j])²)`` over the ``(H-1)×(W-1)`` pixels
  that have both neighbours: the finest operator there is, so it sees one-pixel texture
  that a Sobel filter would smooth away (and agrees with ``train.patches.gradient_energy``).
* **Detail, hf, bandcorr** (:func:`detail_scores`): where the output's fine structure
  lies, measured against the ground truth's — the three numbers that grain cannot
  fake.  ``detail`` is the output's spectral energy in the visible band 0.12–0.30
  cycles/pixel ÷ the ground truth's there, ``hf`` the same ratio above 0.30 cycles/pixel
  (grain), ``bandcorr`` the correlation of the difference-of-Gaussians (σ 0.7 and 1.5)
  band-passed images.  Mean gradient sharpness is kept for reference only: near-Nyquist
  grain raises it while the picture still looks blurred.
* **Lattice ratio**: see :func:`lattice_ratio`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

BORDER = 4
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
LATTICE_PERIOD = 8  # pixels: the lattice of ×8 pixel-shuffle steps and 8×8 blocks
LATTICE_OFFSET = 3  # bins, diagonally, to the reference amplitudes
MIN_LATTICE_SIDE = 4 * LATTICE_PERIOD

DETAIL_BAND = (0.12, 0.30)  # cycles/pixel: above ×4's input Nyquist, below pixel grain
BANDPASS_SIGMAS = (0.7, 1.5)  # difference of Gaussians of ``bandcorr``
GAUSS_TRUNCATE = 4.0  # kernel radius = int(truncate · σ + 0.5), as scipy.ndimage

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0


def _peak(img: npt.NDArray[np.generic]) -> float:
    if img.dtype == np.uint8:
        return 255.0
    if img.dtype == np.uint16:
        return 65535.0
    raise ValueError(f"expected uint8 or uint16 pixels, got {img.dtype}")


def luma(img: npt.NDArray[np.generic]) -> F64:
    """BT.601 studio-range Y (in [16, 235]) of an ``H×W×C`` uint8/uint16 image, float64.

    Raises:
        ValueError: not ``H×W×C`` with ``C`` in 1..4, or not uint8/uint16.
    """
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an H×W×C image with C in 1..4, got shape {img.shape}")
    rgb = img[..., :1] if img.shape[2] in (1, 2) else img[..., :3]
    x = rgb.astype(np.float64) * (255.0 / _peak(img))
    if rgb.shape[2] == 1:
        return 16.0 + x[..., 0] * _Y_WEIGHTS.sum()
    return 16.0 + x @ _Y_WEIGHTS


def _shave(y: F64, border: int) -> F64:
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if min(y.shape) <= 2 * border:
        raise ValueError(
            f"a {y.shape[1]}×{y.shape[0]} image has nothing left inside a {border}-px border"
        )
    return y[border : y.shape[0] - border, border : y.shape[1] - border]


def _pair(
    out: npt.NDArray[np.generic], gt: npt.NDArray[np.generic], border: int
) -> tuple[F64, F64]:
    if out.shape[:2] != gt.shape[:2]:
        raise ValueError(
            f"output {out.shape[1]}×{out.shape[0]} and ground truth "
            f"{gt.shape[1]}×{gt.shape[0]} differ in size"
        )
    return _shave(luma(out), border), _shave(luma(gt), border)


def psnr_y(
    out: npt.NDArray[np.generic], gt: npt.NDArray[np.generic], border: int = BORDER
) -> float:
    """PSNR (dB) of the Y channels, peak 255, ``border`` px shaved; ``inf`` when identical.

    Raises:
        ValueError: sizes differ, or bad shapes/dtypes (see :func:`luma`).
    """
    a, b = _pair(out, gt, border)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int, sigma: float) -> F64:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim_y(
    out: npt.NDArray[np.generic], gt: npt.NDArray[np.generic], border: int = BORDER
) -> float:
    """Mean SSIM of the Y channels (Gaussian 11×11 window, σ 1.5, valid region only).

    1.0 for identical images.

    Raises:
        ValueError: sizes differ, the shaved image is smaller than the window, or bad
            shapes/dtypes.
    """
    a, b = _pair(out, gt, border)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels after the border")
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    cut = SSIM_WINDOW // 2

    def blur(x: F64) -> F64:
        # The border mode does not matter: only the valid part is kept.
        full = cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
        return np.asarray(full[cut:-cut, cut:-cut], dtype=np.float64)

    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())


def gradient_magnitude(y: F64) -> float:
    """Mean forward-difference gradient magnitude of a 2-D array (see the module docstring)."""
    gx = y[:-1, 1:] - y[:-1, :-1]
    gy = y[1:, :-1] - y[:-1, :-1]
    return float(np.mean(np.sqrt(gx * gx + gy * gy)))


def sharpness(
    out: npt.NDArray[np.generic], gt: npt.NDArray[np.generic], border: int = BORDER
) -> float:
    """Mean gradient magnitude of Y of ``out`` ÷ that of ``gt`` (1.0 for ``gt`` itself).

    Below 1: smoother than the ground truth (bicubic ×4 ≈ 0.4); above 1: more edges or
    noise than it has.  ``nan`` when the ground truth is perfectly flat.

    Raises:
        ValueError: sizes differ, or bad shapes/dtypes.
    """
    a, b = _pair(out, gt, border)
    reference = gradient_magnitude(b)
    return math.nan if reference == 0.0 else gradient_magnitude(a) / reference


def band_energies(y: F64) -> tuple[float, float]:
    """Spectral energy of ``y`` in :data:`DETAIL_BAND` and above it: ``(band, high)``.

    The procedure: the mean is removed, the top-left ``N×N`` square is kept
    (``N`` = the short side), multiplied by a 2-D Hann window (``np.hanning``, symmetric),
    and the squared FFT magnitudes are summed over radial frequency
    ``0.12 < r ≤ 0.30`` and ``r > 0.30`` cycles/pixel.
    """
    x = y - y.mean()
    n = min(x.shape)
    x = x[:n, :n]
    window = np.hanning(n)
    power = np.abs(np.fft.fft2(x * np.outer(window, window))) ** 2
    f = np.fft.fftfreq(n)
    radius = np.hypot(*np.meshgrid(f, f))
    low, high = DETAIL_BAND
    return float(power[(radius > low) & (radius <= high)].sum()), float(power[radius > high].sum())


def gaussian_filter(y: F64, sigma: float) -> F64:
    """Gaussian blur of a 2-D array, ``scipy.ndimage.gaussian_filter``'s defaults
    (radius ``int(4σ + 0.5)``, mirror-reflected borders ``dcba|abcd``)."""
    radius = int(GAUSS_TRUNCATE * sigma + 0.5)
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (r / sigma) ** 2)
    g /= g.sum()
    out = cv2.sepFilter2D(y, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
    return np.asarray(out, dtype=np.float64)


def detail_scores(
    out: npt.NDArray[np.generic], gt: npt.NDArray[np.generic], border: int = BORDER
) -> tuple[float, float, float]:
    """``(detail, hf, bandcorr)`` of ``out`` against ``gt`` (see the module docstring).

    ``detail`` and ``hf`` are 1.0 for the ground truth itself; a blur drives both towards
    0, added fine noise raises ``hf`` far above ``detail``.  ``bandcorr`` is 1.0 for the
    ground truth, about 0.35 for bicubic ×4 and 0 for detail unrelated to the truth's.
    Any of the three is ``nan`` when the ground truth has no energy where it is measured.

    Raises:
        ValueError: sizes differ, or bad shapes/dtypes.
    """
    b, a = _pair(out, gt, border)
    (band_a, high_a), (band_b, high_b) = band_energies(a), band_energies(b)
    detail = band_b / band_a if band_a > 0 else math.nan
    hf = high_b / high_a if high_a > 0 else math.nan
    s1, s2 = BANDPASS_SIGMAS
    da = gaussian_filter(a, s1) - gaussian_filter(a, s2)
    db = gaussian_filter(b, s1) - gaussian_filter(b, s2)
    norm = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    corr = float((da * db).sum()) / norm if norm > 0 else math.nan
    return detail, hf, corr


def lattice_crop(height: int, width: int, crop: int | None = None) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centred square :func:`lattice_ratio` analyses.

    ``crop=None`` takes the largest square whose side is a multiple of 8 that fits;
    ``crop=N`` asks for side ``N`` (a multiple of 8, at most the short side).

    Raises:
        ValueError: the side is not a multiple of 8, is below 32 or does not fit.
    """
    side = (min(height, width) // LATTICE_PERIOD) * LATTICE_PERIOD if crop is None else crop
    if side % LATTICE_PERIOD:
        raise ValueError(
            f"the lattice crop side must be a multiple of {LATTICE_PERIOD}, got {side}"
        )
    if side < MIN_LATTICE_SIDE:
        raise ValueError(
            f"the lattice ratio needs a square of at least {MIN_LATTICE_SIDE} px, "
            f"got {side} (image {width}×{height})"
        )
    if side > min(height, width):
        raise ValueError(f"a {side}-px square does not fit in a {width}×{height} image")
    return (height - side) // 2, (width - side) // 2, side


def lattice_ratio(img: npt.NDArray[np.generic], crop: int | None = None) -> float:
    """How much energy sits on the 8-pixel lattice frequencies, relative to their neighbours.

    Steps (the definition, with every free choice fixed):

    1. Y of ``img`` (:func:`luma`), no border shaved;
    2. the centred ``N×N`` square of :func:`lattice_crop` (``N`` a multiple of 8, so that
       an 8-pixel period falls exactly on FFT bins);
    3. its mean subtracted (keeps the window's DC leakage off bins next to DC), multiplied
       by a 2-D periodic Hann window (outer product of ``0.5 - 0.5 cos(2πn/N)``);
    4. ``A`` = amplitude of the 2-D FFT;
    5. for each of the 63 lattice frequencies ``(u, v) = (i·N/8, j·N/8)``, ``i, j`` in 0..7,
       not both 0, the ratio of ``A[u, v]`` to the mean of ``A`` at the four diagonal
       neighbours ``(u ± 3, v ± 3)`` (indices modulo ``N``);
    6. the result is the mean of those 63 ratios.

    Natural photos score about 1–1.5; pixel-shuffle checkerboards, 8×8 block artefacts
    and grids raise it well above 2.

    Args:
        img: ``H×W×C`` uint8/uint16.
        crop: side of the centred square; ``None``: the largest multiple of 8 that fits.

    Raises:
        ValueError: bad shapes/dtypes, or a square smaller than 32 px (see
            :func:`lattice_crop`).
    """
    y = luma(img)
    top, left, n = lattice_crop(y.shape[0], y.shape[1], crop)
    square = y[top : top + n, left : left + n]
    square = square - square.mean()
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    amplitude = np.abs(np.fft.fft2(square * np.outer(hann, hann)))
    step = n // LATTICE_PERIOD
    grid = np.arange(LATTICE_PERIOD) * step
    u, v = (a.ravel()[1:] for a in np.meshgrid(grid, grid, indexing="ij"))  # [0] is DC
    k = LATTICE_OFFSET
    neighbours = np.mean(
        [amplitude[(u + du) % n, (v + dv) % n] for du in (-k, k) for dv in (-k, k)], axis=0
    )
    # A perfectly smooth synthetic image can have (numerically) zero amplitude at both; the
    # floor keeps such bins at a ratio of about 1 instead of 0/0.
    floor = 1e-12 * max(float(amplitude.max()), 1e-300)
    return float(np.mean((amplitude[u, v] + floor) / (neighbours + floor)))
