#!/usr/bin/env python3
"""Choose a model's ``margin`` (``descriptor.SizeRequirements.margin``) on validation photos.

    python scripts/margin_sweep.py data/val data/val_textured -m pocketsr-compact-x4 \\
        --margins 0,1,2,3,4 --degradation bicubic [--jpeg 75]

A margin replicates the image's border pixels outwards before the network and crops the
output back, so that a network whose convolutions pad with zeros sees the image's own
colours past its edges.  What it changes is the image's outer band, so the photos are
scored where a real photo's edge is: up to four crops of each photo (one centred in each
quarter, where they do not overlap), ``--crop`` output pixels plus ``--context`` input
pixels on every side, are degraded as ``pocketsr eval`` degrades
it (``--jpeg Q``: bicubic downscale, then JPEG at quality Q), and that context is then cut
from the degraded input (and the ground truth), so the input's edges have real content
beyond them, as a photo's do, not the degradation's own border handling.

Each row is one margin (input pixels): the mean over the crops of the PSNR-Y of the
outer band (``--band`` output pixels wide), of its four corner squares, and of the
interior (``2 x --band`` in from the edges); and the largest deviation, in 8-bit levels,
of the output of a flat grey (levels 30 and 200, 48 x 64 px) from that grey within
``--band`` pixels of a corner.  The model runs in fp32 with its manifest's other hints
(mean anchoring included).  ``--reflect`` frames by reflection instead, to compare.
Run it on validation photos only: ``data/test`` is kept for the model card's final
figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from pocketsr_cli.devices import choose_device
from pocketsr_cli.evaluation.degrade import degrade_or_jpeg, seed_for
from pocketsr_cli.evaluation.metrics import psnr_y
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.factory import UpscalerSpec, open_upscaler


def windows(height: int, width: int, side: int, scale: int) -> list[tuple[int, int]]:
    """Top-left corners of up to four ``side``-px windows, one centred in each quarter of
    the photo, moved inside it and onto the ``scale`` grid (fewer where they would
    overlap; none when the photo is smaller than ``side``)."""
    if min(height, width) < side:
        return []
    corners: list[tuple[int, int]] = []
    for fy in (0.25, 0.75):
        for fx in (0.25, 0.75):
            top = min(max(0, int(height * fy) - side // 2), height - side) // scale * scale
            left = min(max(0, int(width * fx) - side // 2), width - side) // scale * scale
            if all(abs(top - t) >= side or abs(left - u) >= side for t, u in corners):
                corners.append((top, left))
    return corners


def masks(height: int, width: int, band: int) -> dict[str, np.ndarray]:
    """The outer band, its corner squares and the interior, as boolean masks."""
    outer = np.ones((height, width), bool)
    outer[band:-band, band:-band] = False
    corners = np.zeros((height, width), bool)
    for rows in (slice(None, band), slice(-band, None)):
        for cols in (slice(None, band), slice(-band, None)):
            corners[rows, cols] = True
    inner = np.zeros((height, width), bool)
    inner[2 * band : -2 * band, 2 * band : -2 * band] = True
    return {"band": outer, "corners": corners, "interior": inner}


def flat_corner_deviation(upscaler: object, band: int) -> int:
    """Largest deviation from a flat grey's level within ``band`` px of a corner."""
    worst = 0
    for level in (30, 200):
        out = upscaler.upscale(np.full((48, 64, 3), level, np.uint8))  # type: ignore[attr-defined]
        off = np.abs(out.astype(np.int32) - level).max(axis=2)
        near = masks(*off.shape, band)["corners"]
        worst = max(worst, int(off[near].max()))
    return worst


class Reflected:
    """An upscaler run on its input framed by ``margin`` reflected pixels, the frame's
    output cropped away."""

    def __init__(self, upscaler: object, margin: int, scale: int) -> None:
        self.upscaler, self.margin, self.scale = upscaler, margin, scale

    def upscale(self, image: np.ndarray) -> np.ndarray:
        m, s = self.margin, self.scale
        framed = np.pad(image, ((m, m), (m, m), (0, 0)), mode="reflect") if m else image
        out = self.upscaler.upscale(np.ascontiguousarray(framed))  # type: ignore[attr-defined]
        return out[m * s : out.shape[0] - m * s, m * s : out.shape[1] - m * s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("-m", "--model", default="pocketsr-compact-x4")
    parser.add_argument("-s", "--scale", type=int, default=None)
    parser.add_argument("--margins", default="0,1,2,3,4")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--context", type=int, default=16, help="input px cut from each side")
    parser.add_argument("--band", type=int, default=8, help="output px scored as the band")
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    parser.add_argument("--jpeg", type=int, default=None, metavar="Q")
    parser.add_argument(
        "--reflect",
        action="store_true",
        help="frame by reflection instead (done here around the input, the model's own "
        "margin off), to compare",
    )
    args = parser.parse_args()
    margins = [int(m) for m in args.margins.split(",")]
    spec = UpscalerSpec(device=choose_device("cpu"), cpu_bf16=False)
    base = spec.resolve(args.model, args.scale)
    scale, cut = base.scale, args.context
    pairs = []
    side = args.crop + 2 * cut * scale
    for folder in args.folders:
        for path in collect_images(folder):
            photo = ground_truth(path, scale)
            for k, (top, left) in enumerate(windows(*photo.shape[:2], side, scale)):
                gt = photo[top : top + side, left : left + side]
                seed = seed_for(f"{path.name}#{k}")
                lr = degrade_or_jpeg(gt, args.degradation, seed, scale, args.jpeg)
                inner_lr = np.ascontiguousarray(lr[cut:-cut, cut:-cut])
                inner_gt = gt[cut * scale : -cut * scale, cut * scale : -cut * scale]
                pairs.append((inner_lr, inner_gt))
    kind = args.degradation if args.jpeg is None else f"JPEG q{args.jpeg}"
    print(f"{base.name}, {len(pairs)} crops, {kind} x{scale}, {args.crop}-px crops")
    header = ("margin", "band dB", "corners dB", "interior dB", "flat corner")
    print("".join(h.rjust(13) for h in header))
    for margin in margins:
        framing = 0 if args.reflect else margin
        desc = dataclasses.replace(base, size=dataclasses.replace(base.size, margin=framing))
        upscaler = open_upscaler(desc, spec)
        if args.reflect:
            upscaler = Reflected(upscaler, margin, scale)
        scores = []
        for lr, gt in pairs:
            out = upscaler.upscale(lr)
            parts = masks(*gt.shape[:2], args.band)
            scores.append([psnr_y(out[m][None], gt[m][None], border=0) for m in parts.values()])
        mean = np.mean(np.array(scores), axis=0)
        cells = [f"{v:.2f}" if i < 2 else f"{v:.3f}" for i, v in enumerate(mean)]
        cells.append(str(flat_corner_deviation(upscaler, args.band)))
        print(str(margin).rjust(13) + "".join(c.rjust(13) for c in cells))


if __name__ == "__main__":
    main()
