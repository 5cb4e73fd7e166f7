#!/usr/bin/env python3
"""Choose a model's ``mean_anchor`` (``pocketsr_cli/anchor.py``) on validation photos.

    python scripts/anchor_sweep.py data/val data/val_textured -m pocketsr-compact-x4 \\
        --sigmas 2,3,4,6,8 --crop 768 --degradation real

Each photo's centred crop is degraded as ``pocketsr eval`` degrades it (``--jpeg Q``:
bicubic downscale, then JPEG at quality Q), upscaled once by the network as it is (its
manifest's anchoring turned off), then anchored at each sigma (input pixels); the rows
are the means over the photos of ``pocketsr eval``'s scores, of the absolute mean level
change (the output area-downscaled minus the ground truth area-downscaled, in 8-bit
levels) and of the block-edge ratio (the mean luma step across the output's grid of
8 × scale pixels, where a JPEG input's blocks meet, over the mean step elsewhere).
``--sheet PATH`` draws, for the first three photos, a 128-px crop of the network's output
and, for each sigma, the change anchoring made, ×8 around mid grey, at 200 %.  Run it on
validation photos only: ``data/test`` is kept for the model card's final figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pocketsr_cli.anchor import anchor_means
from pocketsr_cli.devices import choose_device
from pocketsr_cli.evaluation.degrade import degrade_or_jpeg, seed_for
from pocketsr_cli.evaluation.metrics import detail_scores, lattice_ratio, psnr_y, ssim_y
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.factory import UpscalerSpec, open_upscaler


def level_shift(out: np.ndarray, gt: np.ndarray, size: tuple[int, int]) -> float:
    area = cv2.INTER_AREA
    down = cv2.resize(out, size, interpolation=area).astype(np.float64)
    return float(np.mean(down - cv2.resize(gt, size, interpolation=area)))


def block_edges(img: np.ndarray, period: int) -> float:
    """Mean luma step across the lines every ``period`` px over the mean step elsewhere."""
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    ratios = []
    for steps in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        on = (np.arange(steps.shape[1]) % period) == period - 1
        ratios.append(steps[:, on].mean() / steps[:, ~on].mean())
    return float(np.mean(ratios))


def sheet_row(variants: dict[str, np.ndarray], side: int = 128) -> np.ndarray:
    """The network's output and each sigma's change (x8 around grey), centre crops, 200 %."""
    raw = variants["none"].astype(np.int32)
    top, left = (raw.shape[0] - side) // 2, (raw.shape[1] - side) // 2
    tiles = [raw]
    tiles += [(v.astype(np.int32) - raw) * 8 + 128 for k, v in variants.items() if k != "none"]
    cells = []
    for tile in tiles:
        crop = np.clip(tile[top : top + side, left : left + side], 0, 255).astype(np.uint8)
        crop = crop.repeat(2, axis=0).repeat(2, axis=1)
        cells.append(np.pad(crop, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    return np.concatenate(cells, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("-m", "--model", default="pocketsr-compact-x4")
    parser.add_argument("-s", "--scale", type=int, default=None)
    parser.add_argument("--sigmas", default="2,3,4,6,8")
    parser.add_argument("--crop", type=int, default=768)
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    parser.add_argument("--jpeg", type=int, default=None, metavar="Q")
    parser.add_argument("--sheet", type=Path, default=None)
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    spec = UpscalerSpec(device=choose_device("cpu"), cpu_bf16=False)
    desc = dataclasses.replace(spec.resolve(args.model, args.scale), mean_anchor=None)
    upscaler = open_upscaler(desc, spec)
    rows: dict[str, list[tuple[float, ...]]] = {}
    sheet: list[np.ndarray] = []
    for folder in args.folders:
        for path in collect_images(folder):
            gt = ground_truth(path, desc.scale, args.crop)
            lr = degrade_or_jpeg(gt, args.degradation, seed_for(path.name), desc.scale, args.jpeg)
            raw = upscaler.upscale(lr)
            variants = {"none": raw}
            for sigma in sigmas:
                anchored = raw.copy()
                anchor_means(anchored, lr, sigma, 3)
                variants[f"{sigma:g}"] = anchored
            for name, out in variants.items():
                detail, hf, bandcorr = detail_scores(out, gt)
                size = (lr.shape[1], lr.shape[0])
                rows.setdefault(name, []).append(
                    (
                        psnr_y(out, gt),
                        ssim_y(out, gt),
                        detail,
                        hf,
                        bandcorr,
                        lattice_ratio(out),
                        abs(level_shift(out, gt, size)),
                        block_edges(out, 8 * desc.scale),
                    )
                )
            if len(sheet) < 3:
                sheet.append(sheet_row(variants))
    photos = len(next(iter(rows.values())))
    kind = args.degradation if args.jpeg is None else f"JPEG q{args.jpeg}"
    print(f"{desc.name}, {photos} photos, {kind} x{desc.scale}, {args.crop}-px crops")
    header = ("sigma", "PSNR-Y", "SSIM-Y", "detail", "hf", "bandcorr", "lattice", "|shift|")
    header += ("blocks",)
    print("".join(h.rjust(10) for h in header))
    for name, scores in rows.items():
        mean = np.mean(np.array(scores), axis=0)
        cells = [f"{v:.4f}" if i == 1 else f"{v:.3f}" for i, v in enumerate(mean)]
        print(name.rjust(10) + "".join(c.rjust(10) for c in cells))
    if args.sheet is not None:
        Image.fromarray(np.concatenate(sheet, axis=0)).save(args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
