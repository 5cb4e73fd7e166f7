"""``python -m pocketsr_cli.train.pcsr``: train a PCSR network on the training photos.

PCSR (``archs/pcsr``) is the fidelity model, so its targets are the ground-truth photos,
never the teacher.  Training follows the official two phases (github 3587jjh/PCSR,
``train_pcsr.py`` and ``configs/*-pcsr-phase{0,1}.yaml``):

1. ``--phase 1``: backbone + heavy upsampler, plain L1 between ``bilinear + heavy`` and
   the ground truth;
2. ``--phase 2`` (``--init`` the phase-1 weights, which stay frozen): light upsampler +
   classifier on the soft mix ``bilinear + p_light * light + p_heavy * heavy`` with
   ``w_rgb * L1 + w_balance * |sum p_heavy - M/2| / (M/2)`` over the batch's ``M``
   queried pixels (official weights 1000 and 3: the classifier learns which pixels the
   heavy path helps, the balance term keeps half of them heavy).

Scale: ×4 only, as the official configs (``scale: [4, 4]``) train; the network still
upsamples by any factor (LIIF), but only ×4 has been trained and measured.  An LR patch
of ``lr_size`` pixels is queried at ``queries`` random output pixels (0: all
``(4 lr_size)²``, the official setting); on a CPU a subset buys more distinct patches
for the same work, since the heavy MLP's cost per queried pixel dominates.

Data: patch ``i`` is :class:`~pocketsr_cli.train.online.OnlinePatches`' patch ``i`` of the
training split (``train/split.py``: the validation photos are never cropped), degraded
with ``degradations[i % n]`` (``clean`` = the ``bicubic`` evaluation's downscale,
``mild``, ``web``; see ``train/degradations.py``), made on the fly (no teacher).  Step
``s`` uses patches ``s·batch …``, and its query pixels come from a generator seeded by
``(seed, step)``: a run is a pure function of its config, and a resumed run replays an
uninterrupted one.

A run folder holds ``config.json``, ``last.pt`` (model, EMA, optimiser, step, seconds;
written atomically every ``ckpt_every`` steps, at every evaluation, at the end and on
Ctrl-C: ``loop.run_steps``),
``log.jsonl`` (losses) and, with ``eval_every``, ``metrics.jsonl`` (validation scores of
the EMA weights, which are exported to ``export_to``).  Re-running the same command
resumes; with options that change what is trained (any but :data:`SESSION_OPTIONS`) it is
refused, naming them, so that a run's weights are those of its one recorded command.  The
learning rate follows a cosine from ``lr`` to ``lr_min`` over ``steps`` or, with
``minutes``, over the wall-clock budget.

Phase-1 weights are exported with a classifier that sends every pixel to the heavy path
(:func:`route_all_heavy`), so ``pocketsr eval -m phase1.safetensors`` measures the
all-heavy network; phase 2 replaces that classifier with a trained one.

``--init`` in phase 1 continues from earlier phase-1 weights (a new cosine cycle; give a
new ``--seed`` for new patches).

Example (``pcsr-x4``; ``models/pcsr-x4.md`` has the exact commands and their scores)::

    python -m pocketsr_cli.train.pcsr --phase 1 --out runs/pcsr-p1 --photos data/photos \\
        --queries 2304 --minutes 35 --threads 1 --val data/val --eval-every 300 \\
        --export runs/pcsr-p1.safetensors
    python -m pocketsr_cli.train.pcsr --phase 2 --out runs/pcsr-p2 --photos data/photos \\
        --init runs/pcsr-p1.safetensors --queries 2304 --minutes 10 --threads 1 \\
        --val data/val --eval-every 300 \\
        --export runs/pcsr-x4.safetensors --manifest runs/pcsr-x4.toml
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from pocketsr_cli.archs.pcsr import PCSR, PCSRConfig, Routing, build
from pocketsr_cli.archs.pcsr.grid import QueryAxis, as_ratio, bilinear, query_axis
from pocketsr_cli.archs.pcsr.sampler import LiifSampler, Queries
from pocketsr_cli.train import loop
from pocketsr_cli.train.cmdline import CommandParser
from pocketsr_cli.train.export import check_weights_dest
from pocketsr_cli.train.trainer import _training_device

SCALE = 4  # the scale PCSR is trained at (official configs: scale [4, 4])
ALL_HEAVY_MARGIN = 30.0  # logit margin of route_all_heavy: heavy for any k below ~13
ALL_HEAVY = Routing(k=-1000.0)  # every pixel heavy, whatever the classifier says


@dataclass
class PcsrTrainConfig:
    """Everything that determines a PCSR training run."""

    out: str
    phase: int = 1
    photos: str = "data/photos"
    preset: str = "fsrcnn"  # a PCSR preset, or "fsrcnn,channels=32" style overrides (JSON)
    # phase-1 weights (.safetensors): phase 2 freezes their backbone and heavy upsampler,
    # phase 1 continues from them (a new cosine cycle, e.g. with a new seed: new patches)
    init: str | None = None
    degradations: str = "clean,mild,clean,web"  # patch i: kind i mod n
    lr_size: int = 32
    batch: int = 16
    queries: int = 0  # output pixels queried per patch (0: all)
    steps: int = 100_000
    minutes: float = 0.0  # wall-clock budget (0: none); the LR schedule follows it
    lr: float = 1e-3
    lr_min: float = 1e-7
    ema: float = 0.999
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    ckpt_every: int = 200
    log_every: int = 20
    eval_every: float = 0.0  # seconds between checkpoint + EMA export + validation (0: never)
    val: str | None = None
    val_crop: int = 256
    export_to: str | None = None  # where each evaluation writes the EMA weights
    w_rgb: float = 1000.0  # phase 2 (phase 1 is plain L1)
    w_balance: float = 3.0  # phase 2
    heavy_share: float = 0.5  # phase 2: the share of heavy pixels the balance term asks for

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PcsrTrainConfig:
        return cls(**data)


SESSION_OPTIONS = frozenset(
    {"out", "ckpt_every", "log_every", "eval_every", "val", "val_crop", "export_to"}
    | {"threads", "device"}
)
"""The options a resumed run may change: how its session runs, not what it trains (as
``trainer.SESSION_OPTIONS``); every other option must be the run's."""


def build_pcsr(preset: str) -> PCSR:
    """A fresh ×4 PCSR network: ``"fsrcnn"`` or ``"fsrcnn,channels=32,heavy=[40,40]"``.

    Raises:
        ValueError: unknown preset or field, or a malformed override.
    """
    name, *overrides = re.split(r",(?![^\[]*\])", preset)  # commas outside [...]
    params: dict[str, Any] = {"preset": name}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"preset override {item!r} is not key=value")
        params[key.strip()] = json.loads(value)
    return build(PCSRConfig.from_params(params), SCALE)


def route_all_heavy(model: PCSR) -> None:
    """Make the classifier send every pixel to the heavy path (its last layer outputs a
    constant margin of :data:`ALL_HEAVY_MARGIN`): what phase 1's exports carry, since
    phase 1 does not train the classifier."""
    last = [m for m in model.classifier.imnet.layers if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, ALL_HEAVY_MARGIN]))


# -- queries ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuerySet:
    """The output pixels one step trains on, for a batch of LR patches at ×4.

    Attributes:
        rows / cols: the query grid of one patch (all patches have the same size).
        cell: the relative cell, ``2 / scale``.
        index: ``(M,)`` flat indices ``n * H * W + r * W + c`` of the queried pixels.
        where: the samplers' view of the same pixels.
    """

    rows: QueryAxis
    cols: QueryAxis
    cell: float
    index: torch.Tensor
    where: Queries

    def gather(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` on the query grid -> ``(M, C)`` at the queried pixels."""
        flat = image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])
        return flat.index_select(0, self.index)


def query_set(
    n: int, h: int, w: int, count: int, generator: torch.Generator | None, device: torch.device
) -> QuerySet:
    """``count`` distinct random output pixels of each of ``n`` LR patches ``h × w`` at ×4
    (``count`` 0 or at least the output size: every pixel, in order)."""
    ratio = as_ratio(SCALE)
    rows = query_axis(h, h * SCALE, ratio, device)
    cols = query_axis(w, w * SCALE, ratio, device)
    pixels = len(rows) * len(cols)
    if count <= 0 or count >= pixels:
        index = torch.arange(n * pixels, device=device)
    else:
        picks = [torch.randperm(pixels, generator=generator)[:count] + i * pixels for i in range(n)]
        index = torch.cat(picks).to(device)
    image = torch.div(index, pixels, rounding_mode="floor")
    row = torch.div(index - image * pixels, len(cols), rounding_mode="floor")
    col = index - image * pixels - row * len(cols)
    lr_index = (image * h + rows.index.index_select(0, row)) * w + cols.index.index_select(0, col)
    where = Queries(lr_index=lr_index, row=row, col=col)
    return QuerySet(rows=rows, cols=cols, cell=2.0 / SCALE, index=index, where=where)


def run_sampler(sampler: LiifSampler, feat: torch.Tensor, q: QuerySet) -> torch.Tensor:
    """One per-pixel MLP at the queried pixels, ``(M, out)``, differentiably."""
    return sampler.query(sampler.prepare(feat, q.rows, q.cols, q.cell), q.where)


def features(model: PCSR, lr: torch.Tensor) -> torch.Tensor:
    """The backbone's LR features, as :meth:`PCSR.forward` computes them."""
    return model.encoder(lr - model.rgb_mean.to(lr.dtype))


def phase1_loss(model: PCSR, lr: torch.Tensor, gt: torch.Tensor, q: QuerySet) -> dict[str, Any]:
    """L1 between ``bilinear + heavy`` and the ground truth at the queried pixels."""
    pred = q.gather(bilinear(lr, q.rows, q.cols)) + run_sampler(
        model.heavy_sampler, features(model, lr), q
    )
    l1 = F.l1_loss(pred, q.gather(gt))
    return {"total": l1, "l1": l1}


def phase2_loss(
    model: PCSR, lr: torch.Tensor, gt: torch.Tensor, q: QuerySet, c: PcsrTrainConfig
) -> dict[str, Any]:
    """The official phase-2 loss on the soft mix (encoder and heavy path frozen)."""
    with torch.no_grad():
        feat = features(model, lr)
        heavy = run_sampler(model.heavy_sampler, feat, q)
        base = q.gather(bilinear(lr, q.rows, q.cols))
    prob = torch.softmax(run_sampler(model.classifier, feat, q), dim=-1)  # (light, heavy)
    light = run_sampler(model.light_sampler, feat, q)
    pred = base + prob[:, :1] * light + prob[:, 1:] * heavy
    l1 = F.l1_loss(pred, q.gather(gt))
    target = prob.shape[0] * c.heavy_share
    balance = (prob[:, 1].sum() - target).abs() / target
    return {
        "total": c.w_rgb * l1 + c.w_balance * balance,
        "l1": l1,
        "balance": balance,
        "p_heavy": prob[:, 1].detach().mean(),
    }


def cosine_lr(done: float, base: float, floor: float) -> float:
    """Cosine from ``base`` (``done`` 0) to ``floor`` (``done`` 1)."""
    done = min(max(done, 0.0), 1.0)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * done))


# -- the run ------------------------------------------------------------------------------
class PcsrTrainer:
    """Model, EMA, optimiser and data of one phase.  Never prints; reports via ``on_log``."""

    def __init__(
        self, config: PcsrTrainConfig, on_log: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        from pocketsr_cli.train.online import OnlinePatches
        from pocketsr_cli.train.patches import PatchSpec
        from pocketsr_cli.train.split import split_photos

        c = config
        if c.phase not in (1, 2):
            raise ValueError(f"--phase must be 1 or 2, got {c.phase}")
        if c.phase == 2 and not c.init:
            raise ValueError("phase 2 starts from the phase-1 weights: give --init")
        if not 0 < c.heavy_share < 1:
            raise ValueError(f"--heavy-share must be in (0, 1), got {c.heavy_share}")
        if c.queries < 0:
            raise ValueError(f"--queries must be 0 (all) or more, got {c.queries}")
        self.out = loop.check_run_options(c)
        self.config = c
        self.on_log = on_log or (lambda _r: None)
        if c.threads:
            torch.set_num_threads(c.threads)
        self.device = _training_device(c.device)
        torch.manual_seed(c.seed)
        model = build_pcsr(c.preset)
        if c.init:
            self._load_phase1_parts(model, Path(c.init))
        if c.phase == 1:
            route_all_heavy(model)
            trained: list[nn.Module] = [model.encoder, model.heavy_sampler]
        else:
            trained = [model.light_sampler, model.classifier]
        self.model = model.to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        params = [p for m in trained for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.trained = trained
        self.ema = copy.deepcopy(self.model).eval()
        self.opt = torch.optim.Adam(params, lr=c.lr, betas=(0.9, 0.99))
        self.step = 0
        self.elapsed = 0.0
        split = split_photos(Path(c.photos))
        spec = PatchSpec(scale=SCALE, lr_size=c.lr_size, margin=0, seed=c.seed)
        kinds = [k.strip() for k in c.degradations.split(",") if k.strip()]
        self.data = OnlinePatches(split.train, spec, kinds)
        self.train_photos = [p.name for p in split.train]
        self.val_items: list[Any] = []
        if c.val:
            from pocketsr_cli.train.validate import load_validation

            self.val_items = load_validation(Path(c.val), c.val_crop, SCALE)
        # made only now that every option has been checked: a refused run leaves nothing
        self.out.mkdir(parents=True, exist_ok=True)

    def _load_phase1_parts(self, model: PCSR, path: Path) -> None:
        """Backbone and heavy upsampler from the phase-1 weights at ``path`` (phase 2
        freezes them; phase 1 with ``--init`` continues training them).

        Raises:
            ValueError: the weights are not of this preset's shape.
        """
        from safetensors.torch import load_file

        state = load_file(str(path))
        for prefix in ("encoder", "heavy_sampler"):
            part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
            try:
                getattr(model, prefix).load_state_dict(part)
            except RuntimeError as exc:
                raise ValueError(f"--init {path}: {prefix} does not fit --preset: {exc}") from exc

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def _parts(self) -> dict[str, Any]:
        return {"model": self.model, "ema": self.ema, "opt": self.opt}

    def save(self) -> None:
        loop.save_checkpoint(
            self.checkpoint_path,
            self._parts(),
            step=self.step,
            elapsed=self.elapsed,
            config=asdict(self.config),
        )

    def resume(self) -> bool:
        """Load ``last.pt`` if present; returns whether it did.

        Raises:
            loop.OptionsChanged: the run was trained with other options than ``config``
                (:data:`SESSION_OPTIONS` aside): a resumed run keeps its options.
        """
        defaults = asdict(PcsrTrainConfig(out=""))

        def check(state: dict[str, Any]) -> None:
            now = asdict(self.config)
            loop.check_options(state, now, defaults, SESSION_OPTIONS, run=self.out)

        state = loop.load_checkpoint(self.checkpoint_path, self._parts(), self.device, check)
        if state is None:
            return False
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        return True

    # -- one step -------------------------------------------------------------------------
    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Patches ``step·batch …`` as float ``lr (N, 3, h, h)`` and ``hr (N, 3, 4h, 4h)``."""
        b = self.config.batch
        items = default_collate([self.data[step * b + j] for j in range(b)])
        return {
            "lr": items["lr_context"].to(self.device).float().div_(255.0),
            "hr": items["hr"].to(self.device).float().div_(255.0),
        }

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        done = self.elapsed / (60.0 * c.minutes) if c.minutes else self.step / max(1, c.steps)
        rate = cosine_lr(done, c.lr, c.lr_min)
        for group in self.opt.param_groups:
            group["lr"] = rate
        for m in self.trained:
            m.train()
        lr, hr = batch["lr"], batch["hr"]
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + self.step)
        q = query_set(lr.shape[0], lr.shape[2], lr.shape[3], c.queries, gen, self.device)
        terms = (
            phase1_loss(self.model, lr, hr, q)
            if c.phase == 1
            else phase2_loss(self.model, lr, hr, q, c)
        )
        self.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.opt.step()
        loop.update_ema(self.ema, self.model, self.config.ema, self.step)
        # the rate is logged: with --minutes it follows the clock, so a rerun differs a little
        return {**{k: float(v.detach()) for k, v in terms.items()}, "lr": rate}

    # -- the run --------------------------------------------------------------------------
    def finished(self) -> bool:
        c = self.config
        return self.step >= c.steps or bool(c.minutes and self.elapsed >= 60.0 * c.minutes)

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> None:
        """Train until ``steps`` (or ``minutes``); checkpoints on the way and at the end."""
        c = self.config
        (self.out / "config.json").write_text(json.dumps(asdict(c), indent=2))
        loop.run_steps(self, lambda: self.batch(self.step), on_step)

    def evaluate(self) -> dict[str, Any]:
        """Export the EMA weights (``export_to``, default ``<out>/ema.safetensors``) and
        append validation scores to ``<out>/metrics.jsonl``: phase 1 all-heavy, phase 2
        at ``k = 0`` (with its heavy fraction) and all-heavy."""
        from pocketsr_cli.train.validate import score

        dest = Path(self.config.export_to or self.out / "ema.safetensors")
        entry: dict[str, Any] = {
            "step": self.step,
            "seconds": round(self.elapsed, 1),
            "export": str(dest),
            "sha256": self.export(dest)["sha256"],
        }
        if self.val_items:
            model = self.ema
            saved = model.routing
            try:
                model.routing = ALL_HEAVY
                entry["all_heavy"] = score(model, self.val_items, self.device)
                if self.config.phase == 2:
                    model.routing = Routing()
                    model.reset_stats()
                    entry["k0"] = score(model, self.val_items, self.device)
                    entry["k0_heavy_fraction"] = round(model.total_stats.heavy_fraction, 4)
            finally:
                model.routing = saved
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.on_log(entry)
        return entry

    def export(self, path: Path) -> dict[str, Any]:
        """Write the EMA weights (official key layout) as safetensors; returns
        ``{"params", "sha256", "size"}``."""
        from pocketsr_cli.train.export import write_weights

        return write_weights(self.ema.state_dict(), path)


def manifest_text(
    name: str, model: PCSR, weights: Path, info: dict[str, Any], description: str, comment: str
) -> str:
    """The ``models/<name>.toml`` of exported PCSR weights (``dump_manifest`` format)."""
    from pocketsr_cli.manifest import Hints, Meta, ModelSpec, WeightsSpec, dump_manifest

    spec = ModelSpec(
        name=name,
        family="pcsr",
        scale=SCALE,
        path=weights.with_suffix(".toml"),
        build=model.config.to_params(),
        description=description,
        weights=WeightsSpec(file=weights.name, sha256=info["sha256"], size=info["size"]),
        hints=Hints(tiling=True, multiple_of=1, minimum=1, fp16=True, bf16=True),
        meta=Meta(
            license="Apache-2.0",
            source="pocketsr (trained from scratch with python -m pocketsr_cli.train.pcsr)",
            paper="Jeong et al., PCSR: Accelerating Image Super-Resolution Networks with "
            "Pixel-Level Classification, ECCV 2024, arXiv:2407.21448",
            params=int(info["params"]),
        ),
    )
    return dump_manifest(spec, comment)


# -- command line -------------------------------------------------------------------------
NONE_DEFAULT_TYPES: dict[str, type] = {"init": str, "threads": int, "val": str, "export_to": str}


def parse_args(argv: list[str] | None = None) -> tuple[PcsrTrainConfig, argparse.Namespace]:
    parser = CommandParser(
        prog="python -m pocketsr_cli.train.pcsr",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = PcsrTrainConfig(out="")
    for f in fields(PcsrTrainConfig):
        value = getattr(defaults, f.name)
        kind = type(value) if value is not None else NONE_DEFAULT_TYPES.get(f.name, str)
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=value, required=f.name == "out"
        )
    parser.add_argument("--export", type=Path, default=None, help="EMA weights here at the end")
    parser.add_argument("--manifest", type=Path, default=None, help="and a manifest for them")
    parser.add_argument("--name", default="pcsr-x4", help="the manifest's model name")
    args = vars(parser.parse_args(argv))
    extra = argparse.Namespace(
        export=args.pop("export"), manifest=args.pop("manifest"), name=args.pop("name")
    )
    return PcsrTrainConfig(**args), extra


def main(argv: list[str] | None = None) -> int:
    """Exit status (``loop.exit_status``): 0 done, 1 error (one line on stderr), 2 bad
    command line, 130 interrupted (run the same command again to resume; Ctrl-C saves a
    checkpoint at the step in progress first, see ``loop.run_steps``)."""
    config, extra = parse_args(argv)

    def job() -> None:
        if extra.manifest is not None and extra.export is None:
            raise ValueError("--manifest needs --export")
        check_weights_dest(extra.export, "--export")
        _run(config, extra)

    return loop.exit_status(job)


def _run(config: PcsrTrainConfig, extra: argparse.Namespace) -> None:
    trainer = PcsrTrainer(config)
    loop.resume_and_run(trainer, None)
    if extra.export is None:
        return
    info = trainer.export(extra.export)
    summary = {"export": str(extra.export), "step": trainer.step, **info}
    if extra.manifest is not None:
        text = manifest_text(
            extra.name,
            trainer.ema,
            extra.export,
            info,
            description="PCSR x4 (FSRCNN backbone, heavy/light LIIF upsamplers, pixel "
            "routing); trained on pocketsr's training photos, see card.",
            comment=f"{extra.name}: see {extra.name}.md for the data, commands and scores.",
        )
        extra.manifest.write_text(text, encoding="utf-8")
        summary["manifest"] = str(extra.manifest)
    (Path(config.out) / "export.json").write_text(
        json.dumps({**summary, "config": asdict(config)}, indent=2)
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
