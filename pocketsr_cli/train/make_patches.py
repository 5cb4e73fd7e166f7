"""Build (or resume) a folder of distillation patches labelled by the Real-ESRGAN teacher.

Usage::

    python -m pocketsr_cli.train.make_patches --photos data/photos --out data/patches_x4 \\
        --scale 4 --count 6000 --lr-size 48 --seed 0 --teacher data/teacher

Only the training photos of ``--photos`` are used (the validation ones of
:mod:`pocketsr_cli.train.split` never are).  Re-running the same command after an
interruption continues from the shards already written and produces the same files an
uninterrupted run would; see :mod:`pocketsr_cli.train.patches` for the format.
The teacher runs on CPU; expect roughly 0.5-1 s per 48-px patch on two cores.

Exit status: 0 done, 1 error (one line on stderr; options that cannot work, such as
``--count 0`` or an ``--out`` that is a file, are refused before the teacher is loaded or
anything is written), 2 bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pocketsr_cli.train.cmdline import CommandParser
from pocketsr_cli.train.degradations import DEGRADATION_KINDS


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="python -m pocketsr_cli.train.make_patches",
        description="Sample, degrade and teacher-label training patches into shards.",
    )
    p.add_argument("--photos", type=Path, required=True, help="folder of training photos")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    p.add_argument("--teacher", type=Path, required=True, help="folder with the ncnn teacher")
    p.add_argument("--scale", type=int, choices=(2, 4), default=4)
    p.add_argument("--count", type=int, required=True, help="number of patches")
    p.add_argument("--lr-size", type=int, default=48, help="LR patch side (default 48)")
    p.add_argument("--margin", type=int, default=8, help="LR context pixels per side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--degradation",
        choices=DEGRADATION_KINDS,
        default="second-order",
        help="second-order: Real-ESRGAN's pipeline (default); mild: light blur, noise and "
        "JPEG, like most camera files (the teacher then shows the detail to add); web: "
        "softer, noisier, harder-compressed phone and web files; clean: "
        "the plain bicubic downscale (the bicubic eval input)",
    )
    p.add_argument("--shard-size", type=int, default=64, help="patches per shard")
    p.add_argument("--batch", type=int, default=4, help="patches per teacher call")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--fetch-list", type=Path, help="train_photos.txt naming extra photos")
    p.add_argument(
        "--long-side",
        type=int,
        default=None,
        help="area-downscale photos whose longer side exceeds this first (e.g. 2560: camera "
        "photos at the wallpapers' scale); default: as they are",
    )
    return p


AT_LEAST = {
    "count": (1, None),
    "shard_size": (1, None),
    "batch": (1, None),
    "lr_size": (1, None),
    "margin": (0, None),
    "seed": (0, None),
    "threads": (0, None),
    "long_side": (1, None),
}
"""The smallest value each numeric option can work with (``loop.check_ranges``' ranges)."""


def option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options before any work is done (None: nothing found): a
    number out of range, an ``--out`` that is a file, a missing ``--fetch-list``."""
    from pocketsr_cli.train.loop import check_ranges

    try:
        check_ranges(args, AT_LEAST)
    except ValueError as exc:
        return str(exc)
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} is a file, not a patch folder"
    if args.photos.exists() and not args.photos.is_dir():
        return f"--photos {args.photos} is a file; give the folder of training photos"
    if args.fetch_list is not None and not args.fetch_list.is_file():
        return f"--fetch-list {args.fetch_list}: no such file"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = option_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    import torch
    from tqdm import tqdm

    from pocketsr_cli.train.degradations import degradation_config
    from pocketsr_cli.train.patches import PatchSpec, make_patches
    from pocketsr_cli.train.split import split_photos
    from pocketsr_cli.train.teacher import load_teacher

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        split = split_photos(args.photos, args.fetch_list)
        if not split.train:
            raise ValueError(f"no training photos in {args.photos}")
        for path in split.ignored:
            print(f"ignored (not a known training photo): {path.name}", file=sys.stderr)
        teacher = load_teacher(args.teacher)
        spec = PatchSpec(scale=args.scale, lr_size=args.lr_size, margin=args.margin, seed=args.seed)
        print(
            f"{len(split.train)} training photos ({len(split.validation)} for validation), "
            f"teacher {teacher.identity['name']}, {args.count} {args.degradation} patches "
            f"→ {args.out}",
            file=sys.stderr,
        )
        start = time.monotonic()
        with tqdm(total=args.count, unit="patch", smoothing=0.05, mininterval=5) as bar:
            summary = make_patches(
                split.train,
                args.out,
                teacher.module,
                teacher.identity,
                args.count,
                spec,
                degradation_config(args.degradation),
                shard_size=args.shard_size,
                batch_size=args.batch,
                progress=bar.update,
                long_side=args.long_side,
            )
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - start
    written = summary.shards_written
    print(
        f"done: {summary.shards_total} shards ({written} written, {summary.shards_kept} "
        f"already there) in {elapsed:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
