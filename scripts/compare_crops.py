"""Side-by-side crops for the README: LR input (nearest), bicubic, the models, ground truth.

    python scripts/compare_crops.py data/test/EveningGlow.jpg --models lanczos \\
        pocketsr-compact-x4 teacher-x4plus --box 1180 560 256 --context 64 \\
        --out models/pocketsr-compact-x4-comparison.png

The ground truth is degraded with the ``real`` degradation (the same function and seed
as ``pocketsr eval``), every model upscales the same LR, and the crop at ``--box LEFT TOP
SIDE`` (ground-truth pixels) is cut from each output and labelled, at 100 % (``--zoom 2``
also writes a second sheet at 200 %, nearest-neighbour).  ``--scale 2`` shows the ×2 task:
a model without a ×2 variant runs at its own scale and is resized, as ``pocketsr eval -s 2
--resize`` does.
``--context N`` degrades and upscales only the box plus ``N`` pixels around it (aligned to
the 8×8 JPEG grid of the LR), so slow models such as the teacher take seconds instead of
minutes; the noise then differs from the whole-image degradation's.
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
from pocketsr_cli.evaluation.run import ground_truth, resolve_models
from pocketsr_cli.factory import UpscalerSpec
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.pipeline import resize_output


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photo", type=Path)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--box", nargs=3, type=int, metavar=("LEFT", "TOP", "SIDE"), required=True)
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    parser.add_argument(
        "--scale", type=int, default=4, choices=[2, 4],
        help="2: the ×2 task (a model without a ×2 variant runs at its own scale and is resized)",
    )  # fmt: skip
    parser.add_argument("--context", type=int, default=None)
    parser.add_argument("--zoom", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    left, top, side = args.box
    s = args.scale
    gt = ground_truth(args.photo, s)
    if args.context is not None:
        grid = 8 * s  # ground-truth pixels of one 8×8 JPEG block of the LR
        y0 = max(0, (top - args.context) // grid * grid)
        x0 = max(0, (left - args.context) // grid * grid)
        y1 = min(gt.shape[0], -(-(top + side + args.context) // grid) * grid)
        x1 = min(gt.shape[1], -(-(left + side + args.context) // grid) * grid)
        gt = np.ascontiguousarray(gt[y0:y1, x0:x1])
        top, left = top - y0, left - x0
    lr = degrade_eval(gt, args.degradation, seed=seed_for(args.photo.name), scale=s)
    panels = [
        ("input (nearest)", cv2.resize(lr, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST))
    ]
    # resolved as `pocketsr eval --resize` resolves them: a model without a variant at this
    # scale runs at its own, and its output is resized (PCSR draws it natively)
    names = list(dict.fromkeys(["bicubic", *args.models]))
    cpu = Compute(torch.device("cpu"), "fp32")
    resolved, _ = resolve_models(names, s, UpscalerSpec(cpu.device, cpu.precision), resize=True)
    for name, (desc, _floor, native) in zip(names, resolved, strict=True):
        out = Upscaler(desc, cpu, outscale=native).upscale(lr)
        if out.shape[:2] != gt.shape[:2]:
            out = resize_output(out, (gt.shape[1], gt.shape[0]))
        panels.append((name, out))
    panels.append(("ground truth", gt))
    crops = [(label, img[top : top + side, left : left + side]) for label, img in panels]
    _sheet(crops, side, args.out)
    if args.zoom > 1:
        z = args.zoom
        zoomed = [
            (f"{label} ({z * 100} %)", np.repeat(np.repeat(c, z, axis=0), z, axis=1))
            for label, c in crops
        ]
        _sheet(zoomed, side * z, args.out.with_name(f"{args.out.stem}-{z * 100}{args.out.suffix}"))


def _sheet(crops: list[tuple[str, np.ndarray]], side: int, out: Path) -> None:
    pad = 24
    sheet = Image.new("RGB", (len(crops) * (side + 4), side + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, crop) in enumerate(crops):
        x = i * (side + 4)
        sheet.paste(Image.fromarray(np.ascontiguousarray(crop)), (x, pad))
        draw.text((x + 4, 5), label, fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(f"wrote {out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
