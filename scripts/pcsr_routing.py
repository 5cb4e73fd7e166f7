#!/usr/bin/env python3
"""A PCSR model's quality, heavy fraction and CPU time at several routing settings, one run.

For every photo of a folder (centred ``--crop`` window, or the whole photo with ``--crop
0``; each ``--degradation`` as ``pocketsr eval`` makes it) the network upscales ×4 at
every setting: all-heavy (every pixel through the heavy upsampler), ``k`` for each
``--k``, and optionally the adaptive K-means mode. Per setting: mean PSNR-Y, SSIM-Y,
detail, hf, bandcorr, lattice ratio (``evaluation.metrics``), the share of heavy pixels,
and the seconds the forward passes took. Timing is interleaved — each round runs every
setting once on every image, in a rotating order, and each (setting, image) keeps its best
round — so that the ratios hold on a busy machine. ``--bench`` adds the seconds per 4K
output (960×540 → 3840×2160, the ``pocketsr bench`` input image; ``--bench-size`` another)
for each setting, best of the rounds, and the median of the rounds beside it.

    python scripts/pcsr_routing.py models/pcsr-x4.safetensors data/test --crop 512 \\
        --degradation bicubic --degradation real --k 0 0.5 1 2 --rounds 3 --threads 2 \\
        --bench --json runs/pcsr/test_routing.jsonl

The network is the one ``pocketsr`` loads (``weights.load``), whole images, fp32, no
tiling; refinement on for the routed settings (the default ``Routing``); freed memory is
kept for reuse as ``pocketsr`` keeps it (``hostmem.retain_freed_memory``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketsr_cli.archs.pcsr import PCSR, Routing
from pocketsr_cli.evaluation.bench import synthetic_photo
from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.metrics import detail_scores, lattice_ratio, psnr_y, ssim_y
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.hostmem import retain_freed_memory
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

# Every pixel heavy.  Refinement only touches light pixels next to heavy ones, so with none
# it changes nothing: it is off here, not to charge the all-heavy network for a no-op.
ALL_HEAVY = Routing(k=-1000.0, refine=False)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    out = y.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)[0].permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())


CLOCK: Callable[[], float] = time.perf_counter


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    t0 = CLOCK()
    y = fn()
    return y, CLOCK() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--crop", type=int, default=512, help="centred window side (0: whole photos)"
    )
    parser.add_argument("--degradation", action="append", choices=("bicubic", "real"))
    parser.add_argument("--k", type=float, nargs="+", default=[0.0])
    parser.add_argument("--adaptive", action="store_true", help="also the K-means mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bench", action="store_true", help="also seconds per 4K output")
    parser.add_argument(
        "--bench-size", default="960x540", help="the --bench input, WxH (default 960x540)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU seconds instead of the wall clock (with "
        "--threads 1: what the forward costs, whatever else runs on the machine)",
    )
    args = parser.parse_args(argv)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()  # the memory setting `pocketsr` itself runs with (hostmem.py)
    degradations = args.degradation or ["bicubic"]

    model = descriptor_from_state_dict(read_state_dict(args.weights), args.weights.name).module
    if not isinstance(model, PCSR):
        raise SystemExit(f"{args.weights} is not a PCSR network")
    model.eval()
    settings: dict[str, Routing] = {"all-heavy": ALL_HEAVY}
    settings.update({f"k={k:g}": Routing(k=k) for k in args.k})
    if args.adaptive:
        settings["adaptive"] = Routing(adaptive=True)

    images = []  # (name, degradation, gt, lr tensor)
    for path in collect_images(args.folder):
        gt = np.asarray(ground_truth(path, 4, args.crop or None), dtype=np.uint8)
        for kind in degradations:
            lr = degrade_eval(gt, kind, seed=seed_for(path.name), scale=4)  # type: ignore[arg-type]
            images.append((path.name, kind, gt, _to_tensor(np.asarray(lr))))

    names = list(settings)
    best: dict[tuple[str, int], float] = {}
    outputs: dict[tuple[str, int], tuple[np.ndarray, float]] = {}
    with torch.no_grad():
        for setting in names:  # warm-up: first-call allocations are not the model's time
            model.routing = settings[setting]
            model(images[0][3])
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for i, (_name, _kind, _gt, x) in enumerate(images):
                for setting in order:
                    model.routing = settings[setting]
                    y, seconds = timed(lambda x=x: model(x))
                    key = (setting, i)
                    best[key] = min(best.get(key, float("inf")), seconds)
                    if r == 0:
                        outputs[key] = (_to_uint8(y), model.last_stats.heavy_fraction)
        bench_best: dict[str, float] = {}
        bench_all: dict[str, list[float]] = {}
        bench_heavy: dict[str, float] = {}
        if args.bench:
            bench_w, bench_h = (int(v) for v in args.bench_size.lower().split("x"))
            x = _to_tensor(synthetic_photo(bench_w, bench_h))
            model.routing = ALL_HEAVY
            model(x)  # warm-up
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for setting in order:
                    model.routing = settings[setting]
                    _y, seconds = timed(lambda x=x: model(x))
                    bench_best[setting] = min(bench_best.get(setting, float("inf")), seconds)
                    bench_all.setdefault(setting, []).append(seconds)
                    bench_heavy[setting] = model.last_stats.heavy_fraction

    rows: list[dict[str, Any]] = []
    for setting in names:
        for kind in degradations:
            idx = [i for i, im in enumerate(images) if im[1] == kind]
            scores: dict[str, list[float]] = {}
            for i in idx:
                out, heavy = outputs[(setting, i)]
                gt = images[i][2]
                detail, hf, bandcorr = detail_scores(out, gt)
                for key, value in (
                    ("psnr_y", psnr_y(out, gt)),
                    ("ssim_y", ssim_y(out, gt)),
                    ("detail", detail),
                    ("hf", hf),
                    ("bandcorr", bandcorr),
                    ("lattice_ratio", lattice_ratio(out)),
                    ("heavy_fraction", heavy),
                ):
                    scores.setdefault(key, []).append(value)
            row: dict[str, Any] = {"setting": setting, "degradation": kind, "count": len(idx)}
            row.update({k: round(float(np.mean(v)), 4) for k, v in scores.items()})
            row["seconds"] = round(sum(best[(setting, i)] for i in idx), 4)
            if args.bench:
                row["bench_seconds_4k"] = round(bench_best[setting], 3)
                row["bench_heavy_fraction"] = round(bench_heavy[setting], 4)
            rows.append(row)

    header = (
        "| setting | degradation | heavy | PSNR-Y | SSIM-Y | detail | hf | bandcorr "
        "| lattice | s | speed-up |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        ref = next(
            r
            for r in rows
            if r["setting"] == "all-heavy" and r["degradation"] == row["degradation"]
        )
        print(
            f"| {row['setting']} | {row['degradation']} | {row['heavy_fraction']:.3f} | "
            f"{row['psnr_y']:.3f} | {row['ssim_y']:.4f} | {row['detail']:.3f} | "
            f"{row['hf']:.3f} | {row['bandcorr']:.3f} | {row['lattice_ratio']:.2f} | "
            f"{row['seconds']:.3f} | {ref['seconds'] / row['seconds']:.2f}× |"
        )
    if args.bench:
        median = {k: float(np.median(v)) for k, v in bench_all.items()}
        print(
            f"\n| setting | heavy ({args.bench_size} ×4) | s best | speed-up | s median "
            "| speed-up |\n|---|---|---|---|---|---|"
        )
        for setting in names:
            print(
                f"| {setting} | {bench_heavy[setting]:.3f} | {bench_best[setting]:.3f} | "
                f"{bench_best['all-heavy'] / bench_best[setting]:.2f}× | "
                f"{median[setting]:.3f} | {median['all-heavy'] / median[setting]:.2f}× |"
            )
    if args.json is not None:
        with args.json.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
