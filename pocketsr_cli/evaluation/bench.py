"""Timing models: on one fixed input (:func:`bench`) and on a folder of photos
(:func:`bench_folder`).

**Synthetic photo** (:func:`bench`).  Every model upscales the same synthetic photo-like
image (:func:`synthetic_photo`, 960×540 by default, so a ×4 model writes exactly
3840×2160) through the whole image path of :class:`~pocketsr_cli.inference.Upscaler` —
conversion, tiling, padding, blending — in this one process, one model after the other.
One warm-up run per model is not counted in the steady state (it pays for lazy
initialisation, allocator growth, kernel selection and, with ``compile``, compiling; its
seconds are reported apart, ``warmup_seconds``); then ``repeat`` runs are timed and the
fastest is kept, the usual estimate of what the hardware can do when nothing else
interferes.

Speed is reported as seconds per 4K output, ``best × 3840·2160 / output pixels`` (exact
for ×4 on 960×540; proportional for other scales and sizes), and as a ratio to a baseline
model, because absolute seconds only mean something on the machine that measured them
(docs/measurement.md: "on the same machine in the same run, reported as ratios").  The
proportion holds only for outputs not far below 4K: a small input's time is mostly costs
that do not grow with its size (each call's set-up, per-image statistics, thread hand-offs)
and its data stay in the caches, so scaled up 64 times (a 120×68 input at ×4) it read
tens of times what the default model takes at 4K, and a resampler's less than it takes
there.  Each result states its scaling
(:attr:`BenchResult.extrapolation`), and :meth:`BenchReport.extrapolation_note` says when
one goes past :data:`EXTRAPOLATION_LIMIT`.

**Folder of photos** (:func:`bench_folder`).  The end-to-end path of ``pocketsr upscale``:
the image files directly inside a folder go through :func:`pocketsr_cli.pipeline.run` —
decode on the reader thread, upscale, encode and write on the writer's encoder threads
(``pipeline.default_encode_threads``) — into a temporary folder that is removed afterwards,
so nothing is ever written beside the user's files. Each model gets one warm-up upscale of
the first decodable image (its seconds reported apart), then ``repeat`` timed passes over
the whole folder; the fastest pass counts.  Besides wall-clock throughput (images and output
megapixels per second) it reports the time spent inside ``Upscaler.upscale`` alone, so
``e2e/model`` shows how much decoding, encoding and writing cost on top of the model (1.0
means they are fully hidden behind inference by the pipeline's threads).

Both report the peak host memory (the process's resident set size) and peak device
memory over each model's runs, warm-up included, measured by
:class:`~pocketsr_cli.evaluation.peakmem.PeakMemory`.

Both take ``ensembles`` (:class:`~pocketsr_cli.ensemble.Ensemble`): every model is timed
once with each, in rows ``NAME``, ``NAME +pad``, ``NAME +flip8``, so what a self-ensemble
costs is the ratio of its row to the plain one.

Nothing here prints; progress goes through a callback.
"""

from __future__ import annotations

import functools
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pocketsr_cli import libwarnings
from pocketsr_cli.descriptor import distinct_refs, named_apart, ref_key
from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.errors import PocketSRError, UsageError, home_hint
from pocketsr_cli.evaluation.peakmem import PeakMemory
from pocketsr_cli.factory import UpscalerSpec, open_upscaler
from pocketsr_cli.pipeline import NullReporter
from pocketsr_cli.spelling import FOLDER, FORMAT, QUALITY, REPEAT, SIZE

if TYPE_CHECKING:
    import torch

    from pocketsr_cli import memory
    from pocketsr_cli.descriptor import ModelDescriptor
    from pocketsr_cli.jobs import Job
    from pocketsr_cli.pipeline import ImageUpscaler, Result, Summary

UHD_PIXELS = 3840 * 2160
DEFAULT_SIZE = (960, 540)
EXTRAPOLATION_LIMIT = 4.0
"""The most ``seconds_per_4k`` is scaled up from the output timed (4K pixels ÷ its pixels)
before the report says the figure is no estimate of 4K: the default size puts a ×4
model's output at 4K itself and a ×2 model's at 1920×1080, a quarter of it."""
# What making the synthetic photo holds at its peak, per pixel: float32 planes and their
# temporaries (tracemalloc: 80-86 bytes at 960x540 and 480x270).
SYNTHETIC_BYTES_PER_PIXEL = 96

# (runs done, runs in all, label): one run is one upscale, warm-ups included.
ProgressCallback = Callable[[int, int, str], None]


def parse_size(text: str) -> tuple[int, int]:
    """``"960x540"`` (or ``960×540``, ``960X540``) → ``(960, 540)`` as (width, height).

    Raises:
        UsageError: not ``WxH`` with both sides at least 8.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if m is None:
        raise UsageError(f"{SIZE} must look like 960x540 (width x height), not {text!r}")
    width, height = int(m.group(1)), int(m.group(2))
    if min(width, height) < 8:
        raise UsageError(f"{SIZE} sides must be at least 8 pixels, got {width}x{height}")
    return width, height


def synthetic_photo(width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A deterministic ``height × width × 3`` uint8 image with a photograph's ingredients.

    Smooth colour gradients (sky, walls), soft-edged discs and bars (objects, with hard and
    blurred edges), a band of fine texture (foliage, fabric) and a little sensor noise —
    so that content-adaptive models route pixels roughly as they would on a photo.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    img = np.stack([0.25 + 0.5 * v, 0.35 + 0.3 * u, 0.75 - 0.45 * v], axis=2)
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.03, 0.18) * min(width, height)
        softness = rng.uniform(0.5, 6.0)
        dist = np.hypot(xx - cx, yy - cy)
        mask = np.clip((radius - dist) / softness + 0.5, 0.0, 1.0)[..., None]
        img = img * (1 - mask) + mask * rng.uniform(0.05, 0.95, 3).astype(np.float32)
    for _ in range(4):
        x0 = int(rng.integers(0, max(width - 8, 1)))
        bar = slice(x0, x0 + int(rng.integers(2, max(3, width // 40))))
        img[:, bar] = img[:, bar] * 0.4 + 0.6 * rng.uniform(0.0, 1.0, 3).astype(np.float32)
    texture = np.zeros((height, width), np.float32)
    for _ in range(6):
        fx, fy = rng.uniform(0.2, 1.4, 2)
        texture += np.sin(xx * fx + rng.uniform(0, 6.3)) * np.cos(yy * fy + rng.uniform(0, 6.3))
    band = (v > 0.6)[..., None].astype(np.float32)
    img = img + band * 0.04 * texture[..., None]
    img = img + rng.normal(0.0, 0.01, img.shape).astype(np.float32)
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class BenchResult:
    """One model's timings on the synthetic photo.

    Attributes:
        precision: what drew the photo (``inference.Upscaler.precision_for``): ``uint8``
            on a resampler's 8-bit path, else the compute's (``fp32`` after a fallback).
        seconds: every timed run (warm-up excluded), in order.
        warmup_seconds: the untimed first run's seconds (with ``--compile``, compiling
            included): what a run pays once before the steady state of ``seconds``.
        best: the fastest of them.
        seconds_per_4k: ``best`` scaled to a 3840×2160 output.
        extrapolation: that scaling, 3840·2160 ÷ the output's pixels (1.0 for ×4 of
            960×540; above :data:`EXTRAPOLATION_LIMIT`, ``seconds_per_4k`` is no estimate
            of 4K: the module docs).
        ratio: ``seconds_per_4k`` ÷ the baseline's (1.0 for the baseline).
        macs_per_pixel: multiply-accumulates per input (LR) pixel, times the ensemble's
            passes; ``None`` when the network has no countable layer (see
            :mod:`~pocketsr_cli.evaluation.macs`).
        ensemble, ensemble_weight: the self-ensemble it ran with (``none``, ``pad`` with
            its ω, ``flip8``); ``model`` then ends in ``+pad``, ``+flip8``.
        host_peak_bytes, host_peak_lifetime, device_peak_bytes, device_reserved_peak_bytes:
            peak memory over this model's runs, warm-up included, as
            :class:`~pocketsr_cli.evaluation.peakmem.PeakMemory` defines them.
        warnings: distinct warnings of the upscaler (``torch.compile`` failed and it ran
            uncompiled, half precision gave NaN and it went on in fp32).
    """

    model: str
    family: str
    scale: int
    params: int
    precision: str
    out_width: int
    out_height: int
    seconds: list[float]
    best: float
    seconds_per_4k: float
    macs_per_pixel: float | None
    extrapolation: float = 1.0
    ratio: float = 1.0
    warmup_seconds: float = 0.0
    ensemble: str = "none"
    ensemble_weight: float | None = None
    host_peak_bytes: int | None = None
    host_peak_lifetime: bool = False
    device_peak_bytes: int | None = None
    device_reserved_peak_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchReport:
    """Everything :func:`bench` measured (``threads``: torch's CPU threads; ``compile``:
    the networks ran through ``torch.compile``)."""

    width: int
    height: int
    repeat: int
    device: str
    threads: int
    baseline: str
    models: list[BenchResult] = field(default_factory=list)
    compile: bool = False

    def extrapolation_note(self) -> str | None:
        """One line for the user when some row's ``seconds_per_4k`` is scaled up by more
        than :data:`EXTRAPOLATION_LIMIT` (the most scaled row is named), else None."""
        worst = max(self.models, key=lambda r: r.extrapolation, default=None)
        if worst is None or worst.extrapolation <= EXTRAPOLATION_LIMIT:
            return None
        return (
            f"s per 4K scales each output's time to 3840×2160, here by up to "
            f"{worst.extrapolation:.0f}× ({worst.model}'s {worst.out_width}×"
            f"{worst.out_height} output): on so small an input, costs that do not grow with "
            "its size and caches that hold all of it make that no estimate of 4K, nor the "
            f"ratios; time a {SIZE} whose outputs are a quarter of 4K or more (the default, "
            f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}, for ×2 and ×4 models)"
        )


def _open_models(
    models: Sequence[str | None],
    repeat: int,
    spec: UpscalerSpec,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[list[ModelDescriptor], dict[str | None, str]]:
    """Check ``repeat``, then resolve every model, telling ``on_warning`` what a library
    warns of meanwhile (``libwarnings.telling``: huggingface_hub's "Not enough free disk
    space" as weights download), also when resolving fails; None: Python prints it.

    Returns:
        The distinct models, in order: two references to one registry model
        (``pocketsr-compact``, ``pocketsr-compact-x4``) give one, while two weights files
        of one name (``a/w.safetensors``, ``b/w.safetensors``) are two, the second named by
        its path as given; and the row name each reference gives.

    Raises:
        UsageError: ``repeat`` < 1.
        ModelError: a model cannot be resolved or loaded.
    """
    if repeat < 1:
        raise UsageError(f"{REPEAT} must be at least 1, got {repeat}")
    kept: dict[str, ModelDescriptor] = {}
    rows: dict[str | None, str] = {}
    with libwarnings.telling(on_warning):
        for ref in models:
            desc = named_apart(spec.resolve(ref), ref, kept)
            kept.setdefault(desc.name, desc)
            rows[ref] = desc.name
    return list(kept.values()), rows


def _distinct(ensembles: Sequence[Ensemble]) -> list[Ensemble]:
    """``ensembles`` without duplicates, in order.

    Raises:
        UsageError: none at all.
    """
    if not ensembles:
        raise UsageError("bench needs at least one ensemble (Ensemble() is none)")
    return list(dict.fromkeys(ensembles))


def _row_name(desc: ModelDescriptor, ensemble: Ensemble) -> str:
    """``NAME``, or ``NAME +pad`` / ``NAME +flip8`` with a self-ensemble."""
    return desc.name + (f" +{ensemble.label}" if ensemble else "")


def _memory_fields(peak: PeakMemory) -> dict[str, Any]:
    return {
        "host_peak_bytes": peak.host_peak_bytes,
        "host_peak_lifetime": peak.host_peak_lifetime,
        "device_peak_bytes": peak.device_peak_bytes,
        "device_reserved_peak_bytes": peak.device_reserved_peak_bytes,
    }


def _note(notes: list[str], message: str) -> None:
    """Keep ``message`` in ``notes`` once (an upscaler warns once per tile or image)."""
    if message not in notes:
        notes.append(message)


def _upscale_need(upscaler: Any, size: tuple[int, int], scale: int) -> int:
    """Host memory ``upscaler`` needs for the synthetic photo of ``size`` (the upscale
    stage of ``memory.predict``, as ``pocketsr upscale`` admits an image), leaving out the
    tiles' working set: the tiler sizes tiles to the memory free, and measuring that set
    would run the network (and, with ``--compile``, compile it) before the warm-up."""
    from pocketsr_cli import memory
    from pocketsr_cli.pipeline import upscaler_memory

    width, height = size
    profile = replace(upscaler_memory(upscaler), working_bytes=0, working_for=None)
    return memory.predict_upscale(
        size=size, scale=scale, target=(width * scale, height * scale), upscaler=profile
    )


def _check_fits(need: int, size: tuple[int, int], what: str) -> None:
    """Refuse a ``--size`` whose run would need more host memory than there is.

    Raises:
        UsageError: ``need`` bytes exceed the memory available (when it is known).
    """
    from pocketsr_cli import memory

    available = memory.host_available_bytes()
    if available is None or need <= available:
        return
    width, height = size
    raise UsageError(
        f"{SIZE} {width}x{height} needs about {memory.describe_bytes(need, apart_from=available)} "
        f"of memory {what}, more than the {memory.describe_bytes(available, apart_from=need)} "
        f"available; choose a smaller {SIZE} (the default is "
        f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})"
    )


def bench(
    models: Sequence[str],
    spec: UpscalerSpec,
    size: tuple[int, int] = DEFAULT_SIZE,
    repeat: int = 3,
    *,
    baseline: str | None = None,
    ensembles: Sequence[Ensemble] = (Ensemble(),),
    on_progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> BenchReport:
    """Time each model on :func:`synthetic_photo` of ``size`` (width, height).

    Args:
        models: registry names or weights files; empty means the default model.
        spec: how every model is opened and run (device, precision, tiles, compile,
            offline).
        size: input width and height.
        repeat: timed runs per model (the fastest counts).
        baseline: the model the ratios refer to (added first when not in ``models``),
            with the first of ``ensembles``; default: the first model.
        ensembles: every model is timed once with each (a row ``NAME +pad`` beside
            ``NAME``), so an ensemble's cost is its row's ratio to the plain one.
        on_progress: called after every run, warm-ups included.
        on_warning: told, one line each, what a library warns of while the models are
            resolved (huggingface_hub's "Not enough free disk space" as weights
            download), also when that fails; None: Python prints it.  The upscalers'
            own warnings are in each result's ``warnings``.

    Raises:
        UsageError: ``repeat`` < 1.
        ModelError: a model cannot be resolved or loaded (before anything is timed).
    """
    import torch

    from pocketsr_cli.evaluation.macs import macs_per_pixel

    refs = distinct_refs(models) or [None]
    if baseline is not None:
        same = [ref for ref in refs if ref_key(ref) == ref_key(baseline)]
        if same:
            baseline = same[0]  # ./w.pth as the baseline of -m w.pth: that row
        else:
            refs.insert(0, baseline)
    descriptors, rows = _open_models(refs, repeat, spec, on_warning)
    ensembles = _distinct(ensembles)
    base_name = rows[baseline] if baseline is not None else descriptors[0].name
    base_model = [d.name for d in descriptors].index(base_name)
    base_index = base_model * len(ensembles)  # rows: every model with every ensemble

    width, height = size
    _check_fits(SYNTHETIC_BYTES_PER_PIXEL * width * height, size, "to make the synthetic photo")
    image = synthetic_photo(width, height)
    report = BenchReport(
        width=width,
        height=height,
        repeat=repeat,
        device=str(spec.device),
        threads=torch.get_num_threads(),
        baseline=_row_name(descriptors[base_model], ensembles[0]),
        compile=spec.compile,
    )
    total = len(descriptors) * len(ensembles) * (repeat + 1)
    done = 0
    for desc, ensemble in [(d, e) for d in descriptors for e in ensembles]:
        notes: list[str] = []
        upscaler = open_upscaler(
            desc, spec, ensemble=ensemble, on_warning=functools.partial(_note, notes)
        )
        compute = upscaler.compute
        name = _row_name(desc, ensemble)
        _check_fits(
            _upscale_need(upscaler, size, desc.scale),
            size,
            f"to upscale with {name} (×{desc.scale}: {width * desc.scale}×{height * desc.scale})",
        )
        times: list[float] = []
        warmup = 0.0
        out_shape: tuple[int, ...] = ()
        with PeakMemory(compute.device) as peak:
            for run in range(repeat + 1):
                start = time.perf_counter()
                out = upscaler.upscale(image)  # returns host memory: the device has finished
                elapsed = time.perf_counter() - start
                out_shape = out.shape
                if run > 0:
                    times.append(elapsed)
                else:
                    warmup = elapsed
                done += 1
                if on_progress is not None:
                    label = "warm-up" if run == 0 else f"run {run}/{repeat}"
                    on_progress(done, total, f"{name} {label}")
            del out
        best = min(times)
        out_h, out_w = int(out_shape[0]), int(out_shape[1])

        def forward(
            x: torch.Tensor, module: Any = desc.module, stats: Any = desc.image_stats
        ) -> Any:
            return module(x) if stats is None else module(x, stats(x))

        macs = macs_per_pixel(
            desc.module, desc.size.padded(64), device=compute.device, call=forward
        )
        report.models.append(
            BenchResult(
                model=name,
                family=desc.family,
                scale=desc.scale,
                params=desc.params,
                precision=upscaler.precision_for(image.dtype),  # what ran: uint8, fp32...
                out_width=out_w,
                out_height=out_h,
                seconds=times,
                best=best,
                seconds_per_4k=best * UHD_PIXELS / (out_w * out_h),
                extrapolation=UHD_PIXELS / (out_w * out_h),
                macs_per_pixel=None if macs is None else macs * ensemble.passes,
                warmup_seconds=warmup,
                **ensemble.record(),
                **_memory_fields(peak),
                warnings=notes,
            )
        )
    reference = report.models[base_index].seconds_per_4k
    for result in report.models:
        result.ratio = result.seconds_per_4k / reference if reference > 0 else float("inf")
    return report


# ---------------------------------------------------------------------- folder of photos


@dataclass
class FailedImage:
    """One image of a folder run that could not be read, upscaled or written: its path
    (``input``, as ``upscale --json`` writes it) and why (``error``, upscale's message)."""

    input: str
    error: str


@dataclass
class FolderBenchResult:
    """One model's end-to-end timings on a folder (the fastest pass's figures).

    Rates count only the images written (``images``); the wall time also contains the
    failed images' attempts.  A rate is ``None`` when no image was written.

    Attributes:
        precision: what drew the images (:attr:`TimedUpscaler.precision`: ``uint8``,
            ``fp16``..., ``uint8+fp32`` for a resampler given 8- and 16-bit images);
            None when no image was drawn (every one failed): what a resampler would run
            at depends on the images it is given.
        images: images upscaled and written.
        failed: images that could not be read, upscaled or written.
        first_error: ``"<file>: <reason>"`` of the first failed image, ``None`` if none
            (kept for scripts written before ``failures``).
        failures: every failed image of that pass, in folder order (``failed`` of them).
        seconds: wall-clock seconds of every timed pass over the folder, in order.
        warmup_seconds: the untimed warm-up upscale of the first image (with
            ``--compile``, compiling included), with the network's probe passes that
            weighing its memory need ran before it; 0.0 when no image decodes.
        wall_seconds: the fastest pass.
        model_seconds: seconds spent inside ``Upscaler.upscale`` during that pass.
        in_megapixels, out_megapixels: pixels read and written in one pass, in millions.
        images_per_s, seconds_per_image: end-to-end throughput.
        mp_per_s, input_mp_per_s: output and input megapixels per wall-clock second.
        model_seconds_per_image: ``model_seconds`` ÷ ``images``.
        e2e_over_model: ``wall_seconds`` ÷ ``model_seconds``: what decoding, encoding
            and writing add on top of the model (1.0 = fully overlapped).
        ensemble, ensemble_weight: the self-ensemble it ran with (see
            :class:`BenchResult`).
        host_peak_bytes, host_peak_lifetime, device_peak_bytes, device_reserved_peak_bytes:
            peak memory over this model's warm-up and passes (see ``PeakMemory``).
        warnings: distinct warnings from the pipeline and the upscaler.
    """

    model: str
    family: str
    scale: int
    params: int
    precision: str | None
    images: int
    failed: int
    first_error: str | None
    seconds: list[float]
    wall_seconds: float
    model_seconds: float
    in_megapixels: float
    out_megapixels: float
    images_per_s: float | None
    seconds_per_image: float | None
    mp_per_s: float | None
    input_mp_per_s: float | None
    model_seconds_per_image: float | None
    e2e_over_model: float | None
    warmup_seconds: float = 0.0
    ensemble: str = "none"
    ensemble_weight: float | None = None
    host_peak_bytes: int | None = None
    host_peak_lifetime: bool = False
    device_peak_bytes: int | None = None
    device_reserved_peak_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)
    failures: list[FailedImage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FolderBenchReport:
    """Everything :func:`bench_folder` measured.

    ``images``: image files found in ``folder``; ``ignored``: other (non-hidden) files;
    ``not_run``: what ``pocketsr upscale`` would report for those other files, each once
    (``pipeline.planned_result``): ``skipped`` (not an image) or ``failed`` (a broken
    symbolic link, a FIFO: never opened); ``fmt``: the output format key, ``None`` for
    each input's own format; ``quality``: what the outputs are written at, as ``pocketsr
    upscale``'s record says it: the quality asked, else ``imageio.DEFAULT_QUALITY``, or
    ``"lossless"`` when every image is a lossless WebP kept lossless (no quality asked,
    written as WebP: ``imageio.plan_output``); ``lossless_images``: how many images are
    written so, as a lossless WebP; ``threads``: torch's CPU threads; ``compile``: the
    networks ran through ``torch.compile``; ``warnings``: what was said of the folder
    itself, whatever the model (its sub-folders not scanned, in ``upscale``'s words).
    """

    folder: str
    images: int
    ignored: int
    fmt: str | None
    quality: int | str
    repeat: int
    device: str
    threads: int
    models: list[FolderBenchResult] = field(default_factory=list)
    compile: bool = False
    not_run: list[Result] = field(default_factory=list)
    lossless_images: int = 0
    warnings: list[str] = field(default_factory=list)


class TimedUpscaler:
    """Wraps an ``ImageUpscaler`` and adds up the seconds spent in its ``upscale``.

    The pipeline calls ``upscale`` from one thread only; ``seconds`` and ``calls`` are
    read between runs.  Exceptions pass through (their time is counted too).
    """

    def __init__(self, inner: ImageUpscaler) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0
        self.precisions: dict[str, None] = {}  # what drew the images, in order seen

    @property
    def scale(self) -> int:
        return self.inner.scale

    def memory_profile(self) -> memory.UpscalerMemory:
        """The wrapped upscaler's (``pipeline.upscaler_memory``), by which the pipeline
        admits each image: a wrapper without it would count no working set."""
        from pocketsr_cli.pipeline import upscaler_memory

        return upscaler_memory(self.inner)

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.inner.upscale(pixels, on_tile)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1
            precision_for = getattr(self.inner, "precision_for", None)
            if precision_for is not None:
                self.precisions[precision_for(pixels.dtype)] = None

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.precisions.clear()

    @property
    def precision(self) -> str | None:
        """What drew the images since the last :meth:`reset` (``inference.Upscaler.
        precision_for``): ``uint8`` (a resampler's 8-bit path), ``fp16``..., several joined
        by ``+`` (``uint8+fp32``: a resampler given 8- and 16-bit images); None when none
        was upscaled or the upscaler does not say."""
        return "+".join(self.precisions) or None


class _QuietReporter(NullReporter):
    """A pipeline ``Reporter`` that prints nothing: each finished image calls
    ``on_image`` (progress), and distinct warnings are kept in ``warnings``: the run's,
    and each image's as ``upscale`` words them (``"<file>: JPEG cannot store
    transparency; writing PNG instead"``).  Thread-safe, as the pipeline requires."""

    def __init__(self) -> None:
        self.on_image: Callable[[], None] = lambda: None
        self.warnings: list[str] = []
        self._lock = threading.Lock()

    def image_finished(self, result: Result) -> None:
        for message in result.warnings:
            self.warning(f"{result.job.display}: {message}")
        self.on_image()

    def warning(self, message: str) -> None:
        with self._lock:
            if message not in self.warnings:
                self.warnings.append(message)


def folder_jobs(
    folder: Path,
    out_dir: Path,
    fmt: str | None,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[list[Job], list[Result]]:
    """Jobs for the image files directly inside ``folder``, writing into ``out_dir``.

    Outputs are numbered (``00000.png``...) so that ``a.jpg`` and ``a.png`` cannot
    collide when ``fmt`` gives both one extension.  Returns the jobs and, for the other
    files, what ``pocketsr upscale`` reports of them (``pipeline.planned_result``:
    skipped, or failed unopened), in folder order.  The sub-folders left out are told to
    ``on_warning`` as ``upscale`` without ``-r`` tells them (``jobs.collect_jobs``).

    Raises:
        UsageError: ``folder`` does not exist (``'~/photos'`` told that the shell left the
            ``~``: ``errors.home_hint``), is not a folder, or holds no image file.
    """
    from pocketsr_cli.imageio import extension_for
    from pocketsr_cli.jobs import Naming, collect_jobs, nothing_found
    from pocketsr_cli.pipeline import planned_result

    if not folder.exists():
        raise UsageError(f"{FOLDER} not found: {folder}{home_hint(folder)}")
    if not folder.is_dir():
        raise UsageError(f"{FOLDER} is not a folder: {folder}")
    # Without a format the output names mirror the (unique) input names: no collisions.
    naming = Naming(out_dir=out_dir, suffix=None, scale_label="1", fmt=None)
    found = collect_jobs([folder], naming, on_warning=on_warning)
    images = [job for job in found if job.runs]
    if not images:
        raise UsageError(nothing_found([folder], recursive=False, glob=None))
    jobs = [
        replace(
            job,
            output=out_dir / f"{i:05d}{extension_for(fmt) if fmt else job.input.suffix}",
        )
        for i, job in enumerate(images)
    ]
    return jobs, [r for job in found if (r := planned_result(job)) is not None]


def _kept_lossless(jobs: Sequence[Job], fmt: str | None, quality: int | None) -> int:
    """How many of ``jobs``' inputs the pipeline writes as a lossless WebP when written as
    ``fmt`` (None: their own format) at ``quality`` (None: not asked): a lossless WebP
    kept as WebP (``pipeline.kept_lossless``), told from each input's header.  An input
    whose header cannot be read counts as not (it fails in the run)."""
    from pocketsr_cli.pipeline import kept_lossless

    return sum(kept_lossless(job.input, fmt, quality, known=job.header) for job in jobs)


def _warm_up(
    upscaler: ImageUpscaler, jobs: Sequence[Job], fmt: str | None, quality: int | None = None
) -> tuple[str | None, float]:
    """Upscale the first decodable image the pipeline would admit once (written as ``fmt``
    at ``quality``, ``Options.quality``;
    one whose predicted need, ``pipeline.predicted_need``, exceeds the memory available is
    passed over undecoded, as the pipeline fails it); a one-line warning when that fails,
    and the seconds the needs took to predict: the first measures the tiles' working set
    (``inference.Upscaler.working_bytes_for``), which runs the network (with ``--compile``,
    compiles it), part of the warm-up as it was when the warm-up upscale measured it."""
    from pocketsr_cli import memory
    from pocketsr_cli.errors import ImageReadError
    from pocketsr_cli.imageio import read_header, read_image
    from pocketsr_cli.pipeline import predicted_need, upscaler_memory

    available = memory.host_available_bytes()
    profile = upscaler_memory(upscaler)
    scale = int(upscaler.scale)
    weighing = 0.0
    for job in jobs:
        try:
            header = read_header(job.input)
            target = (header.width * scale, header.height * scale)
            start = time.perf_counter()
            try:
                need = predicted_need(
                    job.input,
                    header,
                    scale=scale,
                    target=target,
                    requested=fmt,
                    profile=profile,
                    quality=quality,
                )
            finally:
                weighing += time.perf_counter() - start
            if available is not None and need > available:
                continue
            pixels = read_image(job.input, max_pixels=None).pixels
        except ImageReadError:
            continue
        try:
            upscaler.upscale(pixels)
        except (PocketSRError, RuntimeError, MemoryError, ValueError) as exc:
            first = str(exc).strip().splitlines()
            problem = (
                f"warm-up on {job.display} failed: {first[0] if first else type(exc).__name__}"
            )
            return problem, weighing
        return None, weighing
    return None, weighing  # nothing decodes: every image will be reported as failed


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if amount > 0 and seconds > 0 else None


def _folder_result(
    desc: ModelDescriptor,
    ensemble: Ensemble,
    precision: str | None,
    summary: Summary,
    seconds: list[float],
    model_seconds: float,
    warmup_seconds: float,
    peak: PeakMemory,
    warnings: list[str],
) -> FolderBenchResult:
    ok = [r for r in summary.results if r.status == "ok"]
    failed = summary.failed
    first_error = f"{failed[0].job.display}: {failed[0].error}" if failed else None
    in_mp = sum((r.width or 0) * (r.height or 0) for r in ok) / 1e6
    out_mp = sum((r.out_width or 0) * (r.out_height or 0) for r in ok) / 1e6
    wall = min(seconds)
    n = len(ok)
    return FolderBenchResult(
        model=_row_name(desc, ensemble),
        family=desc.family,
        scale=desc.scale,
        params=desc.params,
        precision=precision,
        images=n,
        failed=len(failed),
        first_error=first_error,
        failures=[FailedImage(str(r.job.input), r.error or "") for r in failed],
        seconds=seconds,
        wall_seconds=wall,
        model_seconds=model_seconds,
        in_megapixels=in_mp,
        out_megapixels=out_mp,
        images_per_s=_rate(n, wall),
        seconds_per_image=wall / n if n else None,
        mp_per_s=_rate(out_mp, wall),
        input_mp_per_s=_rate(in_mp, wall),
        model_seconds_per_image=model_seconds / n if n else None,
        e2e_over_model=wall / model_seconds if n and model_seconds > 0 else None,
        warmup_seconds=warmup_seconds,
        warnings=warnings,
        **ensemble.record(),
        **_memory_fields(peak),
    )


def bench_folder(
    models: Sequence[str],
    folder: Path,
    spec: UpscalerSpec,
    *,
    fmt: str | None = None,
    quality: int | None = None,
    repeat: int = 1,
    ensembles: Sequence[Ensemble] = (Ensemble(),),
    on_progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> FolderBenchReport:
    """Time each model end to end (decode → upscale → encode → write) on ``folder``.

    The image files directly inside ``folder`` (hidden files and sub-folders left out;
    the sub-folders said in the report's ``warnings``) go through
    :func:`pocketsr_cli.pipeline.run` as ``pocketsr upscale`` would send them, with
    outputs in a temporary folder that is deleted before this returns, whatever happens.
    Per model: one untimed warm-up upscale of the first decodable image, then
    ``repeat`` timed passes over all images; the fastest pass counts.  Images that fail
    are listed in the result (``failed``, ``failures``), never dropped silently; the
    folder's other files are in the report's ``not_run``, as ``upscale`` reports them.

    Args:
        models: registry names or weights files; empty means the default model.
        folder: the folder of photos.
        fmt: output format name or extension (``png``, ``jpg``...); ``None`` keeps each
            input's format.
        quality: JPEG/WebP quality, 1..100; None: not asked, as ``pocketsr upscale``
            without ``--quality``: ``imageio.DEFAULT_QUALITY``, and a lossless WebP
            written as WebP stays lossless (``pipeline.Options.quality``).
        spec: how every model is opened and run (device, precision, tiles, compile,
            offline).
        repeat: timed passes per model.
        ensembles: as for :func:`bench`.
        on_progress: called after the warm-up and after every image of every pass (from
            the pipeline's writer thread).
        on_warning: as for :func:`bench`.

    Raises:
        UsageError: bad folder (missing, not a folder, no image file), format, quality,
            ``repeat`` < 1 — all before anything is timed.
        ModelError: a model cannot be resolved or loaded (before anything is timed).
        KeyboardInterrupt: interrupted (the temporary folder is still removed).
    """
    import torch

    from pocketsr_cli.imageio import DEFAULT_QUALITY, format_from_name
    from pocketsr_cli.pipeline import Options, run

    try:
        fmt_key = None if fmt is None else format_from_name(fmt)
    except ValueError as exc:
        raise UsageError(f"{FORMAT}: {exc}") from None
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"{QUALITY} must be within 1..100, got {quality}")
    with tempfile.TemporaryDirectory(prefix="pocketsr-bench-") as tmp:
        notes: list[str] = []
        jobs, not_run = folder_jobs(folder, Path(tmp), fmt_key, on_warning=notes.append)
        refs = distinct_refs(models) or [None]
        descriptors, _ = _open_models(refs, repeat, spec, on_warning)
        ensembles = _distinct(ensembles)
        lossless = _kept_lossless(jobs, fmt_key, quality)
        written: int | str = DEFAULT_QUALITY if quality is None else quality
        if lossless == len(jobs):
            written = "lossless"
        report = FolderBenchReport(
            folder=str(folder),
            images=len(jobs),
            ignored=len(not_run),
            fmt=fmt_key,
            quality=written,
            repeat=repeat,
            device=str(spec.device),
            threads=torch.get_num_threads(),
            compile=spec.compile,
            not_run=not_run,
            lossless_images=lossless,
            warnings=notes,
        )
        options = Options(fmt=fmt_key, quality=quality, overwrite=True)
        total = len(descriptors) * len(ensembles) * (1 + repeat * len(jobs))
        done = 0
        lock = threading.Lock()

        def step(label: str) -> None:
            nonlocal done
            with lock:
                done += 1
                count = done
            if on_progress is not None:
                on_progress(count, total, label)

        for desc, ensemble in [(d, e) for d in descriptors for e in ensembles]:
            reporter = _QuietReporter()
            upscaler = open_upscaler(desc, spec, ensemble=ensemble, on_warning=reporter.warning)
            compute = upscaler.compute
            name = _row_name(desc, ensemble)
            timed = TimedUpscaler(upscaler)
            seconds: list[float] = []
            best: tuple[float, float, Summary] | None = None
            with PeakMemory(compute.device) as peak:
                problem, weighing = _warm_up(timed, jobs, fmt_key, quality)
                if problem is not None:
                    reporter.warning(problem)
                warmup_seconds = timed.seconds + weighing  # the network's first passes
                step(f"{name} warm-up")
                for npass in range(1, repeat + 1):
                    reporter.on_image = functools.partial(step, f"{name} pass {npass}/{repeat}")
                    timed.reset()
                    start = time.perf_counter()
                    summary = run(jobs, timed, options, reporter)
                    wall = time.perf_counter() - start
                    if summary.interrupted:
                        raise KeyboardInterrupt
                    seconds.append(wall)
                    if best is None or wall < best[0]:
                        best = (wall, timed.seconds, summary)
            assert best is not None  # repeat >= 1
            _, model_seconds, summary = best
            report.models.append(
                _folder_result(
                    desc,
                    ensemble,
                    timed.precision,  # None: nothing drawn, so nothing to say
                    summary,
                    seconds,
                    model_seconds,
                    warmup_seconds,
                    peak,
                    reporter.warnings,
                )
            )
    return report
