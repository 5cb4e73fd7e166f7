"""pipeline.Summary: a run's counts in memory that does not grow with its inputs.

A streamed run (``jobs.iter_jobs``) reports each result and keeps only counts, the ok
images' seconds and pixels, and the first failures; a run of a job list keeps every result
too (the review page and ``pocketsr bench`` read them).  The slow test measures the driver
of a real run over a generated folder with ``tracemalloc``.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from pocketsr_cli.cli._ui import JsonLinesReporter, RichReporter
from pocketsr_cli.jobs import Job, Naming, iter_jobs
from pocketsr_cli.parallel import JobFeed
from pocketsr_cli.pipeline import FAILURES_KEPT, NullReporter, Options, Result, Summary, run

IN, OUT = Path("in/photo.png"), Path("out/photo.png")


def job(i: int) -> Job:
    # One pair of paths for all: pathlib interns the parts of every new path, and
    # CPython's table of interned strings would be measured with the driver.
    return Job(IN, OUT, f"p{i:06d}.png")


def ok(i: int, seconds: float = 0.5) -> Result:
    return Result(job(i), "ok", width=2, height=3, out_width=4, out_height=6, seconds=seconds)


def failed(i: int) -> Result:
    return Result(job(i), "failed", error=f"broken {i}")


def skipped(i: int, code: str = "exists") -> Result:
    return Result(job(i), "skipped", reason="kept", reason_code=code)  # type: ignore[arg-type]


def test_a_summary_counts_what_the_end_of_a_run_needs() -> None:
    summary = Summary()
    results = [ok(0, 0.25), failed(1), skipped(2), skipped(3, "unrecorded"), ok(4, 0.5)]
    results += [skipped(5, "different-settings"), Result(job(6), "planned")]
    for result in results:
        summary.add(result)
    assert summary.total == 7
    assert [summary.count(s) for s in ("ok", "skipped", "failed", "planned")] == [2, 3, 1, 1]
    assert summary.conflicts == 2
    assert summary.ok_seconds == 0.75
    assert (summary.in_pixels, summary.out_pixels) == (12, 48)
    assert [r.error for r in summary.failed] == ["broken 1"]
    assert not summary.keeps_results
    with pytest.raises(RuntimeError, match="keeps counts"):
        summary.results  # noqa: B018


def test_a_summary_keeps_the_first_failures_and_counts_the_rest() -> None:
    summary = Summary()
    for i in range(FAILURES_KEPT + 5):
        summary.add(failed(i))
    assert summary.count("failed") == FAILURES_KEPT + 5
    assert len(summary.failed) == FAILURES_KEPT
    assert summary.failed[0].error == "broken 0"
    kept = Summary(keep_results=True)  # every result kept: every failure too
    for i in range(FAILURES_KEPT + 5):
        kept.add(failed(i))
    assert len(kept.failed) == len(kept.results) == FAILURES_KEPT + 5


def test_every_result_is_kept_when_asked_or_for_a_job_list() -> None:
    given = [ok(0), failed(1)]
    summary = Summary(given, seconds=2.0)
    assert summary.results == given and summary.count("ok") == 1 and summary.seconds == 2.0
    assert Summary.for_jobs([job(0)]).keeps_results
    assert not Summary.for_jobs(iter([job(0)])).keeps_results
    assert not Summary.for_jobs([job(0)], keep_results=False).keeps_results
    assert Summary.for_jobs(iter([job(0)]), keep_results=True, dry_run=True).dry_run


def test_the_last_lines_and_json_read_the_counts(tmp_path: Path) -> None:
    summary = Summary(seconds=2.0)
    for result in [ok(0, 0.5), ok(1, 1.5), skipped(2, "unrecorded")]:
        summary.add(result)
    for i in range(FAILURES_KEPT + 3):
        summary.add(failed(3 + i))
    out = io.StringIO()
    RichReporter(Console(file=out, width=200, color_system=None)).finished(summary)
    text = out.getvalue()
    assert "1.00 s" in text  # per image: the ok images' seconds over their count
    assert "0.00" in text  # output MP/s: 48 pixels in 2 s
    assert text.count("failed: p") == FAILURES_KEPT
    assert "failed: 3 more, each on its line above" in text
    assert "1 existing output(s) were kept" in text
    lines = io.StringIO()
    JsonLinesReporter("m", "cpu", lines).finished(summary)
    assert '"total": 106, "ok": 2, "skipped": 1, "conflicts": 1, "failed": 103' in lines.getvalue()


def test_the_job_feed_holds_its_window_and_counts() -> None:
    """``--devices`` and ``--ray``'s driver bookkeeping, without workers: its peak memory
    does not grow with the number of jobs."""

    def peak(n: int) -> tuple[int, Summary]:
        tracemalloc.start()
        try:
            feed = JobFeed((job(i) for i in range(n)), NullReporter(), window=16, retries=2)
            while (task := feed.next_task()) is not None or not feed.finished:
                if task is not None:
                    feed.finish(task[0], ok(task[0]))
            return tracemalloc.get_traced_memory()[1], feed.summary
        finally:
            tracemalloc.stop()

    small, _ = peak(2_000)
    large, summary = peak(20_000)
    assert summary.count("ok") == 20_000 and not summary.keeps_results
    assert large < small * 1.5 + 100_000, (small, large)


def test_a_streamed_run_keeps_counts_not_results() -> None:
    """The single-process pipeline (reader, writer threads) over many jobs that planning
    settled (no file opened): its peak memory does not grow with the number of jobs."""

    def jobs(n: int) -> Iterator[Job]:
        for i in range(n):
            if i % 10:
                yield Job(IN, OUT, f"p{i:06d}.png", skip_reason="kept", skip_code="exists")
            else:
                yield Job(IN, OUT, f"p{i:06d}.png", failure="unreadable")

    small, _ = driver_peak(lambda: run(jobs(2_000), Doubler(), Options(), NullReporter()))
    large, summary = driver_peak(lambda: run(jobs(20_000), Doubler(), Options(), NullReporter()))
    assert (summary.count("skipped"), summary.count("failed")) == (18_000, 2_000)
    assert len(summary.failed) == FAILURES_KEPT and not summary.keeps_results
    assert large < small * 1.5 + 100_000, (small, large)


# -- the slow test: a real run over a generated folder --------------------------------------


class Doubler:
    scale = 2

    def upscale(self, pixels: np.ndarray, on_tile: object = None) -> np.ndarray:
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


def folder(root: Path, folders: int, per_folder: int = 500) -> Path:
    """``folders`` sub-folders of ``per_folder`` copies of one tiny PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    for f in range(folders):
        sub = root / f"d{f:03d}"
        sub.mkdir(parents=True)
        for i in range(per_folder):
            (sub / f"p{i:05d}.png").write_bytes(data)
    return root


def driver_peak(make: Callable[[], Summary]) -> tuple[int, Summary]:
    tracemalloc.start()
    try:
        summary = make()
        return tracemalloc.get_traced_memory()[1], summary
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_a_streamed_run_holds_memory_that_does_not_grow_with_the_folder(
    tmp_path: Path,
) -> None:
    """5,000 and 20,000 files (folders of 500, so one folder's listing is the same) through
    a dry run of the real pipeline: only the walk's collision fingerprints (``jobs``, a few
    hundred bytes a file) grow with the folder, not the results.  A first run of one
    folder pays the one-time costs (imports, caches) outside the two measured runs, whose
    difference is then what 15,000 more files cost."""
    peaks = {}
    for folders in (1, 10, 40):
        root = folder(tmp_path / f"in{folders}", folders)

        def make(root: Path = root) -> Summary:
            jobs: Iterator[Job] = iter_jobs([root], Naming(tmp_path / "out", None), recursive=True)
            return run(jobs, Doubler(), Options(dry_run=True), NullReporter())

        peaks[folders], summary = driver_peak(make)
        assert summary.count("planned") == folders * 500 and not summary.keeps_results
    small, large = peaks[10], peaks[40]
    per_file = (large - small) / 15_000
    # Measured: 260-310 bytes a file, all of it the walk's; when the summary kept every
    # result, 1,190 bytes a file.  (The ratio of the two peaks is no measure: it was under
    # 3 only while the first measured run also paid the one-time costs, and a full slow
    # run, which had paid them in earlier tests, failed on it at 3.5.)
    assert per_file < 500, (small, large, per_file)


def test_the_job_feed_hands_out_nothing_once_a_result_stops_the_run() -> None:
    feed = JobFeed((job(i) for i in range(50)), NullReporter(), window=4, retries=2)
    first, second = feed.next_task(), feed.next_task()
    assert first is not None and second is not None
    feed.finish(first[0], ok(first[0]))
    full = Result(job(second[0]), "failed", error="no space", stops_run="the disk is full")
    third = feed.next_task()
    assert third is not None  # handed out before the result that stops the run came
    feed.finish(second[0], full)
    assert feed.stopping and feed.next_task() is None
    assert not feed.loop_over([None, third])  # a worker still has an image in hand
    feed.finish(third[0], ok(third[0]))
    assert feed.loop_over([None, None]) and not feed.finished
    results = feed.end(seconds=1.5)
    assert results is feed.summary and results.seconds == 1.5
    assert results.stopped == "the disk is full" and results.total == 50
    assert results.count("skipped") == 47 and results.count("failed") == 1
    assert results.stopped_by_disk
    results.interrupted = True  # a signal as well: its inputs are reported interrupted
    assert not results.stopped_by_disk
