"""``python -m pocketsr_cli.train.export RUN_DIR DEST.safetensors``: a checkpoint's EMA weights.

Lets a run be evaluated (``pocketsr eval -m DEST``) while it is still training, and exports
the weights of a finished run again without re-training.  Prints ``{"step", "params",
"sha256", "size"}`` as JSON.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from pocketsr_cli.atomicfile import folder_write_problem, replacing
from pocketsr_cli.train.cmdline import CommandParser


def check_weights_dest(dest: Path | None, option: str | None = None) -> None:
    """Refuse ``dest`` as the ``.safetensors`` file to write weights to when it is a folder
    or cannot be made where it is named (a file in place of its folder, a read-only one:
    ``atomicfile.folder_write_problem``), before any training or reading is spent on it
    (None: no file asked for, nothing to check).  ``option`` is the option that named it
    (``"--export"``), for the message.

    Raises:
        ValueError: ``"--export DEST is a folder; name the .safetensors file"``, ``"--export
            DEST cannot be written: out is a file, not a folder"`` (without ``option``:
            ``"DEST is a folder; ..."``).
    """
    if dest is None:
        return
    named = f"{option} {dest}" if option else str(dest)
    if dest.is_dir():
        raise ValueError(f"{named} is a folder; name the .safetensors file")
    problem = folder_write_problem(dest.parent)
    if problem is not None:
        raise ValueError(f"{named} cannot be written: {problem}")


def write_weights(state: Mapping[str, torch.Tensor], dest: Path) -> dict[str, object]:
    """Write ``state`` as safetensors at ``dest`` atomically; returns params, sha256, size.

    The bytes are those ``safetensors.torch.save_file`` writes (no metadata), so an export
    is byte for byte the file the model cards record; the file gets the mode the umask
    gives (0644 under 022), as imported weights do (``weights.load.write_safetensors``),
    not the 0600 of the file ``save_file`` makes in the temporary file's place.
    """
    from pocketsr_cli.weights.load import write_safetensors

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with replacing(dest) as tmp:
        write_safetensors(tmp, tensors, None)
    data = dest.read_bytes()
    return {
        "params": sum(v.numel() for v in tensors.values() if v.dtype.is_floating_point),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def export_checkpoint(run: Path, dest: Path) -> dict[str, object]:
    """Write the EMA weights of ``run/last.pt`` to ``dest``; returns ``step`` and the facts.

    Raises:
        loop.CheckpointUnreadable: ``last.pt`` cannot be read, is cut short or damaged, or
            is not a trainer's checkpoint (no ``step`` or ``ema``).
        OSError: ``dest`` cannot be written.
    """
    from pocketsr_cli.train.loop import check_parts, read_checkpoint

    path = run / "last.pt"
    state = read_checkpoint(path)
    check_parts(path, state, ("step", "ema"), whose="a trainer")
    return {"step": int(state["step"]), **write_weights(state["ema"], dest)}


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m pocketsr_cli.train.export", description=__doc__)
    parser.add_argument("run", type=Path, help="run folder holding last.pt")
    parser.add_argument("dest", type=Path, help="where to write the .safetensors file")
    args = parser.parse_args(argv)
    if not (args.run / "last.pt").is_file():
        print(f"error: no checkpoint {args.run / 'last.pt'} (is it a run folder?)", file=sys.stderr)
        return 1
    try:
        check_weights_dest(args.dest)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from pocketsr_cli.train.loop import DAMAGED, CheckpointUnreadable

    try:
        print(json.dumps(export_checkpoint(args.run, args.dest)))
    except CheckpointUnreadable as exc:  # its own message is for a run about to resume
        fix = "; put back a good copy of it" if exc.problem == DAMAGED else ""
        print(f"error: cannot export {exc.path}: it {exc.problem}{fix}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.dest}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (KeyError, RuntimeError, ValueError) as exc:  # EMA weights that are no tensors
        print(f"error: cannot export {args.run / 'last.pt'}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
