"""Two artefact measures the lattice ratio does not cover, per model, on `real` inputs.

    python scripts/artefacts.py data/val -m pocketsr-compact-x4 -m teacher-x4plus --crop 768

* mesh: ``train.losses.phase_imbalance`` — how unevenly luma gradient falls on the four
  sub-pixel phases (a mesh at the input's pixel pitch), ×1000, mean over 32-px tiles. The
  ground truth's value is the noise floor of the measure.
* corner: mean luma Fourier amplitude where both frequencies exceed 0.3 cycles/px (where
  a checkerboard lives), as a multiple of the ground truth's.

Each photo is degraded exactly as ``pocketsr eval --degradation real`` does (same seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pocketsr_cli.devices import Compute
from pocketsr_cli.evaluation.degrade import degrade_eval, seed_for
from pocketsr_cli.evaluation.run import ground_truth
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.train import losses
from pocketsr_cli.weights.resolve import resolve_model


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


def corner_amplitude(img: torch.Tensor) -> float:
    """Mean luma amplitude at frequencies above 0.3 cycles/px on both axes."""
    amp = losses.amplitude_spectrum(losses.luma(img))[0, 0]
    fy = torch.fft.fftfreq(amp.shape[0]).abs()[:, None]
    fx = torch.fft.rfftfreq(img.shape[-1])[None, :]
    return float(amp[(fy > 0.3) & (fx > 0.3)].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("hr_dir", type=Path)
    parser.add_argument("-m", "--model", action="append", required=True)
    parser.add_argument("--crop", type=int, default=768)
    args = parser.parse_args()

    photos = sorted(p for p in args.hr_dir.iterdir() if p.is_file())
    names = list(dict.fromkeys(["ground truth", "bicubic", *args.model]))  # once each
    mesh: dict[str, list[float]] = {n: [] for n in names}
    corner: dict[str, list[float]] = {n: [] for n in names}
    upscalers = {
        n: Upscaler(resolve_model(n, 4), Compute(torch.device("cpu"), "fp32")) for n in names[1:]
    }
    for photo in photos:
        gt = ground_truth(photo, 4, crop=args.crop)
        lr = degrade_eval(gt, "real", seed=seed_for(photo.name), scale=4)
        outputs = {"ground truth": gt} | {n: up.upscale(lr) for n, up in upscalers.items()}
        floor = corner_amplitude(_tensor(gt))
        for name, img in outputs.items():
            t = _tensor(img)
            mesh[name].append(1000 * float(losses.phase_imbalance(t).mean()))
            corner[name].append(corner_amplitude(t) / floor)
    print(f"{'model':<40} {'mesh':>6} {'corner':>7}")
    for name in names:
        print(f"{name:<40} {np.mean(mesh[name]):6.2f} {np.mean(corner[name]):7.2f}")


if __name__ == "__main__":
    main()
