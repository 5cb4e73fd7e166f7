#!/usr/bin/env python3
"""Compare post-network chroma guards of a model on validation photos.

    python scripts/chroma_sweep.py data/val data/val_textured -m pocketsr-compact-x4 \\
        --crop 768 --degradation real

Each photo's centred crop (and each ``--at NAME:LEFT,TOP`` crop of a photo in the
folders) is degraded as ``pocketsr eval`` degrades it, upscaled once by the model as it
ships (its manifest's mean anchoring on, its chroma guard off), then the output's colour
is replaced in BT.601 full-range YCbCr, luma kept, by each candidate:

* ``none``: the network's output;
* ``input``: Cb/Cr of the input, bicubic-upscaled;
* ``clamp3``/``clamp2``: the network's Cb/Cr clamped into the [min, max] of the input's
  over the 3 × 3 input pixels around each output pixel (``clamp2``: the 2 × 2 nearest);
* ``clamp3+T``: the same with a tolerance of T levels;
* ``shipped``: the model run with ``chroma_guard = "clamp"`` (``pocketsr_cli/chroma.py``):
  the 3 x 3 clamp on each tile's float output, before mean anchoring and rounding.

The others are applied to the 8-bit output after mean anchoring, and so round it again.

The rows are the means over the photos of PSNR-Y, RGB PSNR, a chroma PSNR (Cb and Cr
against the ground truth's), ``pocketsr eval``'s detail, hf and bandcorr, and the fringe
measure: the chroma error (the distance in the Cb-Cr plane, 8-bit levels) next to strong
luma edges (where the ground truth's luma spans over 40 levels in 5 × 5 output pixels), its
99th percentile and its maximum, the mean over the photos and the worst photo's 99th
percentile; then the same 99th percentile on the neutral edges alone (those whose ground
truth's chroma stays under 8 levels in 5 × 5 pixels), mean and worst over the crops that
have over 100 such pixels ("-" when none has).  ``--save DIR``
writes every crop's ground truth, input and candidates as PNGs.  Run
it on validation photos only: ``data/test`` is kept for the model card's final figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import cv2
import numpy as np
from _sweep import (
    F,
    add_options,
    crops,
    degraded,
    kind,
    model,
    psnr,
    save,
    strong_edges,
    table,
    ycc,
)

from pocketsr_cli.evaluation.metrics import detail_scores, psnr_y
from pocketsr_cli.factory import open_upscaler


def recolour(out: F, cb: F, cr: F) -> F:
    """``out`` with its Cb, Cr moved to ``cb``, ``cr``, luma kept: the change is added in
    RGB, so that a pixel whose chroma does not move keeps its exact value."""
    _, cb0, cr0 = ycc(out)
    dcb, dcr = cb - cb0, cr - cr0
    delta = np.stack([1.402 * dcr, -0.344136 * dcb - 0.714136 * dcr, 1.772 * dcb], axis=-1)
    moved = out[..., :3].astype(np.float64) + delta
    return np.clip(np.rint(moved), 0, 255).astype(np.uint8)


def up(plane: F, shape: tuple[int, int], how: int) -> F:
    return cv2.resize(plane, (shape[1], shape[0]), interpolation=how)


def bounds2(plane: F, shape: tuple[int, int]) -> tuple[F, F]:
    """Min and max of the 2 x 2 input pixels nearest each output pixel."""
    scale = shape[0] // plane.shape[0]

    def index(n: int, side: int) -> F:
        u = (np.arange(n) + 0.5) / scale - 0.5
        return np.clip(np.floor(u).astype(int), 0, side - 2)

    rows, cols = index(shape[0], plane.shape[0]), index(shape[1], plane.shape[1])
    quad = [plane[np.ix_(rows + dr, cols + dc)] for dr in (0, 1) for dc in (0, 1)]
    return np.minimum.reduce(quad), np.maximum.reduce(quad)


def bounds3(plane: F, shape: tuple[int, int]) -> tuple[F, F]:
    kernel = np.ones((3, 3), np.uint8)
    lo = cv2.erode(plane, kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(plane, kernel, borderType=cv2.BORDER_REPLICATE)
    near = cv2.INTER_NEAREST
    return up(lo, shape, near), up(hi, shape, near)


def clamp(bounds: Callable[[F, tuple[int, int]], tuple[F, F]], tol: float = 0.0):
    def guard(out: F, lr: F) -> F:
        _, cb, cr = ycc(out)
        _, lcb, lcr = ycc(lr)
        planes = []
        for c, lc in ((cb, lcb), (cr, lcr)):
            lo, hi = bounds(lc.astype(np.float32), c.shape)
            planes.append(np.clip(c, lo - tol, hi + tol))
        return recolour(out, *planes)

    return guard


def from_input(out: F, lr: F) -> F:
    y, _, _ = ycc(out)
    _, lcb, lcr = ycc(lr)
    cubic = cv2.INTER_CUBIC
    return recolour(out, up(lcb, y.shape, cubic), up(lcr, y.shape, cubic))


GUARDS: dict[str, Callable[[F, F], F]] = {
    "none": lambda out, lr: out,
    "input": from_input,
    "clamp3": clamp(bounds3),
    "clamp2": clamp(bounds2),
    "clamp3+2": clamp(bounds3, 2.0),
    "clamp3+4": clamp(bounds3, 4.0),
    "shipped": lambda out, lr: out,  # chroma_guard = "clamp" as inference runs it
}


def scores(out: F, gt: F) -> tuple[float, ...]:
    b = 4
    out, gt = out[b:-b, b:-b], gt[b:-b, b:-b]
    _, cbo, cro = ycc(out)
    yg, cbg, crg = ycc(gt)
    chroma = psnr(np.stack([cbo, cro]), np.stack([cbg, crg]))
    edges = strong_edges(yg)
    kernel = np.ones((5, 5), np.uint8)
    chroma_g = cv2.dilate(np.hypot(cbg, crg).astype(np.float32), kernel)
    neutral = edges & (chroma_g < 8)
    errmap = np.hypot(cbo - cbg, cro - crg)
    err = errmap[edges]
    nerr = errmap[neutral]
    detail, hf, bandcorr = detail_scores(out, gt)
    p99 = float(np.percentile(err, 99)) if err.size else 0.0
    top = float(err.max()) if err.size else 0.0
    n99 = float(np.percentile(nerr, 99)) if nerr.size > 100 else float("nan")
    return (psnr_y(out, gt), psnr(out, gt), chroma, detail, hf, bandcorr, p99, top, n99)


def summary(rows: dict[str, list[tuple[float, ...]]]) -> dict[str, list[str]]:
    """Each guard's table cells from its crops' :func:`scores`: the means, the worst
    crop's edge p99, then the neutral edges' p99, mean and worst over the crops that have
    neutral edges ("-" when none has)."""
    cells: dict[str, list[str]] = {}
    for guard, scored in rows.items():
        arr = np.array(scored)
        mean = arr.mean(axis=0)
        neutral = arr[:, 8][~np.isnan(arr[:, 8])]
        cells[guard] = [f"{v:.3f}" for v in mean[:8]] + [f"{arr[:, 6].max():.2f}"]
        cells[guard] += (
            [f"{neutral.mean():.2f}", f"{neutral.max():.2f}"] if neutral.size else ["-"] * 2
        )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(parser)
    args = parser.parse_args()
    spec, desc = model(args, chroma_guard=None)
    upscaler = open_upscaler(desc, spec)
    guarded = open_upscaler(dataclasses.replace(desc, chroma_guard="clamp"), spec)
    found = crops(args, desc.scale)
    rows: dict[str, list[tuple[float, ...]]] = {}
    for name, gt in found:
        lr = degraded(args, name, gt, desc.scale)
        raw = upscaler.upscale(lr)
        shipped = guarded.upscale(lr)
        save(args, name, "gt", gt)
        save(args, name, "lr", lr)
        for guard, fn in GUARDS.items():
            out = shipped if guard == "shipped" else fn(raw, lr)
            rows.setdefault(guard, []).append(scores(out, gt))
            save(args, name, guard, out)
        p99s = [f"{g}:{rows[g][-1][6]:.1f}/{rows[g][-1][8]:.1f}" for g in GUARDS]
        print(f"  {name:40s} fringe/neutral p99 " + " ".join(p99s), flush=True)
    print(f"{desc.name}, {len(found)} crops, {kind(args)} x{desc.scale}, {args.crop}-px crops")
    header = ("guard", "PSNR-Y", "PSNR-RGB", "PSNR-CbCr", "detail", "hf", "bandcorr")
    header += ("fringe99", "fringeMax", "worst99", "neutral99", "worstN99")
    cells = summary(rows)
    table(header, cells)
    if any(c[-1] == "-" for c in cells.values()):
        print("no neutral edges in any crop: neutral99 and worstN99 left out")


if __name__ == "__main__":
    main()
