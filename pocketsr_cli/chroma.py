"""Chroma guard: an upscale's colour kept within the colours its input has nearby.

The default ×4 model draws colour fringes along near-neutral edges: a blue-violet line
with a yellow companion beside a grey edge, a green cast inside thin grey lines, on clean
(``bicubic``) inputs too.  Its luma there is right; its chroma is not, and not like any
colour of the input around it.  :func:`clamp_chroma` keeps the network's luma and clamps
its chroma into what the input has nearby: each output pixel's Cb and Cr (BT.601, as
``evaluation.metrics``) are clamped into bounds from the [min, max] of the input's over
each input pixel's 3 × 3 window, brought up to the output bilinearly (pixel centres as
the upscale's, ``align_corners=False``).  A fringe on a grey edge has grey all around it in
the input and goes; a real colour edge has both its colours in the window and keeps what
the network drew between them.  Bounds repeated over each input pixel's s × s output
pixels, as the guard had them first, step at every input pixel's edge, and a colour edge
or gradient clamped to them came out in faint blocks of the input's pixels (the model
card's "Chroma guard").

Chosen on the validation photos (``data/val`` and ``data/val_textured``, 768-px crops
and six more crops of them, ``python scripts/chroma_sweep.py``) against taking the input's
chroma bicubic-upscaled (which bled colour across edges on JPEG inputs) and clamps to the
2 × 2 nearest input pixels or with a tolerance; the model card gives the numbers.  The
manifest's ``chroma_guard = "clamp"`` hint turns it on per model
(``ModelDescriptor.chroma_guard``).

It runs on each tile's float output, where the network left it, on its device, before
tiles are blended and rounded: no pass over the whole image, no rounding of its own, and
the tiler's memory probe measures it with the network.  Every output pixel's window lies
inside its tile's input but at the tile's own edges, which the tiler's overlap blends
away (at the image's edges the input is framed as the untiled run frames it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["GUARDS", "clamp_chroma"]

GUARDS = ("clamp",)
"""The chroma guards a manifest may name (``[hints] chroma_guard``)."""

# BT.601 luma.  The guard clamps B - Y and R - Y, which are Cb and Cr up to a factor each.
_KR, _KG, _KB = 0.299, 0.587, 0.114


def clamp_chroma(out: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``out`` with each pixel's chroma clamped into ``src``'s around it, luma kept.

    ``out`` is ``(n, 3, H * s, W * s)`` RGB float, ``src`` ``(n, 3, H, W)`` the input it
    was upscaled from, for an integer factor ``s``; each output pixel gets B - Y and R - Y
    clamped into the [min, max] of ``src``'s over input pixels ``i - 1 .. i + 1``, ``j - 1
    .. j + 1`` (those inside the image) of each input pixel ``(i, j)``, interpolated
    bilinearly between the input pixels' centres (``align_corners=False``; beyond the
    outermost centres, theirs).  ``out`` is changed in place and returned; values are not
    clamped to [0, 1] (the caller's conversion does that).

    Raises:
        ValueError: shapes that are not an integer upscale of three channels.
    """
    import torch
    import torch.nn.functional as F

    n, c, height, width = src.shape
    scale = out.shape[-1] // max(1, width)
    if (
        c != 3
        or out.dim() != 4
        or src.dim() != 4
        or scale < 1
        or tuple(out.shape) != (n, c, height * scale, width * scale)
    ):
        raise ValueError(f"cannot guard {tuple(out.shape)} by {tuple(src.shape)}")
    src = src.float()
    # B - Y and R - Y of the input, their max and (as minus the max of minus) min over
    # each 3 x 3 window: max_pool pads with -inf, so the window is cut at the image's edge.
    luma = _luma(src)
    diffs = torch.stack([src[:, 2] - luma, src[:, 0] - luma], dim=1)
    hi = F.max_pool2d(diffs, 3, stride=1, padding=1)
    lo = -F.max_pool2d(-diffs, 3, stride=1, padding=1)
    # On the CPU a band of input rows at a time, so that the passes below work in the
    # cache (for a 4K output on two cores: 0.08 s against 0.14 s; with the bounds repeated,
    # not interpolated, 0.05 s against 0.15 s); on a GPU the whole image at once, in as few
    # kernel launches as can be.  A band's bounds are brought up with the input row on
    # either side of it, which its first and last output rows lie between: banded is the
    # whole image at once.
    band = _CPU_BAND if out.device.type == "cpu" else max(1, height)
    for top in range(0, height, band):
        stop = min(height, top + band)
        above, below = max(0, top - 1), min(height, stop + 1)
        _clamp_band(
            out[:, :, top * scale : stop * scale],
            lo[:, :, above:below],
            hi[:, :, above:below],
            (top - above) * scale,
        )
    return out


# Input rows per band on the CPU: 32 rows of a 960-px-wide image at x4 are 6 MB of output.
_CPU_BAND = 32


def _clamp_band(out: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, skip: int) -> None:
    """:func:`clamp_chroma` of the output rows ``out`` ``(n, 3, h * s, w * s)``, in place,
    given the bounds ``lo``, ``hi`` ``(n, 2, h', w)`` (B - Y, R - Y) of their input rows
    and of those around them: brought up ``s`` times, ``out``'s rows are theirs from row
    ``skip`` on."""
    import torch
    import torch.nn.functional as F

    scale = out.shape[-1] // lo.shape[-1]
    rows = slice(skip, skip + out.shape[-2])
    r, g, b = out[:, 0], out[:, 1], out[:, 2]
    luma = r * _KR
    luma.add_(g, alpha=_KG).add_(b, alpha=_KB)
    for k, (plane, weight) in enumerate(((b, _KB), (r, _KR))):  # B - Y, then R - Y
        diff = torch.sub(plane, luma)
        # The bounds brought up bilinearly, as the upscale's pixel centres lie
        # (align_corners=False): no step at each input pixel's edge, as bounds repeated
        # over its s x s output pixels draw into a clamped colour edge or gradient.
        pair = torch.stack([lo[:, k], hi[:, k]], dim=1)
        up = F.interpolate(pair, scale_factor=scale, mode="bilinear", align_corners=False)
        shift = torch.clamp(diff, up[:, 0, rows], up[:, 1, rows]).sub_(diff)
        plane.add_(shift)
        # G takes what keeps the luma: 0.587 dG = -(0.114 dB) or -(0.299 dR).
        g.add_(shift, alpha=-weight / _KG)


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``(n, H, W)`` of ``(n, 3, H, W)`` RGB."""
    return rgb[:, 0] * _KR + rgb[:, 1] * _KG + rgb[:, 2] * _KB
