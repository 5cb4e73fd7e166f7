"""Shell completion of option and argument values (Typer's ``autocompletion=`` callbacks).

The shell scripts in ``completions/`` call ``pocketsr`` back with ``_POCKETSR_COMPLETE``
set on every Tab; these functions answer that call.  Each must answer in milliseconds
and may fail only quietly, so each one reads manifests and environment variables at most:
it never imports torch or the HTTP stack and never touches the network.  A model name
comes with a short description, shown by zsh and fish.

Typer keeps only the candidates that start with what was typed, so these return every
candidate.  An empty answer lets the shell fall back to completing file names, which is
what ``-m path/to/weights.pth`` needs; one with any candidate keeps it from doing so, so a
model name's completion also offers the weights files of the current folder itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pocketsr_cli.manifest import ModelSpec

Candidates = list[tuple[str, str]]


def _registry(unreadable: list[Path] | None = None) -> dict[str, ModelSpec]:
    """Every model known by name; the paths of the manifests that cannot be read (skipped,
    not raised) go to ``unreadable`` when given.  Nothing when the folders cannot be read:
    a broken model folder must not break the user's shell."""
    from pocketsr_cli.weights.resolve import registry

    try:
        return registry(problems=[], unreadable=unreadable)
    except Exception:
        return {}


def _models(
    keep: Callable[[ModelSpec, str], bool], specs: dict[str, ModelSpec] | None = None
) -> Candidates:
    """Registry names (user, bundled, cached, remote; ``specs``, else :func:`_registry`'s)
    whose spec and 'where' pass ``keep``."""
    from pocketsr_cli.weights.resolve import DEFAULT_MODEL, where

    out: Candidates = []
    for name, spec in sorted((_registry() if specs is None else specs).items()):
        place = where(spec)
        if not keep(spec, place):
            continue
        scale = "any factor" if spec.any_scale else f"×{spec.scale}"
        note = f"{scale}, {place}" + (", default" if name == DEFAULT_MODEL else "")
        out.append((name, note))
    return out


def model_names(incomplete: str) -> Candidates:
    """``-m`` and ``models info`` (NAME|PATH): every model known by name, and the weights
    files in the current folder (:func:`_weights_files_here`), which both take; nothing
    for a path, so the shell completes file names instead."""
    if incomplete.startswith((".", "/", "~")) or "/" in incomplete:
        return []
    return sorted(_models(lambda spec, place: True) + _weights_files_here())


def _weights_files_here() -> Candidates:
    """The files in the current folder named as weights files are (``.safetensors``,
    ``.pth``, ``.pt``, ``.ckpt``), but hidden ones: offered beside the model names, since
    an answer with any candidate keeps the shell from completing file names itself.  One
    ``os.scandir``; nothing when the folder cannot be read."""
    import os

    from pocketsr_cli.manifest import WEIGHT_SUFFIXES

    found: Candidates = []
    try:
        with os.scandir(".") as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.lower().endswith(WEIGHT_SUFFIXES):
                    continue
                try:
                    if entry.is_file():
                        found.append((entry.name, "weights file"))
                except OSError:
                    continue
    except OSError:
        return []
    return found


def downloadable_names(incomplete: str) -> Candidates:
    """``models download``: models that have weights (those without, like bicubic, do not)."""
    return _models(lambda spec, place: spec.weights is not None)


def verifiable_names(incomplete: str) -> Candidates:
    """``models verify``: models whose weights are on this machine."""
    return _models(lambda spec, place: spec.weights is not None and place != "remote")


def removable_names(incomplete: str) -> Candidates:
    """``models remove``: imported models and downloaded weights (bundled files stay), a
    damaged download and a partial one (of a model still "remote") included, and the stem
    of each manifest of the user model folder that cannot be read (``models remove STEM``
    deletes it: ``store.remove_broken_manifest``), unless a model has that name."""
    from pocketsr_cli.weights.cache import user_models_dir, weights_path
    from pocketsr_cli.weights.resolve import local_files

    def removable(spec: ModelSpec, place: str) -> bool:
        if place == "damaged":  # a cut-off download, or a damaged bundled/imported file
            beside = spec.path.parent
            return spec.origin == "user" or any(
                p is not None and p.parent != beside for p in local_files(spec)
            )
        if place == "remote":  # `remove` deletes what an interrupted download kept
            return any(
                weights_path(spec.name, w.file).with_name(w.file + ".incomplete").is_file()
                for w in spec.weight_files
            )
        return place in ("user", "cached", "missing")

    unreadable: list[Path] = []
    specs = _registry(unreadable)
    folder = user_models_dir()
    broken = [
        (path.stem, "a manifest that cannot be read")
        for path in unreadable
        if path.parent == folder and path.stem not in specs  # else the name is the model's
    ]
    return sorted(_models(removable, specs) + broken)


def devices(incomplete: str) -> list[str]:
    """``--device``: auto, cpu, cuda and cuda:N for each GPU seen, mps on Apple silicon."""
    from pocketsr_cli.devices import likely_device_names

    return likely_device_names()


def precisions(incomplete: str) -> list[str]:
    """``--precision``: auto, fp32, fp16, bf16."""
    from pocketsr_cli.devices import PRECISION_CHOICES

    return list(PRECISION_CHOICES)


def formats(incomplete: str) -> list[str]:
    """``--format``: same and every output format ``upscale`` writes."""
    from pocketsr_cli.cli._options import FORMATS

    return list(FORMATS)


def tiles(incomplete: str) -> Candidates:
    """``--tile``: the two words it takes besides a number."""
    return [("auto", "fit the free memory"), ("0", "whole image, no tiles")]


def overlaps(incomplete: str) -> Candidates:
    """``--tile-overlap``: the word it takes besides a number."""
    return [("auto", "the model's own, at least 16")]


def ensembles(incomplete: str) -> Candidates:
    """``--ensemble``: its three modes."""
    return [
        ("none", "one pass"),
        ("pad", "two padded passes, blended (GenDR-Pix)"),
        ("flip8", "eight flips and rotations, averaged"),
    ]
