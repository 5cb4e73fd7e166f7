"""Scores of a model under training on the validation photos, the way ``pocketsr eval``
scores (same crops, degradations and metrics), without the pipeline around it.

A run with ``--val FOLDER --eval-every SECONDS`` appends one line per evaluation to
``<out>/metrics.jsonl``: the step, the seconds trained and, per degradation, the means of
PSNR-Y, detail, hf, bandcorr and the lattice ratio of the EMA weights, and
``detail_geo``, the geometric mean of the per-photo detail ratios (the plain mean is ruled
by the photo with the least band energy in its ground truth).  Hyper-parameters
are chosen on these photos (the validation split), never on the test photos.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.metrics import detail_scores, lattice_ratio, psnr_y
from pocketsr_cli.evaluation.run import collect_images, ground_truth

VAL_METRICS = ("psnr_y", "detail", "hf", "bandcorr", "lattice_ratio")
_TINY = 1e-6  # floor of a detail ratio before its logarithm (a flat output scores 0)


@dataclass(frozen=True)
class ValItem:
    """One validation crop: its ground truth and its degraded input (uint8 ``H×W×3``)."""

    name: str
    degradation: str
    gt: npt.NDArray[np.uint8]
    lr: npt.NDArray[np.uint8]


def load_validation(
    folder: Path, crop: int, scale: int, degradations: Sequence[str] = ("real", "bicubic")
) -> list[ValItem]:
    """The centred ``crop``-px square of every photo in ``folder``, degraded each way.

    Raises:
        UsageError: ``folder`` holds no image.
        ImageReadError: a photo cannot be decoded.
    """
    items = []
    for path in collect_images(folder):
        gt = np.asarray(ground_truth(path, scale, crop), dtype=np.uint8)
        for kind in degradations:
            lr = degrade_eval(gt, kind, seed=seed_for(path.name), scale=scale)  # type: ignore[arg-type]
            items.append(ValItem(path.name, kind, gt, np.asarray(lr, dtype=np.uint8)))
    return items


@torch.no_grad()
def upscale_array(
    model: torch.nn.Module, lr: npt.NDArray[np.uint8], device: torch.device
) -> npt.NDArray[np.uint8]:
    """``model`` on one uint8 ``h×w×3`` image, whole (no tiling), rounded to uint8."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].to(device).float().div_(255.0)
    y = model(x).float().clamp_(0.0, 1.0).mul_(255.0).round_()
    return np.ascontiguousarray(y[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy())


def score(
    model: torch.nn.Module, items: Sequence[ValItem], device: torch.device
) -> dict[str, dict[str, float]]:
    """``{degradation: {metric: mean over the photos}}`` for :data:`VAL_METRICS`, plus
    ``detail_geo``: the geometric mean of the per-photo detail ratios."""
    sums: dict[str, dict[str, list[float]]] = {}
    was_training = model.training
    model.eval()
    try:
        for item in items:
            out = upscale_array(model, item.lr, device)
            detail, hf, bandcorr = detail_scores(out, item.gt)
            values = {
                "psnr_y": psnr_y(out, item.gt),
                "detail": detail,
                "hf": hf,
                "bandcorr": bandcorr,
                "lattice_ratio": lattice_ratio(out),
            }
            per = sums.setdefault(item.degradation, {m: [] for m in VAL_METRICS})
            for metric, value in values.items():
                per[metric].append(value)
    finally:
        model.train(was_training)
    result = {}
    for kind, per in sums.items():
        means = {m: round(float(np.mean(v)), 4) if v else math.nan for m, v in per.items()}
        logs = np.log(np.maximum(per["detail"], _TINY))
        means["detail_geo"] = round(float(np.exp(logs.mean())), 4) if len(logs) else math.nan
        result[kind] = means
    return result
