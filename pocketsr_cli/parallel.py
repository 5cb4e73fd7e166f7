"""One run on several devices: one worker process per device, fed from one queue.

``pocketsr upscale --devices cuda:0,cuda:1`` starts one process per device (multiprocessing
``spawn``: no forked torch or CUDA state), each as a job needs it: a device's worker starts
only when a job waits for a worker and none is free for it.  Jobs settled before any work
(planned as skipped or failed; an output that exists, which the driver checks with its own
variants: ``ImageWorker.precheck``) need none, so there are never more workers than jobs to
run, and a list longer than the run needs is cut, with a warning naming the devices left
unused (3 images on ``cpu,cpu,cpu,cpu`` start at most three; a finished folder, none).
Which devices those are is found before the run starts, from its first jobs
(``_LookAhead``), so that the caller can say so (``on_workers``: the CLI's first line).
A dry run starts none: the driver plans each job itself and names the devices a run
would start a worker on (``_dry_run``).
Each loads the model once (``ModelSpec``) and runs
the whole of each image it is given (``pipeline.ImageWorker``: read, upscale, claim and
write), so outputs, names, records, skips and atomic writes are those of a one-process run.
The driver (the calling process) hands jobs out one at a time from an iterator, to whichever
worker is free, and reports their results in job order to one ``Reporter``: progress and
``--json`` lines come out of one place.

Bounded work on the driver: jobs are taken from the iterator only as workers become free,
and no more than ``_WINDOW`` per worker beyond the first unreported one, so that results
waiting for an earlier slow image stay few; reported results are tallied in the
``pipeline.Summary``, which keeps counts rather than every result (as ``pipeline.run``).

Faults: a worker that dies (killed, out of memory) has its image given to another worker,
and is replaced while replacements remain; an image whose worker died ``retries + 1`` times
fails with a line that says so.  No output is written twice: a retried image whose output
was renamed into place just before its worker died finds it and is skipped (``exists``),
and an output is only ever renamed into place whole (``imageio.write_atomic``) while its
claim is held (``claims``; a claim dies with its process).

Stopping: workers ignore SIGINT (a terminal sends it to the whole process group; on
Windows SIGBREAK too) and leave the decision to the driver, from their start (they are
started with it ignored, which they inherit: on Windows the console's Ctrl-C, through
``SetConsoleCtrlHandler``), so that a worker still importing torch at Ctrl-C ends in no
traceback; on ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM/SIGHUP through the CLI) the driver
sends each worker SIGTERM, which each turns into a ``KeyboardInterrupt``: a temporary file
being written is removed, a claim released.  The driver waits for them, and every input
without a result is reported ``skipped`` (``interrupted``), as in a one-process run.  A
worker ended outright while it had an image (killed; on Windows ``terminate`` is that,
and runs no clean-up; or stuck past the driver's wait) leaves that image's claim and
temporary file: once its process is gone, the driver removes them
(``claims.remove_leftovers``; nothing else would on Windows, where no sweep can tell a
left file from a live writer's).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

from pocketsr_cli import claims
from pocketsr_cli import spelling as spelling_module
from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.errors import PocketSRError
from pocketsr_cli.factory import NO_ENSEMBLE, UpscalerSpec
from pocketsr_cli.hostmem import retain_freed_memory
from pocketsr_cli.jobs import PLAN_AHEAD, Job
from pocketsr_cli.pipeline import (
    WORKER_PROCESSES,
    ImageWorker,
    NullReporter,
    Options,
    Reporter,
    Result,
    Sharers,
    Summary,
    Variant,
    not_finished,
    planned_result,
)
from pocketsr_cli.spelling import Spelling

__all__ = [
    "JobFeed",
    "ModelSpec",
    "VariantFactory",
    "WorkerFailed",
    "remove_job_leftovers",
    "run_parallel",
]

_WINDOW = 8  # jobs handed out per worker beyond the first unreported one


class WorkerFailed(PocketSRError):
    """A worker process could not start (its model did not load) or broke."""


class VariantFactory(Protocol):
    """Builds a worker's variants on ``device``; must be picklable (``spawn``)."""

    def __call__(self, device: str, warn: Callable[[str], None]) -> Sequence[Variant]: ...


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to load the run's model itself (the driver resolved and, when
    needed, downloaded it first, so workers open it offline).

    ``outscale`` and ``native_sizes`` are a PCSR model's native drawing, as the run's own
    upscalers have it (``factory.open_upscaler``)."""

    model: str | None
    scales: tuple[int, ...]
    settings: UpscalerSpec  # the run's; each worker puts its own device in and goes offline
    ensemble: Ensemble = NO_ENSEMBLE
    cpu_threads: int | None = None  # torch threads of a CPU worker (None: torch's default)
    outscale: float | None = None  # a PCSR model draws at this factor
    native_sizes: bool = False  # a PCSR model draws each image at its size target's factor

    def __call__(self, device: str, warn: Callable[[str], None]) -> list[Variant]:
        import torch

        from pocketsr_cli.devices import choose_device
        from pocketsr_cli.factory import open_upscaler

        if device == "cpu" and self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        spec = dataclasses.replace(self.settings, device=choose_device(device), offline=True)
        family = spec.family(self.model)
        variants = []
        for scale in self.scales:
            desc = family.load(scale)
            upscaler = open_upscaler(
                desc,
                spec,
                ensemble=self.ensemble,
                on_warning=warn,
                outscale=self.outscale,
                native_sizes=self.native_sizes,
            )
            variants.append(
                Variant(
                    upscaler, model=desc.name, sha256=desc.sha256, compute=str(upscaler.compute)
                )
            )
        return variants


# -- worker process ---------------------------------------------------------------------


class _StopSignal:
    """SIGTERM in a worker: a ``KeyboardInterrupt`` at once, except while an output is
    being written (``shield``), which is finished first; the worker stops after it."""

    def __init__(self) -> None:
        self.shielded = False
        self.pending = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.shielded or self.pending:
            self.pending = True
        else:
            # Once: a second SIGTERM (a whole process group's, then the driver's) must not
            # break into the worker's way out, where it ended in a traceback from atexit.
            self.pending = True
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False


class _Started(NullReporter):
    """Tells the driver when inference of its image starts (for the progress line)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def image_started(self, job: Job, index: int) -> None:
        self.conn.send(("started", index))


def _worker_main(
    conn: Connection,
    factory: VariantFactory,
    device: str,
    options: Options,
    inputs: Sequence[Path] | None,
    spelling: Spelling,
) -> None:
    spelling_module.use(spelling)  # messages made here name options as the driver's face
    retain_freed_memory()  # as the CLI does in the driver (hostmem.py)
    stop = _StopSignal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGBREAK"):  # Windows' Ctrl-Break reaches the whole console too
        signal.signal(signal.SIGBREAK, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    try:
        variants = factory(device, lambda message: conn.send(("warning", message)))
        worker = ImageWorker(variants, options, _Started(conn), inputs=inputs)
        conn.send(("ready", None))
        while not stop.pending:
            task = conn.recv()
            if task is None:
                return
            index, job = task
            result = worker.process(job, index, stop.shield)
            conn.send(("result", (index, result)))
    except KeyboardInterrupt:
        return
    except (EOFError, BrokenPipeError):  # the driver is gone
        return
    except BaseException as exc:  # reported to the driver, which stops the run
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:  # leaving: no stop signal may interrupt the interpreter's clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


# -- driver -------------------------------------------------------------------------------


def _worker_options(options: Options, workers: int, among: Sharers = WORKER_PROCESSES) -> Options:
    """``options`` as each of ``workers`` workers (at least 1) runs with them: the images
    in flight on all workers share the host's memory, so each has its share of it
    (``MemoryLimit.per_worker``), which its messages name as a share (of ``among``: the
    workers, or a local cluster's Ray actors, ``ray_backend``)."""
    limit = options.memory_limit.per_worker(workers, among)
    return dataclasses.replace(options, memory_limit=limit)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the block runs (in the main thread; elsewhere nothing changes).

    A spawned worker inherits the setting, so a Ctrl-C typed while it is still importing
    numpy and torch (a second or more, before ``_worker_main`` ignores SIGINT itself) does
    not end it in a traceback: the driver alone handles Ctrl-C and stops the workers.  A
    Windows process inherits no signal setting, but its console's Ctrl-C ignored
    (``SetConsoleCtrlHandler(NULL, TRUE)``): so there that is set for the block too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _console_ctrl_c_ignored():
            yield
    finally:
        if previous is not None:  # None: a handler set outside Python, left as it was
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _console_ctrl_c_ignored() -> Iterator[None]:
    """On Windows, the console's Ctrl-C ignored by this process for the block, and by the
    processes it starts meanwhile for their whole life (they inherit it); elsewhere
    nothing.

    Limit: at the end Ctrl-C is taken again, even by a driver that was started with it
    ignored (``start /b``, a parent's ``CREATE_NEW_PROCESS_GROUP``), which it should
    have kept ignoring.  Windows has no call that says whether a process ignores Ctrl-C
    (``SetConsoleCtrlHandler(NULL, ...)`` only sets it; the flag lives in the process
    parameters' undocumented ``ConsoleFlags``), so the state before cannot be put back;
    Python's own SIGINT setting does not tell either (it is not derived from it)."""
    if sys.platform != "win32":
        yield
        return
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
    kernel32.SetConsoleCtrlHandler(None, True)
    try:
        yield
    finally:
        kernel32.SetConsoleCtrlHandler(None, False)


class _Worker:
    def __init__(self, ctx: Any, device: str, args: tuple[Any, ...]) -> None:
        self.device = device
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=_worker_main,
            args=(child, args[0], device, *args[1:]),
            name=f"pocketsr-worker-{device}",
            daemon=True,
        )
        with _sigint_ignored():  # inherited: a Ctrl-C while it imports is not its to take
            self.process.start()
        child.close()
        self.ready = False
        self.task: tuple[int, Job] | None = None


class JobFeed:
    """The bookkeeping every multi-worker driver shares (here, and ``ray_backend``): jobs
    taken lazily from an iterator within a window, retried after a worker died (bounded),
    and results reported in job order to one reporter.

    ``next_task`` gives the next job that needs a worker (settling jobs planning already
    decided on the way) or None while the window is full or the jobs are exhausted;
    ``waiting`` says how many jobs need a worker now (taking jobs from the iterator ahead,
    within the window, to see: a driver starts workers only for them);
    ``finish`` records a result; ``lost`` puts back the job of a worker that died;
    ``settle`` (optional) ends a job that needs no worker after all (its output exists:
    ``pipeline.ImageWorker.precheck``) before it is handed out;
    ``stopping`` says that a result stopped the run (its output's disk is full or
    read-only), so no job is handed out any more; ``loop_over`` says when a driver's loop
    may end; ``end`` closes the run, ending every job without a result as ``interrupted``
    (or ``stopped``: ``pipeline.not_finished``) when it ended early.  What it holds is
    bounded by the window, whatever the number of jobs: ``summary`` keeps every result
    only with ``keep_results`` (see ``pipeline.Summary.for_jobs``).
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        reporter: Reporter,
        window: int,
        retries: int,
        *,
        keep_results: bool | None = None,
        dry_run: bool = False,
        settle: Callable[[Job], Result | None] | None = None,
    ) -> None:
        self.jobs: Iterator[tuple[int, Job]] = enumerate(jobs, 1)
        self.settle = settle
        self.reporter = reporter
        self.window = window
        self.retries = retries
        self.again: collections.deque[tuple[int, Job]] = collections.deque()
        self.queued: collections.deque[tuple[int, Job]] = collections.deque()  # by waiting
        self.attempts: dict[int, int] = {}
        self.done: dict[int, Result] = {}
        self.unreported: dict[int, Job] = {}  # handed out or waiting, not yet reported
        self.next_index = 1  # the next index to report
        self.exhausted = False
        self.summary = Summary.for_jobs(jobs, keep_results=keep_results, dry_run=dry_run)

    @property
    def finished(self) -> bool:
        return self.exhausted and not self.again and not self.queued and not self.unreported

    @property
    def stopping(self) -> bool:
        return self.summary.stopped is not None

    def loop_over(self, in_hand: Iterable[tuple[int, Job] | None]) -> bool:
        """Whether a driver may leave its loop, given each worker's task (``in_hand``;
        None for an idle one): every job is reported, or the run is stopping and no
        worker holds a task any more, since what was in hand is finished and nothing more
        is handed out (:meth:`end` reports the rest as ``stopped``)."""
        if self.finished:
            return True
        return self.stopping and all(task is None for task in in_hand)

    def waiting(self, wanted: int) -> int:
        """How many jobs wait for a worker (put back after a worker died, or taken from the
        iterator and not handed out yet), jobs being taken from the iterator until
        ``wanted`` do, the window is full or the jobs are exhausted; 0 while stopping."""
        if self.stopping:
            return 0
        while len(self.again) + len(self.queued) < wanted:
            task = self._take()
            if task is None:
                break
            self.queued.append(task)
        return len(self.again) + len(self.queued)

    def wants_another(self, in_hand: Iterable[tuple[int, Job] | None]) -> bool:
        """Whether a job waits for a worker that none of the workers there are (each
        worker's task, ``in_hand``: None for one idle or still starting) will be free to
        take: one more worker would get it (see :meth:`waiting`)."""
        free = sum(task is None for task in in_hand)
        return self.waiting(free + 1) > free

    def next_task(self) -> tuple[int, Job] | None:
        if self.stopping:
            return None
        if self.again:
            return self.again.popleft()
        if self.queued:
            return self.queued.popleft()
        return self._take()

    def _take(self) -> tuple[int, Job] | None:
        """The iterator's next job that needs a worker, settling on the way those that
        planning already decided; None once the window is full or the jobs exhausted."""
        if self.exhausted or len(self.unreported) >= self.window:
            return None
        for index, job in self.jobs:
            self.unreported[index] = job
            settled = self._settled(job)
            if settled is None:
                return index, job
            self.finish(index, settled)  # no worker needed
            if len(self.unreported) >= self.window:
                return None
        self.exhausted = True
        return None

    def _settled(self, job: Job) -> Result | None:
        """``job``'s result when no worker is needed for it: settled when the jobs were
        planned, or by ``settle`` (its output exists); None: it needs a worker."""
        planned = planned_result(job)
        if planned is not None or self.settle is None:
            return planned
        return self.settle(job)

    def finish(self, index: int, result: Result) -> None:
        if index in self.done or index < self.next_index:
            return  # a result already had (a worker presumed dead that answered after all)
        self.done[index] = result
        self.flush()

    def flush(self) -> None:
        while self.next_index in self.done:
            result = self.done.pop(self.next_index)
            self.unreported.pop(self.next_index, None)
            self.attempts.pop(self.next_index, None)
            self.summary.add(result)
            self.reporter.image_finished(result)
            self.next_index += 1

    def lost(self, task: tuple[int, Job], how: str) -> None:
        """``task``'s worker died while working on it (``how``): retried, while allowed."""
        index, job = task
        self.attempts[index] = self.attempts.get(index, 0) + 1
        if self.attempts[index] > self.retries:
            error = (
                f"its worker died {self.attempts[index]} times while working on it "
                f"({how}); not retried again"
            )
            self.finish(index, Result(job, "failed", error=error))
        else:
            self.again.append(task)

    def end(self, seconds: float) -> Summary:
        """The run's summary, once its driver has stopped every worker: when the run ended
        early (interrupted, or :attr:`stopping`) every input without a result is reported
        first (:meth:`report_rest`); ``seconds`` is its wall time, and the reporter is told
        that it finished."""
        if self.summary.interrupted or self.stopping:
            self.report_rest()
        self.summary.seconds = seconds
        self.reporter.finished(self.summary)
        return self.summary

    def report_rest(self) -> None:
        """Every input without a result yet, as ``interrupted`` or ``stopped``, in job
        order."""
        for index, job in self.unreported.items():
            self.done.setdefault(index, not_finished(job, self.summary))
        self.flush()
        for index, job in self.jobs:
            self.finish(index, not_finished(job, self.summary))


class _Driver:
    def __init__(
        self,
        jobs: Iterable[Job],
        factory: VariantFactory,
        devices: Sequence[str],
        options: Options,
        reporter: Reporter,
        inputs: Sequence[Path] | None,
        retries: int,
        keep_results: bool | None,
        settle: Callable[[Job], Result | None] | None = None,
    ) -> None:
        self.ctx = get_context("spawn")
        window = _WINDOW * len(devices)
        self.feed = JobFeed(
            jobs,
            reporter,
            window,
            retries,
            keep_results=keep_results,
            dry_run=options.dry_run,
            settle=settle,
        )
        self.summary = self.feed.summary
        inputs = None if inputs is None else list(inputs)
        self.args = (factory, options, inputs, spelling_module.current())
        self.devices = list(devices)
        self.unstarted = list(devices)  # the devices whose worker no job has needed yet
        self.reporter = reporter
        self.respawns_left = retries * len(devices)
        self.workers: list[_Worker] = []
        self.warned: set[str] = set()

    def start(self) -> None:
        """Start a worker for each job that waits for one and has no free worker to go to,
        while listed devices remain: never more workers than jobs to run.  Once the jobs
        are exhausted, the devices left without a worker are named in a warning."""
        while self.unstarted and self.feed.wants_another(w.task for w in self.workers):
            self.workers.append(_Worker(self.ctx, self.unstarted.pop(0), self.args))
        if self.unstarted and self.feed.exhausted:
            used = len(self.devices) - len(self.unstarted)
            self.reporter.warning(_unused_devices(self.devices, used))
            self.unstarted = []

    def dispatch(self) -> None:
        for worker in self.workers:
            if worker.ready and worker.task is None:
                task = self.feed.next_task()
                if task is None:
                    return
                worker.task = task
                worker.conn.send(task)

    def loop(self) -> None:
        while True:
            self.start()
            self.dispatch()
            if self.feed.loop_over(w.task for w in self.workers):
                return
            if not self.workers:
                raise WorkerFailed("every worker process died; see the messages above")
            waitables: list[Any] = [w.conn for w in self.workers]
            waitables += [w.process.sentinel for w in self.workers]
            for ready in wait(waitables, timeout=1.0):
                for worker in list(self.workers):
                    if ready is worker.conn:
                        self.receive(worker)
                    elif ready == worker.process.sentinel:
                        self.died(worker)

    def receive(self, worker: _Worker) -> None:
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            return  # its death is seen through its sentinel
        if kind == "ready":
            worker.ready = True
        elif kind == "warning":
            if payload not in self.warned:  # every worker says the same about its model
                self.warned.add(payload)
                self.reporter.warning(str(payload))
        elif kind == "started":
            if worker.task is not None:
                self.reporter.image_started(worker.task[1], worker.task[0])
        elif kind == "result":
            index, result = payload
            worker.task = None
            self.feed.finish(index, result)
        elif kind == "error":
            raise WorkerFailed(f"worker on {worker.device} failed: {payload}")

    def died(self, worker: _Worker) -> None:
        self.drain(worker)  # what it sent before dying comes first
        if worker.process.is_alive() or worker not in self.workers:
            return
        worker.process.join()
        self.workers.remove(worker)
        code = worker.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self.reporter.warning(f"worker process on {worker.device} died ({how})")
        if not worker.ready and not self.workers and self.respawns_left <= 0:
            raise WorkerFailed(f"the worker process on {worker.device} died while starting")
        if worker.task is not None:
            remove_job_leftovers(worker.task[1])  # it held its image's claim, maybe a file
            self.feed.lost(worker.task, how)
        if self.respawns_left > 0:
            self.respawns_left -= 1
            self.workers.append(_Worker(self.ctx, worker.device, self.args))

    def stop(self) -> None:
        """Stop every worker and wait for it; cannot be interrupted (see the module docs)."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                for worker in self.workers:
                    if worker.process.is_alive():
                        if worker.task is None and worker.ready:
                            try:
                                worker.conn.send(None)
                            except OSError:
                                worker.process.terminate()
                        else:
                            worker.process.terminate()
                for worker in self.workers:
                    worker.process.join(max(0.0, deadline - time.monotonic()))
                    if worker.process.is_alive():  # stuck in native code
                        worker.process.kill()
                        worker.process.join()
                    self.drain(worker)  # a file finished in hand still has its result
                    worker.conn.close()
                    if worker.task is not None:  # ended with it in hand (outright, maybe)
                        remove_job_leftovers(worker.task[1])
                        worker.task = None
                self.workers = []
                return
            except KeyboardInterrupt:
                self.summary.interrupted = True

    def drain(self, worker: _Worker) -> None:
        """Take what a stopped worker sent before it stopped (at its end: EOF)."""
        while True:
            try:
                if not worker.conn.poll():
                    return
                kind, payload = worker.conn.recv()
            except (EOFError, OSError):
                return
            if kind == "result":
                index, result = payload
                worker.task = None
                self.feed.finish(index, result)


def _unused_devices(devices: Sequence[str], used: int, *, dry_run: bool = False) -> str:
    """The warning that only the first ``used`` of ``devices`` got a worker process (as many
    as the jobs needed), naming the rest; with ``dry_run``, that only they would get one."""
    counts = collections.Counter(devices[used:])
    unused = ", ".join(f"{d} ×{n}" if n > 1 else d for d, n in counts.items())
    if dry_run:
        if used:
            said = f"{used} of the {len(devices)} devices listed would get a worker process"
            why = "as many as the images to upscale need"
        else:
            said, why = "no worker process would be started", "no image needs upscaling"
        return f"{said}, {why}; not needed: {unused}"
    if used:
        said = f"{used} of the {len(devices)} devices listed got a worker process"
        why = "as many as the images to upscale needed"
    else:
        said, why = "no worker process was started", "no image needed upscaling"
    return f"{said}, {why}; not started: {unused}"


def remove_job_leftovers(job: Job, *, until: float | None = None) -> None:
    """The claims and temporary files a worker ended outright while it had ``job`` left
    beside its outputs, once its process is gone (``claims.remove_leftovers``); with
    ``until`` (a ``time.monotonic`` deadline), a claim still held is waited for up to then
    (``ray_backend``: a killed actor's process may take a moment to go)."""
    for output in job.outputs:
        wait = 0.0 if until is None else max(0.0, until - time.monotonic())
        claims.remove_leftovers(output, wait=wait)


class _LookAhead:
    """A run's first jobs, looked at before any worker starts, to learn which of the listed
    devices will get one (``_Driver.start`` starts one per job that needs a worker, in the
    order listed, while devices remain), then handed to the driver with what was found.

    Jobs are taken from ``jobs`` until as many need a worker as there are ``devices``, the
    jobs are exhausted, or ``limit`` jobs have been looked at (what ``jobs.iter_jobs``
    plans ahead: the memory this holds is of that order); each is settled as the driver
    would settle it (``pipeline.planned_result``, then ``settle``: its output exists), and
    ``settle``'s answers are kept for the driver (:meth:`settle`), so no output is looked
    at twice.  :attr:`devices` are those that will get a worker: all of them when as many
    jobs need one, or when ``limit`` was reached first (the rest of an iterator is not
    known); ``jobs`` as the driver is to take them (:attr:`jobs`: the same objects, in
    order).
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        devices: Sequence[str],
        settle: Callable[[Job], Result | None] | None,
        limit: int = PLAN_AHEAD,
    ) -> None:
        self._settle = settle
        self._found: collections.deque[tuple[Job, Result | None]] = collections.deque()
        stream = iter(jobs)
        looked: list[Job] = []
        needed = 0
        exhausted = False
        while needed < len(devices) and len(looked) < limit:
            job = next(stream, None)
            if job is None:
                exhausted = True
                break
            looked.append(job)
            if planned_result(job) is not None:
                continue  # the driver settles it so without asking ``settle``
            found = None if settle is None else settle(job)
            if settle is not None:
                self._found.append((job, found))
            needed += found is None
        if not exhausted and needed < len(devices):  # ``limit`` reached first
            # a list's jobs to upscale are known, if not which of their outputs exist
            rest = jobs[len(looked) :] if isinstance(jobs, Sequence) else None
            needed = len(devices) if rest is None else needed + sum(j.runs for j in rest)
        self.devices = list(devices[:needed])
        self.jobs: Iterable[Job] = jobs
        if not isinstance(jobs, Sequence):
            self.jobs = itertools.chain(looked, stream)

    def settle(self, job: Job) -> Result | None:
        """``settle(job)``: the answer found looking ahead, for those jobs (the driver
        asks in job order), else asked now."""
        if self._found and self._found[0][0] is job:
            return self._found.popleft()[1]
        assert self._settle is not None
        return self._settle(job)


def run_parallel(
    jobs: Iterable[Job],
    factory: VariantFactory,
    devices: Sequence[str],
    options: Options,
    reporter: Reporter,
    *,
    total: int | None = None,
    inputs: Sequence[Path] | None = None,
    retries: int = 2,
    keep_results: bool | None = None,
    variants: Sequence[Variant] | None = None,
    on_workers: Callable[[list[str]], None] | None = None,
) -> Summary:
    """Process ``jobs`` on one worker process per entry of ``devices`` (started as jobs
    need them: no more than the jobs that need one; see ``_Driver.start``), results reported
    in job order; the summary is that of :func:`pipeline.run` (``interrupted`` on Ctrl-C;
    every result kept only with ``keep_results``, by default when ``jobs`` is a sequence).

    ``factory(device, warn)`` builds each worker's variants (``ModelSpec``); ``total`` is
    the number of jobs when known (for the progress bar); ``inputs`` the inputs that will be
    upscaled (default: those of ``jobs`` when it is a sequence; unknown for an iterator,
    such as a folder still being walked: see ``pipeline.ImageWorker``).  ``variants``,
    the driver's own (as the workers' but on any device, the model loaded or not), let the
    driver skip an input whose output exists before it counts as needing a worker
    (``ImageWorker.precheck``): a run resumed over a finished folder starts no worker.

    Before the run starts (before ``reporter.start``), its first jobs are looked at
    (``_LookAhead``) and ``on_workers`` is called with the devices that will get a worker:
    those the run needs, in the order listed (none when no job needs one), or every one
    when that is not known from the first :data:`jobs.PLAN_AHEAD` jobs.  Those devices
    share the memory budget and the cores; the listed devices that in the end got no
    worker are named in a warning.

    A dry run (``options.dry_run``) starts no worker: the driver plans each job itself
    with ``variants`` (required), as :func:`pipeline.run` does, but within the memory each
    worker would have (an image a run would refuse fails, with the run's line), and
    ``on_workers`` and the warning name the devices that would get one (:func:`_dry_run`).

    Raises:
        WorkerFailed: a worker could not load the model, or every worker died.
        ValueError: no device, or a dry run without ``variants``.
    """
    if not devices:
        raise ValueError("a parallel run needs at least one device")
    if options.dry_run and variants is None:
        raise ValueError("a parallel dry run plans the jobs with the driver's variants")
    if inputs is None and isinstance(jobs, Sequence):
        inputs = [job.input for job in jobs if job.runs]
    if total is None and isinstance(jobs, Sequence):
        total = len(jobs)
    checker = None if variants is None else ImageWorker(variants, options, inputs=inputs)
    precheck = None if checker is None else checker.settled
    ahead = _LookAhead(jobs, devices, precheck)
    if on_workers is not None:
        on_workers(ahead.devices)
    options = _worker_options(options, len(ahead.devices))
    if options.dry_run:
        assert variants is not None
        # planned within the memory each worker would have, as a run refuses an image
        planner = ImageWorker(variants, options, inputs=inputs)
        unused = functools.partial(_unused_devices, devices, dry_run=True)
        return _dry_run(ahead, len(devices), unused, planner, reporter, total, keep_results)
    cpu_workers = sum(d == "cpu" for d in ahead.devices)
    if isinstance(factory, ModelSpec) and factory.cpu_threads is None and cpu_workers > 1:
        # CPU workers share the cores rather than each running as many threads as there are
        threads = max(1, (os.cpu_count() or 1) // cpu_workers)
        factory = dataclasses.replace(factory, cpu_threads=threads)
    settle = None if precheck is None else ahead.settle

    t0 = time.perf_counter()
    driver = _Driver(
        ahead.jobs, factory, devices, options, reporter, inputs, retries, keep_results, settle
    )
    reporter.start(total)
    try:
        driver.start()
        driver.loop()
    except KeyboardInterrupt:
        driver.summary.interrupted = True
    finally:
        driver.stop()
        if checker is not None:
            checker.remove_empty_folders()
    if checker is not None:  # the driver's sweep, which saw each folder first
        driver.feed.summary.leftovers_removed = checker.leftovers_removed
    return driver.feed.end(time.perf_counter() - t0)


def _dry_run(
    ahead: _LookAhead,
    planned: int,
    unused: Callable[[int], str],
    planner: ImageWorker,
    reporter: Reporter,
    total: int | None,
    keep_results: bool | None,
) -> Summary:
    """:func:`run_parallel`'s dry run: no worker starts; ``planner`` (an ``ImageWorker``
    of the driver's, its options a dry run's with a worker's share of the memory, as
    :func:`_worker_options` gives them) plans each job a worker would have had, in
    job order, and the jobs the look-ahead settled keep its answers (no output is looked
    at twice).  When fewer jobs need a worker than the ``planned`` workers (a run starts
    one per job that needs one, while planned workers remain), ``unused(needed)`` is
    warned of: the listed devices a run would start no worker for, as a run names those it
    started none for (``ray_backend``: the actors it would not start)."""
    feed = JobFeed(
        ahead.jobs,
        reporter,
        _WINDOW,
        retries=0,
        keep_results=keep_results,
        dry_run=True,
        settle=ahead.settle,
    )
    t0 = time.perf_counter()
    reporter.start(total)
    needed = 0
    try:
        # Each job is reported as soon as it is planned: the window never fills.
        while (task := feed.next_task()) is not None:
            needed += 1
            index, job = task
            feed.finish(index, planner.process(job, index))
        if needed < planned:
            reporter.warning(unused(needed))
    except KeyboardInterrupt:
        feed.summary.interrupted = True
    return feed.end(time.perf_counter() - t0)
