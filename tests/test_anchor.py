"""anchor.anchor_means: an upscale's local mean put back to its input's, detail untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pocketsr_cli.anchor import anchor_means, anchor_tensor
from pocketsr_cli.archs.resize import Resize
from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements
from pocketsr_cli.devices import Compute
from pocketsr_cli.imageio.backends import opencv
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.tiling.run import upscale_tiled


def smooth(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    cv2 = opencv()
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, (h, w, channels), dtype=np.uint8)
    return cv2.GaussianBlur(base, (0, 0), 3).reshape(h, w, channels)


def darkened_upscale(src: np.ndarray, scale: int, seed: int = 1) -> np.ndarray:
    """``src`` upscaled with texture of its own and 9 levels darker where it is bright
    (as a generator that shifts the mean where it draws)."""
    cv2 = opencv()
    h, w, c = src.shape
    up = cv2.resize(src, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    up = up.reshape(h * scale, w * scale, c).astype(np.int32)
    texture = np.random.default_rng(seed).integers(-12, 13, up.shape)
    return np.clip(up - 9 * (up > 100) + texture, 0, 255).astype(np.uint8)


def area_down(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    cv2 = opencv()
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)


def high_pass(img: np.ndarray) -> np.ndarray:
    cv2 = opencv()
    f = img.astype(np.float32)
    return f - cv2.GaussianBlur(f, (0, 0), 2).reshape(f.shape)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_local_mean_is_the_inputs_and_the_detail_is_left_as_drawn(channels: int) -> None:
    src = smooth(300, 200, channels)  # taller than one strip of output rows at x4
    out = darkened_upscale(src, 4)
    before = area_down(out, (200, 300)).astype(np.float64) - src
    anchored = out.copy()
    anchor_means(anchored, src, 4.0, channels)
    after = area_down(anchored, (200, 300)).astype(np.float64) - src
    assert before.mean() < -4 and abs(after.mean()) < 0.3
    assert np.abs(after).mean() < np.abs(before).mean() / 4
    # Texture and edges: the high-pass part moves by rounding only.
    assert np.abs(high_pass(anchored) - high_pass(out)).mean() < 0.2


def test_a_grainy_input_gets_no_level_added() -> None:
    """The grid's averages are not rounded: 8-bit averages of 2 x 2 pixels (the grid at
    ``sigma`` 4) round half-way sums up, which lifted every anchored photo by about an
    eighth of a level."""
    cv2 = opencv()
    src = np.random.default_rng(11).integers(40, 216, (120, 160, 3), dtype=np.uint8)
    out = darkened_upscale(src, 4, seed=12)
    anchor_means(out, src, 4.0, 3)
    down = cv2.resize(out.astype(np.float32), (160, 120), interpolation=cv2.INTER_AREA)
    assert abs((down - src).mean()) < 0.04


def test_strips_join_without_a_seam() -> None:
    """Brought up a strip of 256 output rows at a time, the shift is the one a whole-image
    bilinear resize of it gives."""
    cv2 = opencv()
    src = smooth(160, 90, 3, seed=3)
    out = darkened_upscale(src, 4, seed=4)
    anchored = out.copy()
    anchor_means(anchored, src, 4.0, 3)
    shift = anchored.astype(np.float64) - out
    rows = shift.mean(axis=(1, 2))
    steps = np.abs(np.diff(rows))
    assert steps[255] < 3 * np.median(steps) + 0.05 and steps[511] < 3 * np.median(steps) + 0.05
    # The same as doing it at once (the grid is sigma/2 = 2 input px).
    want = cv2.resize(src, (45, 80), interpolation=cv2.INTER_AREA).astype(np.float32)
    have = cv2.resize(out, (45, 80), interpolation=cv2.INTER_AREA).astype(np.float32)
    diff = cv2.GaussianBlur(want - have, (9, 9), 2.0, borderType=cv2.BORDER_REFLECT_101)
    whole = cv2.resize(diff, (360, 640), interpolation=cv2.INTER_LINEAR)
    reference = np.clip(np.rint(out + whole), 0, 255)
    assert np.abs(anchored - reference).max() <= 1


def test_alpha_and_other_channels_are_left_alone_and_16_bits_work() -> None:
    src = smooth(40, 30, 3, seed=5)
    out = darkened_upscale(src, 2, seed=6)
    rgb = out.copy()
    anchor_means(rgb, src, 4.0, 3)
    alpha_src = np.full((40, 30, 1), 77, np.uint8)
    rgba = np.dstack([out, np.full((80, 60), 200, np.uint8)])
    anchor_means(rgba, np.dstack([src, alpha_src]), 4.0, 3)
    assert (rgba[..., 3] == 200).all()
    assert np.abs(rgba[..., :3].astype(int) - rgb).max() <= 1
    wide = out.astype(np.uint16) * 257
    anchor_means(wide, src.astype(np.uint16) * 257, 4.0, 3)
    assert np.abs(wide / 257 - rgb).max() <= 1


@pytest.mark.parametrize(
    ("out", "src", "sigma", "channels"),
    [
        (np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint16), 4.0, 3),
        (np.zeros((8, 8, 3), np.float32), np.zeros((4, 4, 3), np.float32), 4.0, 3),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), 0.0, 3),
        (np.zeros((8, 8, 1), np.uint8), np.zeros((4, 4, 1), np.uint8), 4.0, 3),
    ],
)
def test_what_does_not_fit_is_refused(
    out: np.ndarray, src: np.ndarray, sigma: float, channels: int
) -> None:
    with pytest.raises(ValueError):
        anchor_means(out, src, sigma, channels)


class Darkens(nn.Module):
    """A x2 network that upscales and takes 0.05 off bright samples."""

    def __init__(self) -> None:
        super().__init__()
        self.up = Resize("bicubic", 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(x)
        return y - 0.05 * (y > 0.4)


@pytest.mark.parametrize("anchor", [None, 4.0])
def test_the_upscaler_anchors_a_model_whose_manifest_asks(anchor: float | None) -> None:
    desc = ModelDescriptor(name="d", family="test", module=Darkens(), scale=2, mean_anchor=anchor)
    up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"))
    src = smooth(48, 64, 3, seed=7)
    rgba = np.dstack([src, np.full((48, 64), 255, np.uint8)])
    for pixels in (src, rgba, src[..., :1].copy()):
        out = up.upscale(pixels)
        channels = 1 if pixels.shape[2] == 1 else 3
        shift = area_down(out[..., :channels], (64, 48)).astype(float) - pixels[..., :channels]
        if anchor is None:
            assert shift.mean() < -5
        else:
            assert abs(shift.mean()) < 0.3


def as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize(("h", "w"), [(60, 80), (8, 10), (48, 64)])
def test_the_tensor_version_agrees_with_the_host_one(h: int, w: int) -> None:
    """What a GPU runs on an image in one piece, and what the host runs otherwise."""
    src = smooth(h, w, 3, seed=8)
    out = darkened_upscale(src, 4, seed=9)
    host = out.copy()
    anchor_means(host, src, 4.0, 3)
    shifted = anchor_tensor(as_tensor(out), as_tensor(src), 4.0)
    device = (shifted.clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    assert np.abs(device.astype(int) - host).max() <= 1
    with pytest.raises(ValueError):
        anchor_tensor(as_tensor(out), as_tensor(src)[:, :1], 4.0)


def test_the_tiler_finishes_an_image_that_runs_in_one_piece_only() -> None:
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def finish(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        calls.append((tuple(out.shape), tuple(image.shape)))
        return out + 0.25

    image = torch.rand(1, 3, 40, 56)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    whole = upscale_tiled(image, fn, scale=2, tile=0, finish=finish)
    assert calls == [((1, 3, 80, 112), (1, 3, 40, 56))]
    assert torch.allclose(whole, fn(image) + 0.25)
    tiled = upscale_tiled(image, fn, scale=2, tile=32, overlap=8, finish=finish)
    assert len(calls) == 1 and torch.allclose(tiled, fn(image))


@pytest.mark.parametrize("fails", ["in_anchoring", "after_it"])
def test_an_image_the_device_could_not_anchor_is_anchored_on_the_host(
    monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """Out of memory in the device's anchoring, or in writing its result, makes the tiler
    start again in tiles, which the device does not anchor: the host must."""
    import pocketsr_cli.inference as inference
    from pocketsr_cli.tiling.assemble import Assembler

    desc = ModelDescriptor(name="d", family="test", module=Darkens(), scale=2, mean_anchor=4.0)
    up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=0)
    up._anchor_on_device = True  # as on a GPU, with the tensors on the CPU
    calls: list[str] = []

    def once(name: str) -> None:
        if name not in calls:
            calls.append(name)
            if name == fails:
                raise torch.OutOfMemoryError("out of memory (simulated)")

    def anchoring(y: torch.Tensor, image: torch.Tensor, sigma: float) -> torch.Tensor:
        once("in_anchoring")
        return anchor_tensor(y, image, sigma)

    write = Assembler._write

    def writing(self: Assembler, top: int, left: int, block: torch.Tensor) -> None:
        if "in_anchoring" in calls:
            once("after_it")
        write(self, top, left, block)

    monkeypatch.setattr(inference, "anchor_tensor", anchoring)
    monkeypatch.setattr(Assembler, "_write", writing)
    src = smooth(160, 192, 3, seed=10)
    out = up.upscale(src)
    assert fails in calls and up.policy.tile_side is not None  # it ran again, in tiles
    assert not up._anchored
    shift = area_down(out, (192, 160)).astype(float) - src
    assert abs(shift.mean()) < 0.3
    # An image that runs in one piece is anchored once, on the device.
    again = up.upscale(smooth(48, 64, 3, seed=7))
    assert up._anchored
    assert abs((area_down(again, (64, 48)).astype(float) - smooth(48, 64, 3, seed=7)).mean()) < 0.3


def test_upscale_tensor_is_the_network_alone_wherever_it_runs() -> None:
    """``upscale_tensor`` gives the network's output, not anchored, on any device."""
    desc = ModelDescriptor(name="d", family="test", module=Darkens(), scale=2, mean_anchor=4.0)
    x = as_tensor(smooth(48, 64, 3, seed=7))
    for on_device in (False, True):
        up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=0)
        up._anchor_on_device = on_device
        assert torch.allclose(up.upscale_tensor(x), Darkens()(x))


def test_whether_the_device_anchored_an_image_is_that_images_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two threads sharing one upscaler: an image that runs in one piece (anchored on the
    device) finishing while a tiled one is being assembled must not make the tiled one
    skip its anchoring on the host."""
    import threading

    import pocketsr_cli.inference as inference

    desc = ModelDescriptor(name="d", family="test", module=Darkens(), scale=2, mean_anchor=4.0)
    up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=64)
    up._anchor_on_device = True  # as on a GPU, with the tensors on the CPU
    fold = inference._fold_to_gray
    small: list[np.ndarray] = []

    def fold_while_another_runs(y: torch.Tensor) -> torch.Tensor:
        if not small:  # the tiled gray image is being put together: the other thread runs
            other = threading.Thread(target=lambda: small.append(up.upscale(smooth(48, 48, 3))))
            other.start()
            other.join()
        return fold(y)

    monkeypatch.setattr(inference, "_fold_to_gray", fold_while_another_runs)
    src = smooth(160, 192, 1, seed=10)
    out = up.upscale(src)  # in tiles of 64: not anchored on the device
    (whole,) = small
    assert abs((area_down(whole, (48, 48)).astype(float) - smooth(48, 48, 3)).mean()) < 0.3
    shift = area_down(out, (192, 160)).astype(float) - src
    assert abs(shift.mean()) < 0.3  # without its anchoring: 12.7 levels darker


def test_a_framed_model_is_anchored_alike_on_the_device_and_on_the_host() -> None:
    """With a margin the device anchors the output without its frame, as the host does."""
    desc = ModelDescriptor(
        name="d",
        family="test",
        module=Darkens(),
        scale=2,
        mean_anchor=4.0,
        size=SizeRequirements(margin=2),
    )
    src = smooth(48, 64, 3, seed=7)
    outs = []
    for on_device in (False, True):
        up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"), tile=0)
        up._anchor_on_device = on_device
        outs.append(up.upscale(src))
        assert up._anchored == on_device
    assert np.abs(outs[0].astype(int) - outs[1]).max() <= 1
    assert abs((area_down(outs[1], (64, 48)).astype(float) - src).mean()) < 0.3


@pytest.mark.parametrize("alpha", [False, True])
def test_a_neutral_colour_image_is_anchored_once_as_its_gray_image(
    alpha: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R = G = B: the host anchors one channel (not three equal ones) and the result is
    the gray image's, byte for byte, in three channels."""
    import pocketsr_cli.inference as inference

    calls: list[tuple[int, int]] = []

    def spy(out: np.ndarray, src: np.ndarray, sigma: float, channels: int) -> None:
        calls.append((out.shape[2], channels))
        anchor_means(out, src, sigma, channels)

    monkeypatch.setattr(inference, "anchor_means", spy)
    desc = ModelDescriptor(name="d", family="test", module=Darkens(), scale=2, mean_anchor=4.0)
    up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"))
    gray = smooth(48, 64, 1, seed=3)
    if alpha:
        gray = np.dstack([gray, np.full((48, 64), 200, np.uint8)])
    neutral = np.dstack([gray[..., :1]] * 3 + ([gray[..., 1:]] if alpha else []))
    expected = up.upscale(gray)
    calls.clear()
    out = up.upscale(neutral)
    assert calls == [(2 if alpha else 1, 1)]  # the gray image's own call
    assert np.array_equal(out[..., :3], np.repeat(expected[..., :1], 3, axis=2))
    assert np.array_equal(out[..., 3:], expected[..., 1:])
