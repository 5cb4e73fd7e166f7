"""pipeline: several encoder threads (``Options.encode_threads``) overlap encoding, yet
files, results and their order are those of a single writer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from pocketsr_cli import pipeline
from pocketsr_cli.errors import ImageWriteError
from pocketsr_cli.jobs import Job, Naming, collect_jobs
from pocketsr_cli.pipeline import (
    MemoryLimit,
    NullReporter,
    Options,
    Result,
    Summary,
    default_encode_threads,
    run,
)
from pocketsr_cli.provenance import RunSettings

COUNT = 6
REAL_ENCODE = pipeline.encode_image


class Nearest:
    """Nearest-neighbour ×2."""

    scale = 2

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


class Events(NullReporter):
    """Every result in the order it was reported, and from which threads."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.threads: set[str] = set()

    def image_finished(self, result: Result) -> None:
        self.done.append(result.job.input.name)
        self.threads.add(threading.current_thread().name)


def photos(folder: Path, count: int = COUNT) -> list[Job]:
    """``count`` small distinct photos (JPEG and PNG) in ``folder``, and their jobs."""
    folder.mkdir()
    rng = np.random.default_rng(12)
    for i in range(count):
        pixels = rng.integers(0, 255, (10 + i, 14, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02}.{'jpg' if i % 2 else 'png'}")
    return collect_jobs([folder], Naming(folder.parent / f"{folder.name}-out", None, "2"))


class SlowEncoder:
    """Wraps ``pipeline.encode_image``: the first image encodes slowest, so that the later
    ones finish first, and counts the encodes running at once; ``fail`` names the
    first-pixel value of the image whose encode raises ``error``."""

    def __init__(self, fail: int | None = None, error: Exception | None = None) -> None:
        self.real = REAL_ENCODE
        self.lock = threading.Lock()
        self.calls = 0
        self.active = 0
        self.most = 0
        self.finished: list[int] = []  # the call numbers, in the order they finished
        self.fail = fail
        self.error = error or ImageWriteError("cannot encode this one (test)")

    def __call__(self, pixels: np.ndarray, *args: Any, **kwargs: Any) -> bytes:
        with self.lock:
            self.calls += 1
            n = self.calls
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(0.6 if n == 1 else 0.05)  # the others overtake the first
            if self.fail is not None and int(pixels[0, 0, 0]) == self.fail:
                raise self.error
            return self.real(pixels, *args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1
                self.finished.append(n)


class CountingGate(pipeline._MemoryGate):
    """The run's memory gate, counting what was reserved and released."""

    made: ClassVar[list[CountingGate]] = []

    def __init__(self, budget: int | None, stop: threading.Event) -> None:
        super().__init__(budget, stop)
        self.acquired = self.released = 0
        CountingGate.made.append(self)

    def acquire(self, need: int) -> bool:
        ok = super().acquire(need)
        if ok:
            with self.changed:
                self.acquired += need
        return ok

    def release(self, need: int) -> None:
        with self.changed:
            self.released += need
        super().release(need)


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[CountingGate]]:
    CountingGate.made = []
    monkeypatch.setattr(pipeline, "_MemoryGate", CountingGate)
    yield CountingGate.made


def run_with(
    jobs: list[Job], threads: int, encoder: SlowEncoder | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[Summary, Events]:
    """Run ``jobs`` with records, ``threads`` encoder threads and ``encoder`` (None: the
    real one)."""
    monkeypatch.setattr(pipeline, "encode_image", encoder or REAL_ENCODE)
    events = Events()
    settings = RunSettings(version="9.9", tile="0/0")
    options = Options(record=settings, encode_threads=threads, memory_limit=MemoryLimit(1 << 30))
    return run(jobs, Nearest(), options, events), events


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pocketsr-")]


def test_encodes_overlap_and_results_and_files_are_a_single_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gates: list[CountingGate]
) -> None:
    jobs = photos(tmp_path / "a")
    slow = SlowEncoder()
    summary, events = run_with(jobs, 3, slow, monkeypatch)
    names = [job.input.name for job in jobs]
    assert [r.job.input.name for r in summary.results] == names
    assert events.done == names and events.threads == {"pocketsr-writer"}
    assert [r.status for r in summary.results] == ["ok"] * COUNT
    assert slow.most >= 2, "no two encodes ever ran at once"
    assert slow.most <= 3
    assert slow.finished[0] != 1, "the first image finished first: nothing overtook it"
    assert pipeline_threads() == []
    # The same bytes as one writer, encoding one image at a time.
    jobs_one = photos(tmp_path / "b")
    one, one_events = run_with(jobs_one, 1, None, monkeypatch)
    assert one_events.done == names and one.count("ok") == COUNT
    assert outputs(tmp_path / "a-out") == outputs(tmp_path / "b-out")
    assert len(outputs(tmp_path / "a-out")) == COUNT
    assert len(gates) == 2
    for gate in gates:
        assert gate.acquired > 0 and gate.released == gate.acquired and gate.in_use == 0


def test_a_failed_encode_fails_its_image_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gates: list[CountingGate]
) -> None:
    jobs = photos(tmp_path / "a")
    first = int(np.asarray(Image.open(jobs[1].input))[0, 0, 0])  # the second image fails
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def go() -> None:
        outcome["run"] = run_with(jobs, 3, SlowEncoder(fail=first), monkeypatch)
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(60), "the run hung after an encoder failed"
    summary, events = outcome["run"]
    assert events.done == [job.input.name for job in jobs]
    assert [r.status for r in summary.results] == ["ok", "failed"] + ["ok"] * (COUNT - 2)
    assert summary.results[1].error == "cannot encode this one (test)"
    written = outputs(tmp_path / "a-out")
    assert sorted(written) == sorted(job.output.name for i, job in enumerate(jobs) if i != 1), (
        "the others are written, the failed one is not"
    )
    assert not [n for n in written if "pocketsr" in n and n.endswith(("-tmp", "-claim"))]
    (gate,) = gates
    assert gate.released == gate.acquired > 0 and gate.in_use == 0


def test_a_bug_in_an_encoder_thread_is_raised_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception encoding does not expect (a bug) ends the run as a single writer's
    does: raised by ``run``, every thread ended, no temporary file or claim left."""
    jobs = photos(tmp_path / "a")
    first = int(np.asarray(Image.open(jobs[2].input))[0, 0, 0])
    slow = SlowEncoder(fail=first, error=ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        run_with(jobs, 3, slow, monkeypatch)
    assert pipeline_threads() == []
    out = tmp_path / "a-out"
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [n for n in names if n.endswith((".pocketsr-tmp", ".pocketsr-claim"))]


def test_the_writer_holds_a_bounded_number_of_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However slow the first encode, the writer takes at most one image more than it has
    encoder threads; the model waits meanwhile."""
    jobs = photos(tmp_path / "a", count=8)
    release = threading.Event()
    calls: list[int] = []
    real = REAL_ENCODE

    def stuck_first(pixels: np.ndarray, *args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)
        return real(pixels, *args, **kwargs)

    upscaled: list[int] = []

    class Counting(Nearest):
        def upscale(
            self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
        ) -> np.ndarray:
            upscaled.append(1)
            return super().upscale(pixels, on_tile)

    monkeypatch.setattr(pipeline, "encode_image", stuck_first)
    result: dict[str, Summary] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault(
            "s", run(jobs, Counting(), Options(encode_threads=2), NullReporter())
        ),
        daemon=True,
    )
    worker.start()
    time.sleep(1.0)
    # 2 threads + 1 queued in the writer, 1 in the queue to it, 1 in the model's hands.
    assert len(upscaled) <= 2 + 1 + 1 + 1
    assert len(calls) <= 2 + 1  # the 2nd thread encoded the 2nd and 3rd meanwhile
    release.set()
    worker.join(60)
    assert not worker.is_alive()
    assert result["s"].count("ok") == 8


def test_encode_threads_is_checked_and_defaults_to_a_quarter_of_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = photos(tmp_path / "a", count=1)
    with pytest.raises(ValueError, match="encode_threads must be at least 1"):
        run(jobs, Nearest(), Options(encode_threads=0), NullReporter())
    for cpus, threads in [(1, 1), (2, 1), (7, 1), (8, 2), (16, 4), (128, 4)]:
        monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda _, n=cpus: set(range(n)))
        assert pipeline.default_encode_threads() == threads


def test_the_gil_simulation_script_runs(tmp_path: Path) -> None:
    """scripts/folder_gil_sim.py (issue 12's measurement of what encoder threads cost a GPU
    model stage) on two small photos."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(folder / f"{i}.jpg")
    script = Path(__file__).resolve().parents[1] / "scripts" / "folder_gil_sim.py"
    result = subprocess.run(
        [sys.executable, str(script), str(folder), "--gpu-ms", "1", "--launches", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["images"] == 2 and figures["encode_threads"] == default_encode_threads()
    assert figures["model_ms_per_image"] >= 1.0 and figures["images_per_s"] > 0
