#!/usr/bin/env python3
"""Pack what ``scripts/gpu_train.sh`` needs on the GPU machine into one folder (data/gpu).

Usage::

    python3 scripts/gpu_bundle.py --photos data/photos --teacher data/teacher --out data/gpu

The GPU machine takes at most 64 MiB of working tree (the repository plus carried paths)
and installs nothing, so the bundle holds:

* ``teacher/``: Real-ESRGAN x4plus (ncnn, fp16 as published: 33 MB) and the animevideov3
  ×4 network the compact student starts from (1.2 MB);
* ``photos/``: the training split of ``--photos`` (never the validation photos).  Photos
  larger than ``--long-side`` are area-downscaled to it and re-encoded as JPEG at the
  highest quality (from ``--quality`` down to 80) that keeps all photos within
  ``--photo-budget`` MB; small photos are copied as they are.  Names are kept, so
  :func:`pocketsr_cli.train.split.split_photos` sorts them as on this machine;
* ``extra.txt``: the ``--fetch-list`` naming the extra training photos among ``photos/``
  (default ``scripts/extra_train_photos.txt``), passed on to the trainer;
* ``val/``: the centred ``--val-side`` square of each validation photo (PNG), enough for
  the trainer's ``--val-crop``;
* ``wheels/``: pure-Python wheels of the packages the GPU image lacks (spandrel, einops,
  platformdirs, tomli), unpacked onto ``PYTHONPATH`` by the script (``--no-wheels`` to
  skip: the CPU test);
* ``bundle.json``: every file with its size and SHA-256.

Exit status: 0 done, 1 error (message on stderr).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _bundle import write_listing  # noqa: E402  (beside this script)

from pocketsr_cli.train.split import split_photos  # noqa: E402

TEACHER_FILES = (
    "REALESRGAN_X4PLUS_UP4X.param",
    "REALESRGAN_X4PLUS_UP4X.bin",
    "REALESRGAN_ANIMAVIDEOV3_UP4X.param",
    "REALESRGAN_ANIMAVIDEOV3_UP4X.bin",
)
WHEELS = ("spandrel==0.4.2", "platformdirs>=4", "einops>=0.7", "tomli>=2")  # tomli: Python 3.10


def _read(path: Path) -> np.ndarray:
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    return img


def _shrunk(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = long_side / max(h, w)
    if f >= 1:
        return img
    return cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)


def pack_photos(paths: list[Path], dest: Path, long_side: int, quality: int, budget: int) -> int:
    """Write the training photos into ``dest`` within ``budget`` bytes; returns the quality."""
    dest.mkdir(parents=True, exist_ok=True)
    big = {p: _shrunk(_read(p), long_side) for p in paths if p.suffix.lower() in (".jpg", ".jpeg")}
    small = [p for p in paths if p not in big]
    fixed = sum(p.stat().st_size for p in small)
    for q in range(quality, 79, -2):
        encoded = {
            p: cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
            for p, img in big.items()
        }
        if fixed + sum(len(b) for b in encoded.values()) <= budget or q <= 80:
            break
    for p, data in encoded.items():
        (dest / p.name).write_bytes(data)
    for p in small:
        shutil.copyfile(p, dest / p.name)
    return q


def pack_val(paths: list[Path], dest: Path, side: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        img = _read(p)
        h, w = img.shape[:2]
        s_h, s_w = min(side, h), min(side, w)
        top, left = (h - s_h) // 2, (w - s_w) // 2
        crop = img[top : top + s_h, left : left + s_w]
        cv2.imwrite(str(dest / f"{p.stem}.png"), crop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--long-side", type=int, default=2048)
    parser.add_argument("--quality", type=int, default=94)
    parser.add_argument("--photo-budget", type=float, default=16.0, help="MB for photos/")
    parser.add_argument("--val-side", type=int, default=768)
    parser.add_argument("--no-wheels", action="store_true")
    parser.add_argument(
        "--fetch-list",
        type=Path,
        default=REPO / "scripts" / "extra_train_photos.txt",
        help="train_photos.txt-format list of extra training photos (copied as extra.txt)",
    )
    args = parser.parse_args(argv)
    try:
        split = split_photos(args.photos, args.fetch_list)
        if not split.train:
            raise ValueError(f"no training photos in {args.photos}")
        if args.out.exists():
            shutil.rmtree(args.out)
        (args.out / "teacher").mkdir(parents=True)
        for name in TEACHER_FILES:
            src = args.teacher / name
            if not src.is_file():
                raise ValueError(f"{src} missing (run scripts/fetch_teacher.py)")
            shutil.copyfile(src, args.out / "teacher" / name)
        budget = int(args.photo_budget * 1e6)
        quality = pack_photos(
            split.train, args.out / "photos", args.long_side, args.quality, budget
        )
        pack_val(split.validation, args.out / "val", args.val_side)
        if args.fetch_list:
            shutil.copyfile(args.fetch_list, args.out / "extra.txt")
        if not args.no_wheels:
            pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
            pure = ["--platform", "any", "--only-binary", ":all:"]
            subprocess.run([*pip, *pure, "-d", str(args.out / "wheels"), *WHEELS], check=True)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    count, total = write_listing(args.out, photo_quality=quality)
    print(f"{count} files, {total / 2**20:.1f} MiB in {args.out} (JPEG q{quality})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
