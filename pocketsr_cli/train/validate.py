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

from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.metrics import detail_scores, lattice_ratio, psnr_y
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.train.loop import SHARED_RANGES

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
    folder: Path,
    crop: int,
    scale: int,
    degradations: Sequence[str] = ("real", "bicubic"),
    size: SizeRequirements | None = None,
) -> list[ValItem]:
    """The centred ``crop``-px square of every photo in ``folder``, degraded each way.

    With ``size`` (the model's), each input must meet it as it is (:func:`check_crop`; a
    photo smaller than the crop gives a smaller one), so that no evaluation fails later.

    Raises:
        UsageError: ``folder`` holds no image.
        ImageReadError: a photo cannot be decoded.
        ValueError: with ``size``, a crop the model cannot take whole.
    """
    if size is not None:
        check_crop(crop, scale, size)
    items = []
    for path in collect_images(folder):
        gt = np.asarray(ground_truth(path, scale, crop), dtype=np.uint8)
        h, w = (side // scale for side in gt.shape[:2])
        if size is not None and not (size.fits(h) and size.fits(w)):
            raise ValueError(
                f"--val photo {path.name} is smaller than --val-crop {crop}: its crop, "
                f"{gt.shape[1]}×{gt.shape[0]} px, is {w}×{h} input pixels at ×{scale}, and "
                f"the model takes {_rule(size)}; use larger photos or a smaller --val-crop"
            )
        for kind in degradations:
            lr = degrade_eval(gt, kind, seed=seed_for(path.name), scale=scale)  # type: ignore[arg-type]
            items.append(ValItem(path.name, kind, gt, np.asarray(lr, dtype=np.uint8)))
    return items


def check_crop(crop: int, scale: int, size: SizeRequirements) -> None:
    """Refuse a ``--val-crop`` whose input the model cannot take whole, before a run
    trains rather than at its first evaluation: the ``crop``-px square of a photo at least
    that large is ``crop // scale`` input pixels a side at ``scale``, which must meet the
    model's ``size`` as it is (the scores are of the crop, not of a padded one).

    Raises:
        ValueError: ``"--val-crop 16 is 4 input pixels a side at ×4, and the model takes
            sides in multiples of 8: give a multiple of 32, such as 32"``.
    """
    side = crop // scale
    if size.fits(side):
        return
    step = scale * size.multiple_of
    above = scale * size.padded(side)  # the nearest crop above that fits
    below = crop // step * step  # and below, where one fits and is allowed
    allowed = below >= SHARED_RANGES["val_crop"][0] and size.fits(below // scale)
    such_as = below if allowed else above
    raise ValueError(
        f"--val-crop {crop} is {side} input pixels a side at ×{scale}, and the model takes "
        f"{_rule(size)}: give a multiple of {step}, such as {such_as}"
    )


def _rule(size: SizeRequirements) -> str:
    rule = f"sides in multiples of {size.multiple_of}"
    return rule + (f", at least {size.minimum}" if size.minimum > size.multiple_of else "")


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
