"""ray_backend.run_ray and ``upscale --ray``: the per-image work on Ray actors.

Without the extra, ``--ray`` says how to install it (simulated: fast, always run).  The
rest needs Ray (``pip install 'pocketsr[ray]'``), starts a local cluster of 2 CPUs and is
marked slow; the fake upscalers live at module level so that actors can import them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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
    unwritable,
    upscale_json,
)

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


def test_a_dry_run_contacts_no_cluster_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--ray --dry-run`` plans the images in this process: its first line said they would
    be drawn by this machine's compute (``cpu uint8``), as if there were no cluster; it names Ray
    actors, none started, and --json's ``device`` says the same.  Fast: a stand-in
    ``ray`` module fails the test if anything contacts a cluster."""
    import types

    def contacted(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run contacted Ray")

    fake = types.ModuleType("ray")
    for name in ("init", "is_initialized", "cluster_resources", "remote"):
        setattr(fake, name, contacted)
    monkeypatch.setitem(sys.modules, "ray", fake)
    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), "-m", "bicubic", "--ray", "--dry-run"]
    result = runner.invoke(app, [*args, "--ray-address", "auto"])
    assert result.exit_code == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert "on Ray actors (none started: a dry run contacts no cluster) → ×4" in first, first
    assert "cpu" not in first and first.endswith("(dry run)"), first
    code, lines, err = upscale_json(*args[1:], "--ray-address", "auto")
    assert code == 0, err
    assert [x["status"] for x in lines[:-1]] == ["planned", "planned"]
    devices = {x["device"] for x in lines[:-1]} | {lines[-1]["summary"]["device"]}
    assert devices == {"Ray actors (none started: a dry run contacts no cluster)"}
    assert not out.exists()


@pytest.mark.parametrize(
    ("resources", "drawn_on"),
    [
        ({"CPU": 2.0, "GPU": 0.0}, "cpu uint8 (16-bit: fp32) on 2 Ray actors"),
        ({"CPU": 1.0, "GPU": 0.0}, "cpu uint8 (16-bit: fp32) on 1 Ray actor"),
        ({"CPU": 16.0, "GPU": 3.0}, "cuda:0 fp16 on 3 Ray actors"),
    ],
    ids=["cpus", "one", "gpus"],
)
def test_a_local_dry_run_names_the_actors_it_planned(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resources: dict[str, float],
    drawn_on: str,
) -> None:
    """On a local cluster a dry run plans the actors a run would start (as many as this
    machine's cores or GPUs), yet its first line said, as on a cluster, that only the
    cluster knows them (``Ray actors (none started: a dry run contacts no cluster)``); it
    names what they would draw with and how many were planned, none started, and --json's
    ``device`` says the same.  Fast: a stand-in ``ray`` module fails the test if anything
    contacts a cluster, and this machine counts ``resources``."""
    import types

    from pocketsr_cli import ray_backend

    def contacted(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run contacted Ray")

    fake = types.ModuleType("ray")
    for name in ("init", "is_initialized", "cluster_resources", "remote"):
        setattr(fake, name, contacted)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_backend, "local_resources", lambda settings: dict(resources))
    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), "-m", "bicubic", "--ray", "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    planned = f"{drawn_on} planned on this machine (none started: a dry run)"
    first = result.stderr.splitlines()[0]
    assert f"bicubic on {planned} → ×4" in first, first
    assert "contacts no cluster" not in result.stderr
    code, lines, err = upscale_json(*args[1:])
    assert code == 0, err
    assert [x["status"] for x in lines[:-1]] == ["planned", "planned"]
    assert {x["device"] for x in lines[:-1]} | {lines[-1]["summary"]["device"]} == {planned}
    assert not out.exists()


@pytest.mark.parametrize(
    ("resources", "precision", "drawn_by"),
    [
        ({"GPU": 2.0, "CPU": 16.0}, "auto", "cuda:0 fp16"),  # as each image's line says
        ({"GPU": 2.0, "CPU": 16.0}, "fp32", "cuda:0 fp32"),
        ({"CPU": 4.0}, "auto", "cpu uint8 (16-bit: fp32)"),  # as one process says here
    ],
    ids=["gpus", "gpus-fp32", "cpus"],
)
def test_the_first_line_names_what_the_clusters_actors_draw_with(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resources: dict[str, float],
    precision: str,
    drawn_by: str,
) -> None:
    """A run's first line (and --json's ``device`` when no image says) named this
    machine's compute (``cpu … on Ray actors``) while the actors draw on the cluster's
    device: a CPU-only driver on a cluster with GPUs said ``cpu`` for actors on cuda.  It
    names what they draw with, once the cluster has said what it has, as each image's line
    names it (``cuda:0``, the one GPU Ray lets an actor see; it said ``cuda``).  Fast: a
    stand-in ``ray`` module is a cluster with ``resources``, and every output exists
    already, so no actor is started (one would fail the test)."""
    import types

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("an actor was started")

    class Remote:
        def __init__(self, cls: type) -> None:
            self.options = started

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: True  # type: ignore[attr-defined]
    fake.cluster_resources = lambda: dict(resources)  # type: ignore[attr-defined]
    fake.remote = lambda **kwargs: Remote  # type: ignore[attr-defined]
    for name in ("init", "shutdown", "wait", "get", "kill"):
        setattr(fake, name, started)
    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = [src, "-o", out, "-m", "bicubic", "--precision", precision]
    code, _, err = upscale_json(*args)  # in one process: the outputs exist
    assert code == 0, err
    monkeypatch.setitem(sys.modules, "ray", fake)
    result = runner.invoke(app, ["upscale", *map(str, args), "--ray"])
    assert result.exit_code == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert f"bicubic on {drawn_by} on Ray actors → ×4" in first, first
    code, lines, err = upscale_json(*args, "--ray")
    assert code == 0, err
    assert [x["reason_code"] for x in lines[:-1]] == ["exists", "exists"]
    assert lines[-1]["summary"]["device"] == f"{drawn_by} on Ray actors"


class InProcessRay:
    """A stand-in ``ray`` module whose actors live in this process, their methods run
    when called: enough for :func:`run_ray` to run images end to end, fast.  ``inits``
    records each ``ray.init``'s keywords; the cluster has the CPUs and GPUs the last one
    gave (``resources`` when none did)."""

    class RayActorError(Exception):
        pass

    class RayTaskError(Exception):
        pass

    def __init__(self, resources: dict[str, float] | None = None) -> None:
        import types

        self.inits: list[dict[str, Any]] = []
        self.resources = dict(resources or {"CPU": 1.0})
        self.exceptions = types.SimpleNamespace(
            RayActorError=self.RayActorError, RayTaskError=self.RayTaskError
        )

    def module(self) -> Any:
        import types

        fake = types.ModuleType("ray")
        for name in ("init", "is_initialized", "cluster_resources", "remote", "wait", "get"):
            setattr(fake, name, getattr(self, name))
        fake.kill = fake.shutdown = lambda *args: None  # type: ignore[attr-defined]
        fake.exceptions = self.exceptions  # type: ignore[attr-defined]
        return fake

    def init(self, **kwargs: Any) -> None:
        self.inits.append(kwargs)
        if kwargs.get("address") == "local":
            self.resources = {"CPU": float(kwargs["num_cpus"]), "GPU": float(kwargs["num_gpus"])}

    def is_initialized(self) -> bool:
        return False

    def cluster_resources(self) -> dict[str, float]:
        return dict(self.resources)

    def remote(self, **kwargs: Any) -> Callable[[type], Any]:
        import types

        def actor_class(cls: type) -> Any:
            def start(*args: Any) -> Any:
                instance = cls(*args)
                return types.SimpleNamespace(
                    **{
                        name: types.SimpleNamespace(remote=getattr(instance, name))
                        for name in ("ready", "process", "process_bytes")
                    }
                )

            return types.SimpleNamespace(
                options=lambda **resources: types.SimpleNamespace(remote=start)
            )

        return actor_class

    @staticmethod
    def wait(refs: list, num_returns: int = 1, timeout: float | None = None) -> tuple:
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref: Any) -> Any:
        return ref  # a method's result, computed when it was called


@pytest.fixture
def two_local_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as a local cluster sees it: 2 CPU cores, no GPU (whatever it has)."""
    import torch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_a_local_run_starts_a_cluster_of_its_own_with_what_it_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_local_cores: None
) -> None:
    """Without an address, ``ray.init(address=None)`` joined whatever cluster Ray found
    (``RAY_ADDRESS``, or the last one started on this machine) with the CPUs Ray counted;
    now a run starts a local cluster of its own (``address="local"``) with the CPUs and
    GPUs pocketsr counted, those a dry run plans its actors with.  An address, given or in
    ``RAY_ADDRESS``, is a cluster's, joined as it is.  Fast: every output exists, so no
    actor starts."""
    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = [src, "-o", out, "-m", "bicubic"]
    code, _, err = upscale_json(*args)  # in one process: the outputs exist
    assert code == 0, err
    cases: list[tuple[dict[str, str], tuple[str, ...], dict[str, Any]]] = [
        ({}, (), {"address": "local", "num_cpus": 2, "num_gpus": 0}),
        ({"RAY_ADDRESS": "local"}, (), {"address": "local", "num_cpus": 2, "num_gpus": 0}),
        ({}, ("--ray-address", "local"), {"address": "local", "num_cpus": 2, "num_gpus": 0}),
        ({"RAY_ADDRESS": "head:6379"}, (), {"address": None}),  # Ray reads it itself
        ({}, ("--ray-address", "auto"), {"address": "auto"}),
    ]
    for env, flags, expected in cases:
        ray = InProcessRay()
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "ray", ray.module())
            for name, value in env.items():
                patch.setenv(name, value)
            code, lines, err = upscale_json(*args, "--ray", *flags)
        assert code == 0, err
        assert [x["reason_code"] for x in lines[:-1]] == ["exists", "exists"]
        assert len(ray.inits) == 1, (env, flags)
        said = {k: v for k, v in ray.inits[0].items() if k in ("address", "num_cpus", "num_gpus")}
        assert said == expected, (env, flags)


def test_local_actors_share_max_memory_as_devices_workers_do_and_a_dry_run_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_local_cores: None
) -> None:
    """On one machine (a local cluster) each of N actors admitted images within the whole
    of ``--max-memory``, so N of them could hold N times it.  Now each has its share, one
    for each actor the run starts (two images, two cores: two actors), as ``--devices``
    workers do; the run's line names the share and advises fewer ``--ray-workers``, and
    the dry run, which starts nothing, refuses with the same line.  One actor
    (``--ray-workers 1``, or one image to upscale) has all of it, as has each actor on a
    cluster (``--ray-address``), where actors may each have a machine of their own.  Fast:
    the actors live in this process (:class:`InProcessRay`)."""
    import torch

    threads = torch.get_num_threads()  # an in-process CPU actor sets its own
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    src = folder(tmp_path / "in", 2)  # about 11 KiB each (x4, bicubic)
    share = "the 8 KiB share of the 16 KiB --max-memory each of the 2 Ray actors may use"
    for name, flags, status in [
        ("local", (), "failed"),
        ("one-actor", ("--ray-workers", "1"), "ok"),
        ("cluster", ("--ray-address", "head:6379"), "ok"),
    ]:
        out = tmp_path / name
        args = (src, "-o", out, "-m", "bicubic", "--max-memory", "16K", "--ray", *flags)
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "ray", InProcessRay({"CPU": 2.0}).module())
            code, planned, err = upscale_json(*args, "--dry-run")
            assert code == (1 if status == "failed" else 0), err
            assert not out.exists()
            code, ran, err = upscale_json(*args)
        assert code == (1 if status == "failed" else 0), err
        assert [x["status"] for x in ran[:-1]] == [status, status], name
        if status == "failed":
            assert [x["status"] for x in planned[:-1]] == ["failed", "failed"]
            assert all(share in x["error"] for x in ran[:-1]), ran
            assert all("fewer --ray-workers" in x["error"] for x in ran[:-1]), ran
            said = [x["error"].replace("; not decoded.", ".") for x in ran[:-1]]
            assert [x["error"] for x in planned[:-1]] == [f"would be refused: {x}" for x in said]
        else:
            assert [x["status"] for x in planned[:-1]] == ["planned", "planned"]
    # One image to upscale starts one of the two actors planned: it has all of the limit.
    one = folder(tmp_path / "one", 1)
    args = (one, "-o", tmp_path / "one-out", "-m", "bicubic", "--max-memory", "16K", "--ray")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "ray", InProcessRay().module())
        code, planned, err = upscale_json(*args, "--dry-run")
        assert code == 0, err
        assert [x["status"] for x in planned[:-1]] == ["planned"]
        assert "1 of the 2 Ray actors planned (one per 1 CPU core) would start" in err, err
        code, ran, err = upscale_json(*args)
    assert code == 0, err
    assert [x["status"] for x in ran[:-1]] == ["ok"]
    assert "1 of the 2 Ray actors planned (one per 1 CPU core) started" in err, err
    assert torch.get_num_threads() == threads


def test_without_a_limit_local_actors_share_the_memory_available_and_a_dry_run_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_local_cores: None
) -> None:
    """With no --max-memory, a local run's actors (and its dry run, which judged each image
    against all of the driver's memory) have each their share of the memory available,
    as --devices workers do: a refusal says so, names no --max-memory the user never gave,
    and advises fewer --ray-workers.  Fast: :class:`InProcessRay`."""
    import torch

    from pocketsr_cli import memory

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    # 16000 bytes available: 8 KiB an actor for two, less than the about 11 KiB needed.
    monkeypatch.setattr(memory, "host_available_bytes", lambda address_space=True: 16000)
    monkeypatch.setattr(memory, "address_space_headroom_bytes", lambda status=None: None)
    monkeypatch.setitem(sys.modules, "ray", InProcessRay().module())
    src = folder(tmp_path / "in", 2)
    args = (src, "-o", tmp_path / "out", "-m", "bicubic", "--ray")
    code, planned, err = upscale_json(*args, "--dry-run")
    assert code == 1, err
    code, ran, err = upscale_json(*args)
    assert code == 1, err
    share = "more than the 8 KiB of memory each of the 2 Ray actors may use; not decoded. "
    for line in ran[:-1]:
        assert line["status"] == "failed" and share in line["error"]
        assert line["error"].endswith(
            "Choose a smaller scale or size or --tile or fewer --ray-workers, or allow more "
            "with --max-memory (or POCKETSR_MAX_MEMORY) if the machine has it"
        )
    said = ["would be refused: " + x["error"].replace("; not decoded.", ".") for x in ran[:-1]]
    assert [line["error"] for line in planned[:-1]] == said


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


class CountingFactory(DoublerFactory):
    """A :class:`DoublerFactory` that leaves a file in ``log`` for each model it loads
    (once per actor)."""

    def __init__(self, log: str) -> None:
        super().__init__()
        self.log = log

    def __call__(self, device: str, warn: Callable[[str], None]) -> Sequence[Variant]:
        Path(self.log, f"{os.getpid()}-{time.monotonic_ns()}").touch()
        return super().__call__(device, warn)


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
def test_a_dry_run_judges_each_image_against_the_share_each_local_actor_has(
    cluster: object, tmp_path: Path, two_local_cores: None
) -> None:
    """Ray actors on one machine (a local cluster) share --max-memory as --devices
    workers do: each admits images within its share, one for each of the actors the run
    starts (two images, two CPUs: two).  ``--ray --dry-run``, which plans in this process
    for the actors a run would start on this machine, judges each image against that same
    share: one over it fails in both, with the run's line (said as what a run would do);
    one within it is planned and written."""
    src = folder(tmp_path / "in", 2)  # about 11 KiB each (x4, bicubic)
    flags = ("-m", "bicubic", "--ray", "--ray-cpus-per-worker", "1")  # two actors
    for limit, status in [("16K", "failed"), ("32K", "ok")]:  # 8 KiB, 16 KiB an actor
        out = tmp_path / limit
        args = (src, "-o", out, *flags, "--max-memory", limit)
        code, planned, err = upscale_json(*args, "--dry-run")
        assert code == (1 if status == "failed" else 0), err
        assert not out.exists()
        code, ran, err = upscale_json(*args)
        assert code == (1 if status == "failed" else 0), err
        assert [x["status"] for x in ran[:-1]] == [status, status]
        if status == "failed":
            assert [x["status"] for x in planned[:-1]] == ["failed", "failed"]
            share = "the 8 KiB share of the 16 KiB --max-memory each of the 2 Ray actors may use"
            assert all(share in x["error"] for x in ran[:-1]), ran
            said = [x["error"].replace("; not decoded.", ".") for x in ran[:-1]]
            assert [x["error"] for x in planned[:-1]] == [f"would be refused: {x}" for x in said]
        else:
            assert [x["status"] for x in planned[:-1]] == ["planned", "planned"]


@pytest.mark.slow
@pytest.mark.parametrize("return_bytes", [False, True], ids=["shared", "bytes"])
def test_actors_are_started_only_for_the_images_that_need_one(
    cluster: object, tmp_path: Path, return_bytes: bool
) -> None:
    """Each actor loads the model (and holds a GPU): one image on a cluster planned for
    two actors starts one, and a folder whose outputs all exist starts none."""
    from pocketsr_cli.ray_backend import RaySettings, run_ray

    src = folder(tmp_path / "in", 1)
    loads = tmp_path / "loads"
    loads.mkdir()
    factory = CountingFactory(str(loads))
    variants = DoublerFactory()("cpu", lambda message: None)  # the driver's, as the CLI's
    settings = RaySettings(cpus_per_worker=1, return_bytes=return_bytes)
    for expected, warning in [("ok", "1 of the 2 Ray actors planned"), ("skipped", "no Ray")]:
        reporter = Recorder()
        jobs = collect_jobs([src], Naming(tmp_path / "out", None))
        summary = run_ray(jobs, factory, Options(), reporter, settings, variants=variants)
        assert [r.status for r in summary.results] == [expected]
        assert len(list(loads.iterdir())) == 1  # the first run's actor, and no other
        assert [w for w in reporter.warnings if warning in w], reporter.warnings
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


# --- the driver's writing (return_bytes), in this process ---------------------------------


def bytes_driver(options: Options, tmp_path: Path) -> Callable[[Job], Result]:
    """What a return-bytes run does with one job, without Ray: the driver's check, an
    actor's state (``ImageActor``, in this process) upscaling the input's bytes, and the
    driver writing what it returned (``place``).  The ``ray`` module is a stand-in: the
    driver only needs ``ray.remote`` to exist until it starts actors."""
    from types import SimpleNamespace

    from pocketsr_cli.pipeline import ImageWorker
    from pocketsr_cli.ray_backend import ImageActor, RaySettings, _RayDriver

    factory = DoublerFactory()
    checker = ImageWorker(factory("cpu", lambda message: None), options, inputs=None)
    fake_ray = SimpleNamespace(remote=lambda **_: lambda cls: cls)
    settings = RaySettings(return_bytes=True)
    driver = _RayDriver(
        fake_ray, [], factory, options, NullReporter(), None, settings, checker, 0, None
    )
    (tmp_path / "scratch").mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
        actor = ImageActor(factory, "cpu", options, None, return_bytes=True)

    def place(job: Job) -> Result:
        seen = checker.precheck(job)
        if isinstance(seen, Result):
            return seen
        returned = actor.process_bytes(1, job, job.input.read_bytes())
        return driver.place(job, seen, *returned)

    return place


def one_process(src: Path, out: Path, options: Options) -> list[Result]:
    """The one-process run of ``src`` into ``out``: what the Ray paths must match."""
    naming = Naming(out, None, fmt=options.fmt)
    variants = DoublerFactory()("cpu", lambda message: None)
    return run(collect_jobs([src], naming), variants, options, NullReporter()).results


def outcome(results: Sequence[Result]) -> list[tuple[str, str, str | None]]:
    return [(r.job.input.name, r.status, r.error) for r in results]


def test_the_driver_writes_a_bmp_record_as_a_one_process_run_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged before the image, placed once it is written, the image taken away when the
    record cannot be placed (``imageio.sidecar_written``, with the claim held); the record
    byte for byte what one process writes; an older record removed without one."""
    from pocketsr_cli.errors import ImageWriteError
    from pocketsr_cli.imageio import record as record_module
    from pocketsr_cli.provenance import RunSettings

    src = folder(tmp_path / "in", 3)
    options = Options(fmt="bmp", record=RunSettings(version="test"))
    out, one = tmp_path / "out", tmp_path / "one"
    for where in (out, one):  # the record of 1.bmp cannot be put in place
        (where / "1.bmp.pocketsr.json").mkdir(parents=True)
    place = bytes_driver(options, tmp_path)
    results = [place(job) for job in collect_jobs([src], Naming(out, None, fmt="bmp"))]
    expected = one_process(src, one, options)
    assert outcome(results) == [
        (name, status, error and error.replace(str(one), str(out)))
        for name, status, error in outcome(expected)
    ]
    assert results[1].status == "failed" and "1.bmp.pocketsr.json" in (results[1].error or "")
    assert tree(out) == tree(one)  # records included; no 1.bmp without its record
    assert not (out / "1.bmp").exists() and leftovers(tmp_path) == []

    # A record that cannot be staged fails the image before an older output is touched.
    (out / "0.bmp").write_bytes(b"older")
    (out / "0.bmp.pocketsr.json").write_text("older record\n")

    real = record_module.stage_sidecar

    def full(image: Path, record: str | None) -> Path | None:
        if image.parent != out:  # the actor's own writing, into its scratch folder
            return real(image, record)
        raise ImageWriteError(f"cannot write {image}.pocketsr.json: No space left on device")

    monkeypatch.setattr(record_module, "stage_sidecar", full)
    options = dataclasses.replace(options, overwrite=True)
    job = collect_jobs([src / "0.png"], Naming(out, None, fmt="bmp"))[0]
    result = bytes_driver(options, tmp_path)(job)
    assert result.status == "failed" and "No space left on device" in (result.error or "")
    assert (out / "0.bmp").read_bytes() == b"older"
    assert (out / "0.bmp.pocketsr.json").read_text() == "older record\n"
    monkeypatch.undo()

    # Without records (--no-provenance), an older output's record is removed.
    options = dataclasses.replace(options, record=None)
    assert bytes_driver(options, tmp_path)(job).status == "ok"
    assert (out / "0.bmp").read_bytes() == (one / "0.bmp").read_bytes()
    assert not (out / "0.bmp.pocketsr.json").exists()
    assert leftovers(tmp_path) == []


def test_the_driver_fails_only_the_outputs_it_cannot_write(tmp_path: Path) -> None:
    """``cannot write OUTPUT: reason`` for that input, as one process says, not an
    exception that ends the run."""
    src = folder(tmp_path / "in", 2)
    out, one = tmp_path / "out", tmp_path / "one"
    for where in (out, one):  # a folder in the way of 1.png's claim
        (where / ".1.png.pocketsr-claim").mkdir(parents=True)
    place = bytes_driver(Options(), tmp_path)
    results = [place(job) for job in collect_jobs([src], Naming(out, None))]
    assert [r.status for r in results] == ["ok", "failed"]
    error = f"cannot write {out / '1.png'}: something other than a file is in the way"
    assert results[1].error == error
    assert one_process(src, one, Options())[1].error == error.replace(str(out), str(one))

    # A read-only output folder: every input fails, each on its own line.
    out, one = tmp_path / "ro", tmp_path / "ro-one"
    out.mkdir()
    one.mkdir()
    with unwritable(out), unwritable(one):
        results = [place(job) for job in collect_jobs([src], Naming(out, None))]
        expected = one_process(src, one, Options())
    assert [r.status for r in results] == ["failed", "failed"]
    assert all((r.error or "").startswith(f"cannot write {out}/") for r in results)
    assert [r.error for r in results] == [
        (r.error or "").replace(str(one), str(out)) for r in expected
    ]
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []


# --- outputs that cannot be written, on a local cluster ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--ray-return-bytes",)], ids=["shared", "bytes"])
def test_a_bmp_whose_record_cannot_be_placed_fails_alone_as_in_one_process(
    cluster: object, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    src = folder(tmp_path / "in", 3)
    out, one = tmp_path / "out", tmp_path / "one"
    for where in (out, one):  # the record of 1.bmp cannot be put in place
        (where / "1.bmp.pocketsr.json").mkdir(parents=True)
    args = ("-m", "bicubic", "-s", "2", "--format", "bmp")
    code1, lines1, err1 = upscale_json(src, "-o", one, *args)
    assert code1 == 1, err1
    flags = ("--ray", "--ray-cpus-per-worker", "1", *extra)
    code2, lines2, err2 = upscale_json(src, "-o", out, *args, *flags)
    assert code2 == 1, err2
    assert "Traceback" not in err2 and "(this is a bug)" not in err2
    statuses = [("0.png", None, "ok"), ("1.png", None, "failed"), ("2.png", None, "ok")]
    assert records(lines2) == records(lines1) == statuses
    assert "1.bmp.pocketsr.json" in lines2[1]["error"]
    assert tree(out) == tree(one)  # records byte for byte; no 1.bmp without its record
    assert leftovers(tmp_path) == []
    # Without records, an older output's record goes, as in one process.
    for where in (out, one):
        (where / "1.bmp.pocketsr.json").rmdir()
    more = ("--overwrite", "--no-provenance")
    assert upscale_json(src, "-o", one, *args, *more)[0] == 0
    code3, _, err3 = upscale_json(src, "-o", out, *args, *more, *flags)
    assert code3 == 0, err3
    assert tree(out) == tree(one) and sorted(tree(out)) == ["0.bmp", "1.bmp", "2.bmp"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--ray-return-bytes",)], ids=["shared", "bytes"])
def test_an_output_that_cannot_be_written_fails_alone_and_the_run_goes_on(
    cluster: object, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    from pocketsr_cli.ray_backend import RaySettings, run_ray

    src = folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    (out / ".1.png.pocketsr-claim").mkdir(parents=True)  # a folder in the way of its claim
    flags = ("-m", "bicubic", "-s", "2", "--ray", "--ray-cpus-per-worker", "1", *extra)
    code, lines, err = upscale_json(src, "-o", out, *flags)
    assert code == 1, err
    assert "Traceback" not in err and "(this is a bug)" not in err
    assert [line["status"] for line in lines[:-1]] == ["ok", "failed", "ok"]
    error = f"cannot write {out / '1.png'}: something other than a file is in the way"
    assert lines[1]["error"] == error
    assert sorted(tree(out)) == ["0.png", "2.png"]

    # A read-only output folder (made so after the CLI's check): each input fails alone.
    ro, one = tmp_path / "ro", tmp_path / "ro-one"
    ro.mkdir()
    one.mkdir()
    settings = RaySettings(cpus_per_worker=1, return_bytes=bool(extra))
    with unwritable(ro), unwritable(one):
        summary = run_ray(
            collect_jobs([src], Naming(ro, None)), DoublerFactory(), Options(), Recorder(), settings
        )
        expected = one_process(src, one, Options())
    assert summary.count("failed") == 3 and not summary.interrupted
    assert all((r.error or "").startswith(f"cannot write {ro}/") for r in summary.results)
    assert [r.error for r in summary.results] == [
        (r.error or "").replace(str(one), str(ro)) for r in expected
    ]
    assert leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--ray-return-bytes",)], ids=["shared", "bytes"])
def test_a_run_that_writes_nothing_leaves_no_output_folder_it_made(
    cluster: object, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    """Every input fails after its output was claimed (the claim makes the -o folder: in
    the actor, or with --ray-return-bytes in the driver): the driver removes the folders
    the run made at its end, as a one-process run does; one that was there before stays."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    flags = ("-m", "bicubic", "-s", "2", "--ray", "--ray-cpus-per-worker", "1", *extra)
    code, lines, err = upscale_json(src, "-o", tmp_path / "made" / "out", *flags)
    assert code == 1, err
    assert [line["status"] for line in lines[:-1]] == ["failed", "failed"]
    assert not (tmp_path / "made").exists()
    there = tmp_path / "there"
    there.mkdir()
    code, lines, err = upscale_json(src, "-o", there, *flags)
    assert code == 1 and [line["status"] for line in lines[:-1]] == ["failed", "failed"], err
    assert there.is_dir() and list(there.iterdir()) == []
    assert leftovers(tmp_path) == []


def test_the_driver_writes_an_all_opaque_alpha_image_as_the_jpeg_asked(tmp_path: Path) -> None:
    """The actor's private copy keeps both planned names (``Job.alt_output``), so the
    driver writes the JPEG an opaque alpha channel allows, and the PNG transparency needs,
    beside the real outputs, as one process does."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    opaque = np.full((6, 8, 4), 200, np.uint8)
    opaque[..., 3] = 255
    Image.fromarray(opaque).save(src / "shot.png")
    cut = opaque.copy()
    cut[0, 0, 3] = 0
    Image.fromarray(cut).save(src / "cut.png")
    options = Options(fmt="jpeg")
    out, one = tmp_path / "out", tmp_path / "one"
    place = bytes_driver(options, tmp_path)
    results = [place(job) for job in collect_jobs([src], Naming(out, None, fmt="jpeg"))]
    assert [(r.status, r.output) for r in results] == [
        ("ok", out / "cut.png"),
        ("ok", out / "shot.jpg"),
    ]
    one_process(src, one, options)
    assert sorted(tree(out)) == sorted(tree(one)) == ["cut.png", "shot.jpg"]
    assert leftovers(tmp_path) == [] and not list((tmp_path / "scratch").rglob("*.jpg"))


def actor_on(output: Path, tmp_path: Path) -> tuple[Any, Any]:
    """A driver without Ray (its calls faked) and one of its actors, busy with an image
    whose output is ``output``: what stopping the run, or the actor's death, does."""
    from types import SimpleNamespace

    from pocketsr_cli.ray_backend import RaySettings, _Actor, _RayDriver

    fake_ray = SimpleNamespace(
        remote=lambda **_: lambda cls: cls,
        kill=lambda handle: None,
        wait=lambda refs, **_: (refs, []),
    )
    job = Job(tmp_path / "in.png", output, "in.png")
    driver = _RayDriver(
        fake_ray, [job], DoublerFactory(), Options(), NullReporter(), None,
        RaySettings(), None, 0, None,
    )  # fmt: skip
    actor = _Actor(handle=None, name="actor 1", ready_ref=None, ready=True)
    actor.task, actor.ref = (1, job), object()
    driver.actors = [actor]
    return driver, actor


def test_what_a_killed_actor_left_is_removed_but_not_a_live_writers_file(tmp_path: Path) -> None:
    """Stopping a run clears the claim and the temporary file a killed actor left beside
    its output, and only those: a temporary file of the same output that a live writer
    (another run) holds is kept, or that run would fail on its rename."""
    from pocketsr_cli import claims
    from pocketsr_cli.atomicfile import held_temp, temp_path_for

    output = tmp_path / "a.png"
    left = temp_path_for(output)
    left.write_bytes(b"half an image")
    claims.claim_path(output).touch()  # its holder is gone
    driver, _ = actor_on(output, tmp_path)
    with held_temp(output) as live:
        live.write_bytes(b"another run's image")
        driver.stop()
        assert live.read_bytes() == b"another run's image"
    assert not left.exists()
    assert not claims.claim_path(output).exists()


@pytest.mark.parametrize("how", ["stopped", "died"])
def test_what_a_killed_actor_left_is_removed_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """On Windows nothing can be locked, so no sweep can tell a killed actor's temporary
    file from a live writer's: it stayed for good, whether the run was stopped or the
    actor died mid-image.  The driver removes it, and the claim, under the claim."""
    from pocketsr_cli import claims
    from pocketsr_cli.atomicfile import temp_path_for

    as_on_windows(monkeypatch)
    output = tmp_path / "a.png"
    temp_path_for(output).write_bytes(b"half an image")
    claims.claim_path(output).touch()  # its holder is gone
    driver, actor = actor_on(output, tmp_path)
    if how == "stopped":
        driver.stop()
    else:
        driver.died(actor, "killed")
    assert leftovers(tmp_path) == []
    if how == "died":
        assert driver.summary.count("failed") == 1  # no retries left: it failed


def test_the_return_bytes_driver_claims_an_image_while_it_is_out(tmp_path: Path) -> None:
    """Two identical --ray-return-bytes runs: the second skips at once an image the first
    has sent away (``concurrent``); the claim goes once the image is written, or when its
    actor dies (it is taken again when the image is sent again)."""
    from types import SimpleNamespace

    from pocketsr_cli.pipeline import ImageWorker
    from pocketsr_cli.ray_backend import RaySettings, _Actor, _RayDriver

    src = folder(tmp_path / "in", 2)
    out = tmp_path / "out"
    jobs = collect_jobs([src], Naming(out, None))
    factory = DoublerFactory()
    fake_ray = SimpleNamespace(remote=lambda **_: lambda cls: cls, kill=lambda handle: None)
    sent: list[tuple[int, Job]] = []
    handle = SimpleNamespace(
        process_bytes=SimpleNamespace(remote=lambda i, job, data: sent.append((i, job)) or i)
    )

    def driver() -> _RayDriver:
        checker = ImageWorker(factory("cpu", lambda message: None), Options(), inputs=None)
        return _RayDriver(
            fake_ray, jobs, factory, Options(), NullReporter(), None,
            RaySettings(return_bytes=True), checker, 0, None,
        )  # fmt: skip

    first, second = driver(), driver()
    actor = _Actor(handle=handle, name="actor 1", ready_ref=None, ready=True)
    assert first.send(actor, (1, jobs[0]))
    assert actor.claim is not None and len(sent) == 1
    other = _Actor(handle=handle, name="actor 2", ready_ref=None, ready=True)
    assert not second.send(other, (1, jobs[0]))  # settled at once, nothing sent
    second.feed.flush()
    assert second.summary.count("skipped") == 1 and len(sent) == 1
    first.actors = [actor]
    first.died(actor, "killed")
    assert actor.claim is None and not any(out.glob(".*pocketsr-claim"))
    assert second.send(other, (2, jobs[0]))  # free again
    assert any(out.glob(".*pocketsr-claim"))
    second.stop()
    assert not any(out.glob(".*pocketsr-claim"))  # a stopped run lets go of what was out


def test_an_actor_removes_the_scratch_folders_killed_actors_left(tmp_path: Path) -> None:
    """Killed outright, an actor leaves its copies of inputs and outputs behind; the next
    actor on that machine removes those of processes that are gone, and no other."""
    from pocketsr_cli.ray_backend import _remove_dead_scratch

    script = "import os; print(os.getpid())"
    gone = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    dead = tmp_path / f"pocketsr-ray-{int(gone.stdout)}-abc"
    (dead / "in").mkdir(parents=True)
    (dead / "in" / "photo.png").write_bytes(b"copy")
    alive = tmp_path / f"pocketsr-ray-{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "pocketsr-ray-notapid-x"
    other.mkdir()
    mine = tmp_path / "my-pocketsr-ray-1-x"
    mine.mkdir()
    _remove_dead_scratch(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, mine.name])


def test_on_windows_no_scratch_owner_is_probed_with_os_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' ``os.kill(pid, 0)`` terminates the process (another run's live actor):
    there a process is asked after through ``psutil``, and without it nothing is removed."""
    import types

    from pocketsr_cli.ray_backend import _remove_dead_scratch

    killed: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(pid))
    monkeypatch.setattr(sys, "platform", "win32")
    dead = tmp_path / "pocketsr-ray-1234567-abc"
    alive = tmp_path / "pocketsr-ray-7654321-def"
    for scratch in (dead, alive):
        (scratch / "in").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed: nothing can be told
    _remove_dead_scratch(tmp_path)
    assert dead.is_dir() and alive.is_dir()
    fake = types.ModuleType("psutil")
    fake.pid_exists = lambda pid: pid == 7654321  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "psutil", fake)
    _remove_dead_scratch(tmp_path)
    assert not dead.exists() and alive.is_dir()
    assert killed == []


def test_a_full_scratch_folder_fails_that_image_alone_and_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor whose scratch disk is full used to raise out of its method, which ended
    the whole run; the image fails with a line naming the actor's scratch folder, and the
    run goes on (the outputs' disk is the driver's, so this stops nothing)."""
    import errno

    from pocketsr_cli.ray_backend import ImageActor

    src = folder(tmp_path / "in", 1)
    (tmp_path / "scratch").mkdir()
    factory = DoublerFactory()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
        actor = ImageActor(factory, "cpu", Options(), None, return_bytes=True)
    job = collect_jobs([src], Naming(tmp_path / "out", None))[0]
    real_write = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if actor.scratch in self.parents:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    result, encoded, sidecar = actor.process_bytes(1, job, job.input.read_bytes())
    assert result.status == "failed" and encoded is None and sidecar is None
    assert result.error == (
        f"the Ray actor could not copy it into its scratch folder {actor.scratch}: "
        "No space left on device"
    )
    assert result.stops_run is None
    assert list(actor.scratch.iterdir()) == []


def test_a_full_scratch_disk_while_writing_there_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pocketsr_cli import pipeline
    from pocketsr_cli.errors import ImageWriteError
    from pocketsr_cli.ray_backend import ImageActor

    src = folder(tmp_path / "in", 1)
    (tmp_path / "scratch").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
        actor = ImageActor(DoublerFactory(), "cpu", Options(), None, return_bytes=True)
    job = collect_jobs([src], Naming(tmp_path / "out", None))[0]

    def full(path: Path, data: bytes, **kwargs: object) -> bool:
        cause = OSError(errno.ENOSPC, "No space left on device")
        raise ImageWriteError(f"cannot write {path}: No space left on device") from cause

    monkeypatch.setattr(pipeline, "write_atomic", full)
    result, encoded, _ = actor.process_bytes(1, job, job.input.read_bytes())
    assert result.status == "failed" and encoded is None and result.stops_run is None
    assert (result.error or "").startswith(f"in the Ray actor's scratch folder {actor.scratch}: ")
