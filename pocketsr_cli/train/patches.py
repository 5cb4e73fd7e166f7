"""Distillation patches: random HR crops, their degraded LR, the teacher's output, in shards.

One patch ``i`` of a run is a pure function of ``(seed, i)``, the photos and the settings:
every random choice (photo, rescale, position, flat-crop rejection, degradation) comes from
``numpy.random.default_rng([seed, i])``.  So a run that was interrupted and resumed writes
exactly the shards an uninterrupted run writes (bit for bit on the same machine, library
builds and torch thread count; elsewhere the teacher's float rounding may move a few output
pixels by one level).

Per patch (sizes for ``scale=4, lr_size=48, margin=8``):

1. pick a training photo with probability ∝ sqrt(pixel count) (large wallpapers are
   sampled more, small photos are not drowned out);
2. choose a rescale factor ``f`` in ``hr_rescale`` (clamped so the crop fits), cut a square
   of ``context_hr / f`` pixels at a uniform position and area-resize it to ``context_hr``
   = ``(lr_size + 2·margin)·scale`` = 256 px (``f < 1`` makes a sharper, denser HR);
3. reject flat crops: if the mean luma gradient magnitude of the central ``hr_size`` region
   is below ``flat_threshold`` the crop is redrawn, except with probability
   ``flat_keep_prob`` (the student must still see some sky and bokeh), at most
   ``max_tries`` draws;
4. degrade the whole 256-px crop with the second-order pipeline to a 64-px LR (uint8);
5. run the teacher on that 64-px LR — the margin is real image context, so the teacher's
   output has no border artefacts in the centre — and keep the centres: ``hr`` 192 px,
   ``lr`` 48 px, ``teacher`` 192 px.  For ``scale=2`` the ×4 teacher output is shrunk by 2
   with area interpolation (2×2 mean) before cropping, so ``teacher`` matches ``hr``.

Output folder::

    manifest.json          settings, photos (name, sha256, size, weight), teacher digests
    shard_00000.npz        patches [0, shard_size), then [shard_size, 2·shard_size), ...

Each shard holds uint8 ``hr (n, H, H, 3)``, ``lr (n, h, h, 3)``, ``teacher (n, H, H, 3)``
(RGB, ``H = lr_size·scale``), and ``index (n,) int64`` (patch numbers), ``photo (n,) int16``
(index into the manifest's photo list), ``box (n, 3) int32`` (top, left, side of the crop in
the photo).  Shards are written to a temporary name (``atomicfile.replacing``) and renamed, so
a shard that exists is complete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from pocketsr_cli.atomicfile import TEMP_SUFFIX, replacing
from pocketsr_cli.train.degradations import (
    REAL_ESRGAN,
    DegradationConfig,
    MildSpec,
    degrade,
    degrade_mild,
    to_uint8,
)
from pocketsr_cli.weights.cache import sha256_file

if TYPE_CHECKING:
    import torch

    TeacherFn = Callable[[torch.Tensor], torch.Tensor]

U8 = npt.NDArray[np.uint8]
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ManifestMismatchError(ValueError):
    """The output folder holds patches made with different settings."""


@dataclass(frozen=True)
class PatchSpec:
    """Geometry, seeding and crop selection of a patch run.

    Attributes:
        scale: 4, or 2 (teacher output area-downscaled by 2).
        lr_size: side of the stored LR patch.
        margin: LR pixels of real context on each side given to the degradation and the
            teacher, cut away afterwards.
        seed: run seed; patch ``i`` uses ``numpy.random.default_rng([seed, i])``.
        hr_rescale: range of the HR rescale factor ``f`` (1 = native pixels).
        flat_threshold: mean luma gradient magnitude (per pixel, luma in [0, 1]) under
            which a crop counts as flat.  0.005 separates sky, blank walls and out-of-focus
            backgrounds from crops with any edge; about a third of uniformly drawn crops of
            the (bokeh-heavy) training wallpapers fall under it.
        flat_keep_prob: probability of keeping a flat crop anyway.
        max_tries: crop draws before the last one is kept whatever it is.
    """

    scale: int = 4
    lr_size: int = 48
    margin: int = 8
    seed: int = 0
    hr_rescale: tuple[float, float] = (0.5, 1.0)
    flat_threshold: float = 0.005
    flat_keep_prob: float = 0.15
    max_tries: int = 20

    def __post_init__(self) -> None:
        """Refuse a geometry no patch can have (an empty patch, a negative margin, a
        seed numpy cannot take) before anything is sampled or written.

        Raises:
            ValueError: naming the field and its value.
        """
        for name, least in (("lr_size", 1), ("margin", 0), ("seed", 0), ("max_tries", 1)):
            value = getattr(self, name)
            if value < least:
                raise ValueError(f"{name} must be at least {least}, got {value}")

    @property
    def hr_size(self) -> int:
        """Side of the stored HR and teacher patches."""
        return self.lr_size * self.scale

    @property
    def context_lr(self) -> int:
        """Side of the LR the teacher sees (patch plus margins)."""
        return self.lr_size + 2 * self.margin

    @property
    def context_hr(self) -> int:
        """Side of the HR crop that is degraded."""
        return self.context_lr * self.scale


@dataclass(frozen=True)
class Sample:
    """One patch before the teacher: the HR crop and LR with their context margins."""

    index: int
    hr_context: U8
    lr_context: U8
    photo: int
    box: tuple[int, int, int]


@dataclass
class RunSummary:
    """What :func:`make_patches` did."""

    count: int
    shards_total: int
    shards_written: int = 0
    shards_kept: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)


def read_photo(path: Path) -> U8:
    """An 8-bit RGB ``H×W×3`` array (gray photos are repeated to three channels).

    Raises:
        ValueError: OpenCV cannot decode the file.
    """
    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile: non-ASCII paths work too
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {path}")
    return np.ascontiguousarray(bgr[..., ::-1])


def fit_long_side(img: U8, long_side: int | None) -> U8:
    """``img`` area-downscaled so that its longer side is at most ``long_side`` (None: as
    it is).  Camera photos (4-6k px) then show detail at the scale of the 2560-px wallpapers
    and test photos, and no longer outweigh them in :func:`photo_weights`."""
    h, w = img.shape[:2]
    if long_side is None or max(h, w) <= long_side:
        return img
    f = long_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def gradient_energy(img: U8) -> float:
    """Mean gradient magnitude of the luma (in [0, 1] units per pixel) of an RGB image."""
    y = img.astype(np.float32) @ (_LUMA / np.float32(255.0))
    gy = np.diff(y, axis=0)[:, :-1]
    gx = np.diff(y, axis=1)[:-1, :]
    return float(np.sqrt(gx * gx + gy * gy).mean())


def photo_weights(photos: Sequence[U8], spec: PatchSpec) -> npt.NDArray[np.float64]:
    """Sampling probabilities ∝ sqrt(pixel count); 0 for photos smaller than a crop.

    Raises:
        ValueError: no photo is large enough for one crop.
    """
    w = np.array(
        [
            math.sqrt(p.shape[0] * p.shape[1]) if min(p.shape[:2]) >= spec.context_hr else 0.0
            for p in photos
        ]
    )
    if w.sum() == 0:
        raise ValueError(f"no photo is at least {spec.context_hr} px on its short side")
    return np.asarray(w / w.sum(), dtype=np.float64)


def _draw_crop(
    photos: Sequence[U8],
    weights: npt.NDArray[np.float64],
    spec: PatchSpec,
    rng: np.random.Generator,
) -> tuple[int, tuple[int, int, int], U8]:
    k = int(rng.choice(len(photos), p=weights))
    photo = photos[k]
    h, w = photo.shape[:2]
    f = float(rng.uniform(*spec.hr_rescale))
    side = min(round(spec.context_hr / f), h, w)
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side]
    if side != spec.context_hr:
        size = (spec.context_hr, spec.context_hr)
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return k, (top, left, side), np.ascontiguousarray(crop)


def sample_patch(
    photos: Sequence[U8],
    weights: npt.NDArray[np.float64],
    index: int,
    spec: PatchSpec,
    config: DegradationConfig | MildSpec = REAL_ESRGAN,
) -> Sample:
    """Patch ``index`` of the run: crop selection (steps 1-3) and degradation (step 4).

    ``config`` picks the degradation: the second-order pipeline, or with a
    :class:`MildSpec` the light one of :func:`degrade_mild` (what most camera files are).
    """
    rng = np.random.default_rng([spec.seed, index])
    m = spec.margin * spec.scale
    for _ in range(spec.max_tries):
        k, box, crop = _draw_crop(photos, weights, spec, rng)
        flat = gradient_energy(crop[m:-m, m:-m] if m else crop) < spec.flat_threshold
        if not flat or rng.random() < spec.flat_keep_prob:
            break
    if isinstance(config, MildSpec):
        lr = degrade_mild(crop, spec.scale, rng, config)
    else:
        lr = to_uint8(degrade(crop, spec.scale, rng, config))
    return Sample(index=index, hr_context=crop, lr_context=lr, photo=k, box=box)


def teacher_centre(teacher: TeacherFn, x: torch.Tensor, spec: PatchSpec) -> torch.Tensor:
    """Step 5 on tensors: the teacher's output for float ``(n, 3, c, c)`` LR contexts in
    [0, 1], clamped, area-downscaled by 2 for ``scale=2``, rounded to uint8 and
    centre-cropped to ``(n, 3, hr_size, hr_size)`` (on ``x``'s device).  Call it without
    gradients.

    Raises:
        ValueError: the teacher does not upscale ×4.
    """
    import torch
    import torch.nn.functional as F

    y = teacher(x).float().clamp_(0.0, 1.0)
    if y.shape[-1] != x.shape[-1] * 4:
        raise ValueError(f"teacher must upscale ×4, got {tuple(x.shape)} → {tuple(y.shape)}")
    if spec.scale != 4:
        y = F.interpolate(y, scale_factor=spec.scale / 4, mode="area")
    y = y.mul_(255.0).round_().to(torch.uint8)
    m = spec.margin * spec.scale
    return y[..., m : m + spec.hr_size, m : m + spec.hr_size]


def run_teacher(teacher: TeacherFn, lr_context: U8, spec: PatchSpec) -> U8:
    """Teacher output for a batch ``(n, c, c, 3)`` of LR contexts, centre-cropped to
    ``(n, hr_size, hr_size, 3)`` uint8 (step 5 of the module docstring)."""
    import torch

    x = torch.from_numpy(lr_context).permute(0, 3, 1, 2).float().div_(255.0)
    with torch.inference_mode():
        y = teacher_centre(teacher, x, spec)
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())


def build_shard(
    photos: Sequence[U8],
    weights: npt.NDArray[np.float64],
    indices: range,
    teacher: TeacherFn,
    spec: PatchSpec,
    config: DegradationConfig | MildSpec = REAL_ESRGAN,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Arrays of one shard (see the module docstring); ``progress(n)`` after each batch."""
    m_hr, m_lr = spec.margin * spec.scale, spec.margin
    hr, lr, out, photo, box = [], [], [], [], []
    for start in range(0, len(indices), batch_size):
        batch = [
            sample_patch(photos, weights, i, spec, config)
            for i in indices[start : start + batch_size]
        ]
        out.append(run_teacher(teacher, np.stack([s.lr_context for s in batch]), spec))
        for s in batch:
            hr.append(s.hr_context[m_hr : m_hr + spec.hr_size, m_hr : m_hr + spec.hr_size])
            lr.append(s.lr_context[m_lr : m_lr + spec.lr_size, m_lr : m_lr + spec.lr_size])
            photo.append(s.photo)
            box.append(s.box)
        if progress is not None:
            progress(len(batch))
    return {
        "hr": np.stack(hr),
        "lr": np.stack(lr),
        "teacher": np.concatenate(out),
        "index": np.asarray(list(indices), dtype=np.int64),
        "photo": np.asarray(photo, dtype=np.int16),
        "box": np.asarray(box, dtype=np.int32),
    }


def shard_name(k: int) -> str:
    """File name of shard ``k``."""
    return f"shard_{k:05d}.npz"


def shard_ranges(count: int, shard_size: int) -> list[range]:
    """Patch indices of each shard of a ``count``-patch run."""
    return [range(s, min(s + shard_size, count)) for s in range(0, count, shard_size)]


def shard_is_complete(path: Path, indices: range) -> bool:
    """Whether ``path`` is a readable shard holding exactly ``indices``."""
    try:
        with np.load(path) as data:
            return bool(np.array_equal(data["index"], np.asarray(indices, dtype=np.int64)))
    except (OSError, ValueError, KeyError):
        return False


def _atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    with replacing(path) as tmp, tmp.open("wb") as f:
        write(f)


def _write_shard(path: Path, arrays: dict[str, Any]) -> None:
    def write(f: Any) -> None:
        np.savez(f, **arrays)

    _atomic_write_bytes(path, write)


def build_manifest(
    photo_paths: Sequence[Path],
    photos: Sequence[U8],
    weights: npt.NDArray[np.float64],
    teacher_identity: dict[str, str],
    count: int,
    shard_size: int,
    spec: PatchSpec,
    config: DegradationConfig | MildSpec,
    long_side: int | None = None,
) -> dict[str, Any]:
    """The manifest of a run (JSON-ready); ``long_side`` only when photos were fitted to it
    (so runs made before the option resume unchanged)."""
    fitted = {} if long_side is None else {"long_side": long_side}
    return {
        **fitted,
        "format": FORMAT_VERSION,
        "count": count,
        "shard_size": shard_size,
        "scale": spec.scale,
        "lr_size": spec.lr_size,
        "hr_size": spec.hr_size,
        "seed": spec.seed,
        "seeding": "patch i: numpy.random.default_rng([seed, i])",
        "patch": asdict(spec),
        "degradation": degradation_record(config),
        "teacher": dict(teacher_identity),
        "teacher_target": (
            "teacher x4 output" if spec.scale == 4 else "teacher x4 output, area-downscaled ×0.5"
        ),
        "photos": [
            {
                "name": path.name,
                "sha256": sha256_file(path),
                "height": int(img.shape[0]),
                "width": int(img.shape[1]),
                "weight": round(float(wt), 6),
            }
            for path, img, wt in zip(photo_paths, photos, weights, strict=True)
        ],
    }


def degradation_record(config: DegradationConfig | MildSpec) -> dict[str, Any]:
    """The manifest's ``degradation`` entry (second-order runs: the config's fields alone,
    as written before mild runs existed, so their manifests still match)."""
    if isinstance(config, MildSpec):
        return {"kind": "mild", **asdict(config)}
    return asdict(config)


def _json_roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(obj))
    return result


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest in ``out_dir``, or None when there is none."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def make_patches(
    photo_paths: Sequence[Path],
    out_dir: Path,
    teacher: TeacherFn,
    teacher_identity: dict[str, str],
    count: int,
    spec: PatchSpec,
    config: DegradationConfig | MildSpec = REAL_ESRGAN,
    shard_size: int = 64,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    long_side: int | None = None,
) -> RunSummary:
    """Write (or complete) a ``count``-patch run in ``out_dir``.

    Shards already present and complete are kept (``progress`` is told about their
    patches too); the others are built in order.  A run may be resumed with a larger or
    smaller ``count``; every other setting must match the existing manifest.

    Args:
        photo_paths: the training photos (never the validation ones; see
            :func:`pocketsr_cli.train.split.split_photos`).
        out_dir: created if missing.
        teacher: ×4 network, float ``(N, 3, h, w)`` in [0, 1] → ``(N, 3, 4h, 4w)``.
        teacher_identity: provenance written to the manifest (digests, name).
        count: number of patches.
        spec: geometry and sampling.
        config: degradation distributions (second-order, or :class:`MildSpec`).
        shard_size: patches per shard.
        batch_size: LR patches per teacher call.
        progress: called with the number of patches finished (or found done).
        long_side: photos whose longer side exceeds it are area-downscaled to it first
            (:func:`fit_long_side`); None keeps them as they are.

    Raises:
        ManifestMismatchError: ``out_dir`` holds a run with other settings.
        ValueError: bad arguments, or a photo cannot be decoded.
    """
    if count < 1 or shard_size < 1 or batch_size < 1:
        raise ValueError("count, shard_size and batch_size must be positive")
    if spec.scale not in (2, 4):
        raise ValueError(f"scale must be 2 or 4 (the teacher is ×4), got {spec.scale}")
    photos = [fit_long_side(read_photo(p), long_side) for p in photo_paths]
    weights = photo_weights(photos, spec)
    manifest = _json_roundtrip(
        build_manifest(
            photo_paths,
            photos,
            weights,
            teacher_identity,
            count,
            shard_size,
            spec,
            config,
            long_side,
        )
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out_dir)
    if old is not None:
        differ = sorted(
            k
            for k in manifest.keys() | old.keys()
            if k != "count" and manifest.get(k) != old.get(k)
        )
        if differ:
            raise ManifestMismatchError(
                f"{out_dir} holds patches made with other settings ({', '.join(differ)}); "
                "use another --out folder"
            )
    # left by a run killed mid-write (``*.tmp``: the names of earlier versions)
    for stale in [*out_dir.glob(f".*{TEMP_SUFFIX}"), *out_dir.glob("*.tmp")]:
        stale.unlink()
    _atomic_write_bytes(
        out_dir / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=2).encode() + b"\n")
    )
    ranges = shard_ranges(count, shard_size)
    summary = RunSummary(count=count, shards_total=len(ranges), manifest=manifest)
    for k, indices in enumerate(ranges):
        path = out_dir / shard_name(k)
        if shard_is_complete(path, indices):
            summary.shards_kept += 1
            if progress is not None:
                progress(len(indices))
            continue
        arrays = build_shard(photos, weights, indices, teacher, spec, config, batch_size, progress)
        _write_shard(path, arrays)
        summary.shards_written += 1
    return summary
