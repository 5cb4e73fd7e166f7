"""How big an output is, and which model variant makes it.

Vocabulary:

* a **variant** is one network of a model family, running at one integer factor (the
  ``pocketsr-compact`` family has ×2 and ×4; resamplers such as ``bicubic`` run at any
  integer factor);
* the **target** is what the command line asks the output to be: a factor of the input
  (``-s N`` or ``--outscale F``) or a size (``--width W``, ``--height H``,
  ``--long-edge L``, the aspect ratio kept);
* the variant runs first, then the pipeline resizes its result to the target's exact size
  (area averaging to shrink, Lanczos to enlarge: ``pipeline.resize_output``);
* a side that a factor makes a fraction of a pixel is rounded half up, in exact arithmetic
  on the factor as it was written (:func:`scaled_length`): 3 px × 1.5 make 5 as 5 px × 1.5
  make 8, and 10 px × 1.15 make 12 (not Python's ``round``, half to even, which made 4,
  nor the float product, 11.499999999999998).

How the options combine (README, ``upscale --help``):

* ``-s N`` picks the variant: ×N when the model has it, else the nearest larger one, else
  its largest (:func:`pick_scale`); alone, it also makes N the target factor;
* ``--outscale F`` / ``--width`` / ``--height`` / ``--long-edge`` set the target (one of
  them at most); they never change a variant ``-s`` picked;
* without ``-s``, ``--outscale`` keeps the model's own variant (as it always did), while a
  size target picks, per image, the smallest variant whose factor reaches the size
  (:func:`pick_scale` again), so a small photo and a large one may run different variants.

A network that draws any factor itself (PCSR) skips most of the resize: it runs at the
target's factor, or for a size target at each image's own (:func:`native_ratio`).

Nothing here imports torch or reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from pocketsr_cli.errors import UsageError
from pocketsr_cli.spelling import HEIGHT, LONG_EDGE, OUTSCALE, WIDTH

TargetKind = Literal["factor", "width", "height", "long_edge"]

ANY_SCALE_MAX = 16
"""The largest factor a resampler (a model that runs at any factor) is asked to run at; a
larger target is reached by the final Lanczos resize (same as ``-s``'s own maximum)."""

OUTSCALE_MIN, OUTSCALE_MAX = 0.01, 64.0
"""The factors ``--outscale`` (and the Python API's ``outscale``) takes: beyond them a
result is a pixel or two, or a resize whose output no memory holds (×64 of a 12 MP photo
is 150 GB)."""

# A factor computed as 3840 / 1280 must count as exactly 3, not as "a bit over 3".
_EPSILON = 1e-9

NATIVE_DRIFT = 0.1
"""How far, in output pixels at the far edge, :func:`native_ratio` lets the factor drawn
move from the target's own before it prefers the closest factor to the smallest one."""


def scaled_length(n: int, factor: Fraction) -> int:
    """``n`` pixels times ``factor``, rounded half up, at least 1: every output side a
    factor sets.  A PCSR network draws its sides by it too (``grid.output_length``), so
    that a size asked of it is the size it draws."""
    return max(1, math.floor(n * factor + Fraction(1, 2)))


def scale_label(scale: float) -> str:
    """``4.0`` -> ``"4"``, ``1.5`` -> ``"1.5"``."""
    return f"{scale:g}"


def scales_text(scales: Sequence[int]) -> str:
    """``[2, 4]`` -> ``"×2, ×4"``: how every message lists a model's variants."""
    return ", ".join(f"×{s}" for s in sorted(scales))


@dataclass(frozen=True)
class Target:
    """The output size one run asks for.

    Attributes:
        kind: ``factor`` (``value`` times the input), or ``width`` / ``height`` /
            ``long_edge`` (that side becomes exactly ``value`` pixels, the other side
            follows the aspect ratio, rounded half up).
        value: the factor (> 0) or the number of pixels (a positive integer).
    """

    kind: TargetKind
    value: float

    def __post_init__(self) -> None:
        if not self.value > 0:
            raise ValueError(f"a target needs a positive value, not {self.value}")

    @classmethod
    def factor(cls, value: float) -> Target:
        return cls("factor", float(value))

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The output ``(width, height)`` for an input of ``width × height``; never below 1.

        A size target is reached exactly on its side; the other side is the input's times
        the same factor, rounded half up (:func:`scaled_length`).
        """
        f = self.exact_factor_for(width, height)
        out_w, out_h = scaled_length(width, f), scaled_length(height, f)
        if self.kind == "width" or (self.kind == "long_edge" and width >= height):
            out_w = int(self.value)
        elif self.kind != "factor":
            out_h = int(self.value)
        return out_w, out_h

    def factor_for(self, width: int, height: int) -> float:
        """The factor from this input's size to the target (the same on both axes)."""
        return float(self.exact_factor_for(width, height))

    def exact_factor_for(self, width: int, height: int) -> Fraction:
        """:meth:`factor_for` exactly: a factor as the shortest decimal that reads back as
        it (``1.15`` is 23/20, not the float just below), a size over the input's side."""
        if self.kind == "factor":
            return Fraction(repr(self.value))
        side = {"width": width, "height": height}.get(self.kind, max(width, height))
        return Fraction(int(self.value), side)

    @property
    def label(self) -> str:
        """The tag of default output names: ``x4``, ``x1.5``, ``w3840``, ``h2160``, ``l4096``."""
        if self.kind == "factor":
            return f"x{scale_label(self.value)}"
        letter = {"width": "w", "height": "h", "long_edge": "l"}[self.kind]
        return f"{letter}{int(self.value)}"

    def describe(self) -> str:
        """For people: ``×4``, ``width 3840``, ``long edge 4096``."""
        if self.kind == "factor":
            return f"×{scale_label(self.value)}"
        return f"{self.kind.replace('_', ' ')} {int(self.value)}"


def target_from_options(
    *,
    outscale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    long_edge: int | None = None,
) -> Target | None:
    """The target given by ``--outscale``/``--width``/``--height``/``--long-edge``, or None.

    Raises:
        UsageError: more than one of them, or a value that is not positive.
    """
    given = {OUTSCALE: outscale, WIDTH: width, HEIGHT: height, LONG_EDGE: long_edge}
    named = [str(option) for option, value in given.items() if value is not None]
    if len(named) > 1:
        raise UsageError(
            f"{' and '.join(named)} cannot be combined: give one of "
            f"{', '.join(str(option) for option in given)}"
        )
    for option, value in given.items():
        if value is not None and not value > 0:
            what = "factor" if option is OUTSCALE else "number of pixels"
            raise UsageError(f"{option} must be a positive {what}, not {value:g}")
    if outscale is not None:
        return Target.factor(outscale)
    for kind, value in (("width", width), ("height", height), ("long_edge", long_edge)):
        if value is not None:
            return Target(kind, float(value))  # type: ignore[arg-type]
    return None


def native_ratio(width: int, height: int, target: Target, max_denominator: int) -> Fraction | None:
    """The factor ``p/q`` (``q <= max_denominator``) a network that draws any factor
    (PCSR) runs at to make a ``width × height`` input into ``target``; None when the
    target's factor ``f`` is below 1 (such a network does not shrink).

    At ``p/q`` the network draws ``width·p/q × height·p/q`` pixels rounded half up, as
    every size is (:func:`scaled_length`).  Most sizes have a fraction with a small ``q``
    that makes exactly ``target.size_for(width, height)``, with the far edge's pixels
    ``max(width, height)·|p/q − f|`` output pixels from where ``f`` puts them.  It is the
    one with the smallest ``q`` (fewer pixels per packed block, ``archs/pcsr/packing.py``)
    among those within :data:`NATIVE_DRIFT` of ``f``, else the closest to ``f`` of those
    that make the exact size, else the closest to ``f`` (whose result the caller then
    resizes by a pixel).
    """
    factor = target.factor_for(width, height)
    if factor < 1 - _EPSILON:
        return None
    size = target.size_for(width, height)
    longest = max(width, height)
    exact: list[Fraction] = []
    for q in range(1, max_denominator + 1):
        near = sorted(
            {math.floor(factor * q), math.ceil(factor * q)}, key=lambda p: abs(p - factor * q)
        )
        for p in near:
            ratio = Fraction(p, q)
            if ratio < 1 or ratio.denominator != q:  # a smaller q had it already
                continue
            if (scaled_length(width, ratio), scaled_length(height, ratio)) != size:
                continue
            if longest * abs(float(ratio) - factor) <= NATIVE_DRIFT:
                return ratio
            exact.append(ratio)
    if exact:
        return min(exact, key=lambda ratio: (abs(float(ratio) - factor), ratio.denominator))
    return max(Fraction(1), Fraction(factor).limit_denominator(max_denominator))


def pick_scale(needed: float, scales: Sequence[int]) -> int:
    """The variant factor to run for a ``needed`` factor.

    The smallest of ``scales`` that is at least ``needed`` (so the final resize shrinks,
    which loses nothing, rather than enlarges), else the largest.  Empty ``scales`` means
    "any integer factor" (resamplers): ``needed`` rounded up, between 1 and
    :data:`ANY_SCALE_MAX`.
    """
    if not scales:
        return max(1, min(ANY_SCALE_MAX, math.ceil(needed - _EPSILON)))
    ordered = sorted(scales)
    for scale in ordered:
        if scale >= needed - _EPSILON:
            return scale
    return ordered[-1]


def substitution_note(
    name: str, scales: Sequence[int], wanted: int, *, then_resize: bool = True
) -> tuple[int, str | None]:
    """The variant ``-s wanted`` runs, and the one-line warning when it is not ×``wanted``.

    ``name`` is how the model is called in the message (``pocketsr-compact``);
    ``then_resize`` says that the result is resized to ×``wanted`` (False when another
    option sets the final size).
    """
    run = pick_scale(wanted, scales)
    if run == wanted or not scales:
        return run, None
    if run > wanted:
        tail = f" and resizing to ×{wanted}" if then_resize else ""
        return run, f"{name} has no ×{wanted} variant: running ×{run}{tail}"
    tail = f" and enlarging to ×{wanted} with Lanczos" if then_resize else ""
    return run, f"{name} has no ×{wanted} variant (largest ×{run}): running ×{run}{tail}"


@dataclass(frozen=True)
class Plan:
    """What a run makes and with which variants (:func:`plan_run`).

    Attributes:
        target: the output size every image gets.
        scales: the variant factors to load; None for a size target without ``-s``, whose
            variants depend on each image's size (``pipeline.scales_for_sizes``).
        note: a warning line for the user when ``-s N`` runs another variant than ×N.
    """

    target: Target
    scales: tuple[int, ...] | None
    note: str | None = None


def plan_run(
    name: str,
    scales: Sequence[int],
    default_scale: int,
    *,
    scale: int | None = None,
    target: Target | None = None,
) -> Plan:
    """Combine ``-s`` (``scale``) with ``--outscale``/a size option (``target``) for a model
    called ``name`` with variants at ``scales`` (empty: any factor), as the module docstring
    says: ``-s`` picks the variant (and alone sets the factor), ``--outscale`` keeps the
    model's own variant, a size target picks one per image.
    """
    if scale is not None:
        run, note = substitution_note(name, scales, scale, then_resize=target is None)
        return Plan(target or Target.factor(scale), (run,), note)
    if target is None or target.kind == "factor":
        return Plan(target or Target.factor(default_scale), (default_scale,))
    return Plan(target, None)
