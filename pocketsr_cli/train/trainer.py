"""The training loop: distil a pocketsr generator from cached teacher patches.

One :class:`TrainConfig` describes a run completely; ``python -m pocketsr_cli.train.run``
builds it from the command line.  A run folder holds ``config.json``, ``last.pt`` (the
resumable checkpoint, written atomically every ``ckpt_every`` steps, at the end and on
Ctrl-C: ``loop.run_steps``) and ``log.jsonl`` (losses).  Resuming restores model, EMA,
optimisers, discriminator, step and random state, and is refused when an option that
changes what is trained differs from the checkpoint's (:data:`SESSION_OPTIONS` may differ;
``loop.check_options``).  The data order is a pure function of ``(seed, epoch)``, and a
resumed run restarts the interrupted epoch's order from its beginning, skipping the
batches already seen, so it replays exactly what an uninterrupted run would have done.

A student learns at its own ``scale`` from patch folders made at that scale (``make_patches
--scale 2``: inputs degraded at ×2, the teacher's ×4 output area-downscaled by 2), or from
×4 patches reused for a ×2 student: the targets (ground truth and teacher output) are then
area-downscaled by 2 and the inputs stay the ×4 ones.  All folders of a run share one scale.

Two data sources: cached patch folders (``patches``, made once by ``make_patches``: what a
CPU can afford), or — with ``photos`` — patches made on the fly and labelled by the
teacher on the training device in half precision (:mod:`pocketsr_cli.train.online`: what a
GPU makes cheap).  ``minutes`` gives a run a wall-clock budget instead of a step count
(the learning rate then follows the share of the budget used), and ``eval_every`` writes a
checkpoint, the EMA weights (``export_to``) and validation scores (``metrics.jsonl``, see
:mod:`pocketsr_cli.train.validate`) every so many seconds, so a run cut off at any moment
still leaves usable, measured weights.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, default_collate

from pocketsr_cli.archs.compact.network import POST_KEY, SKIP_KEYS
from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.train import anneal, loop, losses
from pocketsr_cli.train.dataset import PatchDataset


@dataclass
class LossWeights:
    """Weights of the generator's loss terms (0 turns a term off)."""

    l1_gt: float = 0.2
    l1_gt_usm: float = 0.0  # L1 to the USM-sharpened ground truth (Real-ESRGAN's target)
    l1_teacher: float = 1.0
    l1_low_teacher: float = 0.0  # L1 to the teacher below the visible band (σ 1.5 blurs)
    perceptual: float = 0.1
    amplitude: float = 0.5
    lattice: float = 1.0
    masked_fourier: float = 0.0  # GenDR-Pix's L1 at the 8-px lattice bins' outliers (teacher)
    spectrum: float = 0.0  # luma amplitude above the target's (sharpened if used), per band
    mesh: float = 0.0  # uneven gradient over the sub-pixel phases, beyond the ground truth's
    gradient: float = 0.0
    texture: float = 0.0  # local gradient energy matched per tile (see texture_target)
    band: float = 0.0  # visible-band (DoG σ0.7-1.5) energy matched per tile (texture_target)
    hf_excess: float = 0.0  # energy above the visible band beyond the texture target's
    band_corr: float = 0.0  # 1 - correlation of the visible band with the texture target's
    halo: float = 0.0  # luma beyond the ground truth's 5x5 range at strong edges
    gan: float = 0.01


@dataclass
class TrainConfig:
    """Everything that determines a training run."""

    patches: str  # a patch run folder, or several separated by commas (mixed in one set)
    out: str
    arch: str = "nano"
    scale: int = 4
    steps: int = 4000
    batch: int = 16
    lr: float = 2e-4
    lr_d: float = 1e-4
    # the compact family's linear skip (skip.*) learns at lr x this: it starts at zero and
    # must grow to interpolation weights of order 0.1-1, which lr alone takes far too long
    lr_skip_mult: float = 1.0
    # its filter after the shuffle (post.weight) learns at lr x this: it starts as the
    # identity, and taps of order 0.1 take thousands of steps at lr alone
    lr_post_mult: float = 1.0
    seed: int = 0
    limit: int | None = None  # use only the first N patches (reproducible while data grows)
    teacher: str = "data/teacher"
    gan_start: int = 1000
    disc_crop: int = 96
    # What the discriminator sees: 0 = the RGB image; σ > 0 = the image minus its σ-blur
    # (texture and edges only), times ``disc_gain``.  Under spectral norm the logits can
    # differ by at most about the inputs' difference, and teacher and student differ only
    # in faint texture: on raw RGB the hinge loss sat at 2.0 (nothing learnt) for 200 steps.
    # A σ-blur before that (``disc_lowpass``) hides what lies above the visible band: with
    # the high-pass alone the generator learnt a near-Nyquist cross-hatch (hf ×5 in 500 steps).
    disc_highpass: float = 0.0
    disc_lowpass: float = 0.0
    disc_gain: float = 1.0
    # Keep the discriminator's window on the output's ``scale`` grid (no RandPad): a mesh
    # locked to the input's pixel pitch then looks the same in every window, which the
    # teacher's texture never does.
    disc_aligned: bool = False
    # Judge the window pixel-unshuffled by ``scale`` (implies ``disc_aligned``): each
    # sub-pixel phase in its own channels, so a phase-locked mesh is a channel difference
    # the discriminator sees at once (losses.phase_view).
    disc_phases: bool = False
    mild_fraction: float = 0.0  # share of each batch re-degraded mildly, ground truth as target
    mild_kind: str = "mild"  # which light degradation: a key of degradations.MILD_SPECS
    ema: float = 0.999
    ckpt_every: int = 200
    log_every: int = 20
    threads: int | None = None
    init: str | None = None  # start from these weights (e.g. a tiny model to anneal)
    anneal_to: str | None = None  # block kind ("dw") that replaces the init model's dense blocks
    anneal_steps: int = 0
    # The USM-sharpened target of ``--w-l1-gt-usm`` (defaults: Real-ESRGAN's USMSharp;
    # ``usm_sigma`` set: a Gaussian of that sigma in output pixels, see losses.usm_sharpen)
    usm_sigma: float | None = None
    usm_amount: float = 0.5
    usm_threshold: float = 10 / 255
    # ``--w-texture``: whose local gradient energy to match ("gt" or "teacher"), per tile
    texture_target: str = "gt"
    texture_window: int = 8
    texture_quantile: float = 0.5
    # ``--w-band`` asks for the target's visible band per tile times this (1: as much)
    band_gain: float = 1.0
    # Leave the pixels within 4 px of the ground truth's strong edges out of ``band``: there
    # the target's band is its halo, and with ``halo`` on, the band asked for there is drawn
    # as a mesh inside the edge's range (stage R of the compact card).
    band_edge_free: bool = False
    # Take the teacher's halos off before it is a target (``losses.without_halo``): every
    # term that compares with the teacher, the discriminator's "real" included, then asks
    # for edges without rims.
    teacher_without_halo: bool = False
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda when there is one)
    # online data (instead of ``patches``): crops of these photos' training split made on
    # the fly, degraded with ``degradations`` (patch i: kind i mod n) and teacher-labelled
    # on ``device`` (``teacher_precision`` fp16 or fp32; fp16 only on CUDA)
    photos: str | None = None
    # a ``train_photos.txt``-format list whose photos in ``photos`` also count as training
    # photos (``pocketsr_cli.train.split.split_photos``); e.g. scripts/extra_train_photos.txt
    fetch_list: str | None = None
    degradations: str = "mild"
    lr_size: int = 64
    margin: int = 8
    workers: int = 0
    teacher_precision: str = "fp16"
    minutes: float = 0.0  # wall-clock budget (0: none); the LR schedule follows it
    # Stop after this step (0: run to ``steps``), keeping the schedule of ``steps``: a run
    # stopped there on purpose, as one stopped by hand after a checkpoint; resumable.
    stop_at: int = 0
    eval_every: float = 0.0  # seconds between checkpoint + EMA export + validation (0: never)
    val: str | None = None  # folder of validation photos scored at every evaluation
    val_crop: int = 256
    export_to: str | None = None  # where each evaluation writes the EMA weights
    # each evaluation also keeps its EMA weights as <out>/exports/step_<N>.safetensors, so a
    # run's best point can be chosen afterwards (export_to holds only the latest)
    keep_exports: bool = False
    weights: LossWeights = field(default_factory=LossWeights)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["weights"] = LossWeights(**data.get("weights", {}))
        return cls(**data)


SESSION_OPTIONS = frozenset(
    {
        "out",
        "stop_at",
        "ckpt_every",
        "log_every",
        "eval_every",
        "val",
        "val_crop",
        "export_to",
        "keep_exports",
        "workers",
        "threads",
        "device",
    }
)
"""The options a resumed run may change: how its session runs (where and how often it
logs, checkpoints, evaluates and exports; where it stops; what it runs on: a run cut off
on a GPU resumes on a CPU), not what it trains.  Every other option must be the run's
(``loop.check_options``); config.json shows the last session's."""


RANGES: dict[str, loop.Range] = {
    "lr_d": (0, None),
    "limit": (1, None),
    "workers": (0, None),
    "disc_crop": (8, None),  # the discriminator halves its window three times
    "mild_fraction": (0, 1),
    "anneal_steps": (0, None),
    "margin": (0, None),
}
"""The ranges of this trainer's own numeric options (``loop.SHARED_RANGES``: the rest)."""


def _param_groups(
    student: nn.Module, lr: float, skip_mult: float, post_mult: float = 1.0
) -> list[dict[str, Any]]:
    """The student's parameters for the optimiser: the compact family's linear skip
    (``SKIP_KEYS``) in a group of its own at ``lr * skip_mult`` and its post filter
    (``POST_KEY``) in another at ``lr * post_mult`` (``lr_mult``, which the schedule keeps),
    everything else at ``lr``.  One group when there is neither."""
    named = list(student.named_parameters())
    special = {*SKIP_KEYS, POST_KEY}
    groups: list[dict[str, Any]] = [{"params": [p for n, p in named if n not in special], "lr": lr}]
    for keys, mult in ((SKIP_KEYS, skip_mult), ((POST_KEY,), post_mult)):
        params = [p for n, p in named if n in keys]
        if params:
            groups.append({"params": params, "lr": lr * mult, "lr_mult": mult})
    return groups


def build_student(arch: str, scale: int) -> nn.Module:
    """A fresh pocketsr generator: a preset name, optionally with overrides.

    ``"nano"`` or ``"nano,antilattice=false,dec_depth=2"`` (values are JSON: numbers,
    ``true``/``false``, lists).

    Raises:
        ValueError: unknown preset or field, or a malformed override.
    """
    from pocketsr_cli.archs.pocketsr import CONFIGS, build
    from pocketsr_cli.archs.pocketsr.config import PocketSRConfig

    preset, *overrides = arch.split(",")
    if preset not in CONFIGS:
        raise ValueError(f"unknown arch {preset!r}; presets: {sorted(CONFIGS)}")
    params: dict[str, Any] = {"preset": preset}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"arch override {item!r} is not key=value")
        params[key.strip()] = json.loads(value)
    return build(PocketSRConfig.from_params(params), scale)


def _training_set(
    folders: str,
    limit: int | None,
    usm: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[PatchDataset | ConcatDataset[dict[str, torch.Tensor]], int]:
    """The patches of one or more comma-separated run folders, each cut to its first
    ``limit`` patches (patch *i* of a run is fixed by its seed, so the set is reproducible
    while the runs are still growing), and the scale they were made at.  With ``usm``,
    items also carry ``hr_usm``, the ground truth sharpened by it (computed once here).

    Raises:
        ValueError: a folder holds fewer than ``limit`` patches yet, or the folders were
            made at different scales.
    """
    parts: list[PatchDataset] = []
    scales: dict[str, int] = {}
    for folder in filter(None, (f.strip() for f in folders.split(","))):
        data = PatchDataset(Path(folder), limit=limit)
        if limit is not None and len(data) < limit:
            raise ValueError(f"--limit {limit}: only {len(data)} patches in {folder} yet")
        if usm is not None:
            data.derive("hr_usm", "hr", usm)
        parts.append(data)
        scales[folder] = int(data.manifest["scale"])
    if not parts:
        raise ValueError("--patches names no folder")
    if len(set(scales.values())) > 1:
        made = ", ".join(f"{f} ×{s}" for f, s in scales.items())
        raise ValueError(f"--patches folders were made at different scales: {made}")
    return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), scales.popitem()[1]


def _check_phase_crop(crop: int, scale: int, min_side: int) -> None:
    """Refuse a ``disc_crop`` that ``disc_phases`` cannot judge: its window is split into
    the ``scale``-by-``scale`` sub-pixel phases (so a multiple of ``scale``), each
    ``crop / scale`` a side, which the discriminator needs to be at least ``min_side``.
    Only for a run that trains the discriminator (``weights.gan > 0``).

    Raises:
        ValueError: ``"--disc-crop 9 cannot be split into the ×4 phases --disc-phases
            judges: give a multiple of 4 of at least 16, such as 16"``.
    """
    least = scale * min_side
    if crop % scale == 0 and crop >= least:
        return
    such_as = max(least, crop // scale * scale)
    raise ValueError(
        f"--disc-crop {crop} cannot be split into the ×{scale} phases --disc-phases judges: "
        f"give a multiple of {scale} of at least {least}, such as {such_as}"
    )


def _downscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x if factor == 1 else F.avg_pool2d(x, factor)


class Trainer:
    """Owns the models, optimisers and data of one run.  Never prints; reports via ``on_log``."""

    def __init__(
        self, config: TrainConfig, on_log: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        from pocketsr_cli.train.degradations import MILD_SPECS

        if config.mild_kind not in MILD_SPECS:
            raise ValueError(
                f"unknown --mild-kind {config.mild_kind!r}; choose from {sorted(MILD_SPECS)}"
            )
        self.mild_spec = MILD_SPECS[config.mild_kind]  # what _mix_mild degrades with
        if config.texture_target not in ("gt", "teacher"):
            raise ValueError(
                f"unknown --texture-target {config.texture_target!r}; choose gt or teacher"
            )
        if config.texture_window < 1:
            raise ValueError(f"--texture-window must be at least 1, got {config.texture_window}")
        if config.band_gain <= 0:
            raise ValueError(f"--band-gain must be positive, got {config.band_gain}")
        if config.stop_at < 0:
            raise ValueError(f"--stop-at must be a step (0: none), got {config.stop_at}")
        if not 0 < config.texture_quantile < 1:
            raise ValueError(f"--texture-quantile must be in (0, 1), got {config.texture_quantile}")
        if config.teacher_precision not in ("fp16", "fp32"):
            raise ValueError(
                f"unknown --teacher-precision {config.teacher_precision!r}; choose fp16 or fp32"
            )
        if not config.photos and not config.patches:
            raise ValueError("give --patches (cached patch folders) or --photos (online)")
        if config.steps < 0:
            raise ValueError(f"--steps must be 0 or more, got {config.steps}")
        if config.lr <= 0:
            raise ValueError(f"--lr must be positive, got {config.lr}")
        loop.check_ranges(config, RANGES)
        self.out = loop.check_run_options(config)
        self.config = config
        self.on_log = on_log or (lambda _r: None)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = _training_device(config.device)
        if self.device.type == "cuda":  # fixed shapes: let cuDNN pick; TF32 for fp32 convs
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.seed)
        self.student = self._initial_student().to(self.device)
        size = SizeRequirements.stated_by(self.student)
        if config.val:  # now, not at the first evaluation, after training time is spent
            from pocketsr_cli.train.validate import check_crop

            check_crop(config.val_crop, config.scale, size)
        self.ema = copy.deepcopy(self.student).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.disc = (
            losses.PatchDiscriminator(in_channels=3 * config.scale**2, first_stride=1)
            if config.disc_phases
            else losses.PatchDiscriminator()
        ).to(self.device)
        # checked now, not when the discriminator first runs; with --w-gan 0 it never runs
        if config.disc_phases and config.weights.gan > 0:
            _check_phase_crop(config.disc_crop, config.scale, self.disc.min_side)
        groups = _param_groups(self.student, config.lr, config.lr_skip_mult, config.lr_post_mult)
        self.opt_g = torch.optim.AdamW(groups, betas=(0.9, 0.99))
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=config.lr_d, betas=(0.9, 0.99))
        self.step = 0
        self.elapsed = 0.0  # seconds of training so far, over all sessions of the run
        # The teacher is converted from its ncnn files once, for whichever of the
        # perceptual term and the online labeller needs it.
        teacher: nn.Module | None = None
        if config.weights.perceptual > 0 or config.photos:
            from pocketsr_cli.train.teacher import load_teacher

            teacher = load_teacher(Path(config.teacher)).module
        self.perceptual: losses.TeacherPerceptual | None = None
        if config.weights.perceptual > 0:
            assert teacher is not None
            # its own copy when the labeller also takes the teacher (and may cast it to fp16)
            layers = copy.deepcopy(teacher) if config.photos else teacher
            self.perceptual = losses.TeacherPerceptual(layers).to(self.device)
        self.patch_scale = 4  # the scale the inputs were degraded at (online: always ×4)
        self.online: tuple[Any, Any] | None = None
        if config.photos:
            assert teacher is not None
            self.online = self._online_source(teacher)
        else:
            self.data, self.patch_scale = _training_set(
                config.patches,
                config.limit,
                self._usm_target if config.weights.l1_gt_usm > 0 else None,
            )
            n = len(self.data)
            self.batches_per_epoch = n // config.batch
            if self.batches_per_epoch == 0:
                raise ValueError(f"{n} patches is less than one batch of {config.batch}")
        if self.patch_scale % config.scale:
            raise ValueError(
                f"a ×{config.scale} student cannot learn from ×{self.patch_scale} patches"
            )
        self.resize_factor = self.patch_scale // config.scale
        self.val_items: list[Any] = []
        if config.val:
            from pocketsr_cli.train.validate import load_validation

            self.val_items = load_validation(
                Path(config.val), config.val_crop, config.scale, size=size
            )
        # made only now that every option has been checked: a refused run leaves nothing
        self.out.mkdir(parents=True, exist_ok=True)

    def _online_source(self, teacher: nn.Module) -> tuple[Any, Any]:
        """``(OnlinePatches, DeviceTeacher)`` of an online run; ``teacher`` is moved to the
        device (in fp16 there when ``teacher_precision`` asks for it)."""
        from pocketsr_cli.train.online import DeviceTeacher, OnlinePatches
        from pocketsr_cli.train.patches import PatchSpec
        from pocketsr_cli.train.split import split_photos

        c = self.config
        if c.weights.l1_gt_usm:
            raise ValueError("--w-l1-gt-usm needs cached patches (--patches), not --photos")
        assert c.photos is not None
        split = split_photos(Path(c.photos), Path(c.fetch_list) if c.fetch_list else None)
        spec = PatchSpec(scale=4, lr_size=c.lr_size, margin=c.margin, seed=c.seed)
        kinds = [k.strip() for k in c.degradations.split(",") if k.strip()]
        data = OnlinePatches(split.train, spec, kinds)
        half = c.teacher_precision == "fp16" and self.device.type == "cuda"
        return data, DeviceTeacher(teacher, self.device, half)

    def _usm_target(self, hr: torch.Tensor) -> torch.Tensor:
        c = self.config
        return losses.usm_sharpen(
            hr, weight=c.usm_amount, threshold=c.usm_threshold, sigma=c.usm_sigma
        )

    def _initial_student(self) -> nn.Module:
        c = self.config
        if c.init is None:
            return build_student(c.arch, c.scale)
        from safetensors.torch import load_file

        from pocketsr_cli.weights.load import descriptor_from_state_dict

        if not Path(c.init).is_file():
            raise ValueError(f"--init {c.init}: no such file")
        try:
            state = load_file(c.init)
        except Exception as exc:  # safetensors says only what it could not parse
            raise ValueError(f"--init {c.init} is not a safetensors file ({exc})") from exc
        model = descriptor_from_state_dict(state, Path(c.init).name).module
        if c.anneal_to is not None:
            anneal.wrap(model, anneal.pocketsr_replacements(model, c.anneal_to))
        return model.train()

    # -- checkpoints ------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def _parts(self) -> dict[str, Any]:
        return {
            "student": self.student,
            "ema": self.ema,
            "disc": self.disc,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
        }

    def save(self) -> None:
        loop.save_checkpoint(
            self.checkpoint_path,
            self._parts(),
            step=self.step,
            rng=torch.get_rng_state(),
            elapsed=self.elapsed,
            config=asdict(self.config),
        )

    def resume(self) -> bool:
        """Load ``last.pt`` if present; returns whether it did.

        Raises:
            loop.OptionsChanged: the run was trained with other options than ``config``
                (:data:`SESSION_OPTIONS` aside): a resumed run keeps its options.
            loop.CheckpointUnreadable: ``last.pt`` is cut short or damaged.
            ValueError: a checkpoint that does not fit the models.
        """
        defaults = asdict(TrainConfig(patches="", out=""))

        def check(state: dict[str, Any]) -> None:
            now = asdict(self.config)
            loop.check_options(
                state, now, defaults, SESSION_OPTIONS, run=self.out, prefixes={"weights": "w"}
            )

        try:
            state = loop.load_checkpoint(self.checkpoint_path, self._parts(), self.device, check)
        except (loop.OptionsChanged, loop.CheckpointUnreadable):
            raise
        except (RuntimeError, KeyError, ValueError) as exc:  # shapes or parts that differ
            raise ValueError(
                f"{self.checkpoint_path} is the checkpoint of a run with other options "
                f"(see {self.out / 'config.json'}): resume it with the same --arch, --scale "
                "and --init, or choose another --out"
            ) from exc
        if state is None:
            return False
        torch.set_rng_state(state["rng"].cpu())
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        return True

    # -- data -------------------------------------------------------------------------
    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Batches from the current step on; epoch ``e`` is shuffled by ``(seed, e)``."""
        c = self.config
        if self.online is not None:
            from pocketsr_cli.train.online import online_batches

            data, teacher = self.online
            yield from online_batches(data, teacher, c.batch, self.step, c.workers)
            return
        epoch, skip = divmod(self.step, self.batches_per_epoch)
        while True:
            order = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
            perm = torch.randperm(len(self.data), generator=order).tolist()
            # Skipped batches are not loaded: loading draws augmentation randomness.
            for i in range(skip, self.batches_per_epoch):
                idx = perm[i * c.batch : (i + 1) * c.batch]
                yield default_collate([self.data[j] for j in idx])
            epoch, skip = epoch + 1, 0

    # -- one step ---------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c, w = self.config, self.config.weights
        batch = {k: v.to(self.device) for k, v in batch.items()}
        lr = batch["lr"]
        gt = _downscale(batch["hr"], self.resize_factor)
        teacher = _downscale(batch["teacher"], self.resize_factor)
        if c.mild_fraction > 0:
            lr, teacher = self._mix_mild(batch["hr"], lr, gt, teacher)
        if c.teacher_without_halo:
            teacher = losses.without_halo(teacher, gt)
        anneal.set_progress(self.student, self.step, 0, c.anneal_steps)
        base = (
            lr_at_fraction(self.elapsed / (60.0 * c.minutes), c.lr)
            if c.minutes
            else lr_at(self.step, c.steps, c.lr)
        )
        for group in self.opt_g.param_groups:
            group["lr"] = base * group.get("lr_mult", 1.0)
        out = self.student(lr)
        terms: dict[str, torch.Tensor] = {}
        if w.l1_gt:
            terms["l1_gt"] = w.l1_gt * losses.l1(out, gt)
        ceiling = gt  # the spectral envelope the output may fill (the sharpened one if used)
        if w.l1_gt_usm:
            sharp = ceiling = _downscale(batch["hr_usm"], self.resize_factor)
            terms["l1_gt_usm"] = w.l1_gt_usm * losses.l1(out, sharp)
        if w.l1_teacher:
            terms["l1_teacher"] = w.l1_teacher * losses.l1(out, teacher)
        if w.l1_low_teacher:
            terms["l1_low_teacher"] = w.l1_low_teacher * losses.low_pass_l1(out, teacher)
        if w.perceptual and self.perceptual is not None:
            terms["perceptual"] = w.perceptual * self.perceptual(out, teacher)
        if w.amplitude:
            terms["amplitude"] = w.amplitude * losses.amplitude_loss(out, teacher)
        if w.gradient:
            terms["gradient"] = w.gradient * losses.gradient_loss(out, teacher)
        if w.texture:
            like = teacher if c.texture_target == "teacher" else gt
            terms["texture"] = w.texture * losses.texture_loss(
                out, like, c.texture_window, c.texture_quantile
            )
        if w.band or w.hf_excess or w.band_corr:
            like = teacher if c.texture_target == "teacher" else gt
            if w.band:
                keep = 1 - losses.edge_zone(gt) if c.band_edge_free else None
                terms["band"] = w.band * losses.band_texture_loss(
                    out, like, c.texture_window, c.texture_quantile, c.band_gain, keep
                )
            if w.hf_excess:
                terms["hf_excess"] = w.hf_excess * losses.hf_excess_loss(
                    out, like, c.texture_window
                )
            if w.band_corr:
                terms["band_corr"] = w.band_corr * losses.band_correlation_loss(out, like)
        if w.halo:
            terms["halo"] = w.halo * losses.halo_loss(out, gt)
        if w.lattice:
            terms["lattice"] = w.lattice * losses.lattice_loss(out, teacher)
        if w.masked_fourier:
            terms["masked_fourier"] = w.masked_fourier * losses.masked_fourier_loss(out, teacher)
        if w.spectrum:
            terms["spectrum"] = w.spectrum * losses.spectrum_excess_loss(out, ceiling)
        if w.mesh:
            terms["mesh"] = w.mesh * losses.mesh_loss(out, gt, period=c.scale)
        use_gan = w.gan > 0 and self.step >= c.gan_start
        if use_gan:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            terms["gan"] = w.gan * losses.hinge_g_loss(self.disc(self._disc_view(out)))
        total = torch.stack(list(terms.values())).sum()
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        record = {k: float(v.detach()) for k, v in terms.items()}
        if use_gan:
            for p in self.disc.parameters():
                p.requires_grad_(True)
            real = self.disc(self._disc_view(teacher))
            fake = self.disc(self._disc_view(out.detach()))
            d_loss = losses.hinge_d_loss(real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            record["d"] = float(d_loss.detach())
        loop.update_ema(self.ema, self.student, self.config.ema, self.step)
        record["total"] = float(total.detach())
        return record

    def _mix_mild(
        self, hr: torch.Tensor, lr: torch.Tensor, gt: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace the first ``mild_fraction`` of the batch by lightly degraded ground truth
        (``mild_kind``: see ``degradations.MILD_SPECS``).

        Those samples have no teacher output, so their distillation target is the ground
        truth itself.  Randomness comes from a generator seeded by ``(seed, step)``.
        """
        import numpy as np

        from pocketsr_cli.train.degradations import degrade_mild

        n = round(lr.shape[0] * self.config.mild_fraction)
        if n == 0:
            return lr, teacher
        rng = np.random.default_rng([self.config.seed, self.step])
        lr, teacher = lr.clone(), teacher.clone()
        for i in range(n):
            img = (hr[i].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            small = degrade_mild(img, self.patch_scale, rng, self.mild_spec)
            lr[i] = torch.from_numpy(small).permute(2, 0, 1).float().to(lr.device) / 255
            teacher[i] = gt[i]
        return lr, teacher

    def _disc_view(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees: a random window, shifted by RandPad; blurred by
        ``disc_lowpass``; with ``disc_highpass``, only its detail above that blur;
        amplified by ``disc_gain``; with ``disc_phases``, split into its sub-pixel phases."""
        c = self.config
        if c.disc_aligned or c.disc_phases:
            view = losses.random_crop(x, c.disc_crop, step=c.scale)
        else:
            view = losses.rand_pad(losses.random_crop(x, c.disc_crop))
        if c.disc_lowpass > 0:
            view = view - losses.high_pass(view, c.disc_lowpass)
        if c.disc_highpass > 0:
            view = losses.high_pass(view, c.disc_highpass)
        view = view * c.disc_gain
        return losses.phase_view(view, c.scale) if c.disc_phases else view

    # -- the run ----------------------------------------------------------------------
    def finished(self) -> bool:
        """Whether the run has done its ``steps`` (or reached ``stop_at``) or used up its
        ``minutes``."""
        c = self.config
        if c.stop_at and self.step >= c.stop_at:
            return True
        return self.step >= c.steps or bool(c.minutes and self.elapsed >= 60.0 * c.minutes)

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> None:
        """Train until ``config.steps`` (or ``minutes``); checkpoints on the way and at
        the end; with ``eval_every``, also the EMA weights and validation scores."""
        c = self.config
        (self.out / "config.json").write_text(json.dumps(asdict(c), indent=2))
        batches = self._batches()
        loop.run_steps(self, lambda: next(batches), on_step, log_run_seconds=True)
        if c.anneal_to is not None and c.anneal_steps and self.step >= c.anneal_steps:
            anneal.finalize(self.student)
            anneal.finalize(self.ema)

    def evaluate(self) -> dict[str, Any]:
        """Write the EMA weights to ``export_to`` (default ``<out>/ema.safetensors``), and
        with ``keep_exports`` also to ``<out>/exports/step_<N>.safetensors``, and append the
        validation scores to ``<out>/metrics.jsonl``; returns that line."""
        from pocketsr_cli.train.validate import score

        dest = Path(self.config.export_to or self.out / "ema.safetensors")
        entry: dict[str, Any] = {
            "step": self.step,
            "seconds": round(self.elapsed, 1),
            "export": str(dest),
            "sha256": self.export(dest)["sha256"],
        }
        if self.config.keep_exports:  # the same bytes, kept under the step's name
            kept = self.out / "exports" / f"step_{self.step:07d}.safetensors"
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(dest, kept)
            entry["kept"] = str(kept)
        if self.val_items:
            entry.update(score(self.ema, self.val_items, self.device))
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.on_log(entry)
        return entry

    def export(self, path: Path) -> dict[str, Any]:
        """Write the EMA weights as safetensors; returns ``{"params", "sha256", "size"}``."""
        from pocketsr_cli.train.export import write_weights

        return write_weights(self.ema.state_dict(), path)


def _training_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a device.

    Raises:
        ValueError: CUDA asked for but not available, or an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown --device {name!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here")
    return device


def lr_at_fraction(done: float, base: float) -> float:
    """:func:`lr_at` for a share ``done`` (0..1) of a time budget."""
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(max(done, 0.0), 1.0))))


def lr_at(step: int, total: int, base: float) -> float:
    """Generator learning rate: cosine decay from ``base`` to 10% of it over ``total`` steps."""
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total))))
