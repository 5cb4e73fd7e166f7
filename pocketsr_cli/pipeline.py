"""Streaming a list of jobs through an upscaler: read -> infer -> write.

Three stages run concurrently: a reader thread decodes up to two images ahead, the calling
thread runs inference, and a writer thread encodes and writes behind it.  The queues between
them hold one item each, so memory stays bounded however many files there are.  Results are
reported strictly in job order through a :class:`Reporter`; the core never prints.

Failures of one image (unreadable file, out of memory, encode error) become a ``failed``
result and the run goes on.  ``KeyboardInterrupt`` stops reading and inference at once; the
file being written is either finished (complete, renamed into place) or its temporary file
is removed, so no half-written output is ever left under a final name.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pocketsr_cli.errors import ImageReadError, ImageWriteError, PocketSRError
from pocketsr_cli.imageio import (
    DecodedImage,
    OutputPlan,
    encode_image,
    extension_for,
    plan_output,
    probe,
    read_image,
    write_atomic,
)
from pocketsr_cli.jobs import Job

Status = Literal["ok", "skipped", "failed", "planned"]
"""What became of one input: ``ok`` written; ``skipped`` not processed (not an image, output
exists...; ``reason`` says why); ``failed`` (``error`` says why); ``planned`` would be
written, and only a dry run (``Options.dry_run``) gives it.  Only ``failed`` fails a run."""


class ImageUpscaler(Protocol):
    """What the pipeline needs from inference (see ``inference.Upscaler``)."""

    @property
    def scale(self) -> int: ...

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """``H x W x C`` uint8/uint16 (C in 1..4) -> ``H*s x W*s x C`` of the same dtype."""
        ...


@dataclass(frozen=True)
class Options:
    """Per-run choices that are not about naming (see ``jobs.Naming``)."""

    fmt: str | None = None
    quality: int = 95
    keep_metadata: bool = True
    overwrite: bool = False
    dry_run: bool = False
    outscale: float | None = None


@dataclass
class Result:
    """The outcome for one input; serialised as one JSON line by the CLI."""

    job: Job
    status: Status
    output: Path | None = None
    error: str | None = None
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    out_width: int | None = None
    out_height: int | None = None
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """Counts and timing for the whole run; ``dry_run`` is set for a dry run, whose results
    are ``planned`` (or ``skipped``/``failed``), never ``ok``."""

    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    dry_run: bool = False

    def count(self, status: Status) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]


class Reporter(Protocol):
    """Receives progress events.

    ``image_started`` and ``tile`` come from the inference thread, ``image_finished`` from the
    writer thread (in job order), ``start``/``finished`` from the caller: implementations
    must be thread-safe (rich's Progress is).
    """

    def start(self, total: int) -> None: ...
    def image_started(self, job: Job, index: int) -> None: ...
    def tile(self, done: int, total: int) -> None: ...
    def image_finished(self, result: Result) -> None: ...
    def warning(self, message: str) -> None: ...
    def finished(self, summary: Summary) -> None: ...


def output_size(width: int, height: int, scale: int, outscale: float | None) -> tuple[int, int]:
    """Final ``(width, height)``: ``scale``, or ``outscale`` when given, times the input."""
    factor = scale if outscale is None else outscale
    return max(1, round(width * factor)), max(1, round(height * factor))


def resize_output(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (``H×W×C``) resized to ``size`` = ``(width, height)`` as ``--outscale``
    does: area averaging to shrink, Lanczos-4 to enlarge; unchanged when already that size."""
    import cv2

    w, h = size
    if (pixels.shape[1], pixels.shape[0]) == (w, h):
        return pixels
    shrink = w < pixels.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
    out = cv2.resize(pixels, (w, h), interpolation=interp)
    return out.reshape(h, w, pixels.shape[2]) if out.ndim == 2 else out


@dataclass
class _Decoded:
    job: Job
    image: DecodedImage
    plan: OutputPlan
    output: Path
    seconds: float


@dataclass
class _Upscaled:
    decoded: _Decoded
    pixels: np.ndarray
    seconds: float


_DONE = object()


class _Stage(threading.Thread):
    """A worker thread whose unexpected exception is re-raised in the caller by ``join``."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._body = target
        self._stop_all = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._body()
        except BaseException as exc:  # re-raised in the main thread
            self.error = exc
            self._stop_all.set()


def _get(q: queue.Queue[Any], stop: threading.Event) -> object:
    """Next item, or ``_DONE`` once ``stop`` is set (a stage failed or we were interrupted)."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _DONE


def _put(q: queue.Queue[Any], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Run:
    def __init__(
        self, jobs: Sequence[Job], upscaler: ImageUpscaler, options: Options, reporter: Reporter
    ) -> None:
        self.jobs = jobs
        self.upscaler = upscaler
        self.options = options
        self.reporter = reporter
        self.stop = threading.Event()
        self.decoded: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.written: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.summary = Summary(dry_run=options.dry_run)

    # -- reader -------------------------------------------------------------------------
    def read_all(self) -> None:
        for job in self.jobs:
            if self.stop.is_set():
                return
            if not _put(self.decoded, self.read_one(job), self.stop):
                return
        _put(self.decoded, _DONE, self.stop)

    def read_one(self, job: Job) -> Result | _Decoded:
        if job.skip_reason is not None:
            return Result(job, "skipped", reason=job.skip_reason)
        if job.output.exists() and not self.options.overwrite:
            return Result(job, "skipped", output=job.output, reason=_EXISTS)
        if self.options.dry_run:
            return self.dry_run(job)
        t0 = time.perf_counter()
        try:
            image = read_image(job.input)
        except ImageReadError as exc:
            return Result(job, "failed", error=str(exc))
        plan = plan_output(
            image.format, self.options.fmt, has_alpha=image.has_alpha, bit_depth=image.bit_depth
        )
        output = job.output
        if plan.format != (self.options.fmt or image.format):  # e.g. RGBA asked as JPEG -> PNG
            output = output.with_suffix(extension_for(plan.format))
        if output != job.output and output.exists() and not self.options.overwrite:
            return Result(job, "skipped", output=output, reason=_EXISTS)
        return _Decoded(job, image, plan, output, time.perf_counter() - t0)

    def dry_run(self, job: Job) -> Result:
        try:
            width, height, _ = probe(job.input)
        except ImageReadError as exc:
            return Result(job, "failed", error=str(exc))
        ow, oh = output_size(width, height, self.upscaler.scale, self.options.outscale)
        return Result(
            job,
            "planned",
            output=job.output,
            reason="dry run",
            width=width,
            height=height,
            out_width=ow,
            out_height=oh,
        )

    # -- writer -------------------------------------------------------------------------
    def write_all(self) -> None:
        while True:
            item = self.written.get()
            if item is _DONE:
                return
            result = item if isinstance(item, Result) else self.write_one(item)
            self.summary.results.append(result)
            self.reporter.image_finished(result)

    def write_one(self, item: _Upscaled) -> Result:
        d = item.decoded
        t0 = time.perf_counter()
        metadata = d.image.metadata if self.options.keep_metadata else None
        result = Result(
            d.job,
            "ok",
            output=d.output,
            width=d.image.width,
            height=d.image.height,
            out_width=item.pixels.shape[1],
            out_height=item.pixels.shape[0],
            warnings=list(d.plan.warnings),
        )
        try:
            data = encode_image(
                item.pixels, d.plan, quality=self.options.quality, metadata=metadata
            )
            write_atomic(d.output, data)
        except ImageWriteError as exc:
            result.status, result.error = "failed", str(exc)
        result.seconds = d.seconds + item.seconds + time.perf_counter() - t0
        return result

    # -- inference (calling thread) -------------------------------------------------------
    def infer_all(self) -> None:
        index = 0
        while True:
            item = _get(self.decoded, self.stop)
            if item is _DONE:
                break
            index += 1
            if isinstance(item, _Decoded):
                item = self.infer_one(item, index)
            if not _put(self.written, item, self.stop):
                break

    def infer_one(self, d: _Decoded, index: int) -> _Upscaled | Result:
        self.reporter.image_started(d.job, index)
        t0 = time.perf_counter()
        try:
            out = self.upscaler.upscale(d.image.pixels, self.reporter.tile)
            size = output_size(
                d.image.width, d.image.height, self.upscaler.scale, self.options.outscale
            )
            out = resize_output(out, size)
        except PocketSRError as exc:
            return Result(
                d.job, "failed", error=str(exc), width=d.image.width, height=d.image.height
            )
        except (RuntimeError, MemoryError, ValueError) as exc:  # torch errors surface as these
            return Result(
                d.job,
                "failed",
                error=f"inference failed: {_one_line(exc)}",
                width=d.image.width,
                height=d.image.height,
            )
        return _Upscaled(d, out, time.perf_counter() - t0)

    def execute(self) -> Summary:
        t0 = time.perf_counter()
        self.reporter.start(len(self.jobs))
        reader = _Stage("pocketsr-reader", self.read_all, self.stop)
        writer = _Stage("pocketsr-writer", self.write_all, self.stop)
        reader.start()
        writer.start()
        try:
            self.infer_all()
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self.stop.set()
        finally:
            # The writer always gets its end marker after what is already queued: an image
            # that was upscaled before Ctrl-C is still written (atomically); nothing new
            # starts.  Joining is uninterruptible so that no temp file outlives us.
            self.stop.set()
            _put_while_alive(self.written, _DONE, writer)
            _join_quietly(writer)
            _join_quietly(reader)
        for stage in (reader, writer):
            if stage.error is not None:
                raise stage.error
        self.summary.seconds = time.perf_counter() - t0
        self.reporter.finished(self.summary)
        return self.summary


_EXISTS = "output exists (use --overwrite to replace it)"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _put_while_alive(q: queue.Queue[Any], item: object, consumer: threading.Thread) -> None:
    """Put ``item`` unless ``consumer`` has died (then nobody would take it)."""
    while consumer.is_alive():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
        except KeyboardInterrupt:
            continue


def _join_quietly(thread: threading.Thread) -> None:
    while thread.is_alive():
        try:
            thread.join(timeout=0.2)
        except KeyboardInterrupt:
            continue


def run(
    jobs: Sequence[Job], upscaler: ImageUpscaler, options: Options, reporter: Reporter
) -> Summary:
    """Process ``jobs`` in order and return the summary (``interrupted`` set on Ctrl-C).

    Never raises for a bad input file; raises only for bugs in a worker thread.
    """
    return _Run(jobs, upscaler, options, reporter).execute()
