"""``python -m pocketsr_cli.train.run``: one documented command per training run.

Example (the nano ×4 model, since withdrawn; its model card has the exact command used)::

    python -m pocketsr_cli.train.run --patches data/patches_x4 --out runs/nano-x4 \\
        --arch nano --scale 4 --steps 3000 --batch 16 --seed 0 --limit 2048 \\
        --export runs/pocketsr-nano-x4.safetensors

On a CUDA GPU, online (patches made on the fly, teacher labels in fp16) with a time budget,
validation scores and the EMA weights written every minute (see ``scripts/gpu_train.sh``)::

    python -m pocketsr_cli.train.run --photos data/photos --out runs/gpu --device cuda \\
        --init runs/compact-init.safetensors --minutes 7 --batch 32 --workers 12 \\
        --degradations mild,mild,clean --val data/val --eval-every 60

Re-running the same command resumes from ``<out>/last.pt``.  A resumed run keeps its
options, so that its weights are those of one recorded command (``<out>/config.json``):
with an option that changes what is trained (data, --init, schedule, losses, seed) other
than the run's, it is refused, naming each (exit 1; start a new run with another --out).
How the session runs may change: --stop-at, --ckpt-every, --log-every, --eval-every,
--val, --val-crop, --export-to, --keep-exports, --workers, --threads, --device.

Exit status: 0 done, 1 error (message on stderr; options that cannot work are refused
before anything is written), 2 bad command line, 130 interrupted (run it again to resume).
Ctrl-C finishes the step in progress and saves a checkpoint at it (atomically) before the
run ends, so no more than that step is lost; a second Ctrl-C ends it at once, and
``last.pt`` stays the previous checkpoint, whole.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from pocketsr_cli.train import loop
from pocketsr_cli.train.cmdline import CommandParser
from pocketsr_cli.train.export import check_weights_dest
from pocketsr_cli.train.trainer import LossWeights, TrainConfig, Trainer

# The type of the options whose default is None (so it cannot be read off the default).
NONE_DEFAULT_TYPES: dict[str, type] = {"limit": int, "threads": int, "usm_sigma": float}


def _flag(text: str) -> bool:
    """A yes/no option's value: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``).

    argparse's ``type=bool`` would read any non-empty text, ``false`` included, as True.
    """
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, Path | None]:
    parser = CommandParser(
        prog="python -m pocketsr_cli.train.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = TrainConfig(patches="", out="")
    for f in fields(TrainConfig):
        if f.name == "weights":
            continue
        value = getattr(defaults, f.name)
        kind: Any = type(value) if value is not None else NONE_DEFAULT_TYPES.get(f.name, str)
        if kind is bool:
            kind = _flag
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=kind,
            default=value,
            required=f.name == "out",
        )
    for f in fields(LossWeights):
        parser.add_argument(
            f"--w-{f.name.replace('_', '-')}", type=float, default=getattr(LossWeights(), f.name)
        )
    parser.add_argument(
        "--export", type=Path, default=None, help="write the EMA weights here at the end"
    )
    args = vars(parser.parse_args(argv))
    export = args.pop("export")
    weights = LossWeights(**{f.name: args.pop(f"w_{f.name}") for f in fields(LossWeights)})
    return TrainConfig(**args, weights=weights), export


def main(argv: list[str] | None = None) -> int:
    """Exit status (``loop.exit_status``): 0 done, 1 error (one line on stderr), 2 bad
    command line, 130 interrupted (run the same command again to resume)."""
    config, export = parse_args(argv)

    def job() -> None:
        check_weights_dest(export, "--export")
        trainer = Trainer(config)
        loop.resume_and_run(trainer, config.steps)
        if export is not None:
            info = trainer.export(export)
            summary = {"export": str(export), **info, "config": asdict(config)}
            (Path(config.out) / "export.json").write_text(json.dumps(summary, indent=2))
            print(json.dumps({k: v for k, v in summary.items() if k != "config"}))

    return loop.exit_status(job)


if __name__ == "__main__":
    sys.exit(main())
