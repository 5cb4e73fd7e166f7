"""The parameter-free resamplers used as models (archs/resize)."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pocketsr_cli.archs.resize import Resize


@pytest.mark.parametrize(
    ("kernel", "pil"), [("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)]
)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_pillow_away_from_borders(kernel: str, pil: int, scale: int) -> None:
    # Smooth content: Pillow rounds and clips to 8 bits between its two passes, which only
    # matters where the filter overshoots (noise), so compare on photo-like gradients.
    rng = np.random.default_rng(scale)
    coarse = rng.random((5, 7, 3)).astype(np.float32)
    arr = np.array(Image.fromarray((coarse * 200 + 25).astype(np.uint8)).resize((26, 20)))
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    ours = Resize(kernel, scale)(x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().numpy()
    ref = np.asarray(Image.fromarray(arr).resize((26 * scale, 20 * scale), pil)).astype(float)
    m = 4 * scale  # Pillow renormalises the filter at the borders; we replicate edge pixels
    assert np.abs(ours - ref)[m:-m, m:-m].max() <= 2


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
def test_flat_stays_flat_and_shapes(kernel: str) -> None:
    x = torch.full((2, 1, 5, 7), 0.25)
    y = Resize(kernel, 3)(x)
    assert y.shape == (2, 1, 15, 21)
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-6)
    assert torch.equal(Resize(kernel, 1)(x), x)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Resize("nearest", 2)
    with pytest.raises(ValueError):
        Resize("bicubic", 0)


# -- the 8-bit path: Pillow's resize, per channel ------------------------------------------

PILLOW = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def pillow_per_channel(pixels: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """The reference: Pillow's resize of each channel as an ``L`` image."""
    h, w, channels = pixels.shape
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(pixels[..., k])).resize(
                    (w * scale, h * scale), PILLOW[kernel]
                )
            )
            for k in range(channels)
        ],
        axis=-1,
    )


def noise(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """Pixel noise: every output overshoots somewhere, so rounding and clamping show."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def smooth(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """Photo-like content: a bilinear blow-up of coarse random colours, well inside 0..255."""
    coarse = np.random.default_rng(seed).random((4, 5, channels)) * 180 + 40
    rows, cols = np.linspace(0, 3, h)[:, None], np.linspace(0, 4, w)[None, :]
    r0, c0 = np.minimum(rows.astype(int), 2), np.minimum(cols.astype(int), 3)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    top = coarse[r0, c0] * (1 - fc) + coarse[r0, c0 + 1] * fc
    bottom = coarse[r0 + 1, c0] * (1 - fc) + coarse[r0 + 1, c0 + 1] * fc
    return np.rint(top * (1 - fr) + bottom * fr).astype(np.uint8)


SIZES = [(1, 1), (1, 6), (5, 2), (13, 17), (37, 51)]


@pytest.mark.parametrize("scale", [2, 3, 4, 7])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_uint8_bicubic_is_pillows_bicubic(scale: int, channels: int, h: int, w: int) -> None:
    """Torch's fixed-point weights are a little shorter than Pillow's: on pixel noise a few
    values in a thousand are off, by two levels at most, borders included."""
    pixels = noise(h, w, channels, seed=scale * 10 + channels)
    ours = Resize("bicubic", scale).upscale_uint8(pixels)
    ref = pillow_per_channel(pixels, scale, "bicubic")
    assert ours.shape == ref.shape == (h * scale, w * scale, channels)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 2
    assert (diff > 0).mean() <= (0.05 if h * w < 100 else 0.01)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_uint8_bicubic_on_photo_like_content(scale: int, channels: int) -> None:
    """Where nothing clips, Pillow's result, at most a level off in a few outputs (x4)."""
    pixels = smooth(45, 61, channels, seed=scale)
    diff = np.abs(
        Resize("bicubic", scale).upscale_uint8(pixels).astype(int)
        - pillow_per_channel(pixels, scale, "bicubic")
    )
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_uint8_lanczos_is_pillows_lanczos(scale: int, channels: int, h: int, w: int) -> None:
    pixels = noise(h, w, channels, seed=scale * 10 + channels)
    ours = Resize("lanczos", scale).upscale_uint8(pixels)
    assert np.array_equal(ours, pillow_per_channel(pixels, scale, "lanczos"))


def test_uint8_lanczos_rgb_is_copied_out_of_pillow_without_a_whole_image_of_bytes() -> None:
    """1000x750 RGB -> 4000x3000: what Python and NumPy allocate (tracemalloc; Pillow's own
    4-byte image is not traced) is the 3-byte result and one band of rows, 3.2 bytes an
    output pixel; ``np.array`` of Pillow's image held its ``tobytes`` chunks and their join
    besides (6.0).  The result is still Pillow's, across the bands' seams."""
    pixels = noise(750, 1000, 3, seed=7)
    resize = Resize("lanczos", 4)
    tracemalloc.start()
    try:
        ours = resize.upscale_uint8(pixels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * ours.shape[0] * ours.shape[1]
    assert ours.flags.writeable and ours.flags.c_contiguous
    assert np.array_equal(ours, pillow_per_channel(pixels, 4, "lanczos"))


@pytest.mark.parametrize(("kernel", "radius"), [("bicubic", 2), ("lanczos", 3)])
def test_uint8_borders_follow_pillow_not_edge_replication(kernel: str, radius: int) -> None:
    """A light frame one pixel wide around a dark image: Pillow renormalises the taps left
    inside the image, the float path replicates the edge pixel; the 8-bit path does what
    Pillow does."""
    framed = np.full((12, 16, 3), 50, np.uint8)
    framed[[0, -1]] = framed[:, [0, -1]] = 200
    ours = Resize(kernel, 4).upscale_uint8(framed).astype(int)
    assert np.abs(ours - pillow_per_channel(framed, 4, kernel)).max() <= 1
    x = torch.from_numpy(framed).permute(2, 0, 1)[None].float() / 255
    floated = Resize(kernel, 4)(x)[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).numpy()
    diff = np.abs(floated - ours)
    m = 4 * radius
    assert diff[:, :m].max() >= 3 and diff[:m].max() >= 3  # the border rules differ...
    assert diff[m:-m, m:-m].max() <= 1  # ...and nothing else does


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_path_stays_close_to_the_float_path(kernel: str, scale: int) -> None:
    """What the docstring promises about the two paths: on content that never clips, the
    interior differs by the 8-bit roundings (one level); near the borders the border rules
    differ a little more; on noise the clamping between the 8-bit passes shows."""
    radius = 2 if kernel == "bicubic" else 3
    m = radius * scale

    def both(pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        y = Resize(kernel, scale)(x)[0].permute(1, 2, 0).mul(255).round().clamp(0, 255)
        return np.abs(y.numpy() - Resize(kernel, scale).upscale_uint8(pixels))

    diff = both(smooth(30, 40, 3, seed=scale))
    assert diff[m:-m, m:-m].max() <= 1 and diff.max() <= 3
    assert both(noise(30, 40, 3, seed=scale))[m:-m, m:-m].max() <= 40


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
def test_uint8_takes_any_layout_and_returns_a_fresh_array(kernel: str) -> None:
    rgba = noise(9, 11, 4, seed=7)
    view = rgba[:, :, :3]  # not contiguous
    frozen = np.asarray(Image.fromarray(np.ascontiguousarray(view)))  # read-only
    assert not frozen.flags.writeable and not view.flags.c_contiguous
    resize = Resize(kernel, 3)
    expected = resize.upscale_uint8(np.ascontiguousarray(view))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about read-only numpy arrays
        for pixels in (view, frozen):
            out = resize.upscale_uint8(pixels)
            assert np.array_equal(out, expected)
            assert out.flags.writeable and out.flags.c_contiguous
    assert np.array_equal(rgba, noise(9, 11, 4, seed=7))  # the input is left alone


def test_uint8_scale_one_and_bad_input() -> None:
    pixels = noise(4, 5, 3)
    out = Resize("bicubic", 1).upscale_uint8(pixels)
    assert np.array_equal(out, pixels) and out is not pixels
    with pytest.raises(ValueError):
        Resize("bicubic", 2).upscale_uint8(pixels.astype(np.uint16))
    with pytest.raises(ValueError):
        Resize("lanczos", 2).upscale_uint8(pixels[..., 0])


# -- end to end: what `pocketsr upscale` writes ---------------------------------------------


@pytest.mark.parametrize(("kernel", "scale"), [("bicubic", 2), ("bicubic", 3), ("lanczos", 2)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_cli_upscale_writes_pillows_resize(
    tmp_path: Path, kernel: str, scale: int, channels: int
) -> None:
    """PNG keeps every level: the file holds Pillow's resize of each colour channel, and
    of alpha with the bicubic filter whatever the model's (as on every other path)."""
    from typer.testing import CliRunner

    from pocketsr_cli.cli import app

    pixels = smooth(21, 27, channels, seed=channels)
    pixels[3:9, 4:12] = 250  # a hard edge next to near-white: overshoot, clamped in 8 bits
    pixels[12:, :5] = 5
    src = tmp_path / "in.png"
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(src)
    result = CliRunner().invoke(
        app, ["upscale", str(src), "-m", kernel, "-s", str(scale), "-q", "--no-provenance"]
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / f"in_x{scale}.png") as im:
        got = np.asarray(im)
    got = got[..., None] if got.ndim == 2 else got
    want = pillow_per_channel(pixels, scale, kernel)
    if channels == 4:
        want[..., 3:] = pillow_per_channel(np.ascontiguousarray(pixels[..., 3:]), scale, "bicubic")
    diff = np.abs(got.astype(int) - want)
    assert diff[..., :3].max() <= (1 if kernel == "bicubic" else 0)
    assert diff.max() <= 1


def test_uint8_bicubic_gray_fast_layout_equals_the_colour_path() -> None:
    """Gray goes through a contiguous (1, 1, H, W) tensor; it must give what the
    channels-last path gives that channel, as a writable C-contiguous H x W x 1 array."""
    gray = noise(37, 53, 1, seed=5)
    ours = Resize("bicubic", 4).upscale_uint8(gray)
    colour = Resize("bicubic", 4).upscale_uint8(np.repeat(gray, 3, axis=2))
    assert ours.shape == (148, 212, 1)
    assert ours.flags.c_contiguous and ours.flags.writeable
    np.testing.assert_array_equal(ours[..., 0], colour[..., 0])
