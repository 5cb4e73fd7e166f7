#!/usr/bin/env python3
"""Compare post-network ring guards (halo and overshoot limiters) on validation photos.

    python scripts/ring_sweep.py data/val data/val_textured -m pocketsr-compact-x4 \\
        --crop 768 --degradation real --sheets /tmp/sheets

Each photo's centred crop (and each ``--at NAME:LEFT,TOP`` crop) is degraded as
``pocketsr eval`` degrades it and upscaled by the model as it ships (fp32; its margin,
chroma guard and mean anchoring on), with each candidate applied to each tile's float
output inside the network's call, before the chroma guard (the two
commute: a ring guard moves luma only, R, G and B by the same amount, so B - Y and R - Y
stay; the chroma guard moves B - Y and R - Y only, luma kept), the tiles' blending,
mean anchoring and rounding.  The candidates bound each output pixel's BT.601 luma by the
input's luma over the 3 x 3 input pixels around the one it lies in, [lo, hi]:

* ``none``: the network's output;
* ``clamp``: luma clamped into [lo, hi];
* ``clamp+A``: into [lo - m, hi + m], m = A * (hi - lo); ``clamp+A+L``: m = A * (hi - lo)
  + L levels (room for texture where the input's range is small);
* ``soft-B``: a fraction B of the excess beyond [lo, hi] kept (mpv's and madVR's
  "antiring" strength 1 - B);
* ``knee-A``: the excess e compressed smoothly to w * tanh(e / w), w = A * (hi - lo):
  never beyond the margin of ``clamp+A``, with no plateau at it;
* ``wide5``/``wide5-B``: the bounds of the 5 x 5 input pixels around, hard or keeping B;
* ``near2``/``near2-B``: the bounds of the 2 x 2 nearest input pixels (mpv's antiring
  window), hard or keeping B;
* ``edges``: ``clamp`` faded in with the input window's range (none under 16 levels,
  all over 48): only strong edges guarded; ``edges-32``: from 32 to 64 levels;
  ``edges-32+0.1``, ``edges-32-0.5``, ``edges-32-knee``: the same with the margin of
  ``clamp+0.1``, keeping half the excess, or with the knee of ``knee-0.1``;
* ``smooth``, ``smooth-0.5``, ``smooth+0.25``, ``smooth-edges-32``: ``clamp``,
  ``soft-0.5``, ``clamp+0.25``, ``edges-32`` with the 3 x 3 window's bounds brought up
  to the output bilinearly instead of repeated over each input pixel's output pixels
  (whose steps draw blocks into clamped lines).

The rows are the means over the crops of PSNR-Y, RGB PSNR, ``pocketsr eval``'s detail,
hf and bandcorr, and the halo measure: next to strong edges (where the ground truth's
luma spans over 40 levels in 5 x 5 output pixels), how far the output's luma goes above
the ground truth's 5 x 5 maximum (overshoot: bright rims) and below its minimum
(undershoot: dark outlines), in 8-bit levels, 99th percentile and mean; and where the
band-passed energy (``bandcorr``'s band) goes, as the output's over the ground truth's,
away from strong edges ("texture": more than 2 px from them) and on them ("edges").  The
``--reference`` models' rows (lanczos and, at x4, the teacher ``teacher-x4plus``) are
measured the same way, upscaled as they ship.  ``--json FILE`` writes each crop's scores,
``--save DIR`` every output as PNG; ``--sheets DIR`` writes, for the ``--sheet-count``
crops where the first ``--show`` candidate changes the output most, the window where it
changes it most: ground truth, lanczos, ``none`` and the ``--show`` candidates, enlarged
``--zoom`` times (nearest neighbour; a ``--window`` over the crop is cut to it).  Run it
on validation photos only: ``data/test`` is kept for the model card's final figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as tf
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
from torch import nn

from pocketsr_cli.errors import ModelError
from pocketsr_cli.evaluation.metrics import (
    BANDPASS_SIGMAS,
    detail_scores,
    gaussian_filter,
    psnr_y,
)
from pocketsr_cli.factory import open_upscaler

T = torch.Tensor
Guard = Callable[[T, T], T]
_LUMA = (0.299, 0.587, 0.114)


def luma(rgb: T) -> T:
    """BT.601 luma ``(n, 1, H, W)`` of ``(n, 3, H, W)``."""
    r, g, b = rgb[:, :1], rgb[:, 1:2], rgb[:, 2:3]
    return r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]


def window3(y: T, scale: int, side: int = 3) -> tuple[T, T]:
    """Min and max of ``y`` over each ``side`` x ``side`` window, each input pixel's
    repeated over its ``scale`` x ``scale`` output pixels."""
    hi = tf.max_pool2d(y, side, stride=1, padding=side // 2)
    lo = -tf.max_pool2d(-y, side, stride=1, padding=side // 2)
    return tuple(b.repeat_interleave(scale, -2).repeat_interleave(scale, -1) for b in (lo, hi))  # type: ignore[return-value]


def window5(y: T, scale: int) -> tuple[T, T]:
    return window3(y, scale, 5)


def smooth3(y: T, scale: int) -> tuple[T, T]:
    """The 3 x 3 window's min and max brought up to the output bilinearly, not repeated:
    bounds with no step at each input pixel's edge."""
    hi = tf.max_pool2d(y, 3, stride=1, padding=1)
    lo = -tf.max_pool2d(-y, 3, stride=1, padding=1)
    up = {"scale_factor": scale, "mode": "bilinear", "align_corners": False}
    return tf.interpolate(lo, **up), tf.interpolate(hi, **up)  # type: ignore[arg-type]


def window2(y: T, scale: int) -> tuple[T, T]:
    """Min and max of ``y`` over the 2 x 2 input pixels nearest each output pixel's centre
    (the edge pixel repeated beyond the image)."""
    framed = tf.pad(y, (1, 1, 1, 1), mode="replicate")
    hi = tf.max_pool2d(framed, 2, stride=1)
    lo = -tf.max_pool2d(-framed, 2, stride=1)
    height, width = y.shape[-2:]

    def index(n: int) -> T:
        u = (torch.arange(n * scale, dtype=torch.float64) + 0.5) / scale - 0.5
        return (torch.floor(u).long() + 1).clamp(0, n)

    rows, cols = index(height), index(width)
    return tuple(b[..., rows, :][..., cols] for b in (lo, hi))  # type: ignore[return-value]


def limiter(
    window: Callable[[T, int], tuple[T, T]] = window3,
    margin: float = 0.0,
    floor: float = 0.0,
    keep: float = 0.0,
    knee: float = 0.0,
    fade: tuple[float, float] | None = None,
) -> Guard:
    """A guard moving each output pixel's luma towards the input's bounds around it, by
    the same amount in R, G and B (see the module docstring for the parameters)."""

    def guard(out: T, src: T) -> T:
        scale = out.shape[-1] // src.shape[-1]
        lo, hi = window(luma(src.float()), scale)
        span = hi - lo
        slack = margin * span + floor / 255
        lo, hi = lo - slack, hi + slack
        y = luma(out)
        over, under = (y - hi).clamp(min=0), (lo - y).clamp(min=0)
        if knee:
            w = (knee * span).clamp(min=1e-4)
            over, under = over - w * torch.tanh(over / w), under - w * torch.tanh(under / w)
        shift = (under - over) * (1.0 - keep)
        if fade is not None:
            a, b = fade
            shift = shift * ((span - a) / (b - a)).clamp(0, 1)
        return out.add_(shift)

    return guard


CANDIDATES: dict[str, Guard | None] = {
    "none": None,
    "clamp": limiter(),
    "clamp+0.1": limiter(margin=0.1),
    "clamp+0.25": limiter(margin=0.25),
    "clamp+0.5": limiter(margin=0.5),
    "clamp+0.1+6": limiter(margin=0.1, floor=6),
    "clamp+0.25+6": limiter(margin=0.25, floor=6),
    "soft-0.25": limiter(keep=0.25),
    "soft-0.5": limiter(keep=0.5),
    "knee-0.25": limiter(knee=0.25),
    "knee-0.5": limiter(knee=0.5),
    "wide5": limiter(window5),
    "wide5-0.5": limiter(window5, keep=0.5),
    "near2": limiter(window2),
    "near2-0.5": limiter(window2, keep=0.5),
    "edges": limiter(fade=(16 / 255, 48 / 255)),
    "edges-32": limiter(fade=(32 / 255, 64 / 255)),
    "edges-32+0.1": limiter(margin=0.1, fade=(32 / 255, 64 / 255)),
    "edges-32-0.5": limiter(keep=0.5, fade=(32 / 255, 64 / 255)),
    "edges-32-knee": limiter(knee=0.1, fade=(32 / 255, 64 / 255)),
    "smooth": limiter(smooth3),
    "smooth-0.5": limiter(smooth3, keep=0.5),
    "smooth+0.25": limiter(smooth3, margin=0.25),
    "smooth-edges-32": limiter(smooth3, fade=(32 / 255, 64 / 255)),
}


class Guarded(nn.Module):
    """``net`` followed by ``self.guard`` on its float output; the network's outputs of
    the last few inputs are kept, so that each candidate costs no network pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.guard: Guard | None = None
        self._memo: list[tuple[T, T]] = []

    def forward(self, x: T, *rest: object) -> T:
        for seen, y in self._memo:
            if seen.shape == x.shape and torch.equal(seen, x):
                out = y.clone()
                break
        else:
            out = self.net(x, *rest)
            self._memo = [*self._memo[-7:], (x.detach().clone(), out.detach().clone())]
        return out if self.guard is None else self.guard(out, x)


def halo(out: F, gt: F) -> tuple[float, float, float, float]:
    """Overshoot and undershoot of ``out``'s luma beyond ``gt``'s 5 x 5 [min, max] near
    strong edges: 99th percentiles, then means (8-bit levels)."""
    y, yg = ycc(out)[0].astype(np.float32), ycc(gt)[0].astype(np.float32)
    kernel = np.ones((5, 5), np.uint8)
    edges = strong_edges(yg)
    over = np.maximum(y - cv2.dilate(yg, kernel), 0)[edges]
    under = np.maximum(cv2.erode(yg, kernel) - y, 0)[edges]
    if not over.size:
        return (float("nan"),) * 4  # type: ignore[return-value]
    p99 = (float(np.percentile(over, 99)), float(np.percentile(under, 99)))
    return (*p99, float(over.mean()), float(under.mean()))


def band_split(out: F, gt: F) -> tuple[float, float]:
    """The output's band-passed luma energy (``bandcorr``'s difference of Gaussians) over
    the ground truth's, away from strong edges (texture) and next to them (edges)."""
    y, yg = ycc(out)[0], ycc(gt)[0]
    lo_s, hi_s = BANDPASS_SIGMAS
    db = gaussian_filter(y, lo_s) - gaussian_filter(y, hi_s)
    da = gaussian_filter(yg, lo_s) - gaussian_filter(yg, hi_s)
    edges = strong_edges(yg)
    near = cv2.dilate(edges.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    ratios = []
    for mask in (~near, edges):
        energy = float((da[mask] ** 2).sum())
        ratios.append(float((db[mask] ** 2).sum()) / energy if energy > 0 else float("nan"))
    return ratios[0], ratios[1]


def scores(out: F, gt: F) -> tuple[float, ...]:
    b = 4
    out, gt = out[b:-b, b:-b], gt[b:-b, b:-b]
    fidelity = (psnr_y(out, gt), psnr(out, gt), *detail_scores(out, gt))
    return (*fidelity, *halo(out, gt), *band_split(out, gt))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(parser)
    parser.add_argument("--reference", action="append", default=None, metavar="MODEL")
    parser.add_argument("--sheets", type=Path, default=None, help="folder for the sheets")
    parser.add_argument("--sheet-count", type=int, default=4)
    parser.add_argument("--show", default="clamp,clamp+0.25,soft-0.5", help="candidates")
    parser.add_argument("--zoom", type=int, default=3)
    parser.add_argument("--window", type=int, default=144, help="output px per panel side")
    parser.add_argument("--json", type=Path, default=None, help="file for each crop's scores")
    parser.add_argument(
        "--candidates", default=None, help="only these besides none (comma-separated; default: all)"
    )
    args = parser.parse_args()
    spec, desc = model(args)
    guarded = Guarded(desc.module)
    upscaler = open_upscaler(dataclasses.replace(desc, module=guarded), spec)
    references = {}
    for name in args.reference or ["lanczos", "teacher-x4plus"]:
        try:
            ref = spec.resolve(name, desc.scale)
        except ModelError as exc:  # the teacher is imported by hand (pocketsr models import)
            print(f"  no reference {name}: {exc}")
            continue
        if ref.scale == desc.scale:
            references[name] = open_upscaler(ref, spec)
    rows: dict[str, list[tuple[float, ...]]] = {}
    views: list[tuple[float, str, dict[str, F]]] = []
    shown = args.show.split(",")
    chosen = CANDIDATES
    if args.candidates is not None:
        names = args.candidates.split(",")
        unknown = sorted(set(names) - set(CANDIDATES))
        if unknown:
            parser.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
        chosen = {k: v for k, v in CANDIDATES.items() if k in names or k == "none"}
    found = crops(args, desc.scale)
    for name, gt in found:
        lr = degraded(args, name, gt, desc.scale)
        outs: dict[str, F] = {"ground truth": gt}
        for ref, up in references.items():
            outs[ref] = up.upscale(lr)
        for candidate, guard in chosen.items():
            guarded.guard = guard
            outs[candidate] = upscaler.upscale(lr)
        for label, out in outs.items():
            if label != "ground truth":
                rows.setdefault(label, []).append(scores(out, gt))
            save(args, name, label.replace(" ", "-"), out)
        save(args, name, "lr", lr)
        first = shown[0] if shown[0] in outs else "none"
        top, left, side, change = changed_window(outs["none"], outs[first], args.window)
        panels = {k: outs[k] for k in ("ground truth", "lanczos", "none", *shown) if k in outs}
        views.append((change, name, sheet(panels, top, left, side, args.zoom)))
        over = " ".join(f"{c}:{rows[c][-1][5]:.0f}/{rows[c][-1][6]:.0f}" for c in chosen)
        print(f"  {name:34s} over/under p99 {over}", flush=True)
    if args.json is not None:
        names = [name for name, _ in found]
        scored = {k: dict(zip(names, s, strict=True)) for k, s in rows.items()}
        args.json.write_text(json.dumps(scored, indent=1))
    if args.sheets is not None:
        args.sheets.mkdir(parents=True, exist_ok=True)
        for change, name, img in sorted(views, reverse=True)[: args.sheet_count]:
            path = args.sheets / f"{name.replace('/', '_')}.{kind(args)}.png"
            cv2.imwrite(str(path), img[..., ::-1])
            print(f"  sheet {path} (mean change {change:.1f} levels)")
    print(f"{desc.name}, {len(found)} crops, {kind(args)} x{desc.scale}, {args.crop}-px crops")
    header = ("guard", "PSNR-Y", "PSNR-RGB", "detail", "hf", "bandcorr")
    header += ("over99", "under99", "overMean", "underMean", "texture", "edges")
    cells = {k: [f"{v:.3f}" for v in np.nanmean(np.array(s), axis=0)] for k, s in rows.items()}
    table(header, cells, width=12)


if __name__ == "__main__":
    main()
