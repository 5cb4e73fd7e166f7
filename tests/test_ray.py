"""ray_backend.run_ray and ``upscale --ray``: the per-image work on Ray actors.

Without the extra, ``--ray`` says how to install it (simulated: fast, always run).  The
rest needs Ray (``pip install 'pocketsr[ray]'``), starts a local cluster of 2 CPUs and is
marked slow; the fake upscalers live at module level so that actors can import them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from _runs import PAUSE, folder, leftovers, runner, signal_mid_write, tree, upscale_json

from pocketsr_cli.cli import app
from pocketsr_cli.jobs import Job, Naming, collect_jobs, iter_jobs
from pocketsr_cli.pipeline import NullReporter, Options, Result, Variant, run

TESTS = Path(__file__).resolve().parent


# --- without the extra -------------------------------------------------------------------


def test_ray_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    src = folder(tmp_path / "in", 1)
    result = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "out"), "--ray"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'pocketsr[ray]'" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


# --- on a local cluster -------------------------------------------------------------------


class Doubler:
    """Nearest-neighbour ×2 after ``delay`` seconds; when it meets an image whose first
    pixel is ``poison``, its process kills itself: the first time only when there is a
    ``marker`` file to remember it by, every time when there is none."""

    scale = 2

    def __init__(self, delay: float, poison: int | None, marker: str | None) -> None:
        self.delay = delay
        self.poison = poison
        self.marker = marker

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        if self.poison is not None and int(pixels[0, 0, 0]) == self.poison:
            if self.marker is None:
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay)
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


class DoublerFactory:
    def __init__(
        self, delay: float = 0.0, poison: int | None = None, marker: str | None = None
    ) -> None:
        self.delay, self.poison, self.marker = delay, poison, marker

    def __call__(self, device: str, warn: Callable[[str], None]) -> Sequence[Variant]:
        return [Variant(Doubler(self.delay, self.poison, self.marker), model="doubler")]


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.finished_results: list[Result] = []
        self.warnings: list[str] = []

    def image_finished(self, result: Result) -> None:
        self.finished_results.append(result)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A local Ray cluster of 2 CPUs, shared by this module's tests (run_ray uses it)."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def records(lines: list[dict]) -> list[tuple[str, str | None, str]]:
    return [(Path(x["input"]).name, x["reason_code"], x["status"]) for x in lines[:-1]]


@pytest.mark.slow
@pytest.mark.parametrize("model", [(), ("-m", "bicubic")], ids=["default", "bicubic"])
def test_two_actors_write_what_one_process_writes(
    cluster: object, tmp_path: Path, model: tuple
) -> None:
    src = folder(tmp_path / "in", 5)
    (src / "notes.txt").write_text("not an image")
    code1, lines1, err1 = upscale_json(src, "-o", tmp_path / "one", *model)
    assert code1 == 0, err1
    for mode, extra in [("shared", ()), ("bytes", ("--ray-return-bytes",))]:
        out = tmp_path / mode
        flags = ("--ray", "--ray-cpus-per-worker", "1", *extra)
        code2, lines2, err2 = upscale_json(src, "-o", out, *model, *flags)
        assert code2 == 0, err2
        assert tree(out) == tree(tmp_path / "one")  # byte-identical, records included
        assert records(lines2) == records(lines1)  # same results, in job order
        # A second run skips every output, as a one-process run does.
        code3, lines3, err3 = upscale_json(src, "-o", out, *model, *flags)
        assert code3 == 0, err3
        assert {x["reason_code"] for x in lines3[:-1]} == {"exists", "not-image"}
        assert leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("return_bytes", [False, True], ids=["shared", "bytes"])
def test_an_actor_killed_mid_image_has_it_retried_and_each_output_written_once(
    cluster: object, tmp_path: Path, return_bytes: bool
) -> None:
    from pocketsr_cli.ray_backend import RaySettings, run_ray

    src = folder(tmp_path / "in", 8)
    naming = Naming(out_dir=tmp_path / "out", suffix=None)
    marker = str(tmp_path / "killed-once")
    factory = DoublerFactory(0.2, poison=10 + 3, marker=marker)
    reporter = Recorder()
    settings = RaySettings(cpus_per_worker=1, return_bytes=return_bytes)
    summary = run_ray(iter_jobs([src], naming), factory, Options(), reporter, settings)
    assert os.path.exists(marker)  # an actor did die mid-image
    assert any("died" in w for w in reporter.warnings), reporter.warnings
    assert [r.job.input.name for r in reporter.finished_results] == [f"{i}.png" for i in range(8)]
    assert [r.status for r in reporter.finished_results] == ["ok"] * 8
    assert summary.count("ok") == 8 and not summary.keeps_results  # streamed: counts only
    one = run(
        collect_jobs([src], Naming(tmp_path / "one", None)),
        Doubler(0.0, None, None),
        Options(),
        NullReporter(),
    )
    assert one.count("ok") == 8
    assert tree(tmp_path / "out") == tree(tmp_path / "one")
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_an_image_that_kills_every_actor_fails_after_bounded_retries(
    cluster: object, tmp_path: Path
) -> None:
    from pocketsr_cli.ray_backend import RaySettings, run_ray

    src = folder(tmp_path / "in", 3)
    jobs: list[Job] = collect_jobs([src], Naming(tmp_path / "out", None))
    factory = DoublerFactory(0.0, poison=10 + 1)  # kills every actor that meets it
    reporter = Recorder()
    summary = run_ray(jobs, factory, Options(), reporter, RaySettings(cpus_per_worker=1))
    by_name = {r.job.input.name: r for r in summary.results}
    assert by_name["1.png"].status == "failed" and "died 3 times" in (by_name["1.png"].error or "")
    assert by_name["0.png"].status == by_name["2.png"].status == "ok"


@pytest.mark.slow
@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_driver_stops_the_cluster_work_cleanly(
    tmp_path: Path, number: int, code: int
) -> None:
    pytest.importorskip("ray")
    src = folder(tmp_path / "in", 6)
    out = tmp_path / "out"
    env = dict(os.environ)
    env[PAUSE] = "1.5"
    args: list[object] = [src, "-o", out, "-m", "bicubic", "-s", "2", "--ray", "--json"]
    returncode, stdout, stderr = signal_mid_write(args, number, env, seconds=240, new_session=True)
    assert returncode == code, stderr
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    images, summary = lines[:-1], lines[-1]["summary"]
    assert sorted(Path(line["input"]).name for line in images) == [f"{i}.png" for i in range(6)]
    assert summary["interrupted"] is True
    statuses = {(line["status"], line["reason_code"]) for line in images}
    assert ("skipped", "interrupted") in statuses
    assert statuses <= {("ok", None), ("skipped", "interrupted")}
    time.sleep(1.0)  # a killed actor's files are removed by the driver before it exits
    for line in images:
        if line["status"] == "ok":
            assert (out / Path(line["input"]).name).exists()
    assert leftovers(tmp_path) == []
    assert "Traceback" not in stderr
