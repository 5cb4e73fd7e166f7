#!/usr/bin/env python3
"""The physical floor of a resize job: OpenCV decode + resize + encode, nothing else.

Issue 12 measures ``pocketsr upscale -m bicubic`` against this plain loop on the same
files, in the same run, on the same machine.  ``make`` writes the benchmark folder (eight
960x540 JPEGs cut from any photos, so a x4 model writes 3840x2160); ``time`` runs the
loop over a folder and prints one JSON object.

    python scripts/opencv_floor.py make data/test data/bench8          # 8 x 960x540 JPEG q90
    python scripts/opencv_floor.py make data/test /tmp/perf_in --count 16 --size 480x270
    python scripts/opencv_floor.py time data/bench8 --format png --scale 4

The loop reads every image with ``cv2.imread``, enlarges it with ``cv2.resize``
(``INTER_CUBIC``) and encodes it with ``cv2.imencode`` (PNG with OpenCV's default settings,
JPEG q95: pocketsr's defaults) to a temporary folder, one image after another, with OpenCV's
default threads.  Best of ``--repeat`` passes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def make(
    photos: Path,
    out: Path,
    count: int = 8,
    width: int = 960,
    height: int = 540,
    fmt: str = "jpg",
) -> None:
    """``count`` JPEGs (q90; PNGs with ``fmt="png"``) of ``width`` x ``height``, centred cuts
    of ``photos``' images in that aspect, shrunk with area averaging; more than one cut per
    photo when there are few."""
    sources = sorted(p for p in photos.iterdir() if p.suffix.lower() in SUFFIXES)
    if not sources:
        raise SystemExit(f"no photos in {photos}")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = cv2.imread(str(sources[i % len(sources)]), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        # the k-th cut of a photo: a window that shrinks by 10 % per extra cut
        k = i // len(sources)
        cw = int(min(w, h * width / height) * (1 - 0.1 * k))
        ch = int(cw * height / width)
        top, left = (h - ch) // 2, (w - cw) // 2
        cut = cv2.resize(img[top : top + ch, left : left + cw], (width, height), cv2.INTER_AREA)
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpg" else []
        cv2.imwrite(str(out / f"bench_{i:02d}.{fmt}"), cut, params)


def time_folder(folder: Path, fmt: str, scale: int, repeat: int) -> dict[str, object]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    ext = ".png" if fmt == "png" else ".jpg"
    params = [] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    best = float("inf")
    out_pixels = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            start = time.perf_counter()
            out_pixels = 0
            for path in files:
                img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                h, w = img.shape[:2]
                big = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
                ok, data = cv2.imencode(ext, big, params)
                if not ok:
                    raise SystemExit(f"could not encode {path}")
                (Path(tmp) / (path.stem + ext)).write_bytes(np.asarray(data).tobytes())
                out_pixels += big.shape[0] * big.shape[1]
            best = min(best, time.perf_counter() - start)
    return {
        "floor": "opencv decode+resize+encode",
        "images": len(files),
        "format": fmt,
        "scale": scale,
        "seconds": round(best, 4),
        "seconds_per_image": round(best / len(files), 4),
        "mp_per_s": round(out_pixels / 1e6 / best, 2),
        "threads": cv2.getNumThreads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write the benchmark folder")
    m.add_argument("photos", type=Path)
    m.add_argument("out", type=Path)
    m.add_argument("--count", type=int, default=8)
    m.add_argument("--size", default="960x540", help="WIDTHxHEIGHT of each image")
    m.add_argument("--format", choices=("jpg", "png"), default="jpg")
    t = sub.add_parser("time", help="time the OpenCV loop over a folder")
    t.add_argument("folder", type=Path)
    t.add_argument("--format", choices=("png", "jpg"), default="png")
    t.add_argument("--scale", type=int, default=4)
    t.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.command == "make":
        width, height = (int(side) for side in args.size.lower().split("x"))
        make(args.photos, args.out, args.count, width, height, args.format)
    else:
        print(json.dumps(time_folder(args.folder, args.format, args.scale, args.repeat)))


if __name__ == "__main__":
    main()
