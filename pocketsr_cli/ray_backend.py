"""One run on a Ray cluster: one actor per GPU (or per N CPU cores), fed one job at a time.

``pocketsr upscale --ray [ADDRESS]`` connects to a Ray cluster (``auto``, ``HOST:PORT``,
``ray://HOST:PORT``), or starts a local one of its own when no address is given (neither
``--ray-address`` nor ``RAY_ADDRESS``) or the address is ``local``
(:attr:`RaySettings.local`), and runs the same
per-image work as ``--devices`` (``pipeline.ImageWorker``: read, upscale, claim and write)
in Ray actors, each loading the model once (``parallel.ModelSpec``).  Outputs, names,
records, skips, atomic writes, ``--json`` lines and exit codes are those of a one-process
run: the driver reports results in job order through one ``Reporter``
(``parallel.JobFeed``).

Actors are started as jobs need them (:meth:`_RayDriver.grow`), up to the planned count:
each loads the model and holds a GPU, so a run with fewer images than GPUs starts fewer,
and jobs whose outputs exist are settled by the driver (``ImageWorker.settled``, with the
driver's own variants) before any actor is started for them.

Memory: on a local cluster the actors share this machine's memory, as ``--devices``
workers do, and each admits images within its share of the run's limit
(``Options.memory_limit``: the user's ``--max-memory``, else the memory available when
the run starts), one share for each actor the run will start (``parallel._LookAhead``
over the first jobs: never more than the actors planned, nor than the images that need
one; :func:`actor_options`); a refusal names the share as the Ray actors' and advises
fewer ``--ray-workers``.  The local cluster is started with the CPUs and GPUs pocketsr
counts here (:func:`local_resources`), so that a dry run, which starts nothing, plans the
same actors and judges each image against the same share.  On a cluster (an address
given) each actor admits images within the whole of the limit (else the memory available
in its own process when it starts): actors may each have a machine of their own, and
none is told how many share its machine; a dry run, which contacts no cluster, judges
each image against that same whole limit.

Streaming: jobs are taken from an iterator (a folder still being walked) only as actors
become free, one image in flight per actor, and no more than a window of results waits for
an earlier slow image; nothing is materialised for the whole folder (``ray.wait`` on the
images in flight).

Outputs are written by the actors, which therefore need the inputs and the output folder on
a shared file system; ``return_bytes`` (``--ray-return-bytes``) is for clusters without
one: the driver reads each input and sends its bytes, the actor upscales a private copy
and returns the encoded output, and the driver writes it (claim, still-absent check,
atomic rename, record) exactly as a worker would have, through the same code
(``ImageWorker.write``: a BMP's sidecar record is staged before the image, put in place
after it, and the image taken away when it cannot be); existing outputs are skipped by the
driver before any bytes are sent, and the driver holds each output's claim while its image
is out (``ImageWorker.claim``), so another run skips it at once, as actors' claims make it
do in the shared mode.  In both modes an output that cannot be written (a
read-only folder, something in the way, permission denied) fails its input alone, with
``cannot write OUTPUT: reason``, as in a one-process run, and the run goes on.

Faults: an actor that dies (killed, out of memory, its node lost) has its image given to
another actor, and is replaced while replacements remain; an image whose actor died
``retries + 1`` times fails with a line that says so.  What the actor left beside the
image's output (its claim, a temporary file) is removed once its process is gone
(``claims.remove_leftovers``, as ``--devices``' driver does: under the output's claim, so
on Windows too, where no sweep can tell a left file from a live writer's).  No output is
written twice: a retried image whose output was renamed into place just before its actor
died finds it and is skipped (``exists``); an output is only ever renamed into place
whole, while its claim is held.

Stopping: on ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM/SIGHUP through the CLI) the driver
kills its actors (Ray cannot interrupt a running actor method), removes the claims and
temporary files the images in flight left beside their outputs (the same way), shuts Ray
down when it started it, and reports every input without a result as ``skipped``
(``interrupted``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pocketsr_cli.errors import UsageError
from pocketsr_cli.imageio import sidecar_path
from pocketsr_cli.jobs import Job
from pocketsr_cli.parallel import (
    _WINDOW,
    JobFeed,
    ModelSpec,
    VariantFactory,
    WorkerFailed,
    _dry_run,
    _LookAhead,
    _worker_options,
    remove_job_leftovers,
)
from pocketsr_cli.pipeline import (
    ImageWorker,
    Options,
    Reporter,
    Result,
    Sharers,
    Summary,
    Variant,
    run,
)
from pocketsr_cli.spelling import RAY_WORKERS, Spelling, keyword_spelling
from pocketsr_cli.spelling import current as current_spelling
from pocketsr_cli.spelling import use as use_spelling

__all__ = [
    "INSTALL_HINT",
    "ActorPlan",
    "RaySettings",
    "actor_options",
    "import_ray",
    "local_resources",
    "plan_actors",
    "run_ray",
]

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'pocketsr[ray]'"

ADDRESS_ENV = "RAY_ADDRESS"
"""Ray's own variable for the cluster to connect to when no address is given."""
LOCAL = "local"
"""The address of a local cluster a run starts (``ray.init(address="local")``)."""

RAY_ACTORS = Sharers("Ray actors", RAY_WORKERS)
"""Who share the memory limit on a local cluster, as its messages name them."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or a usage error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class RaySettings:
    """Where and how to run.

    Attributes:
        address: the cluster to connect to; None: ``RAY_ADDRESS``'s, and without one a
            local cluster, as with ``local`` (see :attr:`local`).
        cpus_per_worker: CPU cores per actor on a cluster without GPUs (its torch threads).
        workers: at most this many actors (None: one per GPU, or per ``cpus_per_worker``).
        return_bytes: the driver reads inputs and writes outputs (no shared file system).
        num_cpus: CPUs of a local cluster this run starts (None: see
            :func:`local_resources`).
        num_gpus: GPUs of a local cluster this run starts (None: see
            :func:`local_resources`).
    """

    address: str | None = None
    cpus_per_worker: int = 1
    workers: int | None = None
    return_bytes: bool = False
    num_cpus: int | None = None
    num_gpus: int | None = None

    @property
    def local(self) -> bool:
        """Whether the run starts a local cluster of its own, on this machine, whose actors
        share its memory: ``address`` is ``local``, or is None and ``RAY_ADDRESS`` (read
        now) is unset, empty or ``local``.  Any other address (``auto`` included) is a
        cluster, whose actors may each have a machine of their own."""
        address = self.address if self.address is not None else os.environ.get(ADDRESS_ENV)
        return not address or address.strip().lower() == LOCAL


@dataclass(frozen=True)
class ActorPlan:
    """The actors a run starts at most (:func:`plan_actors`).

    Attributes:
        device: the device each runs on, as its images' results name it (``cuda:0``: the
            one GPU Ray lets it see; or ``cpu``).
        count: how many, at least 1.
        gpus: GPUs each holds (0 or 1).
        cpus: CPU cores each holds (on a cluster without GPUs, its torch threads).
    """

    device: str
    count: int
    gpus: int
    cpus: int

    @property
    def resources(self) -> dict[str, float]:
        """Ray's options for each actor (``num_gpus``, ``num_cpus``)."""
        held = {"num_gpus": float(self.gpus)} if self.gpus else {}
        return {**held, "num_cpus": float(self.cpus)}

    @property
    def each(self) -> str:
        """What one actor is planned for: ``GPU``, ``1 CPU core``, ``2 CPU cores``."""
        if self.gpus:
            return "GPU"
        return f"{self.cpus} CPU core{'s' * (self.cpus > 1)}"


def plan_actors(total: dict[str, float], settings: RaySettings) -> ActorPlan:
    """The actors a cluster with ``total`` resources (``ray.cluster_resources()``: ``GPU``
    and ``CPU`` counts) gets: one per GPU, else one per ``settings.cpus_per_worker`` CPUs,
    at most ``settings.workers``."""
    gpus = int(total.get("GPU", 0))
    if gpus:
        # Ray shows each actor its one GPU alone (CUDA_VISIBLE_DEVICES), as cuda:0: the
        # device its images' lines name, and so the run's first line
        plan = ActorPlan("cuda:0", gpus, gpus=1, cpus=1)
    else:
        per = max(1, settings.cpus_per_worker)
        plan = ActorPlan("cpu", max(1, int(total.get("CPU", 1)) // per), gpus=0, cpus=per)
    if settings.workers is not None:
        plan = dataclasses.replace(plan, count=min(plan.count, max(1, settings.workers)))
    return plan


def local_resources(settings: RaySettings) -> dict[str, float]:
    """What a local cluster this run starts has (``ray.init``'s ``num_cpus`` and
    ``num_gpus``), counted here so that a dry run, which starts none, plans the actors a
    run would start (:func:`plan_actors`): ``settings.num_cpus``, else the CPU cores this
    process may run on (its affinity: taskset, cpusets); ``settings.num_gpus``, else the
    CUDA GPUs torch sees here (none without a CUDA build)."""
    cpus = settings.num_cpus
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on Linux
            cpus = os.cpu_count() or 1
    gpus = settings.num_gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    return {"CPU": float(max(1, cpus)), "GPU": float(max(0, gpus))}


def actor_options(options: Options, settings: RaySettings, actors: int) -> Options:
    """``options`` as each of ``actors`` actors runs with them (at least 1: those the run
    starts).  On a local cluster (:attr:`RaySettings.local`) they share this machine's
    memory, so each has its share of the limit, as a ``--devices`` worker has
    (``parallel._worker_options``), named in its messages as the Ray actors' share, with
    fewer ``--ray-workers`` among the advice.  On a cluster, ``options`` as they are: each
    actor admits images within the whole limit (an actor may have a machine of its own)."""
    if not settings.local:
        return options
    return _worker_options(options, actors, RAY_ACTORS)


# -- actor -------------------------------------------------------------------------------


class ImageActor:
    """A Ray actor's state: the run's model, loaded once, and its :class:`ImageWorker`."""

    def __init__(
        self,
        factory: VariantFactory,
        device: str,
        options: Options,
        inputs: Sequence[Path] | None,
        return_bytes: bool,
        spelling: Spelling = keyword_spelling,
    ) -> None:
        use_spelling(spelling)  # messages made here name options as the driver's face
        self.warnings: list[str] = []
        variants = factory(device, self.warnings.append)
        self.return_bytes = return_bytes
        if return_bytes:  # private copies in, outputs out; the driver decided on skipping
            _remove_dead_scratch(Path(tempfile.gettempdir()))
            self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-"))
            options = dataclasses.replace(options, overwrite=False)
            inputs = None
        self.worker = ImageWorker(variants, options, inputs=inputs)

    def ready(self) -> tuple[int, list[str]]:
        """This actor's process id and what its model warned about while loading."""
        return os.getpid(), self.warnings

    def process(self, index: int, job: Job) -> Result:
        return self.worker.process(job, index)

    def process_bytes(
        self, index: int, job: Job, data: bytes
    ) -> tuple[Result, bytes | None, str | None]:
        """``job`` upscaled from ``data`` (its input's bytes): the result, the encoded
        output and the record its sidecar holds (BMP; None without one), for the driver to
        write.  What goes wrong in this actor's scratch folder (its disk full) fails this
        image alone, with a line that names the scratch folder: the outputs' own disk is
        the driver's, and the run goes on."""
        try:
            folder = Path(tempfile.mkdtemp(dir=self.scratch))
        except OSError as exc:
            return self.scratch_failure(job, exc), None, None
        try:
            source = folder / "in" / job.input.name  # the same name: the same record
            output = folder / "out" / job.output.name
            try:
                source.parent.mkdir()
                source.write_bytes(data)
                output.parent.mkdir()
            except OSError as exc:
                return self.scratch_failure(job, exc), None, None
            alt = None if job.alt_output is None else output.with_name(job.alt_output.name)
            local = dataclasses.replace(job, input=source, output=output, alt_output=alt)
            result = self.worker.process(local, index)
            if result.status == "failed" and result.stops_run:  # the scratch disk's state
                result.stops_run = None
                result.error = f"in the Ray actor's scratch folder {self.scratch}: {result.error}"
            encoded = sidecar = None
            if result.status == "ok" and result.output is not None:
                encoded = result.output.read_bytes()
                record = sidecar_path(result.output)
                if record.exists():  # the record as written there: one line, then "\n"
                    sidecar = record.read_text("utf-8").removesuffix("\n")
            return result, encoded, sidecar
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def scratch_failure(self, job: Job, exc: OSError) -> Result:
        """``job`` failed: its copy could not be made in this actor's scratch folder."""
        error = (
            f"the Ray actor could not copy it into its scratch folder {self.scratch}: "
            f"{exc.strerror or exc}"
        )
        return Result(job, "failed", error=error)


# -- driver ------------------------------------------------------------------------------


@dataclass
class _Actor:
    handle: Any
    name: str
    ready_ref: Any
    ready: bool = False
    pid: int | None = None
    task: tuple[int, Job] | None = None
    ref: Any = None
    seen: Any = None  # return_bytes: the output as the driver saw it before sending
    claim: Any = None  # return_bytes: the output's claim, the driver's while the image is out


class _RayDriver:
    def __init__(
        self,
        ray: ModuleType,
        jobs: Iterable[Job],
        factory: VariantFactory,
        options: Options,
        reporter: Reporter,
        inputs: Sequence[Path] | None,
        settings: RaySettings,
        checker: ImageWorker | None,
        retries: int,
        keep_results: bool | None,
        settle: Callable[[Job], Result | None] | None = None,
    ) -> None:
        self.ray = ray
        self.factory = factory
        self.options = options
        self.inputs = None if inputs is None else list(inputs)
        self.spelling = current_spelling()
        self.reporter = reporter
        self.settings = settings
        self.checker = checker
        self.actors: list[_Actor] = []
        self.device = "cpu"
        self.resources: dict[str, float] = {}
        self.count = 0
        self.planned: ActorPlan | None = None  # what :meth:`plan` was given
        self.unstarted = 0  # planned actors that no job has needed yet
        self.feed = JobFeed(
            jobs,
            reporter,
            _WINDOW,
            retries,
            keep_results=keep_results,
            dry_run=options.dry_run,
            settle=settle or (None if checker is None else checker.settled),
        )
        self.summary = self.feed.summary
        self.respawns_left = retries
        self.warned: set[str] = set()
        self.serial = 0
        self.remote = ray.remote(max_restarts=0, max_task_retries=0)(ImageActor)

    # -- actors
    def plan(self, actors: ActorPlan) -> None:
        """Run on the actors ``actors`` plans (:func:`plan_actors`); a CPU actor's torch
        threads are its cores."""
        self.planned = actors
        self.device, self.resources, self.count = actors.device, actors.resources, actors.count
        spec = self.factory if isinstance(self.factory, ModelSpec) else None
        if not actors.gpus and spec is not None and spec.cpu_threads is None:
            self.factory = dataclasses.replace(spec, cpu_threads=actors.cpus)
        self.feed.window = _WINDOW * self.count
        self.respawns_left *= self.count

    def spawn(self) -> _Actor:
        self.serial += 1
        handle = self.remote.options(**self.resources).remote(
            self.factory,
            self.device,
            self.options,
            self.inputs,
            self.settings.return_bytes,
            self.spelling,
        )
        return _Actor(handle, f"actor {self.serial}", handle.ready.remote())

    def start(self, actors: ActorPlan) -> None:
        """Plan the actors (``actors``); :meth:`grow` starts them as jobs need them."""
        self.plan(actors)
        self.unstarted = self.count

    def grow(self) -> None:
        """Start an actor for each job that waits for one and has no free actor to go to,
        while planned actors remain: never more actors (each loads the model, and holds a
        GPU) than jobs to run.  Once the jobs are exhausted, how many planned actors were
        not started is said in a warning."""
        while self.unstarted and self.feed.wants_another(a.task for a in self.actors):
            self.unstarted -= 1
            self.actors.append(self.spawn())
        if self.unstarted and self.feed.exhausted:
            used = self.count - self.unstarted
            assert self.planned is not None
            self.reporter.warning(_unstarted_actors(self.planned, used))
            self.unstarted = 0

    # -- the loop
    def loop(self) -> None:
        while True:
            self.grow()
            self.dispatch()
            if self.feed.loop_over(a.task for a in self.actors):
                return
            if not self.actors:
                raise WorkerFailed("every Ray actor died; see the messages above")
            refs = [a.ref if a.ready else a.ready_ref for a in self.actors]
            refs = [r for r in refs if r is not None]
            if not refs:
                time.sleep(0.05)
                continue
            done, _ = self.ray.wait(refs, num_returns=1, timeout=1.0)
            for ref in done:
                for actor in list(self.actors):
                    if ref is actor.ready_ref and not actor.ready:
                        self.became_ready(actor)
                    elif ref is actor.ref:
                        self.collect(actor)

    def dispatch(self) -> None:
        for actor in self.actors:
            while actor.ready and actor.task is None:
                task = self.feed.next_task()
                if task is None:
                    return
                if not self.send(actor, task):
                    continue  # settled by the driver (return_bytes): take the next job
                self.reporter.image_started(task[1], task[0])

    def send(self, actor: _Actor, task: tuple[int, Job]) -> bool:
        index, job = task
        if not self.settings.return_bytes:
            actor.task, actor.ref = task, actor.handle.process.remote(index, job)
            return True
        assert self.checker is not None
        # The feed's settle (``ImageWorker.settled``) has already checked the job (input
        # and output); the claim looks at the output again, under it, for what changed.
        claimed = self.checker.claim(job)  # held while the image is out: another run skips it
        if isinstance(claimed, Result):
            self.feed.finish(index, claimed)
            return False
        claim, seen = claimed
        try:
            data = job.input.read_bytes()
        except OSError as exc:
            self.checker.release(claim)
            self.feed.finish(index, Result(job, "failed", error=f"cannot read: {exc}"))
            return False
        actor.seen, actor.claim = seen, claim
        actor.task, actor.ref = task, actor.handle.process_bytes.remote(index, job, data)
        return True

    def let_go(self, actor: _Actor) -> None:
        """Release the claim the driver holds for ``actor``'s image (return_bytes)."""
        if self.checker is not None and actor.claim is not None:
            self.checker.release(actor.claim)
        actor.claim = None

    def became_ready(self, actor: _Actor) -> None:
        try:
            actor.pid, warnings = self.ray.get(actor.ready_ref)
        except self.ray.exceptions.RayActorError as exc:
            raise WorkerFailed(f"a Ray actor could not start: {_cause(exc)}") from None
        actor.ready = True
        for message in warnings:
            if message not in self.warned:  # every actor says the same about its model
                self.warned.add(message)
                self.reporter.warning(message)

    def collect(self, actor: _Actor) -> None:
        task, ref = actor.task, actor.ref
        assert task is not None
        actor.task = actor.ref = None
        try:
            payload = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            actor.task = task  # for died()
            self.died(actor, _cause(exc))
            return
        except self.ray.exceptions.RayTaskError as exc:
            raise WorkerFailed(f"Ray {actor.name} failed: {_cause(exc)}") from None
        if self.settings.return_bytes:
            try:
                returned, data, sidecar = payload
                result = self.place(task[1], actor.seen, returned, data, sidecar, actor.claim)
            finally:
                self.let_go(actor)
        else:
            result = payload
        self.feed.finish(task[0], result)

    def place(
        self,
        job: Job,
        seen: Any,
        result: Result,
        data: bytes | None,
        sidecar: str | None,
        held: Any = None,
    ) -> Result:
        """Write what an actor returned (``return_bytes``) exactly as its worker would have
        (``ImageWorker.write``: claim, still-as-``seen`` check, atomic rename; a BMP's
        record staged before the image and put in place after it, the image taken away
        when it cannot be): an output that cannot be written fails this input with
        ``cannot write OUTPUT: reason``, and the run goes on."""
        result.job = job
        if result.output is None:
            return result
        output = job.output.with_name(result.output.name)  # its format may have switched it
        result.output = output
        if data is None:
            return result
        assert self.checker is not None
        if output != job.output:  # the switched output was not looked at before sending
            found = self.checker.precheck(dataclasses.replace(job, output=output))
            if isinstance(found, Result):
                return dataclasses.replace(found, job=job)
            seen = found
        return self.checker.write(result, data, seen, sidecar, held)

    def died(self, actor: _Actor, how: str) -> None:
        if actor not in self.actors:
            return
        self.actors.remove(actor)
        self.reporter.warning(f"Ray {actor.name} died ({how})")
        with contextlib.suppress(Exception):
            self.ray.kill(actor.handle)
        if actor.task is not None:
            self.let_go(actor)  # taken again when the image is sent again
            if not self.settings.return_bytes:  # it held its image's claim, maybe a file
                remove_job_leftovers(actor.task[1], until=time.monotonic() + _GONE_WITHIN)
            self.feed.lost(actor.task, how)
            actor.task = None
        if self.respawns_left > 0:
            self.respawns_left -= 1
            self.actors.append(self.spawn())

    # -- stopping
    def stop(self) -> None:
        """Kill every actor and remove what the images in flight left (cannot be
        interrupted: more Ctrl-C are noted and waited through)."""
        while True:
            try:
                for actor in self.actors:
                    with contextlib.suppress(Exception):
                        self.ray.kill(actor.handle)
                busy = [a for a in self.actors if a.task is not None and a.ref is not None]
                if busy and not self.settings.return_bytes:
                    # Their tasks fail once their processes are gone; then what they were
                    # writing can be cleared (a claim is locked until its process dies).
                    with contextlib.suppress(Exception):
                        self.ray.wait([a.ref for a in busy], num_returns=len(busy), timeout=30)
                    until = time.monotonic() + _GONE_WITHIN
                    for actor in busy:
                        assert actor.task is not None
                        remove_job_leftovers(actor.task[1], until=until)
                if self.checker is not None:  # return_bytes: the images still out
                    self.checker.release_all()
                self.actors = []
                return
            except KeyboardInterrupt:
                self.summary.interrupted = True

    def finish_in_hand(self) -> None:
        """Results that arrived before the actors were killed (a file written is reported)."""
        for actor in self.actors:
            if actor.ref is None or actor.task is None:
                continue
            done, _ = self.ray.wait([actor.ref], timeout=0)
            if done:
                with contextlib.suppress(Exception):
                    self.collect(actor)


# How long a killed actor's process may take to go, its image's claim held meanwhile.
_GONE_WITHIN = 10.0

_SCRATCH = "pocketsr-ray-"  # an actor's scratch folder: pocketsr-ray-<pid>-<random>


def _remove_dead_scratch(folder: Path) -> None:
    """Remove the scratch folders that actors killed outright left in ``folder`` (their
    copies of inputs and outputs): those named after a process that no longer exists
    (:func:`_process_gone`).
    A folder whose process id is alive again (reused) is kept; never raises."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            head, _, rest = entry.name.partition(_SCRATCH)
            pid = rest.split("-", 1)[0]
            if head or not pid.isdigit() or not entry.is_dir() or entry.is_symlink():
                continue
            if _process_gone(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists; False when it does, or when that cannot be told.

    POSIX: ``kill(pid, 0)``, which sends nothing.  Not on Windows, where ``os.kill`` with
    any other signal than the two console events *terminates* the process (another run's
    live actor, or whatever process reuses the id): there ``psutil`` answers when it is
    installed (Ray installs it), and without it nothing is taken for gone."""
    if sys.platform == "win32":
        try:
            import psutil  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return False
        return not psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # alive under another user, or not a pid
        return False
    return False


def _unstarted_actors(actors: ActorPlan, used: int, *, dry_run: bool = False) -> str:
    """The warning that only ``used`` of the actors ``actors`` plans were started (as many
    as the images needed), or with ``dry_run`` would be."""
    planned = f"{actors.count} Ray actors planned (one per {actors.each})"
    if dry_run:
        if used:
            return f"{used} of the {planned} would start, as many as the images to upscale need"
        return "no Ray actor would be started, no image needs upscaling"
    if used:
        return f"{used} of the {planned} started, as many as the images to upscale needed"
    return "no Ray actor was started, no image needed upscaling"


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in reversed(text):
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def run_ray(
    jobs: Iterable[Job],
    factory: VariantFactory,
    options: Options,
    reporter: Reporter,
    settings: RaySettings,
    *,
    variants: Sequence[Variant] | None = None,
    total: int | None = None,
    inputs: Sequence[Path] | None = None,
    retries: int = 2,
    keep_results: bool | None = None,
    on_actors: Callable[[str], None] | None = None,
    on_plan: Callable[[ActorPlan | None], None] | None = None,
) -> Summary:
    """Process ``jobs`` on Ray actors, results reported in job order; the summary is that
    of :func:`pipeline.run` (``interrupted`` on Ctrl-C; every result kept only with
    ``keep_results``, by default when ``jobs`` is a sequence).

    ``factory`` builds each actor's variants (``parallel.ModelSpec``, pickled to the
    actors); ``variants`` are the driver's own (``return_bytes``: it checks existing
    outputs' records with them); ``total`` and ``inputs`` as in
    :func:`parallel.run_parallel`.

    Once the cluster has been asked what it has, before the run starts (before
    ``reporter.start``), ``on_actors`` is called with the device the actors run on, as
    their images' results name it (``cuda:0`` on a cluster with GPUs: each actor's own GPU,
    the only one Ray lets it see; else ``cpu``), which this machine need not have, as
    :func:`parallel.run_parallel` calls its ``on_workers``: the CLI's first line.

    Memory: on a local cluster (:attr:`RaySettings.local`; started with
    :func:`local_resources`) each actor has its share of ``options.memory_limit``, one for
    each actor the run will start, found from its first jobs as ``--devices`` finds its
    workers (``parallel._LookAhead``); on a cluster each has the whole of it
    (:func:`actor_options`).  A Ray already initialized by the caller is used as it is,
    and taken for a local cluster or not by ``settings`` alone.

    A dry run (``options.dry_run``) contacts no cluster and starts no actor: the driver
    plans each job with ``variants`` (required), as :func:`pipeline.run` does, within the
    memory each actor would have: on a local cluster, the share of each of the actors a
    run would start (counted with :func:`local_resources`, which a run starts its cluster
    with; those it would not start are said in a warning); on a cluster, the whole limit.
    ``on_actors`` is not called: ``on_plan`` is, before any job is reported, with the
    actors a run would plan on this machine on a local cluster (:func:`plan_actors` of
    :func:`local_resources`), with None on a cluster, whose actors only it knows.

    Raises:
        UsageError: Ray is not installed.
        WorkerFailed: an actor could not load the model, or every actor died.
        ValueError: a dry run without ``variants``.
    """
    ray = import_ray()
    if inputs is None and isinstance(jobs, Sequence):
        inputs = [job.input for job in jobs if job.runs]
    if total is None and isinstance(jobs, Sequence):
        total = len(jobs)
    if options.dry_run:
        if variants is None:
            raise ValueError("a Ray dry run plans the jobs with the driver's variants")
        return _ray_dry_run(
            jobs, variants, options, reporter, settings, total, inputs, keep_results, on_plan
        )
    if settings.return_bytes and variants is None:
        variants = factory("cpu", lambda message: None)
    # The driver settles the jobs whose outputs need no work (existing, made with these
    # settings) before handing any out, so that no actor is started (a model loaded, a GPU
    # held) for them; with return_bytes it also writes the outputs.
    checker = None if variants is None else ImageWorker(variants, options, inputs=inputs)
    started = False
    t0 = time.perf_counter()
    driver: _RayDriver | None = None
    try:
        if not ray.is_initialized():
            handlers = {n: signal.getsignal(n) for n in _STOP_SIGNALS}
            # A local cluster of this run's own, with the resources a dry run counts too;
            # else the address given, or RAY_ADDRESS's (Ray reads it)
            where: dict[str, Any] = {"address": settings.address}
            if settings.local:
                here = local_resources(settings)
                where = {
                    "address": LOCAL,
                    "num_cpus": int(here["CPU"]),
                    "num_gpus": int(here["GPU"]),
                }
            ray.init(
                **where,
                include_dashboard=False,
                log_to_driver=False,  # stdout is for --json lines
                logging_level="error",
                configure_logging=True,
            )
            started = True
            # Ray's own handlers abort the driver on SIGTERM: the run's (the CLI turns it
            # into KeyboardInterrupt) must decide, so that the actors are stopped first.
            for number, handler in handlers.items():
                if handler is not None:
                    signal.signal(number, handler)
        # Asks the cluster and looks at the first jobs: a Ctrl-C here, before any image
        # is out, is one in ray.init.
        actors = plan_actors(ray.cluster_resources(), settings)
        settle = None if checker is None else checker.settled
        ahead = _LookAhead(jobs, [actors.device] * actors.count, settle)  # which will start
        each = actor_options(options, settings, len(ahead.devices))
        driver = _RayDriver(
            ray,
            ahead.jobs,
            factory,
            each,
            reporter,
            inputs,
            settings,
            checker,
            retries,
            keep_results,
            settle=None if settle is None else ahead.settle,
        )
        driver.start(actors)
        if on_actors is not None:
            on_actors(driver.device)
        reporter.start(total)
        try:
            driver.loop()
        except KeyboardInterrupt:
            driver.summary.interrupted = True
            driver.finish_in_hand()
        finally:
            driver.stop()
            if checker is not None:  # on this machine's disk: the actors' may be others
                checker.remove_empty_folders()
    finally:
        if started:
            _quietly(ray.shutdown)
    if checker is not None:  # the driver's sweep, which saw each folder first
        driver.feed.summary.leftovers_removed = checker.leftovers_removed
    return driver.feed.end(time.perf_counter() - t0)


def _ray_dry_run(
    jobs: Iterable[Job],
    variants: Sequence[Variant],
    options: Options,
    reporter: Reporter,
    settings: RaySettings,
    total: int | None,
    inputs: Sequence[Path] | None,
    keep_results: bool | None,
    on_plan: Callable[[ActorPlan | None], None] | None = None,
) -> Summary:
    """:func:`run_ray`'s dry run: on a cluster, :func:`pipeline.run`'s (the whole limit);
    on a local cluster, ``parallel``'s (``parallel._dry_run``), for the actors a run would
    plan on this machine (:func:`local_resources`), each within its share.  ``on_plan``
    is told those actors (None on a cluster) before any job is looked at."""
    if not settings.local:
        if on_plan is not None:
            on_plan(None)
        return run(jobs, variants, options, reporter, keep_results=keep_results)
    actors = plan_actors(local_resources(settings), settings)
    if on_plan is not None:
        on_plan(actors)
    checker = ImageWorker(variants, options, inputs=inputs)
    ahead = _LookAhead(jobs, [actors.device] * actors.count, checker.settled)
    each = actor_options(options, settings, len(ahead.devices))
    planner = ImageWorker(variants, each, inputs=inputs)
    unused = functools.partial(_unstarted_actors, actors, dry_run=True)
    return _dry_run(ahead, actors.count, unused, planner, reporter, total, keep_results)


_STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")  # as cli._errors.STOP_SIGNALS
    if hasattr(signal, name)
)


def _quietly(fn: Any) -> None:
    while True:
        try:
            fn()
            return
        except KeyboardInterrupt:
            continue
