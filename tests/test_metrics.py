"""Metrics, eval degradations and MAC counting, on small generated images with known answers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from _imagegen import make_photo_like
from torch import nn

from pocketsr_cli.archs.resize import Resize
from pocketsr_cli.errors import UsageError
from pocketsr_cli.evaluation.bench import parse_size, synthetic_photo
from pocketsr_cli.evaluation.degrade import (
    bicubic_downscale,
    crop_to_multiple,
    degrade_eval,
    degrade_or_jpeg,
    gaussian_blur,
    seed_for,
    to_float,
)
from pocketsr_cli.evaluation.macs import count_macs, macs_per_pixel
from pocketsr_cli.evaluation.metrics import (
    detail_scores,
    lattice_crop,
    lattice_ratio,
    luma,
    psnr_y,
    sharpness,
    ssim_y,
)


def natural(side: int = 256, seed: int = 0) -> np.ndarray:
    """RGB uint8 with a natural image's 1/f amplitude spectrum and random phases."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    planes = []
    for _ in range(3):
        spectrum = np.exp(2j * np.pi * rng.random((side, side))) / radius
        spectrum[0, 0] = 0
        plane = np.real(np.fft.ifft2(spectrum))
        planes.append((plane - plane.mean()) / plane.std())
    img = 128 + 35 * np.stack(planes, axis=2)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def down_up(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """Bicubic ×``scale`` down then up: the output of the bicubic floor."""
    lr = degrade_eval(hr, "bicubic", scale=scale)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    y = Resize("bicubic", scale)(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.rint(y * 255).astype(np.uint8)


# ------------------------------------------------------------------------------ Y, PSNR, SSIM


def test_luma_is_bt601_studio_range() -> None:
    black = np.zeros((2, 2, 3), np.uint8)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert luma(black) == pytest.approx(16.0)
    assert luma(white) == pytest.approx(235.0)
    assert luma(np.full((1, 1, 3), 65535, np.uint16)) == pytest.approx(235.0)
    gray = np.full((2, 2, 1), 255, np.uint8)  # gray reads as R = G = B
    np.testing.assert_allclose(luma(gray), luma(white))


def test_identical_images_score_perfectly() -> None:
    img = make_photo_like(48, 64)
    assert psnr_y(img, img) == math.inf
    assert ssim_y(img, img) == pytest.approx(1.0, abs=1e-12)
    assert sharpness(img, img) == pytest.approx(1.0)


def test_psnr_of_a_constant_offset() -> None:
    gt = np.clip(make_photo_like(40, 40), 10, 240).astype(np.uint8)
    out = gt + np.uint8(5)  # every channel +5 → Y + 5 × 219/255 everywhere
    want = 20 * math.log10(255 / (5 * 219 / 255))
    assert psnr_y(out, gt) == pytest.approx(want, abs=1e-9)
    assert psnr_y(gt, out) == pytest.approx(want, abs=1e-9)


def test_border_is_shaved() -> None:
    gt = make_photo_like(40, 40)
    out = gt.copy()
    out[:4] = 0  # damage only the 4-px border
    out[:, -4:] = 255
    assert psnr_y(out, gt) == math.inf
    assert psnr_y(out, gt, border=0) < 30


def test_depths_are_compared_at_their_own_peak() -> None:
    gt8 = make_photo_like(32, 32, seed=1)
    out = make_photo_like(32, 32, seed=2)
    gt16 = gt8.astype(np.uint16) * 257
    assert psnr_y(out, gt16) == pytest.approx(psnr_y(out, gt8))
    assert ssim_y(out, gt16) == pytest.approx(ssim_y(out, gt8))


def test_ssim_falls_with_noise() -> None:
    gt = make_photo_like(64, 64)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (2, 8, 32):
        noisy = np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255).astype(np.uint8)
        scores.append(ssim_y(noisy, gt))
    assert 1 > scores[0] > scores[1] > scores[2] > 0


def test_pairs_must_match_and_be_integer() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        psnr_y(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 36, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        ssim_y(np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="at least 11"):
        ssim_y(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8))


# ------------------------------------------------------------------------------ sharpness


def test_bicubic_down_up_is_less_sharp_than_the_ground_truth() -> None:
    for gt in (natural(128), make_photo_like(128, 160)):
        assert sharpness(gt, gt) == pytest.approx(1.0)
        s = sharpness(down_up(gt), gt)
        assert 0.1 < s < 0.7, s


def test_sharpness_of_a_flat_ground_truth_is_nan() -> None:
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert math.isnan(sharpness(make_photo_like(32, 32), flat))


# ------------------------------------------------------------------------------ lattice ratio


def test_lattice_crop_is_the_largest_centred_multiple_of_8() -> None:
    assert lattice_crop(100, 70) == (18, 3, 64)
    assert lattice_crop(100, 70, crop=32) == (34, 19, 32)
    with pytest.raises(ValueError, match="multiple of 8"):
        lattice_crop(100, 70, crop=36)
    with pytest.raises(ValueError, match="at least 32"):
        lattice_crop(30, 70)
    with pytest.raises(ValueError, match="does not fit"):
        lattice_crop(100, 70, crop=72)


def test_natural_images_have_a_lattice_ratio_near_one() -> None:
    for seed in range(3):
        img = natural(256, seed)
        assert 0.8 < lattice_ratio(img) < 1.5
        assert 0.8 < lattice_ratio(down_up(img)) < 1.5


def test_an_8_pixel_grid_raises_the_lattice_ratio() -> None:
    img = natural(256)
    grid = img.astype(np.int32)
    grid[::8] += 20  # faint lines every 8 px: ±20 levels on an image of std 35
    grid[:, ::8] += 20
    assert lattice_ratio(np.clip(grid, 0, 255).astype(np.uint8)) > 5
    # One bad phase in every 8×8 block, as a ×8 pixel shuffle with a weak channel leaves.
    dots = img.astype(np.int32)
    dots[::8, ::8] -= 20
    assert lattice_ratio(np.clip(dots, 0, 255).astype(np.uint8)) > 4


def test_lattice_ratio_is_computed_on_the_centred_crop() -> None:
    img = natural(256)
    framed = np.pad(img, ((20, 20), (4, 4), (0, 0)), mode="constant")
    framed[:20] = 255  # a frame outside the centred 256 square must not matter
    assert lattice_ratio(framed, crop=256) == pytest.approx(lattice_ratio(img), rel=1e-9)


# ------------------------------------------------------------------------------ degradations


def test_eval_degradations_are_deterministic() -> None:
    hr = make_photo_like(64, 96, seed=3)
    lr = degrade_eval(hr, "bicubic")
    assert lr.shape == (16, 24, 3) and lr.dtype == np.uint8
    np.testing.assert_array_equal(degrade_eval(hr, "bicubic", seed=9), lr)  # seed unused
    real = degrade_eval(hr, "real", seed=1)
    assert real.tobytes() == degrade_eval(hr, "real", seed=1).tobytes()
    assert real.tobytes() != degrade_eval(hr, "real", seed=2).tobytes()
    assert degrade_eval(hr, "real", scale=2).shape == (32, 48, 3)
    assert seed_for("a.png") == seed_for("a.png") != seed_for("b.png")


def test_the_sweeps_degradation_is_evals_or_a_jpeg_of_the_bicubic_downscale() -> None:
    hr = make_photo_like(64, 96, seed=3)
    same = degrade_or_jpeg(hr, "real", 5, 4, None)
    np.testing.assert_array_equal(same, degrade_eval(hr, "real", seed=5, scale=4))
    clean = degrade_eval(hr, "bicubic", scale=2)
    errors = []
    for quality in (95, 20):
        lossy = degrade_or_jpeg(hr, "real", 5, 2, quality)
        assert lossy.shape == clean.shape and lossy.dtype == np.uint8
        errors.append(float(np.abs(luma(lossy) - luma(clean)).mean()))
    assert 0 < errors[0] < 2 < errors[1]


def test_real_is_blurred_bicubic_plus_noise_and_jpeg() -> None:
    hr = make_photo_like(128, 128, seed=4)
    clean = np.clip(bicubic_downscale(gaussian_blur(to_float(hr), 1.2), 4), 0, 1) * 255
    # On Y: 4:2:0 JPEG smears the colour of this image's independent channels.
    err = luma(degrade_eval(hr, "real", seed=0)) - luma(np.rint(clean).astype(np.uint8))
    assert abs(err.mean()) < 1.5
    assert 1.5 < err.std() < 8  # noise σ 3 (σ ≈ 1.5 on Y) plus the JPEG q70 error


def test_bicubic_downscale_keeps_constants_and_16_bit() -> None:
    flat = np.full((32, 48, 3), 77, np.uint8)
    np.testing.assert_allclose(bicubic_downscale(flat, 4), 77 / 255, atol=1e-6)
    hr = make_photo_like(32, 32)
    np.testing.assert_allclose(
        bicubic_downscale(hr.astype(np.uint16) * 257, 2), bicubic_downscale(hr, 2), atol=1e-6
    )
    with pytest.raises(ValueError, match="multiples"):
        bicubic_downscale(np.zeros((30, 32, 3), np.uint8), 4)
    assert crop_to_multiple(np.zeros((63, 66, 3)), 4).shape == (60, 64, 3)
    with pytest.raises(ValueError):
        degrade_eval(make_photo_like(64, 64), "gauss")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ MACs, bench input


def test_macs_of_convolutions_and_linears() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    # per pixel: 8 outputs × 3·9 inputs + 3 outputs × 8·9 inputs
    assert macs_per_pixel(net, 16) == pytest.approx(8 * 27 + 3 * 72)
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    assert count_macs(grouped, torch.zeros(1, 4, 10, 10)) == 4 * 100 * 9
    up = nn.ConvTranspose2d(2, 1, 2, stride=2)
    assert count_macs(up, torch.zeros(1, 2, 5, 5)) == 2 * 25 * 1 * 4
    assert count_macs(nn.Linear(6, 5), torch.zeros(7, 6)) == 7 * 5 * 6
    assert macs_per_pixel(Resize("bicubic", 4)) is None  # no countable layer
    assert not net[0]._forward_hooks  # hooks are removed


def test_bench_input_and_size_parsing() -> None:
    a = synthetic_photo(96, 54)
    assert a.shape == (54, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthetic_photo(96, 54))
    assert a.std() > 20
    assert parse_size("960x540") == (960, 540) == parse_size(" 960 × 540 ")
    for bad in ("960", "4x540", "ax b"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_macs_of_a_pocketsr_network_include_its_functional_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pocketsr_cli.archs.pocketsr import build
    from pocketsr_cli.archs.pocketsr.lited import SubPixelHead
    from pocketsr_cli.evaluation.macs import count_macs, macs_per_pixel

    net = build("nano", 4)
    probe = torch.rand(1, 3, 64, 64)
    hooked = count_macs(net, probe)  # the head states its own cost (macs_of)
    assert hooked is not None
    assert macs_per_pixel(net) == net.macs(64, 64) / 64**2 == hooked / 64**2
    monkeypatch.delattr(SubPixelHead, "macs_of")
    convs_only = count_macs(net, probe)
    assert convs_only is not None and convs_only < hooked


# ------------------------------------------------------------------ detail, hf, bandcorr


def _spec_reference(out: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """The reference code of docs/measurement.md, verbatim in substance (numpy + scipy)."""
    from scipy.ndimage import gaussian_filter

    a, b = luma(gt)[4:-4, 4:-4], luma(out)[4:-4, 4:-4]

    def spec(x: np.ndarray) -> tuple[float, float]:
        x = x - x.mean()
        n = min(x.shape)
        x = x[:n, :n]
        f2 = np.abs(np.fft.fft2(x * np.outer(np.hanning(n), np.hanning(n)))) ** 2
        f = np.fft.fftfreq(n)
        r = np.hypot(*np.meshgrid(f, f))
        return f2[(r > 0.12) & (r <= 0.30)].sum(), f2[r > 0.30].sum()

    (ma, ha), (mb, hb) = spec(a), spec(b)
    da = gaussian_filter(a, 0.7) - gaussian_filter(a, 1.5)
    db = gaussian_filter(b, 0.7) - gaussian_filter(b, 1.5)
    corr = (da * db).sum() / np.sqrt((da * da).sum() * (db * db).sum())
    return float(mb / ma), float(hb / ha), float(corr)


def _blurred(img: np.ndarray, sigma: float) -> np.ndarray:
    out = cv2.GaussianBlur(img.astype(np.float64), (0, 0), sigma)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _with_grain(img: np.ndarray, amount: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, amount, img.shape[:2])[..., None]  # luma grain, pixel by pixel
    return np.clip(np.rint(img + grain), 0, 255).astype(np.uint8)


def test_detail_scores_of_the_ground_truth_itself_are_one() -> None:
    gt = natural(200)
    detail, hf, corr = detail_scores(gt, gt)
    assert detail == pytest.approx(1.0)
    assert hf == pytest.approx(1.0)
    assert corr == pytest.approx(1.0)


def test_blur_loses_detail_and_grain_shows_as_hf_not_detail() -> None:
    gt = natural(256, seed=3)
    soft = _blurred(gt, 2.0)
    detail, hf, corr = detail_scores(soft, gt)
    assert detail < 0.1 and hf < 0.05  # a blur keeps almost nothing above 0.12 cycles/px
    assert 0 < corr < 0.9
    grainy = _with_grain(soft, 6.0)
    g_detail, g_hf, g_corr = detail_scores(grainy, gt)
    assert g_hf > 3 * g_detail  # grain lands above the visible band...
    assert g_hf > 10 * hf  # ...raising hf a lot
    assert g_corr < corr  # and it is not where the truth's detail is
    # Mean-gradient sharpness is fooled by the same grain: the reason it is not a target.
    assert sharpness(grainy, gt) > sharpness(soft, gt) + 0.3


def test_bicubic_floor_has_little_detail() -> None:
    gt = natural(256, seed=4)
    detail, _hf, corr = detail_scores(down_up(gt), gt)
    assert detail < 0.15
    assert 0.1 < corr < 0.8


def test_detail_scores_agree_with_the_spec_reference() -> None:
    pytest.importorskip("scipy")
    gt = natural(160, seed=5)
    for out in (gt, _blurred(gt, 1.2), _with_grain(_blurred(gt, 1.2), 4.0), down_up(gt)):
        ours = detail_scores(out, gt)
        np.testing.assert_allclose(ours, _spec_reference(out, gt), rtol=1e-9, atol=1e-12)


def test_detail_scores_refuse_different_sizes() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        detail_scores(natural(64), natural(72))
