"""parallel.run_parallel and ``upscale --devices``: one worker process per device.

Workers are real ``spawn`` processes; the fake upscalers below live at module level so that
they can be pickled into them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from _runs import (
    PAUSE,
    as_on_windows,
    folder,
    leftovers,
    runner,
    signal_mid_write,
    tree,
    upscale_json,
)

from pocketsr_cli.cli import app
from pocketsr_cli.jobs import Job, Naming, collect_jobs
from pocketsr_cli.parallel import WorkerFailed, run_parallel
from pocketsr_cli.pipeline import NullReporter, Options, Result, Variant, run


class Doubler:
    """Nearest-neighbour ×2, taking ``delay`` seconds; kills its own process on inputs
    whose first pixel is ``poison`` (a worker dying mid-image, every time)."""

    scale = 2

    def __init__(self, delay: float, poison: int | None) -> None:
        self.delay = delay
        self.poison = poison

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        if self.poison is not None and int(pixels[0, 0, 0]) == self.poison:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay)
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


class DoublerFactory:
    def __init__(self, delay: float = 0.0, poison: int | None = None) -> None:
        self.delay = delay
        self.poison = poison

    def __call__(self, device: str, warn: Callable[[str], None]) -> Sequence[Variant]:
        return [Variant(Doubler(self.delay, self.poison), model="doubler")]


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished_results: list[Result] = []
        self.warnings: list[str] = []

    def image_started(self, job: Job, index: int) -> None:
        self.started.append(index)

    def image_finished(self, result: Result) -> None:
        self.finished_results.append(result)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def jobs_for(src: Path, out: Path) -> list[Job]:
    return collect_jobs([src], Naming(out_dir=out, suffix=None))


def test_two_workers_write_what_one_process_writes_and_report_in_job_order(
    tmp_path: Path,
) -> None:
    src = folder(tmp_path / "in", 6)
    (src / "notes.txt").write_text("not an image")
    one = run(jobs_for(src, tmp_path / "one"), Doubler(0.0, None), Options(), NullReporter())
    reporter = Recorder()
    jobs = jobs_for(src, tmp_path / "two")
    two = run_parallel(jobs, DoublerFactory(0.05), ["cpu", "cpu"], Options(), reporter)
    assert [r.job.input for r in reporter.finished_results] == [j.input for j in jobs]
    assert [r.status for r in two.results] == [r.status for r in one.results]
    assert two.count("ok") == 6 and not two.interrupted
    assert sorted(reporter.started) == [i for i, j in enumerate(jobs, 1) if j.runs]
    assert tree(tmp_path / "two") == tree(tmp_path / "one")
    # A second run skips them all, as a one-process run does.
    again = run_parallel(jobs, DoublerFactory(), ["cpu", "cpu"], Options(), NullReporter())
    assert {r.reason_code for r in again.results if r.status == "skipped"} == {
        "exists",
        "not-image",
    }


def test_a_killed_worker_has_its_image_retried_elsewhere_and_each_output_written_once(
    tmp_path: Path,
) -> None:
    import multiprocessing

    src = folder(tmp_path / "in", 6)
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one_busy_worker() -> None:
        time.sleep(0.3)  # both workers are in the middle of an image (0.8 s each)
        children = multiprocessing.active_children()
        if children and children[0].pid:
            killed.append(children[0].pid)
            os.kill(children[0].pid, signal.SIGKILL)

    class Killing(Recorder):
        armed = False

        def image_started(self, job: Job, index: int) -> None:
            super().image_started(job, index)
            # Once only: image 2 is started again when it is retried, and a second kill
            # there (under load, of the worker retrying it) would be another death.
            if index == 2 and not killed and not self.armed:
                self.armed = True
                threading.Thread(target=kill_one_busy_worker, daemon=True).start()

    reporter = Killing()
    summary = run_parallel(
        jobs_for(src, out), DoublerFactory(0.8), ["cpu", "cpu"], Options(), reporter
    )
    assert killed
    assert [r.status for r in summary.results] == ["ok"] * 6, [
        (r.status, r.error) for r in summary.results
    ]
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.png" for i in range(6)]
    assert any("died (signal 9)" in w for w in reporter.warnings), reporter.warnings
    assert len(reporter.started) > 6  # the killed worker's image was handed out again
    assert leftovers(tmp_path) == []


def test_an_image_that_kills_every_worker_fails_after_bounded_retries(tmp_path: Path) -> None:
    src = folder(tmp_path / "in", 4)  # first pixels 10, 11, 12, 13
    out = tmp_path / "out"
    summary = run_parallel(
        jobs_for(src, out), DoublerFactory(0.0, poison=11), ["cpu", "cpu"], Options(), Recorder()
    )
    by_name = {r.job.input.name: r for r in summary.results}
    assert by_name["1.png"].status == "failed"
    assert "died 3 times" in (by_name["1.png"].error or "")
    assert all(by_name[f"{i}.png"].status == "ok" for i in (0, 2, 3))
    assert not (out / "1.png").exists()
    assert leftovers(tmp_path) == []


class Leaver(Doubler):
    """:class:`Doubler` that, on the ``poison`` input, leaves a temporary file for
    ``output`` as a writer ended outright does (none of its clean-up runs), then kills its
    process (``hang`` False) or waits to be stopped."""

    def __init__(self, poison: int, output: Path, hang: bool) -> None:
        super().__init__(0.0, None)
        self.poison_at, self.output, self.hang = poison, output, hang

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        if int(pixels[0, 0, 0]) == self.poison_at:
            from pocketsr_cli.atomicfile import temp_path_for

            temp_path_for(self.output).write_bytes(b"half an image")
            if not self.hang:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)
        return super().upscale(pixels, on_tile)


class LeaverFactory:
    def __init__(self, poison: int, output: Path, hang: bool) -> None:
        self.args = (poison, output, hang)

    def __call__(self, device: str, warn: Callable[[str], None]) -> Sequence[Variant]:
        return [Variant(Leaver(*self.args), model="doubler")]


@pytest.mark.parametrize("hang", [False, True])
def test_a_worker_ended_outright_leaves_no_temporary_file_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hang: bool
) -> None:
    """A worker killed mid-write, or (``hang``) stopped at Ctrl-C, which on Windows ends
    it outright: its temporary file stayed there for good (no sweep can tell it from a
    live writer's where nothing is locked).  The driver removes it, and its claim, once
    the worker is gone."""
    as_on_windows(monkeypatch)
    src = folder(tmp_path / "in", 4)  # first pixels 10, 11, 12, 13
    out = tmp_path / "out"
    factory = LeaverFactory(11, out / "1.png", hang)

    class Interrupting(Recorder):
        def image_started(self, job: Job, index: int) -> None:
            super().image_started(job, index)
            if hang and job.input.name == "1.png":
                deadline = time.monotonic() + 30  # Ctrl-C once its file is there
                while not any(out.glob(".*.pocketsr-tmp")) and time.monotonic() < deadline:
                    time.sleep(0.05)
                raise KeyboardInterrupt

    summary = run_parallel(jobs_for(src, out), factory, ["cpu", "cpu"], Options(), Interrupting())
    by_name = {r.job.input.name: r for r in summary.results}
    if hang:
        assert summary.interrupted and by_name["1.png"].reason_code == "interrupted"
    else:
        assert by_name["1.png"].status == "failed"
    assert not (out / "1.png").exists()
    assert leftovers(tmp_path) == []


class BrokenFactory:
    def __call__(self, device: str, warn: Callable[[str], None]) -> Sequence[Variant]:
        raise RuntimeError("no such model here")


def test_a_worker_that_cannot_load_the_model_stops_the_run_with_its_reason(
    tmp_path: Path,
) -> None:
    src = folder(tmp_path / "in", 2)
    with pytest.raises(WorkerFailed, match="no such model here"):
        run_parallel(
            jobs_for(src, tmp_path / "out"), BrokenFactory(), ["cpu"], Options(), Recorder()
        )
    assert not (tmp_path / "out").exists()


def test_a_generator_of_jobs_is_consumed_as_workers_free_up(tmp_path: Path) -> None:
    src = folder(tmp_path / "in", 40)
    jobs = jobs_for(src, tmp_path / "out")
    taken: list[int] = []

    def stream() -> object:
        for i, job in enumerate(jobs):
            taken.append(i)
            yield job

    class Watch(Recorder):
        def image_finished(self, result: Result) -> None:
            super().image_finished(result)
            # never more than a bounded window ahead of what is reported
            assert len(taken) - len(self.finished_results) <= 8 * 2 + 1

    reporter = Watch()
    summary = run_parallel(
        stream(),  # type: ignore[arg-type]
        DoublerFactory(0.01),
        ["cpu", "cpu"],
        Options(),
        reporter,
        total=len(jobs),
        inputs=[j.input for j in jobs],
    )
    assert summary.count("ok") == 40


def started_devices(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The device of each worker process the drivers start from now on."""
    from pocketsr_cli import parallel

    started: list[str] = []

    class Counted(parallel._Worker):
        def __init__(self, ctx: object, device: str, args: tuple) -> None:
            started.append(device)
            super().__init__(ctx, device, args)

    monkeypatch.setattr(parallel, "_Worker", Counted)
    return started


@pytest.mark.parametrize("streamed", [False, True], ids=["list", "iterator"])
def test_no_more_workers_start_than_there_are_images_to_upscale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    started = started_devices(monkeypatch)
    src = folder(tmp_path / "in", 3)
    (src / "notes.txt").write_text("not an image")  # settled when planned: no worker
    jobs = jobs_for(src, tmp_path / "out")
    reporter = Recorder()
    devices = ["cpu"] * 6
    summary = run_parallel(
        iter(jobs) if streamed else jobs,  # type: ignore[arg-type]
        DoublerFactory(),
        devices,
        Options(),
        reporter,
        inputs=[j.input for j in jobs],
    )
    assert summary.count("ok") == 3
    assert 1 <= len(started) <= 3, started
    notes = [w for w in reporter.warnings if "devices listed" in w]
    assert notes == [
        f"{len(started)} of the 6 devices listed got a worker process, as many as the images "
        f"to upscale needed; not started: cpu ×{6 - len(started)}"
    ]


def test_a_resumed_run_starts_no_worker_for_outputs_that_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    run(jobs_for(src, out), Doubler(0.0, None), Options(), NullReporter())
    (out / "1.png").unlink()
    started = started_devices(monkeypatch)
    reporter = Recorder()
    variants = DoublerFactory()("cpu", print)  # the driver's own, to check outputs with
    summary = run_parallel(
        iter(jobs_for(src, out)),  # type: ignore[arg-type]
        DoublerFactory(),
        ["cpu", "cpu", "cpu"],
        Options(),
        reporter,
        variants=variants,
    )
    assert [r.reason_code or r.status for r in reporter.finished_results] == [
        "exists",
        "ok",
        "exists",
    ]
    assert summary.count("ok") == 1 and started == ["cpu"]
    started.clear()
    again = Recorder()
    left = out / ".1.png.0123456789ab.pocketsr-tmp"  # a killed run's, swept by the driver
    left.write_bytes(b"half a PNG")
    os.utime(left, (0, 0))
    summary = run_parallel(
        jobs_for(src, out), DoublerFactory(), ["cpu"], Options(), again, variants=variants
    )
    assert started == [] and {r.reason_code for r in again.finished_results} == {"exists"}
    assert not left.exists() and summary.leftovers_removed == 1
    assert again.warnings == [
        "no worker process was started, no image needed upscaling; not started: cpu"
    ]


def test_a_parallel_run_that_writes_nothing_leaves_no_output_folder_it_made(
    tmp_path: Path,
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    out = tmp_path / "made" / "out"
    variants = DoublerFactory()("cpu", print)  # the driver's own, which sees each job first
    summary = run_parallel(
        jobs_for(src, out), DoublerFactory(), ["cpu"], Options(), NullReporter(), variants=variants
    )
    assert summary.count("failed") == 1 and not (tmp_path / "made").exists()


@pytest.mark.parametrize("streamed", [False, True], ids=["list", "iterator"])
def test_the_devices_that_get_a_worker_are_said_before_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """``on_workers`` hears the devices that will get a worker, found by looking at the
    first jobs (outputs that exist need none) before the reporter starts: what the header
    and --json name, rather than every device listed."""
    started = started_devices(monkeypatch)
    src = folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    run(jobs_for(src, out)[:1], Doubler(0.0, None), Options(), NullReporter())  # 0.png
    events: list[object] = []

    class Events(Recorder):
        def start(self, total: int | None) -> None:
            events.append("start")

    jobs = jobs_for(src, out)
    summary = run_parallel(
        iter(jobs) if streamed else jobs,  # type: ignore[arg-type]
        DoublerFactory(),
        ["cpu", "cuda:0", "cuda:1", "mps"],
        Options(),
        Events(),
        variants=DoublerFactory()("cpu", print),
        on_workers=events.append,
    )
    assert events == [["cpu", "cuda:0"], "start"]
    assert started == ["cpu", "cuda:0"]  # the fake upscaler runs anywhere
    assert [summary.count("ok"), summary.count("skipped")] == [2, 1]
    # A finished folder: none, and none starts.
    events.clear()
    run_parallel(
        iter(jobs_for(src, out)),  # type: ignore[arg-type]
        DoublerFactory(),
        ["cpu", "cpu"],
        Options(),
        Events(),
        variants=DoublerFactory()("cpu", print),
        on_workers=events.append,
    )
    assert events == [[], "start"] and started == ["cpu", "cuda:0"]


def test_a_dry_run_starts_no_worker_and_names_those_a_run_would_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run plans every job in the driver: no worker starts, and ``on_workers`` and the
    warning name the devices a run would start one on; an output that exists is looked at
    once (the look-ahead's answer is kept), as in a run."""
    from pocketsr_cli import pipeline

    started = started_devices(monkeypatch)
    src = folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    run(jobs_for(src, out)[:2], Doubler(0.0, None), Options(), NullReporter())  # 0, 1.png
    looked: list[Path] = []
    existing = pipeline._Run.existing

    def counted(self: object, job: Job, output: Path, size: object = None) -> Result:
        looked.append(output)
        return existing(self, job, output, size)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline._Run, "existing", counted)
    heard: list[list[str]] = []
    reporter = Recorder()
    summary = run_parallel(
        iter(jobs_for(src, out)),  # type: ignore[arg-type]
        DoublerFactory(),
        ["cpu", "cuda:0", "cuda:1"],
        Options(dry_run=True),
        reporter,
        variants=DoublerFactory()("cpu", print),
        on_workers=heard.append,
    )
    assert started == [] and heard == [["cpu", "cuda:0"]]
    codes = [r.reason_code for r in reporter.finished_results]
    assert codes == ["exists", "exists", "dry-run", "dry-run"]
    assert summary.count("planned") == 2 and summary.dry_run
    assert sorted(looked) == [out / "0.png", out / "1.png"]
    assert reporter.warnings == [
        "2 of the 3 devices listed would get a worker process, as many as the images to "
        "upscale need; not needed: cuda:1"
    ]
    with pytest.raises(ValueError, match="variants"):  # it has none to plan with
        run_parallel(jobs_for(src, out), DoublerFactory(), ["cpu"], Options(dry_run=True), reporter)


def test_looking_ahead_stops_at_its_limit_and_hands_every_job_on(tmp_path: Path) -> None:
    """Past ``limit`` jobs without as many to upscale as devices, an iterator's devices all
    count (its rest is not known); a list's count its jobs to upscale.  Either way the driver
    gets every job, in order, and each output is looked at once."""
    from pocketsr_cli.parallel import _LookAhead

    src = folder(tmp_path / "in", 5)
    jobs = jobs_for(src, tmp_path / "out")
    asked: list[Job] = []

    def settle(job: Job) -> Result | None:
        asked.append(job)
        return Result(job, "skipped") if job is not jobs[4] else None

    ahead = _LookAhead(iter(jobs), ["a", "b", "c"], settle, limit=2)
    assert ahead.devices == ["a", "b", "c"]
    handed = list(ahead.jobs)
    assert handed == jobs
    assert [ahead.settle(job) is None for job in handed] == [False] * 4 + [True]
    assert asked == jobs
    assert _LookAhead(jobs, ["a", "b", "c"], settle, limit=2).devices == ["a", "b", "c"]
    assert _LookAhead(jobs[:2], ["a", "b", "c"], None, limit=1).devices == ["a", "b"]
    assert _LookAhead(iter(jobs), ["a", "b"], settle).devices == ["a"]


# --- the command line -------------------------------------------------------------------


@pytest.mark.parametrize("model", [(), ("-m", "bicubic")], ids=["default", "bicubic"])
def test_devices_cpu_cpu_writes_byte_identical_outputs(tmp_path: Path, model: tuple) -> None:
    src = folder(tmp_path / "in", 4)
    code1, lines1, err1 = upscale_json(src, "-o", tmp_path / "one", *model)
    code2, lines2, err2 = upscale_json(src, "-o", tmp_path / "two", *model, "--devices", "cpu,cpu")
    assert (code1, code2) == (0, 0), err1 + err2
    assert tree(tmp_path / "two") == tree(tmp_path / "one")
    assert [line["type"] for line in lines2] == ["image"] * 4 + ["summary"]
    strip = ("output", "seconds", "device")  # device: "cpu fp32 ×2 workers (cpu, cpu)"
    assert [{k: v for k, v in line.items() if k not in strip} for line in lines2[:-1]] == [
        {k: v for k, v in line.items() if k not in strip} for line in lines1[:-1]
    ]


def test_devices_longer_than_the_images_start_one_worker_per_image_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = started_devices(monkeypatch)
    src = folder(tmp_path / "in", 2)
    code, lines, err = upscale_json(
        src, "-o", tmp_path / "out", "-m", "bicubic", "--devices", "cpu,cpu,cpu,cpu,cpu"
    )
    assert code == 0, err
    assert [line["status"] for line in lines[:-1]] == ["ok", "ok"]
    assert 1 <= len(started) <= 2
    assert "of the 5 devices listed got a worker process" in err
    assert "×2 workers (cpu, cpu) →" in err  # the header names those used, not all five
    # Run again: every output exists, so no worker starts at all.
    started.clear()
    code, lines, err = upscale_json(
        src, "-o", tmp_path / "out", "-m", "bicubic", "--devices", "cpu,cpu,cpu,cpu,cpu"
    )
    assert code == 0, err
    assert [line["reason_code"] for line in lines[:-1]] == ["exists", "exists"]
    assert started == [] and "no worker process was started" in err
    assert {line["device"] for line in lines[:-1]} == {lines[-1]["summary"]["device"]}
    assert lines[-1]["summary"]["device"].endswith(" ×0 workers (none needed)")
    assert "×0 workers (none needed) →" in err


def test_a_dry_run_with_devices_names_the_devices_a_run_would_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the run would: its first line and --json's device name the devices that would
    get a worker (not every one listed), and a warning those that would not; none starts."""
    started = started_devices(monkeypatch)
    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = (src, "-o", out, "-m", "bicubic", "--devices", "cpu,cpu,cpu", "--dry-run")
    code, lines, err = upscale_json(*args)
    assert code == 0, err
    assert [line["status"] for line in lines[:-1]] == ["planned", "planned"]
    assert "×2 workers (cpu, cpu) →" in err
    devices = {line["device"] for line in lines[:-1]} | {lines[-1]["summary"]["device"]}
    assert devices == {"cpu uint8 (16-bit: fp32) ×2 workers (cpu, cpu)"}
    assert "2 of the 3 devices listed would get a worker process" in err
    # Every output written: a run would start none.
    assert upscale_json(src, "-o", out, "-m", "bicubic")[0] == 0
    code, lines, err = upscale_json(*args)
    assert code == 0, err
    assert [line["reason_code"] for line in lines[:-1]] == ["exists", "exists"]
    assert lines[-1]["summary"]["device"].endswith(" ×0 workers (none needed)")
    assert "×0 workers (none needed) →" in err and "no worker process would be started" in err
    assert started == []


def test_devices_overrides_device(tmp_path: Path) -> None:
    """--devices names every worker's device; --device given with it is not used (as the
    help and README say), not even checked."""
    src = folder(tmp_path / "in", 1)
    code, lines, err = upscale_json(
        src, "-o", tmp_path / "out", "-m", "bicubic", "--device", "cuda:7", "--devices", "cpu"
    )
    assert code == 0, err
    assert lines[-1]["summary"]["device"].startswith("cpu")


def test_devices_names_each_worker_by_the_device_it_resolves_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first line and --json name each worker's device as the worker resolves it
    (``choose_device``), as its images' lines will: ``cuda`` is the current GPU
    (``cuda:0``), ``auto`` this machine's choice, never the spelling typed.  Dry runs: no
    worker starts, so two GPUs can be faked."""
    from pocketsr_cli.devices import choose_device

    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    auto = str(choose_device("auto"))
    code, lines, err = upscale_json(
        src, "-o", out, "-m", "bicubic", "--devices", "auto,cpu", "--dry-run"
    )
    assert code == 0, err
    assert f"×2 workers ({auto}, cpu) →" in err
    assert lines[-1]["summary"]["device"].endswith(f" ×2 workers ({auto}, cpu)")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    args = ("--devices", "cuda,cuda:1", "--precision", "fp32", "--dry-run")
    code, lines, err = upscale_json(src, "-o", out, "-m", "bicubic", *args)
    assert code == 0, err
    assert "on cuda:0 fp32 ×2 workers (cuda:0, cuda:1) →" in err
    assert lines[-1]["summary"]["device"] == "cuda:0 fp32 ×2 workers (cuda:0, cuda:1)"


def test_devices_rejects_an_unknown_device(tmp_path: Path) -> None:
    src = folder(tmp_path / "in", 1)
    result = runner.invoke(app, ["upscale", str(src), "--devices", "cpu,tpu"])
    assert result.exit_code == 2, result.output


@pytest.mark.slow
@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_driver_stops_the_workers_cleanly(
    tmp_path: Path, number: int, code: int
) -> None:
    src = folder(tmp_path / "in", 6)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LANG")}
    env[PAUSE] = "1.5"
    args: list[object] = [src, "-o", out, "-m", "bicubic", "-s", "2", "--devices", "cpu,cpu"]
    returncode, stdout, stderr = signal_mid_write([*args, "--json"], number, env, seconds=120)
    assert returncode == code, stderr
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    images, summary = lines[:-1], lines[-1]["summary"]
    assert sorted(Path(line["input"]).name for line in images) == [f"{i}.png" for i in range(6)]
    assert summary["interrupted"] is True
    statuses = {(line["status"], line["reason_code"]) for line in images}
    assert ("ok", None) in statuses  # the files in hand were finished
    assert ("skipped", "interrupted") in statuses
    assert statuses <= {("ok", None), ("skipped", "interrupted")}
    for line in images:
        name = Path(line["input"]).name
        assert (out / name).exists() == (line["status"] == "ok")
    assert leftovers(tmp_path) == []
    assert "Traceback" not in stderr


def _sigint_is_ignored(conn: object) -> None:
    conn.send(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)  # type: ignore[attr-defined]


def test_workers_start_with_ctrl_c_ignored() -> None:
    """A terminal's Ctrl-C reaches the whole process group, workers still importing torch
    included (a second or more before they ignore it themselves): started inside
    ``_sigint_ignored`` they inherit the ignoring, so only the driver takes it (a worker
    hit while importing printed a traceback, 3 times in 8 in a QA run)."""
    from multiprocessing import get_context

    from pocketsr_cli.parallel import _sigint_ignored

    ctx = get_context("spawn")
    seen = []
    # As in a terminal: a test run started in the background (nohup ... &) ignores SIGINT
    # from its start, and its children would inherit that.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for ignored in (True, False):
            ours, theirs = ctx.Pipe()
            child = ctx.Process(target=_sigint_is_ignored, args=(theirs,))
            with _sigint_ignored() if ignored else contextlib.nullcontext():
                child.start()
            seen.append(ours.recv())
            child.join(30)
        assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the driver's is back
    finally:
        signal.signal(signal.SIGINT, before)
    assert seen == [True, False]


def test_on_windows_workers_start_with_the_consoles_ctrl_c_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Windows process inherits no signal setting: a worker still importing torch at
    Ctrl-C ended in a KeyboardInterrupt traceback there.  It inherits its console's Ctrl-C
    ignored (``SetConsoleCtrlHandler(NULL, TRUE)``), set while workers start, then unset."""
    import ctypes
    import sys
    from types import SimpleNamespace

    from pocketsr_cli import parallel

    calls: list[tuple[object, bool]] = []
    kernel32 = SimpleNamespace(SetConsoleCtrlHandler=lambda f, on: calls.append((f, on)))
    monkeypatch.setattr(ctypes, "windll", SimpleNamespace(kernel32=kernel32), raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    with parallel._sigint_ignored():
        assert calls == [(None, True)]  # workers started here inherit it
    assert calls == [(None, True), (None, False)]


def test_a_worker_takes_one_sigterm_as_a_stop_and_notes_the_rest() -> None:
    """A process group's SIGTERM, then the driver's: the second broke into the worker's
    way out and ended in "Exception ignored in atexit callback ... KeyboardInterrupt"."""
    from pocketsr_cli.parallel import _StopSignal

    stop = _StopSignal()
    with pytest.raises(KeyboardInterrupt):
        stop(15, None)
    assert stop.pending
    stop(15, None)  # noted, not raised
    shielded = _StopSignal()
    with shielded.shield():
        shielded(15, None)  # an output being written is finished first
    assert shielded.pending
    shielded(15, None)


def test_each_worker_gets_a_share_of_the_ram_within_its_own_ulimit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host's RAM is shared among the workers; ``ulimit -v`` is each process's own, so
    it is not divided (the driver's headroom split between two workers halved each one's
    budget for nothing)."""
    from pocketsr_cli import memory
    from pocketsr_cli.pipeline import MemoryLimit

    monkeypatch.setattr(memory, "host_available_bytes", lambda address_space=True: 16 << 30)
    monkeypatch.setattr(memory, "address_space_headroom_bytes", lambda status=None: 5 << 30)
    assert MemoryLimit().per_worker(2).bytes == 5 << 30  # min(16 GiB / 2, 5 GiB)
    assert MemoryLimit().per_worker(4).bytes == 4 << 30  # min(16 GiB / 4, 5 GiB)
    assert MemoryLimit(6 << 30).per_worker(2).bytes == 3 << 30  # the user's, shared
    monkeypatch.setattr(memory, "address_space_headroom_bytes", lambda status=None: None)
    assert MemoryLimit().per_worker(2).bytes == 8 << 30


def test_a_dry_run_refuses_an_image_too_large_for_its_workers_share_of_the_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run plans each image within the memory a run would give its worker (its
    share), not within all of it: an image a run would refuse fails there too, with the
    run's line, and nothing is written; one process has all of it, and plans it."""
    from pocketsr_cli import memory

    # 16000 bytes available: 8 KiB a worker for two, less than the about 11 KiB needed.
    monkeypatch.setattr(memory, "host_available_bytes", lambda address_space=True: 16000)
    monkeypatch.setattr(memory, "address_space_headroom_bytes", lambda status=None: None)
    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = (src, "-o", out, "-m", "bicubic", "--devices", "cpu,cpu")
    code, planned, err = upscale_json(*args, "--dry-run")
    assert code == 1, err
    share = "more than the 8 KiB of memory each of the 2 workers may use. "
    assert [line["status"] for line in planned[:-1]] == ["failed", "failed"]
    assert all(share in line["error"] for line in planned[:-1])
    assert not out.exists()
    code, ran, err = upscale_json(*args)
    assert code == 1, err
    # The run's line, said as what a run would do (a dry run decodes nothing).
    said = ["would be refused: " + x["error"].replace("; not decoded.", ".") for x in ran[:-1]]
    assert [line["error"] for line in planned[:-1]] == said
    code, planned, err = upscale_json(*args[:-1], "cpu", "--dry-run")
    assert code == 0, err
    assert [line["status"] for line in planned[:-1]] == ["planned", "planned"]


def test_an_image_refused_for_a_workers_share_of_the_memory_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no limit given, each worker's is its share of the memory available: an image
    refused for it says so and names --devices, not a --max-memory the user never gave;
    a limit the user gave is still named as given."""
    from pocketsr_cli import memory

    # 4000 bytes available, so 2 KiB a worker: a tiny image needs more (about 11 KiB).
    monkeypatch.setattr(memory, "host_available_bytes", lambda address_space=True: 4000)
    monkeypatch.setattr(memory, "address_space_headroom_bytes", lambda status=None: None)
    src = folder(tmp_path / "in", 2)
    args = (src, "-o", tmp_path / "out", "-m", "bicubic", "--devices", "cpu,cpu")
    code, lines, err = upscale_json(*args)
    assert code == 1, err
    share = "more than the 2 KiB of memory each of the 2 workers may use; not decoded. "
    for line in lines[:-1]:
        assert line["status"] == "failed" and share in line["error"]
        assert line["error"].endswith(
            "Choose a smaller scale or size or --tile or fewer --devices, or allow more with "
            "--max-memory (or POCKETSR_MAX_MEMORY) if the machine has it"
        )
    assert "--max-memory allows" not in err
    # One worker has all of it: the memory available, as a one-process run says.
    code, lines, err = upscale_json(*args[:-1], "cpu")
    assert code == 1, err
    assert all("more than the 4 KiB of memory available; not" in x["error"] for x in lines[:-1])
    # A limit given is shared too: the line names the share and the limit given, where it
    # named the share as if it were the --max-memory given ("the 2 KiB --max-memory allows").
    code, lines, err = upscale_json(*args, "--max-memory", "4K")
    assert code == 1, err
    shared = "more than the 2 KiB share of the 4 KiB --max-memory each of the 2 workers may use;"
    assert all(shared in line["error"] for line in lines[:-1])
    assert all("fewer --devices" in line["error"] for line in lines[:-1])
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "4K")
    code, lines, err = upscale_json(*args)
    assert code == 1, err
    shared = shared.replace("--max-memory", "POCKETSR_MAX_MEMORY")
    assert all(shared in line["error"] for line in lines[:-1])
    # One worker has all of the limit given: named as given.
    code, lines, err = upscale_json(*args[:-1], "cpu", "--max-memory", "2K")
    assert code == 1, err
    assert all("the 2 KiB --max-memory allows;" in line["error"] for line in lines[:-1])
