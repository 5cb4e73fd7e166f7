"""scripts/chroma_sweep.py: its table, its candidates and its measures do what the model
card says they do."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chroma_sweep.py"


@pytest.fixture(scope="module")
def sweep() -> dict[str, Any]:
    with mock.patch.object(sys, "path", [str(SCRIPT.parent), *sys.path]):  # as python runs it
        return runpy.run_path(str(SCRIPT), run_name="_tested")


def test_crops_with_no_neutral_edges_leave_the_neutral_columns_out(sweep: Any) -> None:
    nan = float("nan")
    rows = {"none": [(30.0, 29.0, 40.0, 1.0, 0.5, 0.4, 12.0, 20.0, nan)] * 2}
    assert sweep["summary"](rows)["none"][-2:] == ["-", "-"]
    rows["none"].append((30.0, 29.0, 40.0, 1.0, 0.5, 0.4, 14.0, 20.0, 9.0))
    cells = sweep["summary"](rows)["none"]
    assert cells[-3:] == ["14.00", "9.00", "9.00"]  # the worst p99, then the one crop's
