#!/usr/bin/env python3
"""How much of the teacher's visible band a student draws on its own training patches.

    python scripts/band_match.py models/pocketsr-compact-x4.safetensors data/patches_web64

Every patch of the first ``--shards`` shards of a patch folder (``train.make_patches``) is
upscaled by the student; the mean magnitude of ``train.losses.visible_band`` (the band
the ``band`` loss matches per tile) of its output is compared with the teacher's output
stored beside the patch.  Prints the ratio over all patches, then per fifth of the patches
by the teacher's band strength and by the ground truth's mean luma (dark patches last
weigh little in a loss on absolute magnitudes).  A ratio near 1 where the student falls
short on unseen photos (``pocketsr eval``'s ``detail``) means it learnt the training
patches' texture rather than how to draw texture.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from pocketsr_cli.train import losses
from pocketsr_cli.train.split import fetch_list_names
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict


def _tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255


def band_rows(weights: Path, patches: Path, shards: int) -> np.ndarray:
    """``(n, 4)``: per patch, the teacher's and the student's mean band magnitude, the
    ground truth's mean luma and the index of its photo in the folder's manifest."""
    model = descriptor_from_state_dict(read_state_dict(weights), weights.name).module.eval()
    rows = []
    with torch.no_grad():
        for shard in sorted(patches.glob("shard_*.npz"))[:shards]:
            z = np.load(shard)
            out = model(_tensor(z["lr"])).clamp(0, 1)
            teacher = losses.visible_band(_tensor(z["teacher"])).abs().mean((1, 2, 3))
            student = losses.visible_band(out).abs().mean((1, 2, 3))
            brightness = losses.luma(_tensor(z["hr"])).mean((1, 2, 3))
            photo = torch.from_numpy(z["photo"].astype(np.float32))
            rows.append(torch.stack([teacher, student, brightness, photo], 1).numpy())
    if not rows:
        raise SystemExit(f"no shard_*.npz in {patches}")
    return np.concatenate(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", type=Path)
    parser.add_argument("patches", type=Path)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--split", type=Path, default=None,
        help="a train_photos.txt-format list: report its photos' patches and the others' apart",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = band_rows(args.weights, args.patches, args.shards)
    print(f"{len(rows)} patches: student / teacher band {rows[:, 1].sum() / rows[:, 0].sum():.3f}")
    if args.split is not None:
        listed = fetch_list_names(args.split)
        manifest = json.loads((args.patches / "manifest.json").read_text())
        names = [p["name"] for p in manifest["photos"]]
        inside = np.array([names[int(i)] in listed for i in rows[:, 3]])
        for label, part in (("listed photos", rows[inside]), ("other photos", rows[~inside])):
            if len(part):
                ratio = part[:, 1].sum() / part[:, 0].sum()
                print(f"  {label}: {len(part)} patches, student/teacher {ratio:.3f}")
    for label, col in (("teacher band", 0), ("luma", 2)):
        edges = np.quantile(rows[:, col], np.linspace(0, 1, 6))
        for lo, hi in itertools.pairwise(edges):
            part = rows[(rows[:, col] >= lo) & (rows[:, col] <= hi)]
            ratio = part[:, 1].sum() / part[:, 0].sum()
            print(f"  {label} {lo:.3f}-{hi:.3f}: {len(part)} patches, student/teacher {ratio:.3f}")


if __name__ == "__main__":
    main()
