"""Image-wide attention statistics: what makes a global-attention model's tiles seamless.

Global linear attention (``attn_window = 0``, nano's) reads its input through two means
over every lowest-level pixel (``blocks.LinearAttention``): a tile on its own would take
them over the tile, and tiles of one image would attend differently from each other and
from the whole image (5-13 levels off, whatever the overlap).  Those means are sums, so
the whole image's can be taken window by window: each window runs the encoder and the way
down to the lowest level, and only its *core* cells, those the window holds the whole
receptive field of (:meth:`PocketSRConfig.attention_reach`), are added.  Windows start on
the lowest level's grid, so every cell is computed as in the whole image, and the sums
agree with the whole image's to float rounding.

:meth:`PocketSR.image_stats` (the tiler's statistics hook) returns an
:class:`ImageAttention`, which takes the sums lazily, on the first window that is *not*
the whole image:

- an image that runs whole (``--tile 0``, or small enough for ``--tile auto``) never pays
  for them, and its window attends to itself exactly as before (the same operations: the
  same bits);
- the pass runs in the tiles' device and precision, in windows no larger than the tile
  that asked (so it needs less memory than that tile's own pass, a prefix of it: what the
  tiler sized the tile for covers it), except that a window is never smaller than
  :func:`smallest_window` (a few MB).

What is "the whole image": the image as given, padded at the bottom and right to the
model's ``multiple_of`` by reflection, as the tiler pads it.  A manifest ``margin`` (not
nano's) frames the tiler's image further, which these sums do not see: tiles then come
close to the untiled result, not to rounding.  A self-ensemble's turned or mirrored tiles
(``--ensemble flip8``) use the unturned image's sums.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pocketsr_cli.archs.pocketsr.blocks import AttentionSums

if TYPE_CHECKING:
    from pocketsr_cli.archs.pocketsr.network import PocketSR


def halo(net: PocketSR) -> int:
    """How far a window reaches past its core: the attention's reach, in whole grid steps."""
    m = net.multiple_of
    return -(-net.config.attention_reach(net.scale) // m) * m


def smallest_window(net: PocketSR) -> int:
    """The smallest window side the sums are taken in: the halo on both sides of a core of
    four grid steps."""
    return 2 * halo(net) + 4 * net.multiple_of


def _padded_window(
    image: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]
) -> torch.Tensor:
    """``image[:, :, rows, cols]`` in float32, of the image padded at the bottom and
    right by reflection (replication where the image's side is too short to reflect), as
    ``tiling.upscale_tiled`` pads it, without padding (copying) the whole image: ``rows``
    and ``cols`` may run past the image's sides by less than a grid step."""
    h, w = image.shape[-2:]
    (y0, y1), (x0, x1) = rows, cols
    x = image[:, :, y0 : min(y1, h), x0 : min(x1, w)].float()
    pad_h, pad_w = max(0, y1 - h), max(0, x1 - w)
    # A window that does not start at 0 holds more than a halo of image: reflection fits.
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < w else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < h else "replicate")
    return x


def _cores(length: int, core: int) -> list[tuple[int, int]]:
    """``[0, length)`` cut into runs of ``core`` (the last may be shorter)."""
    return [(a, min(a + core, length)) for a in range(0, length, core)]


def image_sums(net: PocketSR, image: torch.Tensor, window: tuple[int, int]) -> AttentionSums:
    """The attention sums of the whole ``image`` ``(1, C, H, W)`` (any device), taken in
    windows of at most ``window`` (height, width) pixels, each moved to the network's
    device and run in the precision in force (autocast).

    Raises:
        ValueError: ``net`` has no global attention.
    """
    attn = net.unet.mid.attn
    if not net.config.global_attention or attn is None:
        raise ValueError("only a network with global attention has image-wide sums")
    m, reach = net.multiple_of, halo(net)
    device = next(net.parameters()).device
    length_h, length_w = (-(-side // m) * m for side in image.shape[-2:])  # as padded
    # Cores in whole grid steps, so every window starts on the lowest level's grid.
    core_h, core_w = (max(m, (side - 2 * reach) // m * m) for side in window)
    total: AttentionSums | None = None
    for top, bottom in _cores(length_h, core_h):
        for left, right in _cores(length_w, core_w):
            y0, y1 = max(0, top - reach), min(length_h, bottom + reach)
            x0, x1 = max(0, left - reach), min(length_w, right + reach)
            window_pixels = _padded_window(image, (y0, y1), (x0, x1)).to(device)
            features = net.lowest_features(window_pixels)
            fh, fw = features.shape[-2:]
            # Window pixels per lowest cell is (y1 - y0) / fh, exact on multiples of ``m``.
            rows = slice((top - y0) * fh // (y1 - y0), (bottom - y0) * fh // (y1 - y0))
            cols = slice((left - x0) * fw // (x1 - x0), (right - x0) * fw // (x1 - x0))
            part = attn.sums(features[:, :, rows, cols])
            total = part if total is None else total + part
            del features, window_pixels
    assert total is not None
    return total


class ImageAttention:
    """The statistics every window of one image shares (see the module docs): the image,
    and its attention sums once a window needs them.  One per image; windows of any
    thread may share it."""

    def __init__(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"expected an image shaped (1, C, H, W), got {tuple(image.shape)}")
        self.image = image.detach()
        self._sums: dict[tuple[str, str], AttentionSums] = {}
        self._lock = threading.Lock()

    def holds_whole(self, x: torch.Tensor) -> bool:
        """Whether the window ``x`` holds the whole image (padded, or turned by an
        ensemble): it then attends to itself, as without statistics."""
        h, w = self.image.shape[-2:]
        xh, xw = x.shape[-2:]
        return (xh >= h and xw >= w) or (xh >= w and xw >= h)

    def sums_for(self, net: PocketSR, x: torch.Tensor) -> AttentionSums | None:
        """The sums window ``x`` of this image attends with: None when it holds the whole
        image, else the image's, taken on first need in ``x``'s device and precision, in
        windows no larger than ``x`` (nor smaller than :func:`smallest_window`)."""
        if self.holds_whole(x):
            return None
        device = x.device
        dtype = torch.get_autocast_dtype(device.type)
        precision = str(dtype if torch.is_autocast_enabled(device.type) else x.dtype)
        key = (str(device), precision)
        with self._lock:
            found = self._sums.get(key)
            if found is None:
                least = smallest_window(net)
                window = (max(x.shape[-2], least), max(x.shape[-1], least))
                found = self._sums[key] = image_sums(net, self.image, window)
        return found
