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
  over the 3 × 3 input pixels around each output pixel (``clamp2``: the 2 × 2 nearest),
  each input pixel's bounds repeated over its s × s output pixels;
* ``clamp3-smooth``: the 3 × 3 window's bounds brought up to the output bilinearly
  (pixel centres aligned, as the upscale's ``align_corners=False``) instead;
* ``clamp3+T``: ``clamp3`` with a tolerance of T levels;
* ``shipped``: the model run with ``chroma_guard = "clamp"`` (``pocketsr_cli/chroma.py``):
  the guard as inference runs it, on each tile's float output, before mean anchoring and
  rounding.

The others are applied to the 8-bit output after mean anchoring, and so round it again.

The rows are the means over the photos of PSNR-Y, RGB PSNR, a chroma PSNR (Cb and Cr
against the ground truth's), ``pocketsr eval``'s detail, hf and bandcorr, and the fringe
measure: the chroma error (the distance in the Cb-Cr plane, 8-bit levels) next to strong
luma edges (where the ground truth's luma spans over 40 levels in 5 × 5 output pixels), its
99th percentile and its maximum, the mean over the photos and the worst photo's 99th
percentile; then the same 99th percentile on the neutral edges alone (those whose ground
truth's chroma stays under 8 levels in 5 × 5 pixels), mean and worst over the crops that
have over 100 such pixels ("-" when none has); then the chroma's blockiness at the input's
pixel pitch, as the output's in excess of the ground truth's, Cb and Cr summed, 8-bit
levels (:func:`chroma_mesh`): ``cmesh`` and ``cmesh99``, the mean and the 99th percentile
over 32-px tiles of ``train.losses.phase_imbalance`` (how unevenly the gradient falls on
the s sub-pixel phases), and ``cstep``, how much more the chroma changes across the input
pixels' edges than within them.  ``--save DIR`` writes every crop's ground truth, input
and candidates as PNGs; ``--sheets DIR`` writes, for the ``--sheet-count`` crops where the
two ``--show`` candidates differ most, the ``--window``-px window where they differ most:
ground truth, ``none`` and the two, then their colour alone three times stronger on a mid
grey, enlarged ``--zoom`` times (nearest neighbour).  Run it on validation photos only:
``data/test`` is kept for the model card's final figures.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from _sweep import (
    F,
    add_options,
    changed_window,
    crops,
    degraded,
    kind,
    model,
    psnr,
    save,
    sheet,
    strong_edges,
    table,
    ycc,
)

from pocketsr_cli.evaluation.metrics import detail_scores, psnr_y
from pocketsr_cli.factory import open_upscaler
from pocketsr_cli.train.losses import phase_imbalance


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


def bounds3_smooth(plane: F, shape: tuple[int, int]) -> tuple[F, F]:
    """The 3 x 3 window's min and max brought up to the output bilinearly (pixel centres
    aligned, as the upscale's ``align_corners=False``), not repeated over each input
    pixel's output pixels: bounds with no step at each input pixel's edge."""
    kernel = np.ones((3, 3), np.uint8)
    lo = cv2.erode(plane, kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(plane, kernel, borderType=cv2.BORDER_REPLICATE)
    linear = cv2.INTER_LINEAR
    return up(lo, shape, linear), up(hi, shape, linear)


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
    "clamp3-smooth": clamp(bounds3_smooth),
    "clamp2": clamp(bounds2),
    "clamp3+2": clamp(bounds3, 2.0),
    "clamp3+4": clamp(bounds3, 4.0),
    "shipped": lambda out, lr: out,  # chroma_guard = "clamp" as inference runs it
}


def chroma_mesh(out: F, gt: F, scale: int, window: int = 32) -> tuple[float, float, float]:
    """Chroma blockiness at the input's pixel pitch, as the output's in excess of the
    ground truth's, Cb and Cr summed (8-bit levels): the mean and the 99th percentile over
    ``window``-px tiles of ``train.losses.phase_imbalance`` (how unevenly the gradient
    falls on the ``scale`` sub-pixel phases; each tile's excess, none when under), then
    the step: the mean ``|dx|`` and ``|dy|`` across the input pixels' edges (the last
    phase) less that within them (the other phases), over the whole crop.  ``out`` and
    ``gt`` start on an input pixel's edge."""

    def planes(img: F) -> tuple[F, F]:
        return ycc(img)[1:]

    def mesh(plane: F) -> F:
        x = torch.from_numpy(np.ascontiguousarray(plane, np.float32))[None, None]
        return phase_imbalance(x, scale, window).numpy()

    def step(plane: F) -> float:
        total = 0.0
        for d in (np.abs(np.diff(plane, axis=1)), np.abs(np.diff(plane, axis=0)).T):
            phases = np.array([d[:, p::scale].mean() for p in range(scale)])
            total += float(phases[-1] - phases[:-1].mean())
        return total

    excess = sum(mesh(o) - mesh(g) for o, g in zip(planes(out), planes(gt), strict=True))
    tiles = np.maximum(excess, 0)
    steps = sum(step(o) - step(g) for o, g in zip(planes(out), planes(gt), strict=True))
    return float(tiles.mean()), float(np.percentile(tiles, 99)), float(steps)


def scores(out: F, gt: F, scale: int) -> tuple[float, ...]:
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
    mesh = chroma_mesh(out, gt, scale)
    return (psnr_y(out, gt), psnr(out, gt), chroma, detail, hf, bandcorr, p99, top, n99, *mesh)


def chroma_view(img: F, gain: float = 3.0) -> F:
    """``img``'s colour alone, ``gain`` times stronger, on a mid grey (8-bit RGB)."""
    _, cb, cr = ycc(img)
    cb, cr = gain * cb, gain * cr
    rgb = np.stack([1.402 * cr, -0.344136 * cb - 0.714136 * cr, 1.772 * cb], axis=-1)
    return np.clip(np.rint(128 + rgb), 0, 255).astype(np.uint8)


def summary(rows: dict[str, list[tuple[float, ...]]]) -> dict[str, list[str]]:
    """Each guard's table cells from its crops' :func:`scores`: the means, the worst
    crop's edge p99, then the neutral edges' p99, mean and worst over the crops that have
    neutral edges ("-" when none has), then the means of the chroma mesh measures."""
    cells: dict[str, list[str]] = {}
    for guard, scored in rows.items():
        arr = np.array(scored)
        mean = arr.mean(axis=0)
        neutral = arr[:, 8][~np.isnan(arr[:, 8])]
        cells[guard] = [f"{v:.3f}" for v in mean[:8]] + [f"{arr[:, 6].max():.2f}"]
        cells[guard] += (
            [f"{neutral.mean():.2f}", f"{neutral.max():.2f}"] if neutral.size else ["-"] * 2
        )
        cells[guard] += [f"{v:.3f}" for v in mean[9:]]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(parser)
    parser.add_argument("--sheets", type=Path, default=None, help="folder for the sheets")
    parser.add_argument("--sheet-count", type=int, default=4)
    parser.add_argument("--show", default="clamp3,clamp3-smooth", help="two candidates")
    parser.add_argument("--zoom", type=int, default=4)
    parser.add_argument("--window", type=int, default=96, help="output px per panel side")
    args = parser.parse_args()
    spec, desc = model(args, chroma_guard=None)
    upscaler = open_upscaler(desc, spec)
    guarded = open_upscaler(dataclasses.replace(desc, chroma_guard="clamp"), spec)
    found = crops(args, desc.scale)
    shown = args.show.split(",")
    rows: dict[str, list[tuple[float, ...]]] = {}
    views: list[tuple[float, str, F]] = []
    for name, gt in found:
        lr = degraded(args, name, gt, desc.scale)
        raw = upscaler.upscale(lr)
        shipped = guarded.upscale(lr)
        save(args, name, "gt", gt)
        save(args, name, "lr", lr)
        outs = {}
        for guard, fn in GUARDS.items():
            out = shipped if guard == "shipped" else fn(raw, lr)
            rows.setdefault(guard, []).append(scores(out, gt, desc.scale))
            save(args, name, guard, out)
            outs[guard] = out
        p99s = [f"{g}:{rows[g][-1][6]:.1f}/{rows[g][-1][8]:.1f}" for g in GUARDS]
        print(f"  {name:40s} fringe/neutral p99 " + " ".join(p99s), flush=True)
        if args.sheets is not None:
            a, b = (outs[g] for g in shown)
            top, left, side, change = changed_window(a, b, args.window)
            panels = {"ground truth": gt, "none": outs["none"], shown[0]: a, shown[1]: b}
            for label, img in list(panels.items()):
                panels[f"{label}, colour x3"] = chroma_view(img)
            views.append((change, name, sheet(panels, top, left, side, args.zoom, across=4)))
    if args.sheets is not None:
        args.sheets.mkdir(parents=True, exist_ok=True)
        for change, name, img in sorted(views, key=lambda v: -v[0])[: args.sheet_count]:
            path = args.sheets / f"{name.replace('/', '_')}.{kind(args)}.x{desc.scale}.png"
            cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1]))
            print(f"  sheet {path} (mean change {change:.2f} levels)")
    print(f"{desc.name}, {len(found)} crops, {kind(args)} x{desc.scale}, {args.crop}-px crops")
    header = ("guard", "PSNR-Y", "PSNR-RGB", "PSNR-CbCr", "detail", "hf", "bandcorr")
    header += ("fringe99", "fringeMax", "worst99", "neutral99", "worstN99")
    header += ("cmesh", "cmesh99", "cstep")
    cells = summary(rows)
    table(header, cells, width=14)
    if any(c[10] == "-" for c in cells.values()):
        print("no neutral edges in any crop: neutral99 and worstN99 left out")


if __name__ == "__main__":
    main()
