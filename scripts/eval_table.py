#!/usr/bin/env python3
"""A markdown table from ``pocketsr eval --json`` files, for model cards and the README.

    pocketsr eval data/test --crop 512 --degradation real -m pocketsr-compact-x4 \\
        -m teacher-x4plus --json --quiet > runs/x4_real.jsonl
    python scripts/eval_table.py runs/x4_real.jsonl [more.jsonl ...]

One row per (model, degradation) record, in file order: PSNR-Y, SSIM-Y, detail, hf,
bandcorr, lattice ratio (each the mean over the photos, as ``pocketsr eval`` reports), and
``detail (geo)``: the geometric mean of the per-photo detail ratios.  The plain mean of a
ratio is ruled by the photos whose ground truth has the least detail (a bokeh crop whose
band energy is nearly zero turns any faint texture into a ratio of 2); the geometric mean
weighs a halving on one photo like a doubling on another, so it says whether detail rose
on most photos.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

COLUMNS = (
    ("psnr_y", "PSNR-Y", 2),
    ("ssim_y", "SSIM-Y", 3),
    ("detail", "detail", 3),
    ("hf", "hf", 3),
    ("bandcorr", "bandcorr", 3),
    ("lattice_ratio", "lattice", 2),
)


def geometric_mean(values: list[float]) -> float | None:
    """Geometric mean of positive ``values``; ``None`` when empty or any is not positive."""
    if not values or min(values) <= 0:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def rows(records: list[dict]) -> list[list[str]]:
    out = []
    for r in records:
        cells = [f"{r['model']}, `{r.get('degradation', '?')}`"]
        for key, _, digits in COLUMNS:
            value = r.get(key)
            cells.append("-" if value is None else f"{value:.{digits}f}")
        geo = geometric_mean([im["detail"] for im in r.get("images", []) if "detail" in im])
        cells.append("-" if geo is None else f"{geo:.3f}")
        out.append(cells)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    records = [
        json.loads(line)
        for path in args.files
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("type", "model") != "error"
    ]
    header = ["model", *(title for _, title, _ in COLUMNS), "detail (geo)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows(records):
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
