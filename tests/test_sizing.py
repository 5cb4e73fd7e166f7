"""Targets, variant choice and how -s combines with --outscale and the size options."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pocketsr_cli.errors import UsageError
from pocketsr_cli.sizing import (
    Target,
    native_ratio,
    pick_scale,
    plan_run,
    scaled_length,
    scales_text,
    substitution_note,
    target_from_options,
)


def test_pick_scale_prefers_the_smallest_sufficient_variant() -> None:
    assert pick_scale(3, [2, 4]) == 4
    assert pick_scale(2, [4, 2]) == 2
    assert pick_scale(0.5, [2, 4]) == 2
    assert pick_scale(8, [2, 4]) == 4  # none is enough: the largest
    assert pick_scale(3840 / 1280, [3, 4]) == 3  # an exact ratio is not "a bit over 3"
    assert pick_scale(2.1, []) == 3 and pick_scale(0.3, []) == 1 and pick_scale(40, []) == 16


@pytest.mark.parametrize(
    ("target", "size", "label"),
    [
        (Target.factor(3), (96, 72), "x3"),
        (Target.factor(1.5), (48, 36), "x1.5"),
        (Target("width", 100), (100, 75), "w100"),
        (Target("height", 100), (133, 100), "h100"),
        (Target("long_edge", 50), (50, 38), "l50"),
    ],
)
def test_target_sizes_and_labels(target: Target, size: tuple[int, int], label: str) -> None:
    assert target.size_for(32, 24) == size and target.label == label


def test_sides_round_half_up_in_exact_arithmetic() -> None:
    """3 px and 5 px at ×1.5 both round up (4.5 makes 5 as 7.5 makes 8; half to even made
    4), and a product that is a half in decimals is one (10 × 1.15 = 11.5 makes 12, though
    the float product is 11.499999999999998)."""
    assert Target.factor(1.5).size_for(3, 5) == (5, 8)
    assert Target.factor(1.15).size_for(10, 30) == (12, 35)
    assert Target.factor(0.3).size_for(5, 15) == (2, 5)
    assert Target("width", 9).size_for(6, 3) == (9, 5)  # the height follows: 4.5
    assert Target("height", 3).size_for(7, 2) == (11, 3)
    assert Target("long_edge", 9).size_for(3, 6) == (5, 9)
    assert Target.factor(1.15).factor_for(10, 30) == 1.15
    assert Target("width", 9).exact_factor_for(6, 3) == Fraction(3, 2)
    assert scaled_length(7, Fraction(1, 2)) == 4 and scaled_length(1, Fraction(1, 3)) == 1


def test_long_edge_of_a_portrait_and_tiny_results() -> None:
    assert Target("long_edge", 50).size_for(24, 32) == (38, 50)
    assert Target("width", 1).size_for(1000, 10) == (1, 1)  # never 0 pixels
    assert Target("width", 3840).factor_for(1280, 720) == 3


def test_target_from_options() -> None:
    assert target_from_options() is None
    assert target_from_options(outscale=1.5) == Target.factor(1.5)
    assert target_from_options(long_edge=4096) == Target("long_edge", 4096)
    with pytest.raises(UsageError, match=r"^width and long edge cannot be combined"):
        target_from_options(width=10, long_edge=10)
    with pytest.raises(UsageError, match=r"^height must be a positive number of pixels, not -3"):
        target_from_options(height=-3)


def test_substitution_notes_read_as_sentences() -> None:
    assert substitution_note("m", [2, 4], 4) == (4, None)
    assert substitution_note("m", [], 3) == (3, None)  # resamplers run at any factor
    assert substitution_note("m", [2, 4], 3) == (
        4,
        "m has no ×3 variant: running ×4 and resizing to ×3",
    )
    assert substitution_note("m", [2, 4], 8) == (
        4,
        "m has no ×8 variant (largest ×4): running ×4 and enlarging to ×8 with Lanczos",
    )
    assert substitution_note("m", [2, 4], 3, then_resize=False)[1] == (
        "m has no ×3 variant: running ×4"
    )
    assert scales_text([4, 2]) == "×2, ×4"


def test_plan_run_combines_scale_and_targets() -> None:
    assert plan_run("m", (2, 4), 4) == plan_run("m", (2, 4), 4, scale=4)
    assert plan_run("m", (2, 4), 4).target == Target.factor(4)
    plan = plan_run("m", (2, 4), 4, scale=3)
    assert (plan.target, plan.scales) == (Target.factor(3), (4,)) and plan.note
    # --outscale keeps the model's own variant; -s still picks one.
    assert plan_run("m", (2, 4), 4, target=Target.factor(1.5)).scales == (4,)
    assert plan_run("m", (2, 4), 4, scale=2, target=Target.factor(1.5)).scales == (2,)
    # A size target chooses per image, unless -s picked the variant.
    assert plan_run("m", (2, 4), 4, target=Target("width", 64)).scales is None
    assert plan_run("m", (2, 4), 4, scale=2, target=Target("width", 64)).scales == (2,)


def test_native_ratio_makes_the_exact_size_with_a_small_denominator() -> None:
    """At p/q a PCSR network draws w p/q x h p/q rounded half up, as every size: the
    fraction is the smallest denominator within a tenth of an output pixel of the factor,
    else the closest that gives the size, else the closest (a pixel off); None below 1."""
    assert native_ratio(32, 24, Target("width", 80), 100) == Fraction(5, 2)
    assert native_ratio(1280, 720, Target("height", 2160), 100) == 3
    assert native_ratio(640, 480, Target("width", 1000), 100) == Fraction(25, 16)
    assert native_ratio(29, 37, Target("width", 100), 100) == Fraction(69, 20)  # not 100/29
    for w, h, target in [(101, 40, Target("width", 250)), (3001, 2003, Target("width", 4099)),
                         (5997, 4001, Target("long_edge", 7919))]:  # fmt: skip
        ratio = native_ratio(w, h, target, 100)
        assert ratio is not None and ratio.denominator <= 100
        assert (scaled_length(w, ratio), scaled_length(h, ratio)) == target.size_for(w, h)
    closest = native_ratio(103, 51, Target("width", 104), 100)  # none gives 104 x 51
    assert closest == Fraction(101, 100) and scaled_length(51, closest) == 52
    # A factor's own sides, halves included, are what the network draws at that factor.
    assert Target.factor(1.5).size_for(3003, 2001) == (4505, 3002)
    assert native_ratio(3003, 2001, Target.factor(1.5), 100) == Fraction(3, 2)
    assert native_ratio(4000, 3000, Target("width", 2000), 100) is None
