#!/usr/bin/env python3
"""How far tiled output is from the untiled result, per model and tile overlap.

Each image's central crop is upscaled whole (``tile=0``) and in tiles of ``2 * overlap +
core`` pixels, so that every overlap is tried with the same core and there are seams in
both directions; the table gives the largest and the 99.9th-percentile difference in
8-bit levels (a 16-bit input for the resamplers, whose 8-bit path is never tiled, then
read in 8-bit levels).  fp32 on the CPU, so the difference is the tiles' alone.  What a
model's manifest states as its ``[hints] overlap`` is the smallest overlap within 2
levels (largest) and 1 (99.9th percentile) on every image.  The image ``noise`` is
uniform noise (400x300, seed 1), the worst case.

    python scripts/tile_seams.py data/val/GreenMeadow.jpg data/val/skimage_chelsea.png noise
    python scripts/tile_seams.py data/val/FallenLeaf.jpg -m pcsr-x4 --overlaps 0,4,8,16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_MODELS = "pocketsr-compact-x4,pocketsr-compact-x2,pocketsr-nano-x2,pcsr-x4,bicubic,lanczos"


def main(argv: list[str] | None = None) -> int:
    import torch

    from pocketsr_cli.cli._options import upscaler_spec
    from pocketsr_cli.factory import open_upscaler

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("images", type=Path, nargs="+", help="photos (8-bit), or noise")
    parser.add_argument("-m", "--models", default=DEFAULT_MODELS, help="comma-separated names")
    parser.add_argument("--overlaps", default="0,2,4,6,8,12,16,20,24,32,40")
    parser.add_argument("--crop", default="200x150", help="central crop, WxH (input pixels)")
    parser.add_argument("--core", type=int, default=48, help="tile side less the overlaps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.crop.lower().split("x"))
    overlaps = [int(v) for v in args.overlaps.split(",")]
    print("image\tmodel\toverlap\ttile\tmax\tp99.9")
    for path in args.images:
        if str(path) == "noise":
            pixels = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
        else:
            pixels = np.asarray(Image.open(path).convert("RGB"))
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
        crop = pixels[max(top, 0) : max(top, 0) + height, max(left, 0) : max(left, 0) + width]
        for name in args.models.split(","):
            whole_spec = upscaler_spec("cpu", "fp32", 0)
            desc = whole_spec.resolve(name)
            wide = desc.family == "resize"
            image = crop.astype(np.uint16) * 257 if wide else crop
            levels = 257.0 if wide else 1.0
            whole = open_upscaler(desc, whole_spec).upscale(image).astype(np.float64)
            for overlap in overlaps:
                tile = 2 * overlap + args.core
                spec = upscaler_spec("cpu", "fp32", tile, overlap)
                up = open_upscaler(desc, spec, on_warning=lambda _message: None)
                diff = np.abs(up.upscale(image).astype(np.float64) - whole) / levels
                print(
                    f"{path.name}\t{name}\t{overlap}\t{tile}\t{diff.max():.2f}\t"
                    f"{np.percentile(diff, 99.9):.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
