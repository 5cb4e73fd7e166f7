"""How the command line spells the options core messages name (``pocketsr_cli.spelling``).

:data:`FLAGS` is the one table from an option's name to its flag; :func:`flag_spelling`
is the spelling ``_errors.handle_errors`` puts in force while a command runs, so that a
core message reads ``use --overwrite to replace it`` here and ``use overwrite=True to
replace it`` in the Python API.  Worker processes (``--devices``, ``--ray``) get
:func:`flag_spelling` pickled by name, so it stays a plain module-level function.
"""

from __future__ import annotations

from pocketsr_cli.spelling import Option

FLAGS: dict[str, str] = {
    "adaptive": "--adaptive",
    "allow_unverified": "--allow-unverified",
    "crop": "--crop",
    "device": "--device",
    "ensemble": "--ensemble",
    "ensemble_weight": "--ensemble-weight",
    "folder": "--folder",
    "force": "--force",
    "format": "--format",
    "glob": "--glob",
    "height": "--height",
    "limit": "--limit",
    "long_edge": "--long-edge",
    "max_memory": "--max-memory",
    "model": "-m",
    "output": "--output",
    "outscale": "--outscale",
    "overwrite": "--overwrite",
    "pcsr_k": "--pcsr-k",
    "precision": "--precision",
    "quality": "--quality",
    "recursive": "-r/--recursive",
    "repeat": "--repeat",
    "resize": "--resize",
    "scale": "-s",
    "sha256": "--sha256",
    "size": "--size",
    "suffix": "--suffix",
    "tile": "--tile",
    "tile_overlap": "--tile-overlap",
    "trust_pickle": "--trust-pickle",
    "width": "--width",
}


def flag_spelling(option: Option, value: object) -> str:
    """``--overwrite``, ``--tile 512``, ``-s 2`` (``value`` None: the flag alone)."""
    flag = FLAGS[option.name]
    return flag if value is None else f"{flag} {value}"
