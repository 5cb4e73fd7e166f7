#!/usr/bin/env python3
"""Seconds per image through the Python API (``pocketsr_cli.Upscaler.upscale``), in memory.

What a library user sees: the model opened once, then each image of a folder upscaled as a
PIL image, no decoding or encoding timed.  The first image is a warm-up (the tiler's memory
probe, first allocations); the figure is the best and the median of the rest.  Compare with
``pocketsr bench`` (the CLI's model-only figure) to see that the API costs no more, and run
it with ``POCKETSR_KEEP_FREED_MEMORY=0`` to see what keeping freed memory is worth.

    python scripts/api_speed.py data/bench8                       # default model
    python scripts/api_speed.py data/bench8 -m pocketsr-compact-x2 --precision fp32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from PIL import Image

from pocketsr_cli import Upscaler, hostmem

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path, help="images to upscale (8-bit RGB photos)")
    parser.add_argument("-m", "--model", default=None, help="model name (default: the default)")
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if len(paths) < 2:
        parser.error(f"{args.folder} needs at least two images (the first is a warm-up)")
    images = [Image.open(p).convert("RGB") for p in paths]
    up = Upscaler(args.model, precision=args.precision)
    times = []
    for image in images:
        t0 = time.perf_counter()
        out = up.upscale(image)
        times.append(time.perf_counter() - t0)
    rest = times[1:]
    print(
        json.dumps(
            {
                "model": up.name,
                "device": str(up.device),
                "images": len(rest),
                "input": "x".join(map(str, images[0].size)),
                "output": "x".join(map(str, out.size)),
                "keeps_freed_memory": hostmem.is_retaining(),
                "best_s": round(min(rest), 3),
                "median_s": round(statistics.median(rest), 3),
                "warm_up_s": round(times[0], 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
