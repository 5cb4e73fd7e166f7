#!/usr/bin/env python3
"""Thin a training run's kept exports so that they fit one returned file.

    python scripts/thin_exports.py runs/x/exports --max-bytes 15728640

``exports/step_N.safetensors`` (``train.run --keep-exports``: the EMA weights of every
evaluation, each scored in ``metrics.jsonl``) grow by one file a minute on a GPU, 2.4 MB
each; the GPU machine returns at most 16 MiB a file.  When they do not all fit in
``--max-bytes``, the last is kept and as many others as fit, spread evenly over the run
(the first among them); the rest are removed, and each removed name is printed.  Nothing
is done when they fit.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_STEP = re.compile(r"step_(\d+)\.safetensors")


def thinned(steps: list[int], keep: int) -> list[int]:
    """``keep`` of ``steps`` (sorted), spread evenly, the first and the last among them."""
    if keep >= len(steps):
        return steps
    if keep <= 1:
        return steps[-1:]
    last = len(steps) - 1
    return sorted({steps[round(i * last / (keep - 1))] for i in range(keep)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-bytes", type=int, required=True)
    args = parser.parse_args()
    files = {
        int(m.group(1)): path for path in args.folder.iterdir() if (m := _STEP.fullmatch(path.name))
    }
    steps = sorted(files)
    if not steps:
        return
    sizes = [files[s].stat().st_size + 1024 for s in steps]  # a tar header and padding each
    if sum(sizes) <= args.max_bytes:
        return
    kept = set(thinned(steps, max(1, args.max_bytes // max(sizes))))
    for step in steps:
        if step not in kept:
            files[step].unlink()
            print(f"thinned: {files[step].name}")


if __name__ == "__main__":
    main()
