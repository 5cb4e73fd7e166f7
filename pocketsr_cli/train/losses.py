"""Training losses for distilling a small generator from the Real-ESRGAN teacher.

docs/measurement.md records why plain L1 is not enough (it averages away texture a small
model cannot predict: sharpness 0.39 vs the teacher's 0.74) and why a bare GAN is not
either (an 8-pixel pixel-shuffle grid, lattice ratio 14).  So the generator objective combines:

* ``l1``: to the ground truth and to the teacher's output (fidelity, distillation);
* :class:`TeacherPerceptual`: L1 between early features of the *teacher network itself*
  (its first convolution and the first two convolutions of its first dense block) on the
  output and on the target — the teacher is the only perceptual network available offline;
* :func:`amplitude_loss`: L1 between Fourier amplitude spectra.  Being blind to phase, it
  rewards texture of the right energy where pixel L1 rewards a blur;
* :func:`lattice_loss`: GenDR-Pix's masked Fourier term as a ceiling — amplitude in excess
  of the target's, only at the frequencies where a period-8 grid lives (multiples of N/8);
* :func:`masked_fourier_loss`: the paper's L1 between amplitudes at those bins, taken
  where the output's exceeds the target's by a margin (the outliers), for any crop size;
* :class:`PatchDiscriminator` with :func:`hinge_d_loss` / :func:`hinge_g_loss`: a small
  spectral-norm patch discriminator; inputs are shifted by ``rand_pad`` (GenDR-Pix's
  RandPad) so it cannot key on the phase of a grid.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.evaluation.metrics import BANDPASS_SIGMAS


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (a - b).abs().mean()


def amplitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Amplitude of the orthonormal 2-D real FFT over the last two axes (fp32)."""
    return torch.fft.rfft2(x.float(), norm="ortho").abs()


def amplitude_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the 2-D Fourier amplitude spectra of ``out`` and ``target`` (per channel)."""
    return (amplitude_spectrum(out) - amplitude_spectrum(target)).abs().mean()


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """Separable Gaussian blur of ``N×C×H×W`` images, ``2·radius + 1`` taps, reflect padding
    (clamped to what the image allows)."""
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(taps**2) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    ph, pw = min(radius, x.shape[-2] - 1), min(radius, x.shape[-1] - 1)
    x = F.pad(x, (pw, pw, 0, 0), mode="reflect")
    x = F.conv2d(x, k[radius - pw : radius + pw + 1].view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.pad(x, (0, 0, ph, ph), mode="reflect")
    return F.conv2d(
        x, k[radius - ph : radius + ph + 1].view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )


def high_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` minus its Gaussian blur of ``sigma`` (per channel): zero on flat areas and
    smooth gradients, the texture and edges above that scale otherwise."""
    return x - gaussian_blur(x, sigma, max(1, int(_SIGMA_RADIUS * sigma + 0.5)))


def usm_sharpen(
    img: torch.Tensor,
    weight: float = 0.5,
    radius: int = 50,
    threshold: float = 10 / 255,
    sigma: float | None = None,
) -> torch.Tensor:
    """Unsharp masking of images in [0, 1]; the defaults are Real-ESRGAN's ``USMSharp``.

    ``img + weight·(img − blur)`` where the residual exceeds ``threshold``, blended in
    through a blurred mask (so flat and noisy areas are left alone); ``threshold = 0``
    sharpens everywhere.  The blur is a ``2·radius + 1``-tap Gaussian with OpenCV's sigma
    for that size, or, given ``sigma``, that sigma over ``ceil(3·sigma)`` taps each side
    (``radius`` is then ignored).  Real-ESRGAN x4plus — our teacher — was trained towards
    such targets; they ask for crisper edges that a small network can predict, where plain
    L1 to the ground truth asks for the blur.
    """
    if sigma is None:
        size = 2 * radius + 1
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    else:
        if sigma <= 0:
            raise ValueError(f"USM sigma must be positive, got {sigma}")
        radius = max(1, math.ceil(3 * sigma))
    residual = img - gaussian_blur(img, sigma, radius)
    sharp = (img + weight * residual).clamp(0, 1)
    if threshold <= 0:
        return sharp
    mask = (residual.abs() > threshold).to(img.dtype)
    soft = gaussian_blur(mask, sigma, radius)
    return soft * sharp + (1 - soft) * img


def gradient_magnitude(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel forward-difference gradient magnitude of ``N×C×H×W`` images.

    The operator of the sharpness metric, per channel: ``sqrt(dx² + dy²)`` over the
    ``(H-1)×(W-1)`` pixels that have both neighbours.  ``eps`` keeps the square root
    differentiable in flat regions.
    """
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return torch.sqrt(dx * dx + dy * dy + eps)


def gradient_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the gradient-magnitude maps of ``out`` and ``target`` (SPSR-style).

    Blind to the sign and direction of an edge within a pixel, so it asks for texture of
    the right strength in the right place without the averaging that plain L1 falls into.
    """
    return (gradient_magnitude(out) - gradient_magnitude(target)).abs().mean()


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of ``N×3×H×W`` RGB in [0, 1] (gray inputs pass through), ``N×1×H×W``."""
    if x.shape[1] != 3:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def texture_loss(
    out: torch.Tensor, target: torch.Tensor, window: int = 8, quantile: float = 0.5
) -> torch.Tensor:
    """Pinball loss between the *local means* of luma gradient magnitude over ``window``-px
    tiles, doubled so that ``quantile`` 0.5 is their L1 distance.

    Pixel L1 (and :func:`gradient_loss`) ask for each gradient at its exact place, so what
    the LR does not determine averages to a blur.  Here only the amount of gradient in a
    tile must match the target's — the sharpness measure, applied locally — so a
    texture of the right strength pays nothing for its phase.  Flat tiles of the target
    still ask for flat output, which keeps noise out of skies and walls.  Where the LR
    cannot tell how much texture a tile had, the loss is minimised by that ``quantile`` of
    the possible amounts: above 0.5 it leans towards too much texture rather than too little.
    Texture grows from the variation the output already has: at an exactly flat output the
    gradient of this loss is zero.
    """
    g_out = F.avg_pool2d(gradient_magnitude(luma(out)), window)
    g_target = F.avg_pool2d(gradient_magnitude(luma(target)), window)
    return _pinball(g_target - g_out, quantile)


def _pinball(short: torch.Tensor, quantile: float) -> torch.Tensor:
    """Mean pinball loss of ``short`` (= target - output), doubled: L1 at quantile 0.5."""
    if not 0 < quantile < 1:
        raise ValueError(f"texture quantile must be in (0, 1), got {quantile}")
    return 2 * torch.maximum(quantile * short, (quantile - 1) * short).mean()


VISIBLE_BAND_SIGMAS = BANDPASS_SIGMAS  # the bandcorr band: about 0.1-0.3 cycles/px
_SIGMA_RADIUS = 4.0  # taps out to 4 sigma, as scipy and the eval metrics


def visible_band(x: torch.Tensor) -> torch.Tensor:
    """Difference of Gaussians (σ 0.7 minus σ 1.5) of the luma: the detail a viewer sees at
    100 %, above a ×4 input's Nyquist limit and below pixel grain (the ``bandcorr`` band)."""
    y = luma(x)
    fine, coarse = VISIBLE_BAND_SIGMAS
    return gaussian_blur(y, fine, int(_SIGMA_RADIUS * fine + 0.5)) - gaussian_blur(
        y, coarse, int(_SIGMA_RADIUS * coarse + 0.5)
    )


def above_band(x: torch.Tensor) -> torch.Tensor:
    """Luma minus its σ 0.7 blur: what lies above the visible band (grain, pixel noise)."""
    y = luma(x)
    fine = VISIBLE_BAND_SIGMAS[0]
    return y - gaussian_blur(y, fine, int(_SIGMA_RADIUS * fine + 0.5))


def band_texture_loss(
    out: torch.Tensor,
    target: torch.Tensor,
    window: int = 16,
    quantile: float = 0.5,
    gain: float = 1.0,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`texture_loss` restricted to the visible band: the mean magnitude of
    :func:`visible_band` per ``window``-px tile must match the target's, times ``gain``.

    Like :func:`texture_loss` it does not care where inside a tile the detail lies, so
    detail the LR does not place exactly is not averaged away; unlike it, grain (which
    lies above the band) earns nothing — pair it with :func:`hf_excess_loss`.  A ``gain``
    above 1 asks for more band than the target has: a student that matches the teacher's
    band on its training patches falls short of it on photos it has not seen.  ``keep``
    (``N×1×H×W`` in [0, 1]) weighs each pixel's band in both: 0 leaves it out, as
    :func:`edge_zone`'s complement leaves out the pixels around strong edges, where a
    target's band is its halo.
    """
    a, b = visible_band(out).abs(), visible_band(target).abs()
    if keep is not None:
        a, b = a * keep, b * keep
    e_out = F.avg_pool2d(a, window)
    e_target = gain * F.avg_pool2d(b, window)
    return _pinball(e_target - e_out, quantile)


def low_pass_l1(
    out: torch.Tensor, target: torch.Tensor, sigma: float = VISIBLE_BAND_SIGMAS[1]
) -> torch.Tensor:
    """L1 between Gaussian blurs (``sigma``, default the visible band's coarse edge) of
    ``out`` and ``target``, per channel: colour, shading and edge positions — what the LR
    determines — without asking for the band's detail at an exact phase, which pixel L1
    pays for by averaging it away."""
    radius = int(_SIGMA_RADIUS * sigma + 0.5)
    return l1(gaussian_blur(out, sigma, radius), gaussian_blur(target, sigma, radius))


def band_correlation_loss(
    out: torch.Tensor, target: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """One minus the correlation of :func:`visible_band` of ``out`` and ``target``, per
    image, averaged over the batch: the ``bandcorr`` as a loss.

    Blind to the band's overall strength (a scaled band scores the same), so unlike L1 it
    does not reward shrinking detail the LR places only roughly; pair it with
    :func:`band_texture_loss`, which sets the strength per tile.  Near-flat images (no band
    energy in the target) contribute nothing.
    """
    a = visible_band(out).flatten(1)
    b = visible_band(target).flatten(1)
    energy = (a * a).sum(1) * (b * b).sum(1)
    corr = (a * b).sum(1) / torch.sqrt(energy + eps)
    weight = (energy > eps).to(out.dtype)
    return ((1 - corr) * weight).sum() / weight.sum().clamp(min=1)


def hf_excess_loss(out: torch.Tensor, target: torch.Tensor, window: int = 16) -> torch.Tensor:
    """Mean magnitude of :func:`above_band` per tile beyond the target's (zero when at or
    below it): grain and near-Nyquist noise the target does not have."""
    e_out = F.avg_pool2d(above_band(out).abs(), window)
    e_target = F.avg_pool2d(above_band(target).abs(), window)
    return F.relu(e_out - e_target).mean()


HALO_WINDOW = 5  # output pixels: the ring_sweep halo measure's window
HALO_EDGE = 40 / 255  # the ground truth's luma span that makes a strong edge there


def local_range(y: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum and maximum of ``y`` (``N×1×H×W``) over the ``window`` x ``window``
    pixels around each pixel (odd ``window``; cut at the borders), each ``N×1×H×W``."""
    pad = window // 2
    return -F.max_pool2d(-y, window, 1, pad), F.max_pool2d(y, window, 1, pad)


def edge_zone(gt: torch.Tensor, window: int = 9, edge: float = HALO_EDGE) -> torch.Tensor:
    """1 where ``gt``'s luma spans more than ``edge`` over the ``window`` x ``window``
    pixels around (within ``window // 2`` px of a strong edge), else 0: ``N×1×H×W``."""
    lo, hi = local_range(luma(gt), window)
    return (hi - lo > edge).to(gt.dtype)


def without_halo(
    target: torch.Tensor, gt: torch.Tensor, window: int = HALO_WINDOW, edge: float = HALO_EDGE
) -> torch.Tensor:
    """``target`` (a teacher's output) with its halos taken off: where ``gt`` has a strong
    edge (:func:`halo_loss`'s mask), its luma is moved into ``gt``'s ``window`` x
    ``window`` [min, max], R, G and B by the same amount; elsewhere it is unchanged."""
    y = luma(target)
    lo, hi = local_range(luma(gt), window)
    shift = torch.minimum(torch.maximum(y, lo), hi) - y
    return target + shift * ((hi - lo) > edge).to(target.dtype)


def halo_loss(
    out: torch.Tensor,
    gt: torch.Tensor,
    window: int = HALO_WINDOW,
    edge: float = HALO_EDGE,
) -> torch.Tensor:
    """How far the output's luma leaves the ground truth's local range next to strong
    edges: bright rims above the ``window`` × ``window`` maximum and dark outlines below
    the minimum, mean over the pixels where the ground truth's luma spans more than
    ``edge`` in that window (``scripts/ring_sweep.py``'s halo measure as a loss).

    Texture and the edge itself cost nothing as long as they stay inside the range the
    ground truth has around them, so only the overshoot a viewer sees as a halo pays; a
    batch with no strong edge contributes zero.
    """
    y = luma(out)
    lo, hi = local_range(luma(gt), window)
    mask = ((hi - lo) > edge).to(out.dtype)
    excess = F.relu(y - hi) + F.relu(lo - y)
    return (excess * mask).sum() / mask.sum().clamp(min=1)


def lattice_mask(
    height: int, width: int, period: int = 8, device: torch.device | None = None
) -> torch.Tensor:
    """``(H, W//2+1)`` boolean mask of the rfft2 bins at multiples of ``N/period`` (DC off).

    A pattern repeating every ``period`` pixels has all its energy there.
    """
    fy = torch.fft.fftfreq(height, device=device) * period
    fx = torch.fft.rfftfreq(width, device=device) * period
    on_y = (fy - fy.round()).abs() < 1e-6
    on_x = (fx - fx.round()).abs() < 1e-6
    mask = on_y[:, None] & on_x[None, :]
    mask[0, 0] = False
    return mask


def lattice_loss(out: torch.Tensor, target: torch.Tensor, period: int = 8) -> torch.Tensor:
    """Mean amplitude of ``out`` above ``target``'s at the period-``period`` lattice bins."""
    h, w = out.shape[-2:]
    mask = lattice_mask(h, w, period, out.device)
    excess = F.relu(amplitude_spectrum(out) - amplitude_spectrum(target))
    return excess[..., mask].mean()


def nearest_lattice_mask(
    height: int, width: int, period: int = 8, device: torch.device | None = None
) -> torch.Tensor:
    """``(H, W//2+1)`` boolean mask of the rfft2 bins *nearest* to the frequencies
    ``(i/period, j/period)`` cycles per pixel (DC off): :func:`lattice_mask` for any size
    (the same mask when both sides are multiples of ``period``), since a crop need not be
    one."""
    rows = torch.zeros(height, dtype=torch.bool, device=device)
    cols = torch.zeros(width // 2 + 1, dtype=torch.bool, device=device)
    for k in range(period):
        rows[round(k * height / period) % height] = True
        col = round(k * width / period)
        if col <= width // 2:
            cols[col] = True
    mask = rows[:, None] & cols[None, :]
    mask[0, 0] = False
    return mask


def masked_fourier_loss(
    out: torch.Tensor, target: torch.Tensor, period: int = 8, margin: float = 0.5
) -> torch.Tensor:
    """GenDR-Pix's masked Fourier loss (arXiv 2602.10630, its second training stage; see
    ``PAPERS.md``): L1 on the Fourier amplitude spectrum at the frequencies where a
    ×``period`` pixel-shuffle produces periodic artefacts.

    The mask: the bins nearest to the multiples of ``1/period`` cycles per pixel on each
    axis (:func:`nearest_lattice_mask`: where an 8×8 pattern stamped on every block puts
    all its energy, for a crop of any size), and of those only the outliers, where the
    output's amplitude exceeds the target's by more than ``margin`` (0.5: half again).
    There the term is ``|A_out − A_target|``, per channel, summed and divided by the
    number of lattice bins, so it is zero for an output with no excess on the grid.

    Why only the excess: the paper's L1 read at every lattice bin also charges an output
    for having *less* amplitude there than the target, and amplitude is blind to phase,
    so a smooth output under a detailed target is pushed to add energy at exactly those
    frequencies, in whatever phase: a grid.  On the toy of ``tests/test_trainer.py`` (a
    3×3 conv plus an 8×8 bias through a pixel shuffle, restoring a blurred input, no
    pattern at the start, 40 SGD steps) that two-sided reading took the lattice ratio
    from 1.2 (L1 alone) to 25, the excess rule to 2.1; with an 8×8 pattern at the start
    and noisy inputs, L1 alone left 6.5 and L1 plus this term 1.0.
    :func:`lattice_loss` is the same idea without the margin, on exact bins only.
    """
    h, w = out.shape[-2:]
    mask = nearest_lattice_mask(h, w, period, out.device)
    a_out = amplitude_spectrum(out)[..., mask]
    a_target = amplitude_spectrum(target)[..., mask]
    outlier = (a_out > (1.0 + margin) * a_target).to(a_out.dtype)
    return ((a_out - a_target).abs() * outlier).mean()


def _tiles(x: torch.Tensor, window: int) -> torch.Tensor:
    """``N×C×H×W`` cut into non-overlapping ``window``-px tiles (the remainder dropped),
    ``(N·tiles)×C×window×window``."""
    c, h, w = x.shape[1:]
    x = x[..., : h - h % window, : w - w % window]
    x = x.unfold(2, window, window).unfold(3, window, window)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, window, window)


def spectrum_excess_loss(out: torch.Tensor, target: torch.Tensor, band: int = 8) -> torch.Tensor:
    """Luma Fourier amplitude of ``out`` in excess of ``target``'s, per ``band``×``band`` block
    of frequency bins.

    A ceiling on the spectral envelope: texture may be added up to the target's energy in
    each band, but not piled into a few frequencies — the checkerboards and meshes a
    generator pushed for gradient reaches first, even when their strength follows the
    content and spreads them over neighbouring bins.
    """

    def envelope(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(amplitude_spectrum(luma(x)), band, ceil_mode=True)

    return F.relu(envelope(out) - envelope(target)).mean()


def phase_imbalance(x: torch.Tensor, period: int = 4, window: int = 32) -> torch.Tensor:
    """How unevenly luma gradient is spread over the ``period`` sub-pixel phases, per tile.

    A sub-pixel head pushed for texture tends to draw each input pixel as its own block:
    gradient piles up on the block borders (one phase of every ``period``) and the output
    shows a mesh at the input's pixel pitch — which the exact-bin :func:`lattice_loss` misses
    when its strength follows the content.  For every ``window``-px tile this is the mean
    absolute deviation of the per-phase mean ``|dx|`` (by column phase) and ``|dy|`` (by row
    phase) from their average; photos score near zero.  Returns ``(N·tiles,)``.
    """
    tiles = _tiles(luma(x), window)
    dx = (tiles[..., :, 1:] - tiles[..., :, :-1]).abs()
    dy = (tiles[..., 1:, :] - tiles[..., :-1, :]).abs()
    by_col = torch.stack([dx[..., p::period].mean(dim=(-3, -2, -1)) for p in range(period)], -1)
    by_row = torch.stack([dy[..., p::period, :].mean(dim=(-3, -2, -1)) for p in range(period)], -1)
    spread = [(e - e.mean(-1, keepdim=True)).abs().mean(-1) for e in (by_col, by_row)]
    return spread[0] + spread[1]


def mesh_loss(
    out: torch.Tensor, target: torch.Tensor, period: int = 4, window: int = 32
) -> torch.Tensor:
    """Mean :func:`phase_imbalance` of ``out`` in excess of ``target``'s, per tile."""
    excess = phase_imbalance(out, period, window) - phase_imbalance(target, period, window)
    return F.relu(excess).mean()


class TeacherPerceptual(nn.Module):
    """Feature-matching loss on the first layers of the (frozen) teacher RRDBNet.

    Takes spandrel's ESRGAN module (``model[0]`` is the first convolution, ``model[1].sub[0]``
    the first RRDB) and compares three feature maps of output and target with L1, each
    normalised by the target's mean magnitude so the layers weigh alike.  ``crop`` limits
    the cost to a centred window (these layers run at output resolution).
    """

    def __init__(self, teacher: nn.Module, crop: int | None = 64) -> None:
        super().__init__()
        body: Any = teacher.model
        rdb = body[1].sub[0].RDB1
        self.first: nn.Module = body[0]
        self.conv1: nn.Module = rdb.conv1
        self.conv2: nn.Module = rdb.conv2
        self.crop = crop
        for p in self.parameters():
            p.requires_grad_(False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        f0 = self.first(x)
        f1 = self.conv1(f0)
        f2 = self.conv2(torch.cat([f0, f1], dim=1))
        return [f0, f1, f2]

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop is None:
            return x
        h, w = x.shape[-2:]
        c = min(self.crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        return x[..., top : top + c, left : left + c]

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            want = self._features(self._centre(target))
        got = self._features(self._centre(out))
        terms = [
            (g - t).abs().mean() / (t.abs().mean() + 1e-6) for g, t in zip(got, want, strict=True)
        ]
        return torch.stack(terms).mean()


class PatchDiscriminator(nn.Module):
    """A small spectral-norm PatchGAN: one real/fake logit per ~40-pixel receptive field.

    The first layer already has stride 2: on a CPU budget a full-resolution first layer
    cost as much as the generator itself.  ``in_channels`` 3·s² with ``first_stride`` 1
    judges a window pixel-unshuffled by s (:func:`phase_view`): the same receptive field
    in output pixels, each sub-pixel phase in its own channels.  Its input sides must be at
    least :attr:`min_side` (each stride-2 layer halves them).
    """

    def __init__(
        self, channels: int = 32, layers: int = 3, in_channels: int = 3, first_stride: int = 2
    ) -> None:
        super().__init__()
        self.min_side = 2 ** (layers - 1 + (first_stride == 2))
        sn = nn.utils.parametrizations.spectral_norm
        first = nn.Conv2d(in_channels, channels, 4 if first_stride == 2 else 3, first_stride, 1)
        blocks: list[nn.Module] = [sn(first), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(layers - 1):
            blocks += [sn(nn.Conv2d(c, c * 2, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c *= 2
        blocks += [sn(nn.Conv2d(c, c, 3, 1, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(c, 1, 3, 1, 1))]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def phase_view(x: torch.Tensor, period: int) -> torch.Tensor:
    """``x`` pixel-unshuffled by ``period``: each of the period² sub-pixel phases of the
    output grid as its own 3 channels, at 1/period of the size.  A pattern locked to the
    input's pixel pitch becomes a fixed difference between channels, which a 1×1 filter
    sees anywhere in the window; natural texture falls on every phase alike."""
    return F.pixel_unshuffle(x, period)


def random_crop(
    x: torch.Tensor, size: int, generator: torch.Generator | None = None, step: int = 1
) -> torch.Tensor:
    """The same random ``size``-square window of every image in the batch (all if smaller),
    its corner on multiples of ``step``."""
    h, w = x.shape[-2:]
    if size >= min(h, w):
        return x
    top = int(torch.randint(0, (h - size) // step + 1, (1,), generator=generator)) * step
    left = int(torch.randint(0, (w - size) // step + 1, (1,), generator=generator)) * step
    return x[..., top : top + size, left : left + size]


def rand_pad(
    x: torch.Tensor, generator: torch.Generator | None = None, period: int = 8
) -> torch.Tensor:
    """Reflect-pad by ``[p, period - p]`` on each axis (random ``p``), then crop back.

    Shifts the image by a random sub-period offset so the discriminator sees grid
    artefacts at every phase (GenDR-Pix's RandPad).
    """
    py, px = torch.randint(0, period, (2,), generator=generator).tolist()
    h, w = x.shape[-2:]
    padded = F.pad(x, (px, period - px, py, period - py), mode="reflect")
    return padded[..., :h, :w]


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss."""
    return -fake_logits.mean()
