#!/usr/bin/env python3
"""How unevenly each model's output spreads luma gradient over the ×4 sub-pixel phases.

    python scripts/phase_imbalance.py data/val runs/cq-g1.safetensors runs/cq-k8.safetensors

Each photo's centred ``--crop`` window (the ground truth ``pocketsr eval --crop`` scores)
is degraded as ``pocketsr eval`` degrades it (``real`` by default), upscaled by every
model, and scored by ``train.losses.phase_imbalance`` (period 4, 32-px tiles; the mean over tiles).
A generator that draws each input pixel as its own block — a mesh at the input's pixel
pitch — scores above the ground truth; photos themselves score low.  One line per model
(and one for the ground truth): the mean over the photos, then each photo's score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pocketsr_cli.devices import Compute
from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.train.losses import phase_imbalance
from pocketsr_cli.weights.resolve import resolve_model


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    args = parser.parse_args()
    cpu = Compute(torch.device("cpu"), "fp32")
    upscalers = {m: Upscaler(resolve_model(m, 4), cpu) for m in args.models}
    scores: dict[str, list[float]] = {m: [] for m in ["ground truth", *args.models]}
    for photo in collect_images(args.folder):
        gt = ground_truth(photo, 4, crop=args.crop)
        lr = degrade_eval(gt, args.degradation, seed=seed_for(photo.name), scale=4)
        scores["ground truth"].append(float(phase_imbalance(_tensor(gt)).mean()))
        for name, up in upscalers.items():
            scores[name].append(float(phase_imbalance(_tensor(up.upscale(lr))).mean()))
    for name, values in scores.items():
        per_photo = " ".join(f"{v:.4f}" for v in values)
        print(f"{name:40s} mean {np.mean(values):.5f}  per photo {per_photo}")


if __name__ == "__main__":
    main()
