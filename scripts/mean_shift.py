#!/usr/bin/env python3
"""Does a model change the brightness of a photo?  The mean of (output, area-downscaled
back to the input's size) minus the input, per photo and model, in 8-bit levels.

    python scripts/mean_shift.py data/test -m pocketsr-compact-x4 -m teacher-x4plus \\
        -m lanczos --crop 192

A resampler gives about 0; a generator that removes or draws texture may shift the mean
where it does (its texture is not zero-mean in sRGB levels).  Centred ``--crop`` px crops
of each photo are upscaled whole, as they are (no degradation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pocketsr_cli import Upscaler


def mean_shift(upscaler: Upscaler, pixels: np.ndarray) -> float:
    """Mean level change of ``upscaler``'s output of ``pixels`` (uint8 RGB), downscaled."""
    out = upscaler.upscale(pixels)
    size = (pixels.shape[1], pixels.shape[0])
    down = cv2.resize(out, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    return float(np.mean(down - pixels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("-m", "--model", action="append", required=True)
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args()
    upscalers = {name: Upscaler(name) for name in args.model}
    print("photo".ljust(24) + "".join(name[:22].rjust(24) for name in upscalers))
    for path in sorted(p for p in args.folder.iterdir() if not p.name.startswith(".")):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        h, w = pixels.shape[:2]
        c = min(args.crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        crop = np.ascontiguousarray(pixels[top : top + c, left : left + c])
        shifts = [mean_shift(up, crop) for up in upscalers.values()]
        print(path.name[:23].ljust(24) + "".join(f"{s:+24.2f}" for s in shifts))


if __name__ == "__main__":
    main()
