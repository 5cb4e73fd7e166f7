"""The record every output carries of how it was made, and comparing it with a new run.

The record is one small JSON object.  Where it is stored is ``imageio``'s business (PNG:
a ``tEXt`` chunk with the keyword ``pocketsr``; JPEG, WebP and TIFF: the XMP property
``pocketsr:record``; BMP, which has no room for metadata: a sidecar file
``NAME.bmp.pocketsr.json``).  It is written even with ``--strip-metadata`` — it describes
our work, not the camera — and left out only with ``--no-provenance``.

Keys, one object per output::

    {"pocketsr": "0.1.0",                         # the version that wrote it
     "model": "pocketsr-compact-x4",               # the variant that ran
     "model_sha256": "dc1c...",                    # its weights (null for resamplers)
     "model_scale": 4,                             # the factor the network ran at
     "routing": "k=0.02",                          # a PCSR network's routing (PCSR only)
     "target": "x3",                               # what was asked: x3, x1.5, w3840, h2160, l4096
     "ensemble": "pad",                            # none, pad or flip8
     "ensemble_weight": 0.5,                       # pad's ω (pad only)
     "quality": 95,                                # JPEG and WebP only ("lossless":
                                                   # a lossless WebP kept lossless)
     "width": 96, "height": 72,                    # the output's size
     "precision": "cpu fp32", "tile": "auto/16",   # recorded, not compared
     "source": "coffee.jpg"}

Two records describe "the same settings" when every key of :data:`COMPARED` is equal.
Records of earlier versions have ``"ensemble": false`` or ``true`` and no weight; they
compare as ``none`` and as ``pad`` with ω 0.5, the only ensemble there was then.
Device, precision and tiling are left out of the comparison on purpose: they change
pixels by a rounding step at most (tiled output equals untiled output within a level or
two at the model's overlap, which the default meets; fp16 within a few), and a run on
another machine must not call every earlier output foreign.  (A smaller
``--tile-overlap`` draws seams, of which the run warns.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pocketsr_cli.ensemble import DEFAULT_WEIGHT, Ensemble

COMPARED: tuple[str, ...] = (
    "model",
    "model_sha256",
    "model_scale",
    "routing",
    "target",
    "ensemble",
    "ensemble_weight",
    "quality",
)
"""The keys that decide whether an existing output was made with the settings asked for."""

LOSSY_FORMATS = ("jpeg", "webp")


@dataclass(frozen=True)
class RunSettings:
    """The part of every record that is the same for the whole run.

    Attributes:
        version: pocketsr's version.
        ensemble: ``--ensemble`` and ``--ensemble-weight`` (change pixels: compared).
        quality: ``--quality`` (95 when not given); recorded (and compared) for JPEG and
            WebP outputs only, as ``"lossless"`` for a WebP written losslessly.
        tile: ``--tile`` and the overlap the tiles shared as ``"auto/16"``
            (:func:`tile_label`; recorded only).
    """

    version: str
    ensemble: Ensemble = field(default_factory=Ensemble)
    quality: int = 95
    tile: str = "auto/16"


def tile_label(tile: int | None, overlaps: Iterable[int]) -> str:
    """The record's ``tile``: ``--tile`` as read (``cli._options.tile_side``: None for
    ``auto``, 0 or N), written ``auto``, ``0`` or ``N`` however it was typed (``AUTO``,
    `` 64 ``, ``064``), and the overlap its tiles share, each model's own when
    ``--tile-overlap`` is ``auto`` (the default), so that a run of the default model
    records ``"auto/16"`` whether or not it names the overlap, as earlier versions' runs
    did; the variants' several overlaps, where they differ, joined by commas
    (``"auto/16,32"``)."""
    side = "auto" if tile is None else str(tile)
    return f"{side}/{','.join(str(o) for o in dict.fromkeys(overlaps))}"


def make_record(
    settings: RunSettings,
    *,
    model: str,
    model_sha256: str | None,
    model_scale: int,
    target: str,
    routing: str | None = None,
    fmt: str,
    lossless: bool = False,
    size: tuple[int, int] | None = None,
    precision: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The record of one output (see the module docstring for the keys).

    ``fmt`` is the output's format key, ``lossless`` whether it is written losslessly
    (a WebP, ``imageio.OutputPlan.lossless``: its quality is then ``"lossless"``, not
    ``--quality``'s); ``routing`` (a PCSR network's, e.g. ``"k=0.02"``),
    ``size``, ``precision`` and ``source`` are left out when None (the record a run
    *expects* is built before the image is decoded).
    """
    record: dict[str, Any] = {
        "pocketsr": settings.version,
        "model": model,
        "model_sha256": model_sha256,
        "model_scale": model_scale,
        "target": target,
        "ensemble": settings.ensemble.mode,
    }
    if routing is not None:
        record["routing"] = routing
    if settings.ensemble.mode == "pad":
        record["ensemble_weight"] = settings.ensemble.weight
    if fmt in LOSSY_FORMATS:
        record["quality"] = "lossless" if lossless else settings.quality
    if size is not None:
        record["width"], record["height"] = size
    if precision is not None:
        record["precision"] = precision
    record["tile"] = settings.tile
    if source is not None:
        record["source"] = source
    return record


def dumps(record: Mapping[str, Any]) -> str:
    """One line of ASCII JSON (it must fit a PNG ``tEXt`` chunk, which is Latin-1)."""
    return json.dumps(dict(record), ensure_ascii=True, separators=(",", ":"))


def loads(text: str | bytes) -> dict[str, Any] | None:
    """The record in ``text``, or None when it is not a JSON object naming a model."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or "model" not in value:
        return None
    return value


_LABELS = {
    "model": "model",
    "model_sha256": "weights sha256",
    "model_scale": "variant",
    "routing": "routing",
    "target": "size",
    "ensemble": "ensemble",
    "ensemble_weight": "ensemble weight",
    "quality": "quality",
}


def _show(key: str, value: object) -> str:
    if value is None:
        return "none"
    if key == "model_sha256" and isinstance(value, str):
        return value[:12] + "…"
    if key == "model_scale":
        return f"×{value}"
    return str(value)


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with an earlier version's on/off ensemble read as today's mode, and
    ω filled in where an earlier ``pad`` record has none."""
    out = dict(record)
    ensemble = out.get("ensemble")
    if ensemble is None or isinstance(ensemble, bool):
        out["ensemble"] = "pad" if ensemble else "none"
    if out["ensemble"] == "pad" and out.get("ensemble_weight") is None:
        out["ensemble_weight"] = DEFAULT_WEIGHT
    return out


def differences(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What differs between an output's record and the one this run would write, one
    ``"model pocketsr-nano-x4 → pocketsr-compact-x4"`` item per compared key; empty when
    they describe the same settings.

    A weights digest only counts when the model names agree (a different model already
    says it all) and both records have one; an ensemble weight only when both ensembles
    are ``pad``; a routing only when both records have one.
    """
    existing, wanted = _comparable(existing), _comparable(wanted)
    items = []
    for key in COMPARED:
        old, new = existing.get(key), wanted.get(key)
        if old == new:
            continue
        if key == "model_sha256" and (
            existing.get("model") != wanted.get("model") or old is None or new is None
        ):
            continue
        if key == "ensemble_weight" and existing["ensemble"] != wanted["ensemble"]:
            continue
        if key == "routing" and (old is None or new is None):
            continue  # a record from before routings were recorded: unknown, not different
        items.append(f"{_LABELS[key]} {_show(key, old)} → {_show(key, new)}")
    return items


def describe(record: Mapping[str, Any]) -> str:
    """``"pocketsr-compact-x4, x3"``: what made an output, in a few words."""
    parts = [str(record.get("model", "?"))]
    if record.get("target"):
        parts.append(str(record["target"]))
    return ", ".join(parts)
