"""Side-by-side crops for the README: LR input (nearest), bicubic, pocketsr, teacher.

    python scripts/compare_crops.py data/heldout/LadyBird.jpg --models pocketsr-nano-x4 \\
        teacher-x4plus --box 1180 560 256 --out models/pocketsr-nano-x4-comparison.png

The ground truth is degraded with the SPEC's ``real`` degradation (the same function and
seed as ``pocketsr eval``), every model upscales the same LR, and the crop at
``--box LEFT TOP SIDE`` (ground-truth pixels) is cut from each output and labelled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from pocketsr_cli.devices import Compute
from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.run import ground_truth
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.weights.resolve import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photo", type=Path)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--box", nargs=3, type=int, metavar=("LEFT", "TOP", "SIDE"), required=True)
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    left, top, side = args.box
    gt = ground_truth(args.photo, 4)
    lr = degrade_eval(gt, args.degradation, seed=seed_for(args.photo.name), scale=4)
    panels = [
        ("input (nearest)", cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST))
    ]
    for name in ["bicubic", *args.models]:
        desc = resolve_model(name, 4)
        up = Upscaler(desc, Compute(torch.device("cpu"), "fp32"))
        panels.append((name, up.upscale(lr)))
    panels.append(("ground truth", gt))
    crops = [(label, img[top : top + side, left : left + side]) for label, img in panels]
    pad = 24
    sheet = Image.new("RGB", (len(crops) * (side + 4), side + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, crop) in enumerate(crops):
        x = i * (side + 4)
        sheet.paste(Image.fromarray(np.ascontiguousarray(crop)), (x, pad))
        draw.text((x + 4, 5), label, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
