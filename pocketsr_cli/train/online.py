"""Patches made while training, labelled by the teacher on the training device.

On a CPU the teacher costs about a second per 64-px patch, so patches are made once and
cached (:mod:`pocketsr_cli.train.patches`).  On a GPU in half precision it costs about a
millisecond, so a run can see a fresh patch at every draw instead: :class:`OnlinePatches`
makes patch ``i`` — crop, rescale and degradation — exactly as a cached run would
(:func:`~pocketsr_cli.train.patches.sample_patch`, a pure function of ``(seed, i)``), in
``DataLoader`` worker processes, and :class:`DeviceTeacher` labels a whole batch at once.

Step ``s`` of a run uses patches ``s·batch … s·batch + batch - 1``, so a resumed run sees
the same patches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pocketsr_cli.train.degradations import degradation_config
from pocketsr_cli.train.patches import (
    PatchSpec,
    photo_weights,
    read_photo,
    sample_patch,
    teacher_centre,
)


class OnlinePatches(Dataset[dict[str, torch.Tensor]]):
    """Patch ``i`` of an endless run: uint8 ``lr_context (3, c, c)`` and ``hr (3, H, H)``.

    Patch ``i`` is degraded with ``kinds[i % len(kinds)]`` (e.g. ``("mild", "clean")``
    alternates camera-like and plain bicubic inputs).  ``hr`` is the centre of the HR crop
    (the part the teacher's output is kept for); ``lr_context`` keeps its margins.

    Raises:
        ValueError: no photos, an unknown kind, or no photo large enough for a crop.
    """

    def __init__(self, photo_paths: Sequence[Path], spec: PatchSpec, kinds: Sequence[str]) -> None:
        if not photo_paths:
            raise ValueError("no training photos")
        if not kinds:
            raise ValueError("no degradation kinds")
        self.spec = spec
        self.configs = [degradation_config(k) for k in kinds]
        self.photos = [read_photo(p) for p in photo_paths]
        self.weights = photo_weights(self.photos, spec)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        spec = self.spec
        sample = sample_patch(
            self.photos, self.weights, i, spec, self.configs[i % len(self.configs)]
        )
        m = spec.margin * spec.scale
        hr = sample.hr_context[m : m + spec.hr_size, m : m + spec.hr_size]
        return {
            "lr_context": torch.from_numpy(sample.lr_context).permute(2, 0, 1).contiguous(),
            "hr": torch.from_numpy(hr.copy()).permute(2, 0, 1).contiguous(),
        }


class _FromIndex(Sampler[int]):
    """Indices ``start, start + 1, …`` for ever."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        i = self.start
        while True:
            yield i
            i += 1

    def __len__(self) -> int:
        return 2**62


class DeviceTeacher:
    """The ×4 teacher on the training device, fp16 on CUDA when ``half``.

    :meth:`label` turns a batch of uint8 LR contexts into the float ``lr``, ``hr`` and
    ``teacher`` tensors of a cached patch: centre crops, the teacher's output clamped and
    rounded to 8-bit levels and, for ×2, area-downscaled by 2 — the same step
    (:func:`~pocketsr_cli.train.patches.teacher_centre`) that stored patches come from.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device, half: bool) -> None:
        self.dtype = torch.float16 if half else torch.float32
        self.module = module.to(device=device, dtype=self.dtype).eval()
        self.device = device

    @torch.no_grad()
    def label(self, batch: dict[str, torch.Tensor], spec: PatchSpec) -> dict[str, torch.Tensor]:
        ctx = batch["lr_context"].to(self.device, non_blocking=True).float().div_(255.0)
        y = teacher_centre(lambda x: self.module(x.to(self.dtype)), ctx, spec)
        m = spec.margin
        return {
            "lr": ctx[..., m : m + spec.lr_size, m : m + spec.lr_size].contiguous(),
            "hr": batch["hr"].to(self.device, non_blocking=True).float().div_(255.0),
            "teacher": y.float().div_(255.0),
        }


def _single_threaded_worker(_worker_id: int) -> None:
    """Keep each worker on one thread: a dozen workers each spawning a thread per core
    would oversubscribe the machine (the main process needs its cores for the GPU)."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def online_batches(
    data: OnlinePatches,
    teacher: DeviceTeacher,
    batch: int,
    start_step: int,
    workers: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Labelled batches from step ``start_step`` on (patches ``step·batch …``), for ever."""
    loader: DataLoader[Any] = DataLoader(
        data,
        batch_size=batch,
        sampler=_FromIndex(start_step * batch),
        num_workers=workers,
        pin_memory=teacher.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_single_threaded_worker if workers > 0 else None,
        # its own generator: the loader's seed draw must not move the global RNG, which
        # the trainer's checkpoints restore (a resumed run would otherwise diverge)
        generator=torch.Generator().manual_seed(data.spec.seed),
    )
    for item in loader:
        yield teacher.label(item, data.spec)
