"""Self-ensembles: one network run on transformed copies of each tile, the results blended.

An ensemble trades time for an output that depends less on how the picture falls on the
network's grids.  :class:`Ensemble` names one and wraps a tile function with it:

- ``none``: one pass.
- ``pad``: GenDR-Pix's "PadCFG" (arXiv 2602.10630): two passes over the tile reflect-padded
  by ``[4, 4, 4, 4]`` and by ``[3, 5, 3, 5]`` (left, right, top, bottom), each result
  cropped back, blended as ``y = ω·A + (1 − ω)·B``.  ω = 0.5 is the plain average; ω > 1
  extrapolates away from ``B`` as classifier-free guidance does; at ω = 0 or 1 only the
  pass with a weight runs.  The pads shift the tile by one pixel against the network's
  periodic grid (a ×8 pixel-unshuffle, strided U-Net levels), so artefacts tied to that
  grid's phase do not line up.  A network that is shift-equivariant at the input's pixel
  pitch (convolutions and a final pixel shuffle, such as the SRVGG compact body) gives
  both passes the same output away from the image border: there ``pad`` changes only the
  border pixels.
- ``flip8``: the eight flips and rotations of the tile, each result turned back, averaged
  (the ×8 self-ensemble of EDSR, Lim et al. 2017).  Eight passes; a rotated tile has its
  sides swapped, so non-square tiles work as long as the model accepts both sides (the
  tiler makes both multiples of ``multiple_of``).

Tiles: the wrapped function is what the tiler calls, so every tile gets its own passes.
The padding is a reflection of the tile's own pixels: it adds no context, and an output
pixel still depends only on tile pixels within the network's receptive-field radius ``r``
of it (a reflected pixel lies within ``r`` of the same edge as the pixel it copies).  So
the tiler's guarantee holds unchanged (tiled equals untiled when ``r`` is at most half the
overlap) and the overlap need not grow by the pad.  The one exception is a network that
is not shift-equivariant at all (a ×8 unshuffle): its tiles and the whole image see its
grid at different phases wherever a window does not start on a multiple of the grid,
with or without an ensemble; the feather hides that.

Nothing here imports torch until a function is wrapped, so the command line can validate
``--ensemble`` before any heavy import.  The command line's spellings (``--ensemble``
repeated, ``--ensemble-weight``) are read in ``cli/_options.py``; the core takes an
:class:`Ensemble`, or :meth:`Ensemble.of` a mode name and a weight (the API's keywords).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, Literal

from pocketsr_cli.errors import UsageError
from pocketsr_cli.spelling import ENSEMBLE, ENSEMBLE_WEIGHT

if TYPE_CHECKING:
    import torch

    from pocketsr_cli.descriptor import SizeRequirements

EnsembleMode = Literal["none", "pad", "flip8"]
MODES: tuple[EnsembleMode, ...] = ("none", "pad", "flip8")

# GenDR-Pix's two pads, (left, right, top, bottom) in input pixels; the first is ω's pass.
PAD_PASSES: tuple[tuple[int, int, int, int], ...] = ((4, 4, 4, 4), (3, 5, 3, 5))
DEFAULT_WEIGHT = 0.5
# ω outside this range amplifies the difference of the two passes more than five-fold: a
# typo (5 for .5) rather than a setting.
WEIGHT_RANGE = (0.0, 3.0)

TileFn = Callable[..., "torch.Tensor"]


@dataclass(frozen=True)
class Ensemble:
    """A self-ensemble mode and, for ``pad``, its weight ω (see the module docstring).

    Truthy when it runs more than the plain pass.

    Raises:
        UsageError: an unknown mode, or a weight that is not a finite number in
            :data:`WEIGHT_RANGE`.
    """

    mode: EnsembleMode = "none"
    weight: float = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"{ENSEMBLE} takes none, pad or flip8, not {self.mode!r}")
        low, high = WEIGHT_RANGE
        if not (math.isfinite(self.weight) and low <= self.weight <= high):
            raise UsageError(
                f"{ENSEMBLE_WEIGHT} must be a number from {low:g} to {high:g} "
                f"(0.5 averages the two passes), not {self.weight!r}"
            )

    @classmethod
    def of(cls, value: Ensemble | str | bool | None, weight: float | None = None) -> Ensemble:
        """``value`` itself, or the ensemble a mode name names (any case, spaces around
        ignored; ``True``/``False``/None: the on/off of earlier versions, ``pad``/``none``)
        with ``weight`` (None: :data:`DEFAULT_WEIGHT`).

        Raises:
            UsageError: an unknown mode or bad weight (out of range, or not a number: a
                str or a bool), or a weight given with a mode other than ``pad`` (or with
                an :class:`Ensemble`).
        """
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, Real)):
            low, high = WEIGHT_RANGE  # a str ("0.7") or a bool is no number the API takes
            raise UsageError(
                f"{ENSEMBLE_WEIGHT} must be a number from {low:g} to {high:g}, not {weight!r}"
            )
        if isinstance(value, Ensemble):
            if weight is not None:
                raise UsageError(f"{ENSEMBLE_WEIGHT} goes with a mode name, not an Ensemble")
            return value
        if value is None or value is False:
            text = "none"
        elif value is True:
            text = "pad"
        elif isinstance(value, str):
            text = value.strip().lower()
        else:  # a number is no mode; shown as given (1, not '1')
            raise UsageError(f"{ENSEMBLE} takes none, pad or flip8, not {value!r}")
        if weight is not None and text != "pad":
            if isinstance(weight, (int, float)):  # out of range is said first: likelier
                cls("pad", float(weight))
            raise UsageError(f"{ENSEMBLE_WEIGHT} applies to {ENSEMBLE.given('pad')}, not to {text}")
        if text not in MODES:  # as given: 'FANCY', not the 'fancy' it was compared as
            raise UsageError(f"{ENSEMBLE} takes none, pad or flip8, not {value!r}")
        return cls(text, DEFAULT_WEIGHT if weight is None else float(weight))

    def __bool__(self) -> bool:
        return self.mode != "none"

    @property
    def passes(self) -> int:
        """Network passes per tile."""
        if self.mode == "flip8":
            return 8
        if self.mode == "pad":
            return len(self._pad_passes())
        return 1

    @property
    def label(self) -> str:
        """``none``, ``pad``, ``pad:0.75`` (a weight other than 0.5) or ``flip8``."""
        if self.mode == "pad" and self.weight != DEFAULT_WEIGHT:
            return f"pad:{self.weight:g}"
        return self.mode

    def record(self) -> dict[str, Any]:
        """The keys an output's provenance record and ``--json`` lines carry:
        ``ensemble`` (the mode) and ``ensemble_weight`` (ω for ``pad``, else None)."""
        return {
            "ensemble": self.mode,
            "ensemble_weight": self.weight if self.mode == "pad" else None,
        }

    def _pad_passes(self) -> list[tuple[float, tuple[int, int, int, int]]]:
        """``(weight, pad)`` of the pad passes that have a weight."""
        first, second = PAD_PASSES
        weighted = [(self.weight, first), (1.0 - self.weight, second)]
        return [(w, pad) for w, pad in weighted if w != 0.0]

    def wrap(self, fn: TileFn, scale: int, size: SizeRequirements | None = None) -> TileFn:
        """``fn(x, *extra)`` (``(N, C, h, w)`` -> ``(N, C, h·scale, w·scale)``) run as
        this ensemble: every pass's input meets ``size`` (padded further at the bottom
        and right where the ensemble's own padding breaks ``multiple_of``), and the result
        has ``fn``'s shape.  ``none`` returns ``fn`` itself."""
        from pocketsr_cli.descriptor import SizeRequirements

        need = size or SizeRequirements()
        if self.mode == "pad":
            passes = self._pad_passes()

            def padded(x: torch.Tensor, *extra: Any) -> torch.Tensor:
                total: torch.Tensor | None = None
                for weight, pad in passes:
                    y = _padded_pass(fn, x, pad, scale, need, extra)
                    total = y.mul_(weight) if total is None else total.add_(y, alpha=weight)
                assert total is not None
                return total

            return padded
        if self.mode == "flip8":

            def flipped(x: torch.Tensor, *extra: Any) -> torch.Tensor:
                total: torch.Tensor | None = None
                for turns in range(4):
                    for mirror in (False, True):
                        t = x.flip(-1) if mirror else x
                        y = fn(t.rot90(turns, (-2, -1)).contiguous(), *extra)
                        y = y.rot90(-turns, (-2, -1))
                        y = y.flip(-1) if mirror else y
                        total = y.float() if total is None else total.add_(y)
                assert total is not None
                return total.div_(8)

            return flipped
        return fn


def _padded_pass(
    fn: TileFn,
    x: torch.Tensor,
    pad: tuple[int, int, int, int],
    scale: int,
    size: SizeRequirements,
    extra: tuple[Any, ...],
) -> torch.Tensor:
    """``fn`` on ``x`` padded by ``pad`` (left, right, top, bottom; then up to ``size`` at
    the bottom/right), its result cropped back to ``x``'s extent, as float32."""
    import torch.nn.functional as F

    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    right += size.padded(w + left + right) - (w + left + right)
    bottom += size.padded(h + top + bottom) - (h + top + bottom)
    # Reflection needs a pad shorter than the side; a sliver of a tile is replicated.
    mode = "reflect" if min(h, w) > max(left, right, top, bottom) else "replicate"
    y = fn(F.pad(x, (left, right, top, bottom), mode=mode), *extra)
    y = y[..., top * scale : (top + h) * scale, left * scale : (left + w) * scale]
    return y.float()
