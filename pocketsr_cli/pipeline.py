"""Streaming a list of jobs through an upscaler: read -> infer -> write.

Three stages run concurrently: a reader thread decodes up to two images ahead, the calling
thread runs inference, and a writer thread encodes and writes behind it.  The queues between
them hold one item each, so memory stays bounded however many files there are.  The writer
may encode several images at once in encoder threads (``Options.encode_threads``, by
default :func:`default_encode_threads`), holding at most one more image than it has
threads; it still writes each file and reports each result in job order.  Results are
reported strictly in job order through a :class:`Reporter`, and the run's :class:`Summary`
keeps their counts, not the results themselves; the core never prints.

A run may hold several variants of one model (``Variant``: ×2 and ×4): each image runs the
one ``sizing.pick_scale`` chooses for the factor its ``Options.target`` needs, and the
result is resized to the target's exact size (:func:`resize_output`).  An upscaler that can
draw each image for the target itself (``inference.Upscaler.upscale_for``: a PCSR network
opened with ``native_sizes``) is asked to, and then that resize has at most a pixel to do.

Every output gets pocketsr's record of how it was made (``provenance``) unless
``Options.record`` is None.  Existing outputs are never replaced without ``overwrite``; with
records on, they are also compared with what this run would write: the same settings give
a plain ``exists`` skip, other settings or no record at all a ``different-settings`` or
``unrecorded`` skip (:attr:`Summary.conflicts`) — a file someone may have edited by hand
is never overwritten, and the run says so instead of keeping it silently.  Files found by
scanning a folder (``Job.from_folder``) whose header carries a record are earlier outputs
and are skipped (``own-output``); that costs a header read per file, about a millisecond,
in the reader thread that decodes the file right after.

Failures of one image (unreadable file, out of memory, encode error) become a ``failed``
result and the run goes on.  Something other than a file where an output would go (a
folder, a FIFO, a broken link) fails that input and is left alone.  Warnings that libraries
raise while an image is decoded, upscaled or written go on that image's line
(``libwarnings``), never to the terminal as Python prints them.

Memory: before an image is decoded, what it needs at each stage is predicted from its
header (``memory.predict``: its size, channels and bit depth, the variant's scale and path,
the output's size and format).  An image that cannot fit in the run's budget
(``Options.memory_limit``, else the memory available when the run starts) fails with a line
that says how much it needs, without being decoded; the others are admitted one after
another while the predicted needs of the images in flight (decoded, upscaling, queued,
being written) fit in the budget together, so a run of large images works on one at a
time rather than being killed by the kernel.

An output's format is the one its name says: with ``--format same``, a file whose content
is not what its extension says (PNG bytes named ``.jpg``) is written in its name's format,
with a note, unless that format cannot hold it (transparency: PNG, as planned).

Racing runs: the reader claims each image's planned output before decoding it
(``claims``; :meth:`_Run.claim_work`) and the claim is held until the output is written or
the image fails, so an image another run is working on is ``skipped`` (``concurrent``) at
once and two identical runs share the work.  An output is renamed into place only while
its claim is held, and only if it is still as the reader saw it (absent; with
``overwrite``, the very file it meant to replace): an output that another run wrote
meanwhile is kept and this input is ``skipped`` (``concurrent``), so no output is written
twice.  Claims of images dropped when a run stops are let go as it winds down.

``KeyboardInterrupt`` (the CLI turns SIGTERM and SIGHUP into one too) stops reading and
inference at once; the file being written is either finished (complete, renamed into
place) or its temporary file is removed, so no half-written output is ever left under a
final name.  Winding down cannot itself be interrupted, and every input not finished is
reported as ``skipped`` (``interrupted``), so that each input still gets one result.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pocketsr_cli import claims, libwarnings, memory, provenance
from pocketsr_cli.atomicfile import MadeFolders, TempSweeper
from pocketsr_cli.devices import compute_label
from pocketsr_cli.errors import (
    ImageReadError,
    ImageWriteError,
    PocketSRError,
    disk_stop,
    windows_hint,
)
from pocketsr_cli.imageio import (
    OUTPUT_FORMATS,
    DecodedImage,
    FileStamp,
    ImageHeader,
    OutputPlan,
    drop_opaque_alpha,
    embeds_provenance,
    encode_image,
    extension_for,
    file_stamp,
    format_from_name,
    format_label,
    format_of_path,
    plan_for,
    read_header,
    read_image,
    read_provenance_text,
    side_limit_problem,
    sidecar_written,
    transparency_switch,
    write_atomic,
)
from pocketsr_cli.jobs import Job, kind_of, not_a_file
from pocketsr_cli.sizing import Target, pick_scale
from pocketsr_cli.spelling import (
    DEVICES,
    FORMAT,
    MAX_MEMORY,
    MODEL,
    OUTPUT,
    OVERWRITE,
    SCALE,
    TILE,
    Option,
    offers,
)

Status = Literal["ok", "skipped", "failed", "planned"]
"""What became of one input: ``ok`` written; ``skipped`` not processed (not an image, output
exists...; ``reason`` says why, ``reason_code`` which case it is); ``failed`` (``error``
says why); ``planned`` would be written, and only a dry run (``Options.dry_run``) gives it.
Only ``failed`` fails a run."""

ReasonCode = Literal[
    "not-image",
    "own-output",
    "link-loop",
    "link-duplicate",
    "duplicate",
    "exists",
    "different-settings",
    "unrecorded",
    "concurrent",
    "interrupted",
    "stopped",
    "dry-run",
]
"""Why an input was skipped (or planned), for machines:

* ``not-image``: not an image file; ``own-output``: an earlier output (by its name or its
  record), found while scanning a folder;
* ``link-loop``, ``link-duplicate``: a symbolic link to a folder that was not followed (it
  leads back to a folder containing it; it leads to a folder scanned at another path);
* ``duplicate``: the same file named twice for the same output (``a.jpg a.jpg``, a folder
  and a file in it): upscaled once, at its first mention;
* ``exists``: its output exists and was made with these settings (or records are off);
* ``different-settings``: its output exists but its record says other settings;
* ``unrecorded``: its output exists without a record (another program, an older pocketsr,
  ``--no-provenance``, or an editor that dropped it);
* ``concurrent``: another run is writing its output, or wrote it while this run worked;
* ``interrupted``: the run was stopped before this input was finished;
* ``stopped``: the run stopped before this input was finished because an output could
  not be written on a full, over-quota or read-only disk (``Summary.stopped`` says which);
* ``dry-run``: would be written."""

CONFLICTS: tuple[ReasonCode, ...] = ("different-settings", "unrecorded")
"""Skips where an existing output was kept although it may not be what this run makes."""


class ImageUpscaler(Protocol):
    """What the pipeline needs from inference (see ``inference.Upscaler``).

    An upscaler may also have ``upscale_for(pixels, target, on_tile)``, the pixels drawn
    for ``target`` (a ``sizing.Target``; the pipeline resizes them to exactly its size),
    and ``scale_for(width, height, target)``, the whole factor it then upscales by (for
    the memory estimate); without them, :meth:`upscale` and :attr:`scale` are used.
    """

    @property
    def scale(self) -> int: ...

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """``H x W x C`` uint8/uint16 (C in 1..4) -> ``H*s x W*s x C`` of the same dtype."""
        ...


@dataclass(frozen=True)
class Variant:
    """One network a run may use, and what names it in results and records.

    Attributes:
        upscaler: runs it; its ``scale`` is the variant's factor.
        model: its name (``pocketsr-compact-x4``), for ``--json`` and the record.
        sha256: its weights' SHA-256, when known (recorded and compared).
        compute: where and how it runs (``"cpu fp32"``; recorded, never compared).
    """

    upscaler: ImageUpscaler
    model: str = ""
    sha256: str | None = None
    compute: str | None = None

    @property
    def scale(self) -> int:
        return int(self.upscaler.scale)

    def compute_for(self, dtype: np.dtype | type) -> str | None:
        """``compute`` as it draws an image of ``dtype`` now (``inference.Upscaler.
        precision_for``): ``cpu uint8`` on a resampler's 8-bit path, which no precision
        applies to, and the device in fp32 once a half-precision pass gave NaN/inf, so that
        an image's line and record never name a precision that did not draw it.  An
        upscaler without ``precision_for`` (a test's stand-in): ``compute`` as given."""
        precision_for = getattr(self.upscaler, "precision_for", None)
        if self.compute is None or not callable(precision_for):
            return self.compute
        return f"{self.compute.rsplit(' ', 1)[0]} {precision_for(dtype)}"

    @property
    def compute_label(self) -> str | None:
        """What :meth:`compute_for` says before any image is read, for a run's first line:
        an 8-bit image's, with a 16-bit image's after it when that differs
        (``cpu uint8 (16-bit: bf16)``: a resampler's 8-bit path)."""
        eight, sixteen = self.compute_for(np.uint8), self.compute_for(np.uint16)
        if eight is None or sixteen is None:
            return eight
        return compute_label(eight, sixteen)

    @property
    def routing(self) -> str | None:
        """A PCSR network's routing (``Upscaler.routing_label``; recorded and compared)."""
        label = getattr(self.upscaler, "routing_label", None)
        return label if isinstance(label, str) else None


@dataclass(frozen=True)
class Sharers:
    """Who share a run's memory limit when it is split (:meth:`MemoryLimit.per_worker`), as
    its messages name them: ``noun`` (``workers``), and ``option``, the option that says how
    many there are (``spelling.DEVICES``), which a refusal advises fewer of."""

    noun: str
    option: Option


WORKER_PROCESSES = Sharers("workers", DEVICES)
"""``--devices``' worker processes (``parallel``)."""


@dataclass(frozen=True)
class MemoryLimit:
    """The host memory the images a run has in flight may need together (its budget), and
    what a refusal names it as: the user's limit, a worker's share of it, or of the memory
    available.

    Attributes:
        bytes: the budget, in bytes; None: what is available when the run starts
            (:meth:`budget`).
        source: what messages name as the user's limit when it is not the option itself
            (which they name as the face spells it, ``spelling.MAX_MEMORY``): the command
            line's ``POCKETSR_MAX_MEMORY`` when the limit was read from that variable.
        workers: set when ``bytes`` is not the user's limit as given but this worker's
            share (:meth:`per_worker`): of the user's limit (``shared``), or, when none was
            given, of the memory available, split among that many worker processes;
            messages then say so, rather than name an option the user did not give.
            None: ``bytes`` is the limit as given (or None: what is available).
        shared: the user's limit when ``bytes`` is one of ``workers`` (more than one)
            equal shares of it: messages then name the share and the limit it is a share
            of.  None: not shared.
        among: who the ``workers`` are, as messages name them (``--devices``' worker
            processes, or a local cluster's Ray actors: ``ray_backend``).
    """

    bytes: int | None = None
    source: str | None = None
    workers: int | None = None
    shared: int | None = None
    among: Sharers = WORKER_PROCESSES

    def budget(self) -> int | None:
        """The bytes a run admits images within: ``bytes``, else the memory available now
        (``memory.host_available_bytes``); None: no limit given and none known."""
        return self.bytes or memory.host_available_bytes()

    def per_worker(self, workers: int, among: Sharers = WORKER_PROCESSES) -> MemoryLimit:
        """This limit as each of ``workers`` worker processes (at least 1) runs with it
        (``parallel``; ``among`` names them, in messages): the images in flight on all of
        them share the host's memory, so each gets an equal share of the user's limit,
        or, with none given, of the host's RAM, within what ``ulimit -v`` lets one
        process map (a limit every worker has for itself, not a share of the driver's);
        ``bytes`` None when neither is known."""
        shares = max(1, workers)
        if self.bytes:
            shared = self.bytes if shares > 1 else None
            return MemoryLimit(
                max(1, self.bytes // shares),
                self.source,
                workers=shares if shared else None,
                shared=shared,
                among=among,
            )
        ram = memory.host_available_bytes(address_space=False)
        limit = memory.address_space_headroom_bytes()
        found = [v for v in (None if ram is None else ram // shares, limit) if v is not None]
        return MemoryLimit(
            max(1, min(found)) if found else None, self.source, workers=shares, among=among
        )

    def allowance(self, budget: int, need: int) -> str:
        """What a refusal says an image's ``need`` is more than, ``budget`` being what the
        run admits images within (:meth:`budget`): ``the 1 KiB --max-memory allows``, ``the
        2 GiB of memory available``, ``the 2 GiB of memory each of the 4 workers may use``
        or ``the 2 GiB share of the 8 GiB --max-memory each of the 4 workers may use``
        (``Ray actors`` rather than ``workers`` as :attr:`among` names them)."""
        allowed = memory.describe_bytes(budget, apart_from=need)
        workers = self.workers or 0
        who = f"each of the {workers} {self.among.noun}"
        source = self.source or MAX_MEMORY
        if self.shared is not None:  # the user's limit, split among the workers
            limit = memory.describe_bytes(self.shared)
            return f"the {allowed} share of the {limit} {source} {who} may use"
        if not self.bytes or workers == 1:
            return f"the {allowed} of memory available"
        if workers:  # a share of what is available: no option of the user's to name
            return f"the {allowed} of memory {who} may use"
        return f"the {allowed} {source} allows"


@dataclass(frozen=True)
class Options:
    """Per-run choices that are not about naming (see ``jobs.Naming``).

    Attributes:
        quality: ``--quality`` for JPEG and WebP outputs; None: not asked, which writes
            ``imageio.DEFAULT_QUALITY`` and keeps a lossless WebP lossless as WebP
            (``imageio.plan_output``).
        target: the output size (``sizing.Target``); None: the factor of the run's only
            variant.
        record: write each output's provenance record with these run-wide settings and
            compare existing outputs' records with it; None: write none, and skip
            existing outputs by name alone.
        memory_limit: the host memory the images in flight may need together, and how a
            refusal names it (:class:`MemoryLimit`; see the module docs); by default what
            is available when the run starts.
        encode_threads: how many images the writer encodes at once (at least 1); None:
            :func:`default_encode_threads`.  Results, files and records are the same
            whatever the number; only the time differs.
    """

    fmt: str | None = None
    quality: int | None = None
    keep_metadata: bool = True
    overwrite: bool = False
    dry_run: bool = False
    target: Target | None = None
    record: provenance.RunSettings | None = None
    memory_limit: MemoryLimit = MemoryLimit()
    encode_threads: int | None = None


def default_encode_threads() -> int:
    """The encoder threads a run uses unless told (``Options.encode_threads``): a quarter
    of the CPUs this process may run on, at least 1 and at most 4.

    Encoding is the slow end of a fast run: a 4K JPEG takes 40-200 ms on one core while a
    GPU upscales it in about 25 ms, and the JPEG and PNG encoders (OpenCV's, zlib's)
    release the GIL, so threads do encode in parallel (``imageio.jpeg_encode`` says why
    JPEG is not Pillow's).  A quarter of the CPUs leaves the rest to inference (PyTorch's
    CPU threads, or the GPU's driver thread), the reader's decoding and the rest of the
    machine; 2-core and 3-core machines, where CPU inference takes every core anyway, keep
    a single writer.  Four encoders write about 20-40 4K JPEGs a second, more than one GPU
    upscales; more would only hold more images in memory (each encoder holds one, see
    :meth:`_Run.write_overlapped`).
    """
    try:
        cpus = len(os.sched_getaffinity(0))  # what this process may use (taskset, cpusets)
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return min(4, max(1, cpus // 4))


@dataclass
class Result:
    """The outcome for one input; serialised as one JSON line by the CLI."""

    job: Job
    status: Status
    output: Path | None = None
    error: str | None = None
    reason: str | None = None
    reason_code: ReasonCode | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    out_width: int | None = None
    out_height: int | None = None
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    heavy_fraction: float | None = None  # PCSR: share of output pixels on the heavy path
    device: str | None = None
    """Where and how this image was drawn (``"cpu fp32"``, ``"cpu uint8"``,
    :meth:`Variant.compute_for`),
    when it was; None: the run's."""
    stops_run: str | None = None
    """On a ``failed`` result whose output's disk is full, over quota or read-only
    (``errors.disk_stop``): why, and the run stops there (:attr:`Summary.stopped`)."""


FAILURES_KEPT = 100
"""Failed results a :class:`Summary` keeps when it does not keep every result: the run's
last lines list these; the others are counted (each had its line as it failed)."""


class Summary:
    """What the end of a run needs, in memory that does not grow with the number of inputs
    (a 200,000-file folder): counts per status, the conflicts, the ``ok`` images' seconds
    and pixels, and the failed results (:attr:`failed`: every one up to
    :data:`FAILURES_KEPT`, then only counted).  Each result is reported as it comes
    (``Reporter.image_finished``) and tallied here (:meth:`add`).

    Every result is kept (:attr:`results`) only when asked: ``Summary(results)``, or
    ``keep_results`` (:meth:`for_jobs`; ``run``'s default: when the jobs were given as a
    list, which the caller holds already — the review page and ``pocketsr bench`` read the
    results —, never for an iterator such as ``jobs.iter_jobs``).  Then every failed
    result is kept too.

    ``seconds`` is the run's wall time; ``interrupted`` is set on Ctrl-C; ``stopped`` says
    why the run stopped early, once a result's output could not be written on a full or
    read-only disk (:attr:`Result.stops_run`: no other output could be written there, so
    the rest is not upscaled for nothing; the inputs not finished are ``skipped``,
    ``stopped``); ``dry_run`` for a dry run, whose results are ``planned`` (or
    ``skipped``/``failed``), never ``ok``; ``closed`` when the caller closed the run's
    generator before its end (:func:`stream`: the Python API's loop left early): the
    totals are then of what was done, the images written as the run wound down included,
    and the inputs not reached have no result.  ``leftovers_removed`` counts the temporary
    files that killed runs had left in the output folders and this run removed
    (``atomicfile.TempSweeper``; with ``--devices`` and ``--ray``, the driver's sweep:
    what a worker's own sweep finds later is not counted).
    """

    def __init__(
        self,
        results: Iterable[Result] | None = None,
        *,
        seconds: float = 0.0,
        interrupted: bool = False,
        dry_run: bool = False,
        keep_results: bool = False,
    ) -> None:
        self.seconds = seconds
        self.interrupted = interrupted
        self.stopped: str | None = None
        self.dry_run = dry_run
        self.closed = False
        self.leftovers_removed = 0
        self.counts: collections.Counter[Status] = collections.Counter()
        self.conflicts = 0
        """Skips that kept an existing output made otherwise, or of unknown origin
        (``reason_code`` in :data:`CONFLICTS`)."""
        self.ok_seconds = 0.0  # the ``ok`` images' own seconds, added in job order
        self.in_pixels = 0  # the ``ok`` images' input pixels
        self.out_pixels = 0  # and output pixels
        self._devices: dict[str, None] = {}  # the ``ok`` images' devices, in order seen
        self._failed: list[Result] = []
        keep = keep_results or results is not None
        self._results: list[Result] | None = [] if keep else None
        for result in results or ():
            self.add(result)

    @classmethod
    def for_jobs(
        cls, jobs: Iterable[Job], *, keep_results: bool | None = None, dry_run: bool = False
    ) -> Summary:
        """An empty summary for a run of ``jobs``, keeping every result when
        ``keep_results`` says so (None: when ``jobs`` is a sequence, already held)."""
        keep = isinstance(jobs, Sequence) if keep_results is None else keep_results
        return cls(dry_run=dry_run, keep_results=keep)

    def add(self, result: Result) -> None:
        """Tally ``result`` (the run's next one, in job order)."""
        self.counts[result.status] += 1
        if result.reason_code in CONFLICTS:
            self.conflicts += 1
        if result.stops_run and self.stopped is None:
            self.stopped = result.stops_run
        if result.status == "ok":
            self.ok_seconds += result.seconds or 0
            self.in_pixels += (result.width or 0) * (result.height or 0)
            self.out_pixels += (result.out_width or 0) * (result.out_height or 0)
            if result.device:
                self._devices[result.device] = None
        elif result.status == "failed" and (
            self._results is not None or len(self._failed) < FAILURES_KEPT
        ):
            self._failed.append(result)
        if self._results is not None:
            self._results.append(result)

    @property
    def devices(self) -> str | None:
        """Where and how the ``ok`` images were drawn (:attr:`Result.device`), each once in
        the order first seen, joined by ``, `` (``cpu uint8, cpu bf16``: a resampler given
        8- and 16-bit images); None when no image was drawn or none said."""
        return ", ".join(self._devices) or None

    @property
    def stopped_by_disk(self) -> bool:
        """Whether the run ended because no more outputs could be written
        (:attr:`stopped`) rather than by a signal, which wins when both came
        (:attr:`interrupted`): the inputs not finished are then ``stopped``, not
        ``interrupted``, and the log tells the user to make room."""
        return self.stopped is not None and not self.interrupted

    def __repr__(self) -> str:
        """The totals, as ``FolderRun.summary`` prints in a REPL: ``Summary(ok=3,
        skipped=1, failed=0, seconds=0.41, interrupted=False, stopped=None,
        leftovers_removed=0)`` (``planned=N, dry_run=True`` for a dry run; ``conflicts``
        where outputs made otherwise were kept; ``closed=True`` for a run closed early)."""
        statuses: tuple[Status, ...] = ("planned",) if self.dry_run else ("ok",)
        counts = [f"{s}={self.counts[s]}" for s in (*statuses, "skipped", "failed")]
        extra = [f"conflicts={self.conflicts}"] if self.conflicts else []
        extra += ["dry_run=True"] if self.dry_run else []
        extra += ["closed=True"] if self.closed else []
        fields = [
            *counts,
            f"seconds={self.seconds:.2f}",
            f"interrupted={self.interrupted}",
            f"stopped={self.stopped!r}",
            f"leftovers_removed={self.leftovers_removed}",
            *extra,
        ]
        return f"Summary({', '.join(fields)})"

    @property
    def total(self) -> int:
        """Inputs with a result."""
        return sum(self.counts.values())

    def count(self, status: Status) -> int:
        return self.counts[status]

    @property
    def leftovers_note(self) -> str | None:
        """The line a run ends with when it removed what killed runs had left
        (:attr:`leftovers_removed`), or None."""
        if not self.leftovers_removed:
            return None
        return (
            f"removed {self.leftovers_removed} leftover temporary file(s) of an interrupted "
            "run from the output folder(s)"
        )

    @property
    def conflicts_warning(self) -> str | None:
        """The warning a run ends with when it kept outputs it did not make as asked
        (:attr:`conflicts`; each had its ``skipped`` line), or None: the command line's
        after its summary, the Python API's at the end of ``upscale_folder``."""
        if not self.conflicts:
            return None
        return (
            f"{self.conflicts} existing output(s) were kept although they were not made "
            f"with these settings or carry no pocketsr record; use {OVERWRITE} to redo them"
        )

    @property
    def failed(self) -> list[Result]:
        """The failed results kept, in job order: all of them unless ``count("failed")``
        says there were more (see :data:`FAILURES_KEPT`)."""
        return self._failed

    @property
    def keeps_results(self) -> bool:
        return self._results is not None

    @property
    def results(self) -> list[Result]:
        """Every result, in job order.

        Raises:
            RuntimeError: this summary keeps counts only (see the class docs).
        """
        if self._results is None:
            raise RuntimeError(
                "this run's summary keeps counts, not every result: run it with "
                "keep_results=True, or collect the results with a Reporter"
            )
        return self._results


class Reporter(Protocol):
    """Receives progress events.

    ``image_started`` and ``tile`` come from the inference thread, ``image_finished`` from the
    writer thread (in job order), ``start``/``finished`` from the caller: implementations
    must be thread-safe (rich's Progress is).  ``start``'s total is None when the jobs
    are streamed from a folder still being walked (``jobs.iter_jobs``).
    """

    def start(self, total: int | None) -> None: ...
    def image_started(self, job: Job, index: int) -> None: ...
    def tile(self, done: int, total: int) -> None: ...
    def image_finished(self, result: Result) -> None: ...
    def warning(self, message: str) -> None: ...
    def finished(self, summary: Summary) -> None: ...


class NullReporter:
    """A :class:`Reporter` that ignores every event: subclass it and override only the
    events you need."""

    def start(self, total: int | None) -> None:
        pass

    def image_started(self, job: Job, index: int) -> None:
        pass

    def tile(self, done: int, total: int) -> None:
        pass

    def image_finished(self, result: Result) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def finished(self, summary: Summary) -> None:
        pass


def scales_for_sizes(
    jobs: Sequence[Job], target: Target, scales: Sequence[int], fallback: int
) -> list[int]:
    """The variant factors a size ``target`` needs for ``jobs``, ascending.

    Reads each input's header (:func:`~pocketsr_cli.imageio.read_header`; planning's,
    :attr:`Job.header`, while its file is unchanged: ``jobs.with_headers`` reads them
    for the run), so that every variant the run will use is loaded, and any model error
    met, before the first image.  Inputs that will be
    skipped or cannot be read are left out; ``[fallback]`` when none is left.
    """
    needed: set[int] = set()
    for job in jobs:
        if not job.runs:
            continue
        try:
            header = read_header(job.input, known=job.header)
        except ImageReadError:
            continue
        needed.add(pick_scale(target.factor_for(header.width, header.height), scales))
    return sorted(needed) or [fallback]


def kept_lossless(
    path: Path, requested: str | None, quality: int | None, *, known: ImageHeader | None = None
) -> bool:
    """Whether the image at ``path``, written in ``requested`` (None: its own format) at
    ``quality`` (None: not asked), is written as a lossless WebP (``plan_output``: it is
    one, kept as WebP, and no quality was asked), told from its header without reading
    it when the answer is no anyway; False when the header cannot be read (the input
    then fails).  ``known``: its header as read before (``Job.header``), used while the
    file is unchanged (``read_header``)."""
    if quality is not None or requested not in (None, "webp"):
        return False
    try:
        header = read_header(path, known=known)
    except ImageReadError:
        return False
    return plan_for(header, requested).lossless


def resize_output(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (``H×W×C``) resized to ``size`` = ``(width, height)`` as ``--outscale``
    does: area averaging to shrink, Lanczos-4 to enlarge; unchanged when already that size.

    Raises:
        MemoryError: the result does not fit (OpenCV says so with its own ``cv2.error``,
            which ``memory.is_out_of_memory`` and the callers' handlers do not know).
    """
    import cv2

    w, h = size
    if (pixels.shape[1], pixels.shape[0]) == (w, h):
        return pixels
    shrink = w < pixels.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
    try:
        out = cv2.resize(pixels, (w, h), interpolation=interp)
    except cv2.error as exc:
        if exc.code != cv2.Error.StsNoMem:
            raise
        raise MemoryError(f"cannot allocate the {w}x{h} result: {exc.err}") from exc
    return out.reshape(h, w, pixels.shape[2]) if out.ndim == 2 else out


def _stamp_at(path: Path) -> FileStamp | None:
    """The :data:`~pocketsr_cli.imageio.FileStamp` of the file at ``path``: what tells it
    from another written there later; None when nothing is there."""
    try:
        return file_stamp(os.stat(path))
    except FileNotFoundError:
        return None


def predicted_need(
    path: Path,
    header: ImageHeader,
    *,
    scale: int,
    target: tuple[int, int],
    requested: str | None,
    profile: memory.UpscalerMemory,
    quality: int | None = None,
) -> int:
    """Predicted peak host memory (``memory.predict``) for upscaling the image at ``path``,
    whose header is ``header``, by ``scale`` and resizing it to ``target`` with an upscaler
    of ``profile`` (:func:`upscaler_memory`), written in ``requested`` (None: as
    ``plan_output`` decides) at ``quality`` (``Options.quality``): what a run admits an
    image by, before decoding it."""
    plan = plan_for(header, requested, quality=quality)
    try:
        file_bytes = os.stat(path).st_size
    except OSError:
        file_bytes = 0
    return memory.predict(
        size=(header.width, header.height),
        channels=header.channels,
        bit_depth=header.bit_depth,
        scale=scale,
        target=target,
        out_format=plan.format,
        out_bit_depth=plan.bit_depth,
        out_lossless=plan.lossless,
        out_quality=quality,
        file_bytes=file_bytes,
        upscaler=profile,
    ).peak


def upscaler_memory(upscaler: ImageUpscaler) -> memory.UpscalerMemory:
    """How ``upscaler`` uses host memory: its own ``memory_profile()`` when it has one, else
    what the public attributes of an ``inference.Upscaler`` say (``uint8_path``, or its
    descriptor's 8-bit path used on the CPU without an ensemble; its tile policy's CPU
    budget, and per image its ``working_bytes_for``), else the network path with no
    working set (a test's stand-in)."""
    own = getattr(upscaler, "memory_profile", None)
    if callable(own):
        profile = own()
        if isinstance(profile, memory.UpscalerMemory):
            return profile
    model = getattr(upscaler, "model", None)
    if model is None:
        return memory.UpscalerMemory(uint8_path=False, working_bytes=0)
    device = getattr(getattr(getattr(upscaler, "compute", None), "device", None), "type", "cpu")
    uint8 = getattr(upscaler, "uint8_path", None)
    if not isinstance(uint8, bool):
        uint8 = (
            getattr(model, "upscale_uint8", None) is not None
            and device == "cpu"
            and not getattr(upscaler, "ensemble", False)
        )
    working_for = None
    if device == "cpu":
        working = int(getattr(getattr(upscaler, "policy", None), "cpu_budget_bytes", memory.GIB))
        working_for = getattr(upscaler, "working_bytes_for", None)
    else:  # tiles live in device memory; the host holds small transfers
        working = 1 << 26
    return memory.UpscalerMemory(
        uint8_path=uint8,
        anchored=getattr(model, "mean_anchor", None) is not None,
        working_bytes=working,
        working_for=working_for if callable(working_for) else None,
    )


class _MemoryGate:
    """Admits images while the predicted needs of those in flight fit in ``budget``
    (None: always); one image alone is always admitted (a need larger than the budget is
    refused before it gets here)."""

    def __init__(self, budget: int | None, stop: threading.Event) -> None:
        self.budget = budget
        self.in_use = 0
        self.stop = stop
        self.changed = threading.Condition()

    def acquire(self, need: int) -> bool:
        """Wait until ``need`` fits; False when the run is stopped meanwhile."""
        with self.changed:
            while (
                self.budget is not None
                and self.in_use
                and self.in_use + need > self.budget
                and not self.stop.is_set()
            ):
                self.changed.wait(0.1)
            if self.stop.is_set():
                return False
            self.in_use += need
            return True

    def release(self, need: int) -> None:
        if not need:
            return
        with self.changed:
            self.in_use -= need
            self.changed.notify_all()


@dataclass
class _Decoded:
    job: Job
    image: DecodedImage
    plan: OutputPlan
    output: Path
    variant: Variant
    seconds: float
    seen: FileStamp | None = None  # the output as the reader saw it (None: absent)
    reserved: int = 0  # bytes held in the memory gate until it is written
    notes: list[str] = field(default_factory=list)  # for its line, from decoding on
    claim: claims.Claim | None = None  # its planned output's claim, held until written


@dataclass
class _Upscaled:
    decoded: _Decoded
    pixels: np.ndarray
    seconds: float
    heavy_fraction: float | None = None
    compute: str | None = None  # Variant.compute_for this image, right after its pass


@dataclass
class _Encoded:
    """An upscaled image's output bytes, ready for :meth:`_Run.store` to write; ``data`` is
    None when encoding failed (``result`` is then ``failed``)."""

    item: _Upscaled
    result: Result
    record: str | None  # the provenance record, None when records are off
    data: bytes | None
    seconds: float  # spent encoding


_DONE = object()
_WRITER_POLL = 0.01  # seconds between two looks at the pool while images are encoding


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
        self,
        jobs: Iterable[Job],
        variants: Sequence[Variant],
        options: Options,
        reporter: Reporter,
        inputs: Sequence[Path] | None = None,
        keep_results: bool | None = None,
    ) -> None:
        if not variants:
            raise ValueError("a run needs at least one variant")
        self.by_scale = {v.scale: v for v in variants}
        if options.target is None and len(self.by_scale) > 1:
            raise ValueError("a run with several variants needs a target to choose among them")
        self.target = options.target or Target.factor(variants[0].scale)
        self.total = len(jobs) if isinstance(jobs, Sequence) else None
        self.jobs: Iterator[Job] = iter(jobs)
        self.taken: collections.deque[Job] = collections.deque()  # read, not yet reported
        self.options = options
        # Inputs by path and by file, for outputs that only decoding could name (read_one);
        # unknown while a folder is still being walked (then see plan_decoded).
        self.inputs_known = inputs is not None or isinstance(jobs, Sequence)
        running: list[Path] = []
        if inputs is not None:
            running = list(inputs)
        elif isinstance(jobs, Sequence):
            running = [job.input for job in jobs if job.runs]
        self.inputs = {_real(path) for path in running}
        self.input_keys = {key for path in running if (key := _key(path)) is not None}
        self.reporter = reporter
        self.stop = threading.Event()
        self.decoded: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.written: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.finished: queue.SimpleQueue[Result] = queue.SimpleQueue()  # written, not yielded
        self.summary = Summary.for_jobs(jobs, keep_results=keep_results, dry_run=options.dry_run)
        self.profiles = {v.scale: upscaler_memory(v.upscaler) for v in variants}
        self.budget = options.memory_limit.budget()
        self.gate = _MemoryGate(self.budget, self.stop)
        self.held: set[claims.Claim] = set()  # the images' claims (claim_work)
        self.held_lock = threading.Lock()
        if options.encode_threads is not None and options.encode_threads < 1:
            raise ValueError(f"encode_threads must be at least 1, not {options.encode_threads}")
        self.encode_threads = options.encode_threads or default_encode_threads()
        # Temporary files and claims that killed runs left in the output folders (one look
        # per folder, in settle).
        self.sweeper = TempSweeper(claims.sweep_stale_claims)
        # The output folders this run makes: those left empty are removed at its end.
        self.made = MadeFolders()

    # -- reader -------------------------------------------------------------------------
    def read_all(self) -> None:
        for job in self.jobs:
            self.taken.append(job)
            if self.stop.is_set():
                return
            if not _put(self.decoded, self.read_one(job), self.stop):
                return
        _put(self.decoded, _DONE, self.stop)

    def read_one(self, job: Job) -> Result | _Decoded:
        """Decode ``job``'s input (or the result that ends it here), with what libraries
        warned about meanwhile (headers and records read, decoding) as notes for its line."""
        notes: list[str] = []
        with libwarnings.collecting(notes):
            item = self.read_unnoted(job)
        if notes:
            (item.warnings if isinstance(item, Result) else item.notes)[:0] = notes
        return item

    def read_unnoted(self, job: Job) -> Result | _Decoded:
        seen = self.settle(job)
        if isinstance(seen, Result):
            return seen
        if self.options.dry_run:
            return self.dry_run(job)
        claimed = self.claim_work(job)
        if isinstance(claimed, Result):
            return claimed
        claim, seen = claimed
        try:
            item = self.decode(job, seen)
        except BaseException:
            self.let_go(claim)
            raise
        if isinstance(item, Result):
            self.let_go(claim)
        else:
            item.claim = claim
        return item

    def claim_work(self, job: Job) -> Result | tuple[claims.Claim, FileStamp | None]:
        """Claim ``job``'s planned output for all of its work, so that another run given
        the same input skips it at once (``concurrent``) rather than upscale it for nothing:
        two identical runs share the work.  The claim and the output as it is now (another
        run may have finished it just before), or the result that ends ``job`` here: the
        claim held elsewhere, the output now there, or a claim that cannot be made."""
        try:
            claim = claims.acquire(job.output)
        except OSError as exc:  # its folder or claim file cannot be made
            error = (
                f"cannot write {job.output}: {exc.strerror or exc}{windows_hint(exc, job.output)}"
            )
            return Result(job, "failed", error=error, stops_run=disk_stop(exc, job.output))
        if claim is None:
            reason = claims.describe_busy(job.output)
            return Result(job, "skipped", reason=reason, reason_code="concurrent")
        with self.held_lock:
            self.held.add(claim)
        seen = self.look_at_output(job, job.output)
        if isinstance(seen, Result):
            self.let_go(claim)
            return seen
        return claim, seen

    def let_go(self, claim: claims.Claim | None) -> None:
        """Release a claim :meth:`claim_work` made (None: nothing to do)."""
        if claim is None:
            return
        claim.release()
        with self.held_lock:
            self.held.discard(claim)

    def let_go_all(self) -> None:
        """Release every claim still held: the images dropped when the run stopped."""
        with self.held_lock:
            held, self.held = self.held, set()
        for claim in held:
            claim.release()

    def settle(self, job: Job) -> Result | FileStamp | None:
        """What is decided about ``job`` before its input is decoded: the result that ends
        it here (planned, not a file, an earlier output by its record, an existing output,
        or its ``alt_output`` written already: :meth:`made_as_alt`), or its output as it
        is now (None: absent).

        The first job whose output goes to a folder (unless the run is a dry run) removes
        the temporary files and the claims that killed runs left in that folder, even if
        that output is then skipped as existing (``atomicfile.sweep_stale_temps``,
        ``claims.sweep_stale_claims``; once per folder), and notes the output folders
        this run is to make (:class:`~pocketsr_cli.atomicfile.MadeFolders`)."""
        planned = planned_result(job)
        if planned is not None:
            return planned
        # Checked again: the file may have been replaced since the run was planned.
        failure = not_a_file(job.input)
        if failure is not None:
            return Result(job, "failed", error=failure)
        if job.from_folder:
            found = _record_of(job.input)
            if found is not None:
                reason = (
                    f"is a pocketsr output ({provenance.describe(found)}, by its record); "
                    "name the file directly to upscale it"
                )
                return Result(job, "skipped", reason=reason, reason_code="own-output")
        if not self.options.dry_run:
            self.made.note(job.output.parent)
            self.sweeper.sweep(job.output.parent)
        seen = self.look_at_output(job, job.output)
        if seen is None and job.alt_output is not None:
            return self.made_as_alt(job) or None
        return seen

    def made_as_alt(self, job: Job) -> Result | None:
        """The ``exists`` skip of ``job`` when its ``alt_output`` (the JPEG/BMP name of an
        input with alpha) holds a record of this run's settings: what an earlier run wrote
        for it, its alpha channel being opaque everywhere, found without decoding it
        again.  None otherwise (no records, ``overwrite``, no such file, or a record of
        other settings or none: decoding decides, :meth:`plan_decoded`)."""
        alt = job.alt_output
        if alt is None or self.options.overwrite or self.options.record is None:
            return None
        if not os.path.isfile(alt):
            return None
        found = self.existing(job, alt)
        return found if found.reason_code == "exists" else None

    def sized(self, job: Job) -> Result | tuple[ImageHeader, str | None, str | None, int]:
        """``job``'s header, the format to write it in and the one its name claims
        (:meth:`requested_format`), and the memory it needs (:meth:`need`); or the failure
        a run gives it before decoding: an unreadable header, or a need over the budget
        (:meth:`too_large`).  What :meth:`decode` admits an image by, and :meth:`dry_run`
        plans it by."""
        try:
            header = read_header(job.input, known=job.header)  # planning's, if unchanged
        except ImageReadError as exc:
            return Result(job, "failed", error=str(exc))
        requested, named = self.requested_format(job, header.format)
        need = self.need(job, header, requested)
        if self.budget is not None and need > self.budget:
            return Result(
                job,
                "failed",
                error=self.too_large(header, need),
                width=header.width,
                height=header.height,
            )
        return header, requested, named, need

    def decode(self, job: Job, seen: FileStamp | None) -> Result | _Decoded:
        t0 = time.perf_counter()
        sized = self.sized(job)
        if isinstance(sized, Result):
            return sized
        _, requested, named, need = sized
        if not self.gate.acquire(need):
            return Result(job, "skipped", reason=_STOPPED, reason_code="interrupted")
        try:
            image = read_image(job.input, max_pixels=None)
            decoded = self.plan_decoded(job, image, requested, named, seen, t0)
        except ImageReadError as exc:
            self.gate.release(need)
            return Result(job, "failed", error=str(exc))
        except BaseException:
            self.gate.release(need)
            raise
        if isinstance(decoded, Result):
            self.gate.release(need)
            return decoded
        decoded.reserved = need
        return decoded

    def requested_format(self, job: Job, content: str) -> tuple[str | None, str | None]:
        """The format to write ``job``'s output in (None: as ``plan_output`` decides from
        the content), and, when the content is not what the input's name says, the format
        the name claims (for a note).

        Outputs are planned by name (``jobs``): a misnamed input is written in its name's
        format, or, when that is not an output format (GIF), in the one its output was
        named after, so that an output's bytes are always what its extension says."""
        if self.options.fmt is not None:
            return self.options.fmt, None
        named = format_of_path(job.input)
        if named is None or named == content:
            return None, None
        requested = named if named in OUTPUT_FORMATS else format_of_path(job.output)
        return (requested if requested in OUTPUT_FORMATS else None), named

    def need(self, job: Job, header: ImageHeader, requested: str | None) -> int:
        """Predicted peak host memory for ``job`` (``memory.predict``)."""
        variant = self.variant_for(header.width, header.height)
        scale_for = getattr(variant.upscaler, "scale_for", None)  # its own factor per image
        scale = variant.scale
        if callable(scale_for):
            scale = int(scale_for(header.width, header.height, self.target))
        return predicted_need(
            job.input,
            header,
            scale=scale,
            target=self.target.size_for(header.width, header.height),
            requested=requested,
            profile=self.profiles[variant.scale],
            quality=self.options.quality,
        )

    def too_large(self, header: ImageHeader, need: int) -> str:
        """The reason an image whose predicted ``need`` exceeds the budget fails: ``needs
        about ... more than ...; not decoded.`` and advice; in a dry run, which decodes
        nothing, the same line said as what a run would do: ``would be refused: needs
        about ... more than ....`` and the same advice."""
        variant = self.variant_for(header.width, header.height)
        w, h = self.target.size_for(header.width, header.height)
        budget = self.budget or 0
        limit = self.options.memory_limit
        workers = limit.workers or 0
        # Advice the face can follow only (spelling.offers): bench --folder runs this
        # pipeline without -s or a size, and without --max-memory (or its variable).
        choices = []
        if offers(SCALE):
            choices.append("a smaller scale or size")
        elif offers(MODEL):
            choices.append(f"a model of a smaller factor ({MODEL})")
        if offers(TILE):
            choices.append(str(TILE))
        if workers > 1 and offers(limit.among.option):
            choices.append(f"fewer {limit.among.option}")
        allow = (
            f"allow more with {MAX_MEMORY} (or {memory.MAX_MEMORY_ENV}) if the machine has it"
            if offers(MAX_MEMORY)
            else ""
        )
        advice = f"Choose {' or '.join(choices)}" if choices else ""
        if allow:
            advice = f"{advice}, or {allow}" if advice else allow[0].upper() + allow[1:]
        # A dry run decodes nothing: its line says what a run would do, rather than what
        # it did ("not decoded"), and is otherwise the run's line.
        lead, end = ("would be refused: ", ".") if self.options.dry_run else ("", "; not decoded.")
        return (
            f"{lead}needs about {memory.describe_bytes(need, apart_from=budget)} of memory to "
            f"upscale {header.width}x{header.height} to {w}x{h} (x{variant.scale} model), more "
            f"than {limit.allowance(budget, need)}{end}" + (f" {advice}" if advice else "")
        )

    def plan_decoded(
        self,
        job: Job,
        image: DecodedImage,
        requested: str | None,
        named: str | None,
        seen: FileStamp | None,
        t0: float,
    ) -> Result | _Decoded:
        """How a decoded image will be written, or the result that ends ``job`` here."""
        # An alpha channel opaque everywhere is left out where the format its output was
        # planned in has no room for it: planned both ways (jobs: PNG for transparency, or
        # the format asked for), or in the format asked for (its header showed no alpha).
        image, transparent = drop_opaque_alpha(image, format_of_path(job.alt_output or job.output))
        planned = job.output if job.alt_output is None or image.has_alpha else job.alt_output
        plan = plan_for(image, requested, quality=self.options.quality)
        if plan.warnings and image.has_alpha:
            if transparent is None:  # not looked at yet: planned in a format that holds alpha
                transparent = image.is_transparent
            if not transparent:
                plan = _kept_as_planned(plan, requested or image.format)
        notes = list(image.warnings)
        if named is not None and image.format != named:
            note, plan = _misnamed(image.format, named, plan, requested)
            notes.append(note)
        output = planned
        if plan.format != (requested or image.format):  # e.g. RGBA asked as JPEG -> PNG
            output = output.with_suffix(extension_for(plan.format))
        if output == planned != job.output:  # the other name planned: not looked at yet
            found = self.look_at_output(job, output, (image.width, image.height))
            if isinstance(found, Result):
                return found
            seen = found
        elif output != planned:  # its content is not what its name says (jobs plans by name)
            if _real(output) in self.inputs or _key(output) in self.input_keys:
                error = (
                    f"its content is {image.format.upper()}, so its output would be {output}, "
                    f"which is an input; rename it to its format's extension or choose {FORMAT}"
                )
                return Result(job, "failed", error=error)
            if not self.inputs_known and self.options.overwrite and _unrecorded_file(output):
                # The walk has not seen every input yet: a file there that pocketsr did not
                # write may be one of them, and is never replaced.
                error = (
                    f"its content is {image.format.upper()}, so its output would be {output}, "
                    "which exists, was not written by pocketsr and may be an input; rename "
                    f"it to its format's extension or choose {FORMAT}"
                )
                return Result(job, "failed", error=error)
            found = self.look_at_output(job, output, (image.width, image.height))
            if isinstance(found, Result):
                return found
            seen = found
        too_large = side_limit_problem(
            plan.format, *self.target.size_for(image.width, image.height)
        )
        if too_large is not None:  # known now: not found out after the upscale
            return Result(job, "failed", error=too_large, width=image.width, height=image.height)
        variant = self.variant_for(image.width, image.height)
        seconds = time.perf_counter() - t0
        return _Decoded(job, image, plan, output, variant, seconds, seen, notes=notes)

    def look_at_output(
        self, job: Job, output: Path, size: tuple[int, int] | None = None
    ) -> Result | FileStamp | None:
        """The existing ``output`` as it is now (None: absent), or the result that ends
        ``job`` here: something other than a file in the way, or an existing output
        without ``overwrite`` (see :meth:`existing`)."""
        try:
            st = os.stat(output)
        except FileNotFoundError:
            if os.path.islink(output):
                return self.in_the_way(job, output, "a broken symbolic link")
            return None
        except OSError as exc:
            error = f"cannot use output {output}: {exc.strerror or exc}"
            return Result(job, "failed", error=error)
        if not stat.S_ISREG(st.st_mode):
            return self.in_the_way(job, output, kind_of(st.st_mode))
        if not self.options.overwrite:
            return self.existing(job, output, size)
        return file_stamp(st)

    def in_the_way(self, job: Job, output: Path, what: str) -> Result:
        error = f"{what} is in the way at {output}; move it, or choose another {OUTPUT} folder"
        return Result(job, "failed", error=error)

    def variant_for(self, width: int, height: int) -> Variant:
        """The variant an input of this size runs (``sizing.pick_scale``)."""
        return self.by_scale[pick_scale(self.target.factor_for(width, height), list(self.by_scale))]

    def expected_record(
        self, variant: Variant, output: Path, lossless: bool = False
    ) -> dict[str, Any]:
        """The compared part of the record this run would write to ``output``, written
        losslessly where ``lossless`` (:meth:`writes_lossless`)."""
        assert self.options.record is not None
        try:
            fmt = format_from_name(output.suffix)
        except ValueError:
            fmt = ""
        return provenance.make_record(
            self.options.record,
            model=variant.model,
            model_sha256=variant.sha256,
            model_scale=variant.scale,
            routing=variant.routing,
            target=self.target.label,
            fmt=fmt,
            lossless=lossless,
        )

    def writes_lossless(self, job: Job, output: Path, known: ImageHeader | None) -> bool:
        """Whether ``job``'s ``output`` is written as a lossless WebP
        (:func:`kept_lossless`; ``known``: its input's header as read before)."""
        if format_of_path(output) != "webp":
            return False
        return kept_lossless(job.input, "webp", self.options.quality, known=known)

    def existing(self, job: Job, output: Path, size: tuple[int, int] | None = None) -> Result:
        """The skip for an input whose ``output`` exists: ``exists`` when it was made with
        this run's settings (or records are off), else a conflict (see the module docs)."""
        if self.options.record is None:
            return Result(job, "skipped", output=output, reason=_exists(), reason_code="exists")
        found = _record_of(output)
        if found is None:
            return Result(
                job, "skipped", output=output, reason=_unrecorded(), reason_code="unrecorded"
            )
        candidates = list(self.by_scale.values())
        header = job.header  # planning's, if it read it
        if len(candidates) > 1:  # which variant depends on the input's size
            try:
                if size is None:
                    header = read_header(job.input, known=job.header)
                    size = header.width, header.height
                candidates = [self.variant_for(*size)]
            except ImageReadError:  # compare with every variant: the input fails anyway
                pass
        lossless = self.writes_lossless(job, output, header)
        diffs = [
            provenance.differences(found, self.expected_record(v, output, lossless))
            for v in candidates
        ]
        if any(not d for d in diffs):
            return Result(job, "skipped", output=output, reason=_exists(), reason_code="exists")
        reason = (
            f"output exists but was made with other settings ({', '.join(diffs[0])}); "
            f"use {OVERWRITE} to replace it"
        )
        return Result(
            job, "skipped", output=output, reason=reason, reason_code="different-settings"
        )

    def dry_run(self, job: Job) -> Result:
        """``job``'s ``planned`` result, from its header alone; or the failure a run would
        give it before writing anything: an unreadable header, more memory than the
        budget (:meth:`too_large`, as :meth:`decode` refuses it) or an output too large
        for its format."""
        sized = self.sized(job)
        if isinstance(sized, Result):
            return sized
        width, height = sized[0].width, sized[0].height
        ow, oh = self.target.size_for(width, height)
        too_large = side_limit_problem(format_of_path(job.output) or "", ow, oh)
        if too_large is not None:
            return Result(job, "failed", error=too_large, width=width, height=height)
        return Result(
            job,
            "planned",
            output=job.output,
            reason="dry run",
            reason_code="dry-run",
            width=width,
            height=height,
            out_width=ow,
            out_height=oh,
            model=self.variant_for(width, height).model or None,
            warnings=[] if job.alt_output is None else [_alt_note(job.alt_output)],
        )

    # -- writer -------------------------------------------------------------------------
    def write_all(self) -> None:
        """The writer thread: write what inference hands over (a :class:`Result` is passed
        on as it is), and report each result in job order (:meth:`report`), until the end
        marker.  Everything handed over before it is written, even once the run is stopped.
        With more than one encoder thread, see :meth:`write_overlapped`."""
        if self.encode_threads > 1:
            self.write_overlapped(self.encode_threads)
            return
        while True:
            item = self.written.get()
            if item is _DONE:
                return
            if isinstance(item, Result):
                result = item
            else:
                try:
                    result = self.write_one(item)
                finally:
                    self.gate.release(item.decoded.reserved)
            self.report(result)

    def write_overlapped(self, threads: int) -> None:
        """:meth:`write_all` with ``threads`` images encoded at once.

        Encoding (:meth:`encode_one`: no file is touched) runs in a pool of ``threads``
        threads; this thread writes each image (:meth:`store`: claim, atomic rename,
        record), releases its memory reservation and reports it, strictly in job order,
        so files are written and results reported in the order and with the outcome a
        single writer gives.  It takes a new image only while fewer than ``threads + 1``
        wait here (one queued in the pool, so that a thread that finishes starts the next
        at once): the writer holds at most ``threads + 1`` images.

        An exception other than an encoding failure (a bug) is raised here when its image
        comes up, as a single writer raises it; the pool's queued images are then dropped
        (and their reservations released), those being encoded are waited for, and nothing
        more is written.
        """
        pending: collections.deque[Result | Future[_Encoded]] = collections.deque()
        reserved: dict[Future[_Encoded], int] = {}  # released once written, or dropped
        pool = ThreadPoolExecutor(threads, thread_name_prefix="pocketsr-encoder")
        ended = False
        try:
            while pending or not ended:
                while pending and (isinstance(pending[0], Result) or pending[0].done()):
                    head = pending.popleft()
                    if isinstance(head, Result):
                        self.report(head)
                        continue
                    try:
                        result = self.store(head.result())
                    finally:
                        self.gate.release(reserved.pop(head))
                    self.report(result)
                if not pending and ended:
                    break
                oldest = pending[0] if pending else None  # being encoded, if any
                if isinstance(oldest, Future) and (ended or len(pending) > threads):
                    futures.wait([oldest])  # full, or the end: wait for the next in order
                    continue
                try:  # while images are encoding, look back for finished ones often
                    item = self.written.get(timeout=_WRITER_POLL if pending else None)
                except queue.Empty:
                    continue
                if item is _DONE:
                    ended = True
                elif isinstance(item, Result):
                    pending.append(item)
                else:
                    future = pool.submit(self.encode_one, item)
                    reserved[future] = item.decoded.reserved
                    pending.append(future)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for need in reserved.values():  # only after a bug: never written
                self.gate.release(need)

    def report(self, result: Result) -> None:
        """Pass on the run's next result, in job order (writer thread)."""
        if self.taken:
            self.taken.popleft()
        self.summary.add(result)
        self.reporter.image_finished(result)
        self.finished.put(result)
        if self.summary.stopped:  # nothing more can be written: read and upscale no more
            self.stop.set()

    def write_one(self, item: _Upscaled) -> Result:
        """Encode ``item`` and write it (:meth:`encode_one`, then :meth:`store`)."""
        return self.store(self.encode_one(item))

    def encode_one(self, item: _Upscaled) -> _Encoded:
        """``item``'s output bytes and its result so far (``failed`` when it cannot be
        encoded), with the encoder's warnings on its line.  Touches no file, and lets go
        of ``item``'s pixels; safe to run in several threads at once."""
        d = item.decoded
        t0 = time.perf_counter()
        metadata = d.image.metadata
        if not self.options.keep_metadata:
            metadata = metadata.colour_only()
        result = Result(
            d.job,
            "ok",
            output=d.output,
            width=d.image.width,
            height=d.image.height,
            out_width=item.pixels.shape[1],
            out_height=item.pixels.shape[0],
            warnings=[*d.notes, *d.plan.warnings],
            model=d.variant.model or None,
            heavy_fraction=item.heavy_fraction,
            device=item.compute,
        )
        record = self.record_text(item)
        data = None
        try:
            with libwarnings.collecting(result.warnings):
                data = encode_image(
                    item.pixels,
                    d.plan,
                    quality=self.options.quality,
                    metadata=metadata,
                    provenance=record if embeds_provenance(d.plan.format) else None,
                    notes=result.warnings,
                )
        except ImageWriteError as exc:
            result.status, result.error = "failed", str(exc)
        except OSError as exc:
            result.status = "failed"
            result.error = f"cannot write {d.output}: {exc.strerror or exc}"
        item.pixels = _RELEASED  # the encoded bytes are all that is needed now
        return _Encoded(item, result, record, data, time.perf_counter() - t0)

    def store(self, encoded: _Encoded) -> Result:
        """Write the encoded output (:meth:`put`); the image's finished result."""
        d = encoded.item.decoded
        result = encoded.result
        t0 = time.perf_counter()
        if encoded.data is not None:
            self.put(result, encoded.data, d.seen, encoded.record, d.plan.format, d.claim)
        self.let_go(d.claim)
        spent = encoded.seconds + time.perf_counter() - t0
        result.seconds = d.seconds + encoded.item.seconds + spent
        return result

    def put(
        self,
        result: Result,
        data: bytes,
        seen: FileStamp | None,
        record: str | None,
        fmt: str,
        held: claims.Claim | None = None,
    ) -> None:
        """Write ``data`` as ``result.output`` (:meth:`write_output`), with the warnings
        raised meanwhile on its line; ``result`` becomes ``failed`` when it cannot be
        written (``cannot write OUTPUT: reason``; with :attr:`Result.stops_run` set when
        its disk is full or read-only), ``skipped`` (``concurrent``) when another run's
        file was kept.  ``held``: a claim this run holds already (:meth:`claim_work`)."""
        assert result.output is not None
        output = result.output
        try:
            with libwarnings.collecting(result.warnings):
                raced = self.write_output(output, data, seen, record, fmt, held)
        except ImageWriteError as exc:
            result.status, result.error = "failed", str(exc)
            result.stops_run = disk_stop(exc, output)
            return
        except OSError as exc:  # the claim could not be made
            result.status = "failed"
            result.error = f"cannot write {output}: {exc.strerror or exc}"
            result.stops_run = disk_stop(exc, output)
            return
        if raced is not None:
            result.status, result.reason, result.reason_code = "skipped", raced, "concurrent"

    def write_output(
        self,
        output: Path,
        data: bytes,
        seen: FileStamp | None,
        record: str | None,
        fmt: str,
        held: claims.Claim | None = None,
    ) -> str | None:
        """Write ``data`` (an encoded ``fmt`` image) as ``output`` under its claim
        (:meth:`commit`; ``held`` when it is that output's, else one made for the
        rename), then ``record`` as its sidecar where ``fmt`` cannot embed it (None there
        removes an older one); None once written, else why another run's file was kept
        (for a ``concurrent`` skip).

        The sidecar is staged first and put in place after the image
        (``imageio.sidecar_written``): one that cannot be written fails before the image,
        or an older output, is touched; an image whose record cannot be put in place is
        taken away again; a crash in between leaves an image whose record is missing or
        old, which a later run refuses to skip silently.  It is staged only with the claim
        held, else another run is writing this output.

        Raises:
            ImageWriteError: the image or its record cannot be written (no image of this
                run is left without its record).
            OSError: the claim cannot be made.
        """
        sidecar = not embeds_provenance(fmt)
        with _claim_for(output, held) as claim:
            staged = record if sidecar and claim is not None else None
            with sidecar_written(output, staged) as place_record:
                raced = self.commit(output, data, seen, claim is not None)
                if raced is None and sidecar:
                    place_record()
        return raced

    def commit(
        self, output: Path, data: bytes, seen: FileStamp | None, claimed: bool
    ) -> str | None:
        """Rename ``data`` into place as ``output`` unless another run got there first
        (then why, for a ``concurrent`` skip): the output must still be as it was ``seen``
        (:func:`_stamp_at`).  Called while holding the output's claim."""
        if not claimed:
            return claims.describe_busy(output)
        if _stamp_at(output) != seen:
            return "another run wrote this output while this one was working on it; it was kept"
        if not write_atomic(output, data, exclusive=not self.options.overwrite):
            return "this output appeared while this run was working on it; it was kept"
        return None

    def record_text(self, item: _Upscaled) -> str | None:
        """The record of this output as text, or None when records are off."""
        if self.options.record is None:
            return None
        d = item.decoded
        record = provenance.make_record(
            self.options.record,
            model=d.variant.model,
            model_sha256=d.variant.sha256,
            model_scale=d.variant.scale,
            routing=d.variant.routing,
            target=self.target.label,
            fmt=d.plan.format,
            lossless=d.plan.lossless,
            size=(item.pixels.shape[1], item.pixels.shape[0]),
            precision=item.compute,
            source=d.job.input.name,
        )
        return provenance.dumps(record)

    # -- inference (calling thread) -------------------------------------------------------
    def infer_all(self) -> Iterator[None]:
        """Upscale what the reader decodes and hand it to the writer, pausing (a ``yield``)
        after each image so that :meth:`stream` can pass on what has been written."""
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
            yield

    def infer_one(self, d: _Decoded, index: int) -> _Upscaled | Result:
        self.reporter.image_started(d.job, index)
        t0 = time.perf_counter()
        error = None
        try:
            with libwarnings.collecting(d.notes):
                upscale_for = getattr(d.variant.upscaler, "upscale_for", None)
                if callable(upscale_for):  # drawn for the target (PCSR: its own factor)
                    out = upscale_for(d.image.pixels, self.target, self.reporter.tile)
                else:
                    out = d.variant.upscaler.upscale(d.image.pixels, self.reporter.tile)
                out = resize_output(out, self.target.size_for(d.image.width, d.image.height))
        except PocketSRError as exc:
            error = str(exc)
        except (RuntimeError, MemoryError, ValueError) as exc:  # torch errors surface as these
            error = f"inference failed: {_one_line(exc)}"
            if memory.is_out_of_memory(exc):  # outside the tiles, which back off by themselves
                error = (
                    "out of memory: this image's whole input and output do not fit in "
                    "the memory this process may use now (taken by other programs, capped "
                    f"by a ulimit, or the GPU's own); {_one_line(exc)}"
                )
        if error is not None:
            self.gate.release(d.reserved)
            self.let_go(d.claim)
            return Result(
                d.job,
                "failed",
                error=error,
                width=d.image.width,
                height=d.image.height,
                warnings=d.notes,
            )
        heavy = getattr(d.variant.upscaler, "heavy_fraction", None)  # PCSR's routing
        compute = d.variant.compute_for(d.image.pixels.dtype)  # after any fp32 fallback
        return _Upscaled(d, out, time.perf_counter() - t0, heavy, compute)

    def process(
        self,
        job: Job,
        index: int,
        shield: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> Result:
        """All of one image's work, in the calling thread: read, upscale, claim and write
        (for :class:`ImageWorker`; :meth:`execute` runs the same steps in three threads).
        The write runs inside ``shield()``, which may hold back interruptions."""
        item = self.read_one(job)
        if isinstance(item, Result):
            return item
        try:
            upscaled = self.infer_one(item, index)
            if isinstance(upscaled, Result):
                return upscaled
            try:
                with shield():
                    return self.write_one(upscaled)
            finally:
                self.gate.release(item.reserved)
        finally:
            self.let_go(item.claim)

    def execute(self) -> Summary:
        for _ in self.stream():
            pass
        return self.summary

    def stream(self) -> Iterator[Result]:
        """The run, yielding each result (in job order) once its image is finished.

        Inference runs in the thread that advances this generator, and only while it does:
        between two results the upscaler is idle, while the reader and the writer go on.
        Closing it early is a stop without Ctrl-C: reading and inference stop, what was
        already upscaled is written (:meth:`wind_down`), and nothing more is yielded; the
        reporter is still handed the summary of what was done (``closed``), as at the end.
        """
        t0 = time.perf_counter()
        try:
            yield from self.results()
        except GeneratorExit:  # closed early (and wound down): nothing more may be yielded
            self.summary.closed = True
        self.summary.seconds = time.perf_counter() - t0
        self.summary.leftovers_removed = self.sweeper.removed
        self.reporter.finished(self.summary)

    def results(self) -> Iterator[Result]:
        """:meth:`stream`'s results: the three stages, then those not finished after a
        Ctrl-C or a full disk; the stages are wound down however it ends."""
        self.reporter.start(self.total)
        reader = _Stage("pocketsr-reader", self.read_all, self.stop)
        writer = _Stage("pocketsr-writer", self.write_all, self.stop)
        try:
            reader.start()
            writer.start()
            for _ in self.infer_all():
                yield from self.written_so_far()
            _put_while_alive(self.written, _DONE, writer)
            while writer.is_alive():  # the last images, as each is written
                yield from self.written_so_far(wait=0.1)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.wind_down(reader, writer)
            self.made.remove_empty()  # the output folders made for inputs that all failed
        yield from self.written_so_far()
        for stage in (reader, writer):
            if stage.error is not None:
                raise stage.error
        if self.summary.interrupted or self.summary.stopped:
            # Results come in job order: those read and not reported, then those not read.
            for job in itertools.chain(self.taken, self.jobs):
                result = not_finished(job, self.summary)
                self.summary.add(result)
                self.reporter.image_finished(result)
                yield result

    def written_so_far(self, wait: float = 0.0) -> Iterator[Result]:
        """The results the writer has finished and :meth:`stream` has not yet yielded
        (waiting up to ``wait`` seconds for the first one)."""
        try:
            yield self.finished.get(timeout=wait) if wait else self.finished.get_nowait()
            while True:
                yield self.finished.get_nowait()
        except queue.Empty:
            return

    def wind_down(self, reader: threading.Thread, writer: threading.Thread) -> None:
        """Stop reading and inference, and wait for both threads.

        The writer always gets its end marker after what is already queued: an image that
        was upscaled before Ctrl-C is still written (atomically); nothing new starts.  This
        cannot be interrupted (more Ctrl-C or signals are noted and waited through), so that
        no temporary file or claim outlives the run and no thread writes while Python exits.
        """
        while True:
            try:
                self.stop.set()
                _put_while_alive(self.written, _DONE, writer)
                _join_quietly(writer)
                _join_quietly(reader)
                self.let_go_all()
                return
            except KeyboardInterrupt:
                self.summary.interrupted = True


# Stands in for pixels that are not needed any more, so that their memory is freed before
# the image's result leaves the pipeline (sizes are read before).
_RELEASED = np.empty((0, 0, 0), np.uint8)


_STOPPED = "the run was stopped before this input was finished"


def planned_result(job: Job) -> Result | None:
    """The result planning already decided for ``job`` (failed, or skipped with its
    reason), or None when it is to be upscaled (``job.runs``)."""
    if job.failure is not None:
        return Result(job, "failed", error=job.failure)
    if job.skip_reason is not None:
        return Result(job, "skipped", reason=job.skip_reason, reason_code=job.skip_code)
    return None


def not_finished(job: Job, summary: Summary) -> Result:
    """The result of ``job`` when its run ended before it was finished: ``interrupted``
    (Ctrl-C, a signal), or ``stopped`` when outputs could no longer be written
    (``summary.stopped``)."""
    if summary.stopped_by_disk:
        reason = f"not finished: the run stopped because {summary.stopped}"
        return Result(job, "skipped", reason=reason, reason_code="stopped")
    return Result(job, "skipped", reason=_STOPPED, reason_code="interrupted")


def _kept_as_planned(plan: OutputPlan, asked: str) -> OutputPlan:
    """``plan`` with its line about transparency told true for an image whose alpha
    channel is opaque everywhere but whose output was planned as PNG (its name in the
    format asked for is an input or another input's output: ``jobs``)."""
    said = transparency_switch(asked)
    true = (
        f"its alpha channel is opaque everywhere, but its {format_label(asked)} name is an "
        "input or another input's output, so it is written as PNG, as planned"
    )
    return dataclasses.replace(
        plan, warnings=tuple(true if w == said else w for w in plan.warnings)
    )


def _misnamed(
    content: str, named: str, plan: OutputPlan, requested: str | None
) -> tuple[str, OutputPlan]:
    """The note on an input whose ``content`` is not the format its name says
    (``named``), and ``plan`` without the line it makes redundant: where transparency
    asked as ``requested`` (its name's format, JPEG or BMP) is written as PNG, the note
    says why in its own words, not a second line that says PNG again."""
    note = (
        f"its content is {format_label(content)}, not {format_label(named)} as its name "
        f"says; written as {format_label(plan.format)}"
    )
    if requested in OUTPUT_FORMATS:  # the plan's line, if it switched to PNG for alpha
        said = transparency_switch(requested)
        if said in plan.warnings:
            note += f", since {format_label(requested)} cannot store transparency"
            rest = tuple(w for w in plan.warnings if w != said)
            plan = dataclasses.replace(plan, warnings=rest)
    return note, plan


def _alt_note(alt_output: Path) -> str:
    """A dry run's note on an output planned both ways (``Job.alt_output``)."""
    return (
        f"written as {alt_output.name} instead if its alpha channel is opaque everywhere "
        "(known once it is decoded)"
    )


def _exists() -> str:
    return f"output exists (use {OVERWRITE} to replace it)"


def _unrecorded() -> str:
    return (
        "output exists but carries no pocketsr record (made by another program or an older "
        f"pocketsr, or edited since); use {OVERWRITE} to replace it"
    )


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _record_of(path: Path) -> dict[str, Any] | None:
    text = read_provenance_text(path)
    return provenance.loads(text) if text else None


def _unrecorded_file(path: Path) -> bool:
    """Whether ``path`` is an existing file that carries no pocketsr record."""
    return os.path.isfile(path) and _record_of(path) is None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _claim_for(output: Path, held: claims.Claim | None) -> Iterator[claims.Claim | None]:
    """``output``'s claim for its rename: ``held`` when it is that output's (kept: its
    holder lets it go), else a new one released at the end (None: another run holds it).
    A second claim of the same output by this process would lock against ``held``."""
    if held is not None and held.path == claims.claim_path(output):
        yield held
        return
    with claims.claimed(output) as claim:
        yield claim


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


class ImageWorker:
    """The per-image work of a run as one call, for a process that is fed jobs one at a
    time (``parallel``): read -> upscale -> claim + write -> :class:`Result`.

    It keeps every guarantee of :func:`run` for the image (skip-existing and records,
    memory admission within ``options.memory_limit``, claims, atomic writes); ``inputs`` are
    the run's inputs that will be upscaled, so that an output whose name only decoding
    can tell (a misnamed input) never overwrites one of them; None while they are not all
    known (a folder still being walked): such an output is then never one that exists
    without a pocketsr record.
    """

    def __init__(
        self,
        upscaler: ImageUpscaler | Sequence[Variant],
        options: Options,
        reporter: Reporter | None = None,
        inputs: Sequence[Path] | None = (),
    ) -> None:
        variants = list(upscaler) if isinstance(upscaler, Sequence) else [Variant(upscaler)]
        self._run = _Run(iter(()), variants, options, reporter or NullReporter(), inputs=inputs)

    def process(
        self,
        job: Job,
        index: int,
        shield: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> Result:
        """``job``'s result; ``index`` (from 1) is passed to ``image_started``.  The write
        (claim, rename, record) runs inside ``shield()``: a worker that defers its stop
        signal there finishes the file in hand, as :func:`run` does."""
        return self._run.process(job, index, shield)

    def precheck(self, job: Job) -> Result | FileStamp | None:
        """What a driver that writes the outputs itself (``ray_backend``, return-bytes)
        decides before sending ``job`` away: the result that ends it here (planned, not a
        file, an earlier output, an existing output), or its output as it is now (None:
        absent), for :meth:`write` to compare with just before the rename."""
        return self._run.settle(job)

    @property
    def leftovers_removed(self) -> int:
        """The temporary files of killed runs that this worker's sweeps have removed
        (:attr:`Summary.leftovers_removed`)."""
        return self._run.sweeper.removed

    def settled(self, job: Job) -> Result | None:
        """The result :meth:`precheck` ends ``job`` with before any worker is needed for
        it (an output that exists...); None: it needs one (a driver's ``JobFeed.settle``)."""
        found = self.precheck(job)
        return found if isinstance(found, Result) else None

    def claim(self, job: Job) -> Result | tuple[claims.Claim, FileStamp | None]:
        """What a driver that writes the outputs itself does once :meth:`precheck` let
        ``job`` through, before sending it away: claim its output for all of its work, as
        :meth:`process` does, so that another run skips it at once (``concurrent``); the
        claim and the output as it is now, or the result that ends ``job`` here.  The
        claim is :meth:`write`'s to use and :meth:`release`'s to let go."""
        return self._run.claim_work(job)

    def release(self, claim: claims.Claim | None) -> None:
        """Let go of a claim :meth:`claim` made (None: nothing to do)."""
        self._run.let_go(claim)

    def release_all(self) -> None:
        """Let go of every claim :meth:`claim` made and no one released (a stopped run)."""
        self._run.let_go_all()

    def remove_empty_folders(self) -> int:
        """At the run's end, in the driver whose :meth:`precheck` saw every job first:
        remove the output folders that did not exist then and are empty now (every input
        meant for them failed), as :func:`run` does; how many were removed."""
        return self._run.made.remove_empty()

    def write(
        self,
        result: Result,
        data: bytes,
        seen: FileStamp | None,
        record: str | None,
        held: claims.Claim | None = None,
    ) -> Result:
        """What a driver that writes the outputs itself (``ray_backend``, return-bytes) does
        with an ``ok`` result whose output was encoded elsewhere: write ``data`` as
        ``result.output`` exactly as :meth:`process` writes it (claim, still as
        :meth:`precheck` saw it, ``seen``, atomic rename, and ``record`` as the sidecar
        where the output's format, by its extension, cannot embed it: staged before the
        image, put in place after it, the image taken away if it cannot be); ``result``,
        ``failed`` when it cannot be written, ``skipped`` (``concurrent``) when another
        run's file was kept.  ``held``: the claim :meth:`claim` made, used when it is
        ``result.output``'s (it stays held: :meth:`release` lets it go)."""
        assert result.output is not None
        fmt = format_from_name(result.output.suffix)
        self._run.put(result, data, seen, record, fmt, held)
        return result


def run(
    jobs: Iterable[Job],
    upscaler: ImageUpscaler | Sequence[Variant],
    options: Options,
    reporter: Reporter,
    *,
    keep_results: bool | None = None,
) -> Summary:
    """Process ``jobs`` in order and return the summary (``interrupted`` set on Ctrl-C).

    ``jobs`` may be an iterator (``jobs.iter_jobs``): it is consumed as the reader goes, so
    the first image starts before a large folder is walked to its end, and the run's memory
    does not grow with the number of inputs: each result goes to ``reporter`` and the
    summary keeps counts, unless ``keep_results`` (default: when ``jobs`` is a sequence;
    see :class:`Summary`).

    ``upscaler`` is one upscaler, or the variants the run chooses from per image (then
    ``options.target`` is required when there are several).  Never raises for a bad input
    file; raises only for bugs in a worker thread (and ``ValueError`` for no variant, or
    several without a target).
    """
    variants = list(upscaler) if isinstance(upscaler, Sequence) else [Variant(upscaler)]
    return _Run(jobs, variants, options, reporter, keep_results=keep_results).execute()


def stream(
    jobs: Sequence[Job],
    upscaler: ImageUpscaler | Sequence[Variant],
    options: Options,
    reporter: Reporter,
) -> Generator[Result, None, None]:
    """:func:`run` as a generator: the same three stages, yielding each job's result in
    job order as soon as its output is written (for the Python API's folder iterator).

    Inference runs only while the generator is advanced, in the thread advancing it, so the
    caller may use the upscaler between two results; meanwhile the reader decodes ahead and
    the writer finishes the image before.  Closing the generator early stops reading and
    inference; an image already upscaled is still written (atomically).  On Ctrl-C every
    input not finished is yielded as ``skipped`` (``interrupted``), then
    ``KeyboardInterrupt`` is raised; a Ctrl-C while ``close()`` winds the run down is
    raised from ``close()``, once the summary (``closed``, ``interrupted``) is handed to the
    reporter.  Raises as :func:`run` otherwise, at the first ``next()``.
    """
    variants = list(upscaler) if isinstance(upscaler, Sequence) else [Variant(upscaler)]
    job_run = _Run(jobs, variants, options, reporter, keep_results=False)  # all yielded
    try:
        yield from job_run.stream()
    except GeneratorExit:  # closed: wound down, the summary handed on; a Ctrl-C is not lost
        if job_run.summary.interrupted:
            raise KeyboardInterrupt from None
        raise
    if job_run.summary.interrupted:
        raise KeyboardInterrupt
