#!/usr/bin/env python3
"""Choose a model's ``mean_anchor`` (``pocketsr_cli/anchor.py``) on validation photos.

    python scripts/anchor_sweep.py data/val data/val_textured -m pocketsr-compact-x4 \\
        --sigmas 2,3,4,6,8 --crop 768 --degradation real

Each photo's centred crop is degraded as ``pocketsr eval`` degrades it, upscaled once by
the network as it is (its manifest's anchoring turned off), then anchored at each sigma
(input pixels); the rows are the means over the photos of ``pocketsr eval``'s scores, and
of the absolute mean level change (the output area-downscaled minus the ground truth
area-downscaled, in 8-bit levels).  Run it on validation photos only: ``data/test`` is
kept for the model card's final figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np

from pocketsr_cli.anchor import anchor_means
from pocketsr_cli.devices import choose_device
from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.metrics import detail_scores, lattice_ratio, psnr_y, ssim_y
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.factory import UpscalerSpec, open_upscaler


def level_shift(out: np.ndarray, gt: np.ndarray, size: tuple[int, int]) -> float:
    area = cv2.INTER_AREA
    down = cv2.resize(out, size, interpolation=area).astype(np.float64)
    return float(np.mean(down - cv2.resize(gt, size, interpolation=area)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("-m", "--model", default="pocketsr-compact-x4")
    parser.add_argument("-s", "--scale", type=int, default=None)
    parser.add_argument("--sigmas", default="2,3,4,6,8")
    parser.add_argument("--crop", type=int, default=768)
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    spec = UpscalerSpec(device=choose_device("cpu"), cpu_bf16=False)
    desc = dataclasses.replace(spec.resolve(args.model, args.scale), mean_anchor=None)
    upscaler = open_upscaler(desc, spec)
    rows: dict[str, list[tuple[float, ...]]] = {}
    for folder in args.folders:
        for path in collect_images(folder):
            gt = ground_truth(path, desc.scale, args.crop)
            lr = degrade_eval(gt, args.degradation, seed=seed_for(path.name), scale=desc.scale)
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
                    )
                )
    photos = len(next(iter(rows.values())))
    print(f"{desc.name}, {photos} photos, {args.degradation} x{desc.scale}, {args.crop}-px crops")
    header = ("sigma", "PSNR-Y", "SSIM-Y", "detail", "hf", "bandcorr", "lattice", "|shift|")
    print("".join(h.rjust(10) for h in header))
    for name, scores in rows.items():
        mean = np.mean(np.array(scores), axis=0)
        cells = [f"{v:.4f}" if i == 1 else f"{v:.3f}" for i, v in enumerate(mean)]
        print(name.rjust(10) + "".join(c.rjust(10) for c in cells))


if __name__ == "__main__":
    main()
