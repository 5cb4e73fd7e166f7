"""Scoring models on held-out photographs: :func:`evaluate`.

For every ground-truth (HR) image, in order:

1. decode it (:func:`~pocketsr_cli.imageio.read_image`, EXIF orientation applied), make it
   RGB (gray is replicated, alpha dropped) and crop it top-left to a multiple of ``scale``;
2. degrade it once (:func:`~pocketsr_cli.evaluation.degrade.degrade_eval`, the noise seeded
   by :func:`~pocketsr_cli.evaluation.degrade.seed_for` its file name);
3. upscale that LR image with every model through :class:`~pocketsr_cli.inference.Upscaler`
   (tiling and all, as ``pocketsr upscale`` would), once per self-ensemble asked for
   (a row ``NAME +pad`` beside the plain ``NAME``), timing the upscale alone (each row
   has already run once, untimed, on a small patch, so the first image is not charged
   with its start-up);
4. score each output against the cropped ground truth with the
   :mod:`~pocketsr_cli.evaluation.metrics` (:data:`METRICS`).

The bicubic resampler is always scored, as the floor every model has to beat.  All models
are resolved before any image is read, so a bad ``-m`` fails fast.  A file that cannot be
decoded, or would need more memory than is available to score (:func:`image_need`,
checked from its header before it is decoded, as ``pocketsr upscale`` admits an image),
fails, as ``upscale`` fails it (:attr:`EvalReport.failed`), and is reported as a failure;
one too small to score is skipped, with a warning.  Either way the other files are still
scored, and
it does not count towards a ``limit`` (that many images are scored, when the folder has
them).  Nothing here prints.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pocketsr_cli import libwarnings
from pocketsr_cli.descriptor import ModelDescriptor, distinct_refs, named_apart
from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.errors import (
    ImageReadError,
    ModelError,
    NoVariantError,
    UsageError,
    home_hint,
)
from pocketsr_cli.evaluation.degrade import (
    EVAL_KINDS,
    EvalKind,
    crop_to_multiple,
    degrade_eval,
    seed_for,
)
from pocketsr_cli.evaluation.metrics import (
    MIN_LATTICE_SIDE,
    detail_scores,
    lattice_ratio,
    psnr_y,
    sharpness,
    ssim_y,
)
from pocketsr_cli.factory import UpscalerSpec, open_upscaler
from pocketsr_cli.spelling import CROP, MODEL, RESIZE, SCALE

if TYPE_CHECKING:
    from pocketsr_cli.imageio import ImageHeader
    from pocketsr_cli.memory import UpscalerMemory

FLOOR_MODEL = "bicubic"
# Host memory per ground-truth pixel, at most, that degrading it (float32 and float64
# copies, bicubic's padded planes, the blur) and scoring an output against it (the luma
# planes in float64, SSIM's blurred maps, the FFTs of detail and lattice ratio) hold at
# once: measured with tracemalloc on 1024×768 photos (2026-11-30), 85 bytes (``real``) and
# 78 (SSIM, the largest metric), rounded up.
DEGRADE_BYTES_PER_PIXEL = 96
SCORE_BYTES_PER_PIXEL = 96
METRICS = ("psnr_y", "ssim_y", "detail", "hf", "bandcorr", "lattice_ratio", "sharpness")
WARM_UP_SIDE = 64  # LR pixels of the untimed first run of each model

# (steps done, steps in all, what was just done): one step is one image through one model.
ProgressCallback = Callable[[int, int, str], None]
WarningCallback = Callable[[str], None]
# (path as given, why): a file that failed, as ``upscale`` fails an input (and names it).
FailureCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class ImageScore:
    """One model's result on one image.

    ``image`` is the photo's file name (what the report's ``images`` list); ``input`` its
    path as given (``str`` of the path :func:`evaluate` was handed, as ``upscale --json``
    names an input).  ``width``/``height`` are those of the cropped ground truth (= the
    output); ``seconds`` is the upscale alone (no decoding, degrading or scoring).
    """

    image: str
    input: str
    model: str
    width: int
    height: int
    psnr_y: float
    ssim_y: float
    detail: float
    hf: float
    bandcorr: float
    lattice_ratio: float
    sharpness: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite numbers (PSNR of identical images) become ``None``."""
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}


@dataclass
class ModelScore:
    """One model (with one self-ensemble) over the whole set: means of the per-image
    scores (arithmetic means, PSNR included, as SR papers report it).  ``scale`` is the
    model's own factor (its variant's): the eval's, or, for a row drawn at another and
    resized (``NAME (x4→x2)``) or a PCSR model drawing the eval's natively (``NAME (x3
    native)``), the factor it was trained for.  ``precision`` is
    what drew the images (``inference.Upscaler.precision_for``): ``uint8`` on a resampler's
    8-bit path, ``fp32`` after a half-precision fallback, several joined by ``+``."""

    model: str
    family: str
    scale: int
    params: int
    precision: str
    floor: bool = False  # added as the bicubic floor, not asked for
    ensemble: Ensemble = field(default_factory=Ensemble)
    images: list[ImageScore] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        """Mean of ``metric`` (one of :data:`METRICS` or ``seconds``) over the images;
        ``nan`` when there are none."""
        values = [float(getattr(s, metric)) for s in self.images]
        return float(np.mean(values)) if values else math.nan

    @property
    def seconds_per_image(self) -> float:
        return self.mean("seconds")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the per-image scores under ``images``.  ``model_scale``
        is :attr:`scale`, the model's own factor; the factor the eval ran at (the same for
        every row) is :attr:`EvalReport.scale`, which ``pocketsr eval --json`` writes as
        ``scale`` beside it."""
        out: dict[str, Any] = {
            "model": self.model,
            "family": self.family,
            "model_scale": self.scale,
            "params": self.params,
            "precision": self.precision,
            "floor": self.floor,
            **self.ensemble.record(),
            "count": len(self.images),
        }
        out.update({m: _finite_or_none(self.mean(m)) for m in METRICS})
        out["seconds_per_image"] = _finite_or_none(self.seconds_per_image)
        out["images"] = [s.to_dict() for s in self.images]
        return out


@dataclass
class EvalReport:
    """Everything :func:`evaluate` measured.

    Attributes:
        degradation: ``bicubic`` or ``real``.
        scale: the upscaling factor every model ran at.
        device: the torch device, as text.
        images: names of the images scored, in order.
        skipped: ``(name, reason)`` for files that could not be scored.
        failed: the names in ``skipped`` of files that failed, as ``upscale`` fails them:
            they cannot be decoded, or need more memory than is available; the others
            are too small to score at this scale and crop.
        models: one entry per model, bicubic floor first unless asked for elsewhere.
        crop: the side of the centred window scored (None: whole photos).
        smaller_than_crop: the names in ``images`` of photos smaller than ``crop`` on a
            side, scored whole along it (:meth:`crop_note`).
        inputs: the path as given of each name in ``skipped`` (:meth:`not_scored`).
    """

    degradation: str
    scale: int
    device: str
    images: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    models: list[ModelScore] = field(default_factory=list)
    crop: int | None = None
    smaller_than_crop: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)

    def crop_note(self) -> str | None:
        """One line for the user when some photos scored were smaller than the crop on a
        side (scored whole along it, on fewer pixels than the others), else None."""
        if self.crop is None or not self.smaller_than_crop:
            return None
        count, total = len(self.smaller_than_crop), len(self.images)
        which = "all" if count == total else f"{count} of the"
        return (
            f"{which} {total} photo(s) scored are smaller than {CROP.given(self.crop)} on a "
            f"side and were scored whole along it, on fewer pixels than a {self.crop}×"
            f"{self.crop} window"
        )

    def not_scored(self) -> list[dict[str, str | None]]:
        """JSON-ready, in order: one object per file in :attr:`skipped`, in the words of
        ``pocketsr upscale --json``'s per-input objects (and ``bench --folder``'s
        ``failures``): ``input`` (its path as given), ``status`` (``failed`` or
        ``skipped``), and why, as ``error`` when it failed and ``reason`` when it was
        skipped (the other ``None``)."""
        failed = set(self.failed)
        return [
            {
                "input": self.inputs.get(name, name),
                "status": "failed" if name in failed else "skipped",
                "error": why if name in failed else None,
                "reason": None if name in failed else why,
            }
            for name, why in self.skipped
        ]

    def model(self, name: str) -> ModelScore:
        """The entry of the model called ``name`` (``KeyError`` when absent)."""
        for entry in self.models:
            if entry.model == name:
                return entry
        raise KeyError(name)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def collect_images(folder: Path, on_warning: WarningCallback | None = None) -> list[Path]:
    """Image files directly inside ``folder`` (by extension, sorted by name; hidden files
    left out, as ``upscale`` and ``bench --folder`` leave them: ``jobs.is_hidden``);
    ``evaluate``'s ``limit`` says how many of them are scored.  The sub-folders left out
    are told to ``on_warning`` in ``upscale``'s words (``jobs.unscanned_note``: "FOLDER
    has 1 sub-folder not scanned"), once there are images to score.

    Raises:
        UsageError: ``folder`` is not a folder (one that is not there and was given as
            ``'~/photos'`` says that the shell did not expand the ``~``:
            ``errors.home_hint``), or holds no image file.
    """
    from pocketsr_cli.imageio import is_image_path
    from pocketsr_cli.jobs import is_hidden, nothing_found, unscanned_note

    if not folder.is_dir():
        hint = "" if os.path.lexists(folder) else home_hint(folder)
        raise UsageError(f"not a folder: {folder}{hint}")
    paths = sorted(
        p for p in folder.iterdir() if not is_hidden(p.name) and p.is_file() and is_image_path(p)
    )
    if not paths:  # said as bench --folder says it: its sub-folders counted
        raise UsageError(nothing_found([folder], recursive=False, glob=None))
    if on_warning is not None and (note := unscanned_note(folder)) is not None:
        on_warning(note)
    return paths


def ground_truth(path: Path, scale: int, crop: int | None = None) -> npt.NDArray[np.generic]:
    """The RGB ground truth of ``path``, cropped top-left to a multiple of ``scale``.

    With ``crop``, first the centred window of at most ``crop`` × ``crop`` pixels (keeps
    slow models, such as the teacher, affordable on a CPU).

    Raises:
        ImageReadError: the file cannot be decoded (the message is the reason only).
    """
    from pocketsr_cli.imageio import read_image

    pixels = read_image(path).pixels
    if pixels.shape[2] in (1, 2):  # gray (+ alpha): replicate, as the upscaler does
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    if crop is not None:
        h, w = pixels.shape[:2]
        ch, cw = min(h, crop), min(w, crop)
        top, left = (h - ch) // 2, (w - cw) // 2
        pixels = pixels[top : top + ch, left : left + cw]
    return np.ascontiguousarray(crop_to_multiple(pixels[..., :3], scale))


def resolve_models(
    models: Sequence[str],
    scale: int | None,
    spec: UpscalerSpec,
    *,
    resize: bool = False,
) -> tuple[list[tuple[ModelDescriptor, bool, int | None]], int]:
    """Resolve ``models`` (empty: the default model) plus the bicubic floor, as ``spec``
    lets weights be had.

    The scale is ``scale`` or, when ``None``, the own factor of the first model asked for
    that has one (``lanczos`` then ``pocketsr-compact-x2``: ×2), since a resampler
    (``bicubic``, ``lanczos``: ``runs_at_any_factor``) runs at any; resamplers alone run at
    the first one's own (×4).  Every other model is resolved at the scale.  A PCSR model
    without a variant at that scale draws it natively, as ``upscale -s S`` has it do, and
    is named ``"NAME (xS native)"``.  With ``resize``, any other model that has no variant
    at that scale is resolved at its own, and named ``"NAME (xN→xS)"``: :func:`evaluate`
    resizes its output to the scale, as ``upscale --outscale S`` would.  The name of one
    variant (``pocketsr-compact-x2``) is that network alone, never its sibling at the scale
    (a base name, ``pocketsr-compact``, picks the variant).  Duplicates are dropped.

    Returns:
        ``[(descriptor, is_added_floor, native_scale)]`` — bicubic first when it was not
        asked for; ``native_scale`` is the factor a PCSR model draws (None: its own) — and
        the common scale.

    Raises:
        ModelError: a model cannot be resolved or loaded.
        UsageError: without ``resize``, a model that is there has no variant at the
            scale (a weights file or a variant named at another, a family without it):
            the options ask for what it cannot score, and the message says what can.
    """
    from pocketsr_cli.weights.resolve import runs_at_any_factor

    refs = distinct_refs(models) or [None]
    given = scale is not None
    # Resolved in this order, so that the first to be resolved sets the scale (without -s);
    # the rows keep the order asked for.
    order = sorted(range(len(refs)), key=lambda i: (not given and runs_at_any_factor(refs[i]), i))
    rows: dict[int, tuple[ModelDescriptor, bool, int | None]] = {}
    for i in order:
        ref, native = refs[i], None
        try:
            desc = spec.resolve(ref, scale)
            if ref is not None and desc.name not in (ref, Path(ref).name):
                _check_named_variant(ref, desc, spec)
        except ModelError as exc:
            if scale is None:
                raise
            try:
                own = spec.resolve(ref, None)
            except ModelError:
                raise exc from None
            if own.family == "pcsr":
                desc, native = replace(own, name=f"{own.name} (x{scale} native)"), scale
            elif resize:
                desc = replace(own, name=f"{own.name} (x{own.scale}→x{scale})")
            else:
                tail = f"here {RESIZE} scores its x{own.scale} result resized to x{scale}"
                if not given:  # say where the factor came from, and what chooses another
                    tail = (
                        f"×{scale} is the factor of {_set_by(refs[order[0]])}, the first "
                        f"model with one, as {SCALE} is not given: {RESIZE} scores its "
                        f"x{own.scale} result resized to x{scale}, or {SCALE} chooses the factor"
                    )
                # The model is there, at another factor: the options chose the factor.
                error = UsageError if isinstance(exc, NoVariantError) else ModelError
                raise error(f"{exc}; {tail}") from None
        scale = desc.scale if scale is None else scale
        desc = named_apart(desc, ref, {d.name for d, _, _ in rows.values()})
        rows[i] = (desc, False, native)
    assert scale is not None
    resolved = [rows[i] for i in range(len(refs))]
    if not any(d.name == FLOOR_MODEL for d, _, _ in resolved):
        resolved.insert(0, (spec.resolve(FLOOR_MODEL, scale), True, None))
    unique: dict[str, tuple[ModelDescriptor, bool, int | None]] = {}
    for entry in resolved:
        unique.setdefault(entry[0].name, entry)
    return list(unique.values()), scale


def _set_by(ref: str | None) -> str:
    """``-m ref``, the model whose factor an eval without ``-s`` runs at, as messages say it."""
    return str(MODEL.given(ref)) if ref is not None else "the default model"


def _check_named_variant(ref: str, desc: ModelDescriptor, spec: UpscalerSpec) -> None:
    """Refuse to let ``ref``, the name of one variant (``pocketsr-compact-x2``), stand for
    ``desc``, the sibling :func:`resolve_models`'s scale picked (``pocketsr-compact-x4``):
    a row must score the network it names.  A base name (``pocketsr-compact``) picks its
    variant by the scale, as ``upscale -s`` does.

    Raises:
        NoVariantError: ``ref`` names a variant at another scale than ``desc``'s.
    """
    family = spec.family(ref)  # a registry name here: manifests only, nothing is loaded
    if family.name == ref or family.default_scale == desc.scale:
        return
    raise NoVariantError(
        f"{ref} is a ×{family.default_scale} model and this eval runs at ×{desc.scale} "
        f"({MODEL.given(family.name)} picks its ×{desc.scale} variant)"
    )


def image_need(
    header: ImageHeader,
    file_bytes: int,
    scale: int,
    crop: int | None,
    upscalers: Sequence[tuple[UpscalerMemory, int]],
) -> int:
    """Predicted peak host memory for scoring one ground truth (``header``, from a file of
    ``file_bytes``) at ``scale`` with upscalers of these profiles and factors
    (``pipeline.upscaler_memory``, ``Upscaler.scale``), as ``pocketsr upscale`` admits an
    image (``memory.predict``): the largest of decoding it whole (and made RGB) beside the
    ground truth :func:`ground_truth` keeps, degrading that, each upscale of the degraded
    image to the ground truth's size (its stage of ``memory.predict``), and scoring."""
    from pocketsr_cli import memory

    w, h = header.width, header.height
    b = 2 if header.bit_depth > 8 else 1
    cw, ch = (w, h) if crop is None else (min(w, crop), min(h, crop))
    gw, gh = cw - cw % scale, ch - ch % scale
    lw, lh = gw // scale, gh // scale
    kept = 3 * b * gw * gh + 3 * lw * lh  # the ground truth and the degraded image
    decode = memory.predict_decode(
        size=(w, h), channels=header.channels, bit_depth=header.bit_depth, file_bytes=file_bytes
    )
    stages = [
        decode + 3 * b * w * h + kept,  # gray made RGB before the crop
        kept + DEGRADE_BYTES_PER_PIXEL * gw * gh,
        kept + 3 * gw * gh + SCORE_BYTES_PER_PIXEL * gw * gh,
    ]
    for profile, own in upscalers:
        upscale = memory.predict_upscale(
            size=(lw, lh), scale=own, target=(gw, gh), upscaler=profile
        )
        stages.append(kept + upscale)
    return max(stages)


def _too_large(
    path: Path, scale: int, crop: int | None, upscalers: Sequence[tuple[UpscalerMemory, int]]
) -> str | None:
    """Why ``path`` cannot be scored in the memory available (:func:`image_need`), from its
    header, before it is decoded; None when it fits, or when its header or the memory
    available cannot be read (decoding then says what is wrong with it)."""
    from pocketsr_cli import memory
    from pocketsr_cli.imageio import read_header

    available = memory.host_available_bytes()
    if available is None:
        return None
    try:
        header = read_header(path)
        file_bytes = path.stat().st_size
    except (ImageReadError, OSError):
        return None
    need = image_need(header, file_bytes, scale, crop, upscalers)
    if need <= available:
        return None
    whole = image_need(header, file_bytes, scale, 32, upscalers)  # what no crop saves
    advice = (
        ""
        if whole > available
        else f"; {CROP.given('N')} scores an N×N window of it, in less"
        if crop is None
        else f"; a smaller {CROP} needs less"
    )
    return (
        f"needs about {memory.describe_bytes(need, apart_from=available)} of memory to score "
        f"{header.width}×{header.height} px, more than the "
        f"{memory.describe_bytes(available, apart_from=need)} available; not decoded{advice}"
    )


def evaluate(
    hr_paths: Sequence[Path],
    models: Sequence[str],
    spec: UpscalerSpec,
    degradation: EvalKind = "bicubic",
    scale: int | None = None,
    *,
    crop: int | None = None,
    resize: bool = False,
    ensembles: Sequence[Ensemble] = (Ensemble(),),
    limit: int | None = None,
    on_progress: ProgressCallback | None = None,
    on_warning: WarningCallback | None = None,
    on_failed: FailureCallback | None = None,
) -> EvalReport:
    """Degrade each ground truth, upscale it with every model and score the results.

    Args:
        hr_paths: ground-truth images (see :func:`collect_images`).
        models: registry names or weights files; empty means the default model.  Bicubic
            is added as the floor when absent.
        spec: how every model is opened and run (device, precision, tiles, offline).
        degradation: ``bicubic`` or ``real`` (see :mod:`~pocketsr_cli.evaluation.degrade`).
        scale: upscaling factor; ``None``: the first model's that has its own
            (:func:`resolve_models`).
        crop: score the centred ``crop``-pixel square of each ground truth (``None``: all).
        resize: run models lacking ``scale`` at their own and resize their output to it
            (see :func:`resolve_models`); the time includes the resize.
        ensembles: the self-ensembles every model asked for runs with, one row each,
            named ``NAME`` for ``none`` and ``NAME +LABEL`` otherwise (``+pad``,
            ``+pad:0.75``, ``+flip8``); the bicubic floor runs plain only.
        limit: stop once this many images are scored (in ``hr_paths`` order); files
            that fail (unreadable, too large) or are skipped (too small) on the way are
            reported and not counted.
        on_progress: called after each image × model step.
        on_warning: receives skipped files (``skipped PATH: why``, ``PATH`` as given,
            as failed ones are named), what a library warns of while the models are
            resolved (``libwarnings.telling``: huggingface_hub's "Not enough free disk
            space" as weights download; None: Python prints it) and the upscaler's
            warnings; failed files too (``failed PATH: why``) when ``on_failed`` is None.
        on_failed: receives ``(path, why)`` for each file that fails, as it fails:
            ``path`` as given (``str`` of its ``hr_paths`` entry), as ``upscale`` names a
            failed input.

    Returns:
        The report; models whose every image was skipped have empty ``images``.

    Raises:
        UsageError: unknown degradation, no ensemble, or (without ``resize``) a model
            with no variant at the scale (:func:`resolve_models`).
        ModelError: a model cannot be resolved or loaded (before any image is read).
    """
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.pipeline import resize_output, upscaler_memory

    if degradation not in EVAL_KINDS:
        raise UsageError(
            f"unknown degradation {degradation!r}; choose one of: {', '.join(EVAL_KINDS)}"
        )
    warn = on_warning or (lambda _message: None)
    fail = on_failed or (lambda given, why: warn(f"failed {given}: {why}"))
    if not ensembles:
        raise UsageError("evaluate needs at least one ensemble (Ensemble() is none)")
    ensembles = list(dict.fromkeys(ensembles))
    # What a library warns of while weights download (huggingface_hub: "Not enough free
    # disk space"): warning lines, also when the download then fails, not Python's text.
    with libwarnings.telling(on_warning):
        resolved, scale = resolve_models(models, scale, spec, resize=resize)

    upscalers: list[Upscaler] = []
    report = EvalReport(degradation=degradation, scale=scale, device=str(spec.device), crop=crop)
    # The window a photo at least crop × crop gives, once cut to a multiple of the scale.
    window = None if crop is None else crop - crop % scale
    for desc, added, native in resolved:
        for ensemble in [Ensemble()] if added else ensembles:
            upscaler = open_upscaler(
                desc, spec, ensemble=ensemble, on_warning=warn, outscale=native
            )
            upscalers.append(upscaler)
            report.models.append(
                ModelScore(
                    model=desc.name + (f" +{ensemble.label}" if ensemble else ""),
                    family=desc.family,
                    scale=desc.scale,
                    params=desc.params,
                    precision=upscaler.compute.precision,
                    floor=added,
                    ensemble=ensemble,
                )
            )

    # Lazy initialisation (thread pools, kernel choice, allocator) would otherwise be
    # charged to the first image of the first model.
    warm_up = np.full((WARM_UP_SIDE, WARM_UP_SIDE, 3), 128, np.uint8)
    for upscaler in upscalers:
        upscaler.upscale(warm_up)
    profiles = [(upscaler_memory(u), int(u.scale)) for u in upscalers]  # admits each photo

    ran: list[dict[str, None]] = [{} for _ in upscalers]  # by row: what drew its images
    steps = len(upscalers)
    total = len(hr_paths) * steps if limit is None else min(limit, len(hr_paths)) * steps
    done = 0
    for index, path in enumerate(hr_paths):
        if limit is not None and len(report.images) >= limit:
            break
        reason = _too_large(path, scale, crop, profiles)
        failed = reason is not None
        if reason is None:
            try:
                gt = ground_truth(path, scale, crop)
            except ImageReadError as exc:
                reason, failed = str(exc), True  # as upscale says it
            else:
                if min(gt.shape[:2]) < MIN_LATTICE_SIDE:
                    reason = _too_small(path, gt, scale, crop)
        if reason is not None:
            _skip(report, path, reason, warn if not failed else None, fail if failed else None)
            if limit is None:  # its steps are done: there are no more to do for it
                done += steps
            else:  # the next file takes its place, if there is one
                left = len(report.images) + len(hr_paths) - index - 1
                total = min(limit, left) * steps
            if on_progress is not None:
                on_progress(done, total, f"{path.name} ({'failed' if failed else 'skipped'})")
            continue
        lr = degrade_eval(gt, degradation, seed=seed_for(path.name), scale=scale)
        report.images.append(path.name)
        if window is not None and min(gt.shape[:2]) < window:
            report.smaller_than_crop.append(path.name)
        for upscaler, entry, drew in zip(upscalers, report.models, ran, strict=True):
            start = time.perf_counter()
            out = upscaler.upscale(lr)
            drew[upscaler.precision_for(lr.dtype)] = None
            if out.shape[:2] != gt.shape[:2]:  # resolved at its own scale (``resize``)
                out = resize_output(out, (gt.shape[1], gt.shape[0]))
            seconds = time.perf_counter() - start
            detail, hf, bandcorr = detail_scores(out, gt)
            entry.images.append(
                ImageScore(
                    image=path.name,
                    input=str(path),
                    model=entry.model,
                    width=int(gt.shape[1]),
                    height=int(gt.shape[0]),
                    psnr_y=psnr_y(out, gt),
                    ssim_y=ssim_y(out, gt),
                    detail=detail,
                    hf=hf,
                    bandcorr=bandcorr,
                    lattice_ratio=lattice_ratio(out),
                    sharpness=sharpness(out, gt),
                    seconds=seconds,
                )
            )
            done += 1
            if on_progress is not None:
                on_progress(done, total, f"{path.name} · {entry.model}")
    for entry, drew in zip(report.models, ran, strict=True):
        entry.precision = "+".join(drew) or entry.precision  # what ran (uint8: 8-bit path)
    return report


def _too_small(path: Path, gt: npt.NDArray[np.generic], scale: int, crop: int | None) -> str:
    """Why ``gt``, the ground truth :func:`ground_truth` made of ``path``, cannot be scored:
    its size, what the crops left of it and the least the metrics need."""
    from pocketsr_cli.imageio import read_header

    try:
        header = read_header(path)
        own = f"{header.width}×{header.height} px, "
    except ImageReadError:
        own = ""
    crops = (f"{CROP.given(crop)} and " if crop is not None else "") + f"a multiple of {scale}"
    side = MIN_LATTICE_SIDE
    return (
        f"too small to score: {own}{gt.shape[1]}×{gt.shape[0]} once cropped to {crops}; "
        f"the scores need {side}×{side} at least"
    )


def _skip(
    report: EvalReport,
    path: Path,
    reason: str,
    warn: WarningCallback | None,
    fail: FailureCallback | None,
) -> None:
    """Record ``path`` as not scored: failed when ``fail`` is given (and told of it),
    else skipped (and ``warn`` told); either names it by its path as given."""
    report.skipped.append((path.name, reason))
    report.inputs[path.name] = str(path)
    if fail is not None:
        report.failed.append(path.name)
        fail(str(path), reason)
    elif warn is not None:
        warn(f"skipped {path}: {reason}")
