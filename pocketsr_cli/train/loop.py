"""What every trainer here shares: the EMA update and the step loop with its logging,
checkpoints (one on Ctrl-C too, at the step's end) and timed evaluations.

A trainer passed to :func:`run_steps` has ``config`` (``log_every``, ``eval_every``,
``ckpt_every``), ``step``, ``elapsed``, ``out``, ``checkpoint_path`` and the methods
``train_step(batch) -> record``, ``finished()``, ``save()``, ``evaluate()`` and
``on_log(entry)``.

A resumed run keeps its options: a run's weights must be those of one recorded command
(the model cards give each run's command, seed and steps, and a resumed run replays an
uninterrupted one), so :func:`check_options` refuses to resume a checkpoint with options
that change what is trained (the data, the starting weights, the schedule, the losses, the
seed), naming them.  Options that only say how the session runs may differ: where it logs,
checkpoints, evaluates and exports, ``stop_at``, and what it runs on (device, threads,
data workers: a run resumes on another machine, the same steps within rounding).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, cap: float, step: int) -> None:
    """Move ``ema`` towards ``model`` with decay ``min(cap, (1 + step) / (10 + step))`` (a
    short warm-up, then ``cap``); integer buffers are copied."""
    decay = min(cap, (1 + step) / (10 + step))
    for e, s in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(s.detach(), alpha=1 - decay)
        else:
            e.copy_(s)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended :func:`run_steps`.  ``saved``: the step whose checkpoint was saved on
    the way out (None: none could be, see ``again``); ``last``: the step of the checkpoint
    ``checkpoint`` holds now (None: there is none); ``again``: a second Ctrl-C cut the
    step in progress or the save short."""

    def __init__(
        self, checkpoint: Path, saved: int | None, last: int | None, *, again: bool = False
    ) -> None:
        super().__init__()
        self.checkpoint, self.saved, self.last, self.again = checkpoint, saved, last, again

    def __str__(self) -> str:
        if self.saved is not None:
            return (
                f"interrupted: saved a checkpoint at step {self.saved} ({self.checkpoint}); "
                "run the same command again to resume from it"
            )
        how = (
            "interrupted again before a checkpoint could be saved"
            if self.again
            else ("interrupted")
        )
        if self.last is None:
            return f"{how}; no checkpoint was saved yet: the same command starts it over"
        return (
            f"{how}; {self.checkpoint} holds step {self.last}: run the same command again "
            "to resume from it"
        )


class _CtrlC:
    """SIGINT (Ctrl-C) during a training run: while a step runs, noted, and taken once the
    step is done (:meth:`take`), so that a checkpoint can be saved at a step's end, where
    the models, optimisers and random state agree; elsewhere, or a second time (a step
    that seems stuck), a ``KeyboardInterrupt`` at once."""

    def __init__(self) -> None:
        self.in_step = False
        self.pending = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.in_step and not self.pending:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """This handler for SIGINT while the block runs, where Python's own is in force
        (in the main thread; SIGINT ignored, or handled by the caller, is left so)."""
        if (
            threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return
        signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def take(self) -> None:
        """Raise the ``KeyboardInterrupt`` of a Ctrl-C noted during the step just done."""
        if self.pending:
            raise KeyboardInterrupt


Range = tuple[float, float | None]
"""An option's smallest and largest workable value (None: no largest), both included."""

SHARED_RANGES: dict[str, Range] = {
    "batch": (1, None),  # the step loop divides by these three
    "ckpt_every": (1, None),
    "log_every": (1, None),
    "threads": (0, None),  # 0 or None: torch's default
    "minutes": (0, None),  # 0: no budget
    "eval_every": (0, None),  # 0: never
    "val_crop": (16, None),  # the scores shave a border
    "lr_size": (1, None),
    "ema": (0, 1),
    # numpy's generators (the patches, the mild mix) take no negative seed; torch's does,
    # so a run with one failed only later, or only with --photos
    "seed": (0, None),
}
"""The ranges of the numeric options every trainer here has (:func:`check_run_options`)."""


def check_ranges(config: Any, ranges: Mapping[str, Range]) -> None:
    """Refuse the first of ``ranges``' options whose value in ``config`` lies outside its
    range (an option the config lacks, or that is None: not given, is not checked).

    Raises:
        ValueError: ``"--batch must be at least 1, got 0"``, ``"--ema must be between 0
            and 1, got 2.0"``.
    """
    for name, (low, high) in ranges.items():
        value = getattr(config, name, None)
        if value is None or (low <= value and (high is None or value <= high)):
            continue
        flag = "--" + name.replace("_", "-")
        if high is None:
            raise ValueError(f"{flag} must be at least {low}, got {value}")
        raise ValueError(f"{flag} must be between {low} and {high}, got {value}")


def check_run_options(config: Any) -> Path:
    """The run folder ``config.out`` of a trainer about to start, once the options every
    trainer shares can work: each within :data:`SHARED_RANGES` (``--batch 0`` would divide
    by zero, ``--threads -1`` is torch's error, ``--minutes -1`` a run that ends at once,
    ``--val-crop 0`` an OpenCV one), ``out`` not a file and ``export_to`` a file that can
    be written (``export.check_weights_dest``).  Nothing is written: a trainer
    makes the folder only once all its own options pass too.

    Raises:
        ValueError: naming the option that cannot work.
    """
    check_ranges(config, SHARED_RANGES)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a run folder")
    if getattr(config, "export_to", None):  # written at the first evaluation: check it now
        from pocketsr_cli.train.export import check_weights_dest

        check_weights_dest(Path(config.export_to), "--export-to")
    return out


def run_steps(
    trainer: Any,
    next_batch: Callable[[], Any],
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    *,
    log_run_seconds: bool = False,
) -> None:
    """Train until ``trainer.finished()``: one ``train_step`` per batch, a line in
    ``<out>/log.jsonl`` every ``log_every`` steps and at the end, a checkpoint every
    ``ckpt_every`` steps, and with ``eval_every`` (seconds) a checkpoint plus
    ``evaluate()`` that often and at the end (without it, a checkpoint at the end).

    ``elapsed`` keeps counting across resumed runs; the logged ``seconds`` are that total,
    or with ``log_run_seconds`` the seconds of this run alone.

    Ctrl-C saves a checkpoint at the current step before the run ends, so at most the step
    in progress is lost: during a step, the step is finished first (its log line written),
    a checkpoint saved and :class:`Interrupted` raised; elsewhere (loading a batch, logging,
    a checkpoint, an evaluation) the checkpoint is of the last step done, with the random
    state as that step left it (loading draws from it), so the resumed run still replays
    an uninterrupted one.  The save is atomic (``save_checkpoint``): a second Ctrl-C during
    it (or during the step being finished, or any ``KeyboardInterrupt`` raised inside a
    step, where the models may be half updated) ends the run at once with no new
    checkpoint, and ``last.pt`` stays the previous one, whole.
    """
    c = trainer.config
    t0 = time.perf_counter()
    start_elapsed = trainer.elapsed
    last_eval = time.perf_counter()
    ctrl_c = _CtrlC()
    saved = trainer.step if trainer.checkpoint_path.exists() else None
    rng = torch.get_rng_state()  # as the last step done left it
    try:
        with ctrl_c.installed(), (trainer.out / "log.jsonl").open("a", encoding="utf-8") as log:
            while not trainer.finished():
                rng = torch.get_rng_state()
                batch = next_batch()
                ctrl_c.in_step = True
                record = trainer.train_step(batch)
                trainer.step += 1
                trainer.elapsed = start_elapsed + time.perf_counter() - t0
                ctrl_c.in_step = False
                rng = torch.get_rng_state()
                if on_step is not None:
                    on_step(trainer.step, record)
                if trainer.step % c.log_every == 0 or trainer.finished():
                    seconds = time.perf_counter() - t0 if log_run_seconds else trainer.elapsed
                    entry = {"step": trainer.step, "seconds": round(seconds, 1), **record}
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    trainer.on_log(entry)
                ctrl_c.take()
                due = c.eval_every and time.perf_counter() - last_eval >= c.eval_every
                if due or trainer.finished():
                    trainer.save()
                    saved = trainer.step
                    if c.eval_every:
                        trainer.evaluate()
                        last_eval = time.perf_counter()
                elif trainer.step % c.ckpt_every == 0:
                    trainer.save()
                    saved = trainer.step
    except KeyboardInterrupt:
        path = trainer.checkpoint_path
        if ctrl_c.in_step:  # cut inside a step: the models may be half updated
            raise Interrupted(path, None, saved, again=ctrl_c.pending) from None
        if saved == trainer.step or (saved is None and trainer.step == 0):
            raise Interrupted(path, None, saved) from None  # nothing new to save
        torch.set_rng_state(rng)
        try:
            trainer.save()
        except KeyboardInterrupt:  # a second Ctrl-C: the save is abandoned whole
            raise Interrupted(path, None, saved, again=True) from None
        raise Interrupted(path, trainer.step, trainer.step) from None


def exit_status(job: Callable[[], None]) -> int:
    """Run a training command's ``job`` and say how it ended, as its ``main`` returns it:
    0 done; 1 an error, said on one line on stderr (a bad option, a file that cannot be
    read or written); 130 interrupted, with how to resume (:class:`Interrupted`'s own
    message where Ctrl-C saved a checkpoint first, see :func:`run_steps`)."""
    from pocketsr_cli.errors import PocketSRError

    try:
        job()
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            "interrupted; run the same command again to resume from its last checkpoint",
            file=sys.stderr,
        )
        return 130
    except (OSError, ValueError, PocketSRError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def resume_and_run(trainer: Any, total: int | None) -> None:
    """Resume ``trainer`` from its checkpoint (when there is one) and run it under a tqdm
    bar of ``total`` steps (None: no total), each step's losses on the bar."""
    from tqdm import tqdm

    resumed = trainer.resume()
    bar = tqdm(total=total, initial=trainer.step, desc=trainer.out.name, unit="step")
    if resumed:
        bar.write(f"resumed from {trainer.checkpoint_path} at step {trainer.step}")

    def on_step(step: int, record: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()})

    try:
        trainer.run(on_step)
    finally:  # an error or Ctrl-C then prints below the bar, not into it
        bar.close()


def save_checkpoint(path: Path, parts: Mapping[str, Any], **extra: Any) -> None:
    """Write ``last.pt`` atomically: each of ``parts``' ``state_dict()`` under its name
    (models, EMA, optimisers), plus ``extra`` as it is (step, seconds, config...)."""
    from pocketsr_cli.atomicfile import replacing

    state = {name: part.state_dict() for name, part in parts.items()} | extra
    with replacing(path) as tmp:
        torch.save(state, tmp)


class CheckpointUnreadable(ValueError):
    """``last.pt`` cannot be read as a checkpoint: cut short, damaged, or another file.

    ``path`` is the file and ``problem`` what is wrong with it, a predicate (``"is not a
    whole checkpoint (cut short or damaged?)"``); the message is ``"<path> <problem>"``
    and, where one fits, what a trainer about to resume the run can do about it.  A
    command that only reads the checkpoint (``train.export``) says its own.
    """

    def __init__(self, path: Path, problem: str, remedy: str | None = None) -> None:
        super().__init__(f"{path} {problem}" + (f"; {remedy}" if remedy else ""))
        self.path, self.problem = path, problem


DAMAGED = "is not a whole checkpoint (cut short or damaged?)"
""":attr:`CheckpointUnreadable.problem` of a file torch cannot load as a checkpoint."""


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state :func:`save_checkpoint` wrote to ``path``.

    Raises:
        CheckpointUnreadable: ``path`` cannot be read, or is not a whole checkpoint (a
            copy cut short, a damaged disk, another file under the name): one line naming
            it, never torch's pickle errors.
    """
    remedy = "put back a good copy, or remove it to start the run over from step 0"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError as exc:
        raise CheckpointUnreadable(path, f"cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # torch.load: RuntimeError (zip), EOFError, UnpicklingError...
        raise CheckpointUnreadable(path, DAMAGED, remedy) from exc
    if not isinstance(state, dict):
        raise CheckpointUnreadable(path, DAMAGED, remedy)
    return state


def check_parts(
    path: Path, state: Mapping[str, Any], parts: Collection[str], whose: str = "this trainer"
) -> None:
    """Refuse the checkpoint ``state`` read from ``path`` when it lacks one of ``parts``.

    Raises:
        CheckpointUnreadable: ``"<path> is not a checkpoint of <whose> (it has no ema,
            opt_g)"``.
    """
    missing = [name for name in parts if name not in state]
    if missing:
        problem = f"is not a checkpoint of {whose} (it has no {', '.join(missing)})"
        raise CheckpointUnreadable(path, problem)


def load_checkpoint(
    path: Path,
    parts: Mapping[str, Any],
    device: torch.device | str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """Restore ``parts`` (the names :func:`save_checkpoint` wrote) from ``path``; returns
    the whole saved state for the rest, or None when there is no checkpoint yet.
    ``check(state)`` runs first, before anything is restored (:func:`check_options`).

    Raises:
        CheckpointUnreadable: see :func:`read_checkpoint`; or it lacks one of ``parts``.
    """
    if not path.exists():
        return None
    state = read_checkpoint(path, device)
    check_parts(path, state, parts)
    if check is not None:
        check(state)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return state


class OptionsChanged(ValueError):
    """A run resumed with options that change what it trains (:func:`check_options`)."""


def check_options(
    state: Mapping[str, Any],
    now: Mapping[str, Any],
    defaults: Mapping[str, Any],
    session: Collection[str],
    *,
    run: Path,
    prefixes: Mapping[str, str] | None = None,
) -> None:
    """Refuse to resume the checkpoint ``state`` of ``run`` with options ``now`` (the
    config's ``asdict``) that differ from the ones it was trained with (its ``config``)
    other than those in ``session`` (how the session runs, not what it trains).  An option
    the checkpoint does not hold (written before it existed) counts as its default
    (``defaults``); ``prefixes`` names the flags of a nested group (``{"weights": "w"}``:
    ``weights.gan`` is ``--w-gan``).  A checkpoint without a config is not checked.

    Raises:
        OptionsChanged: naming each option that differs, with the run's value.
    """
    saved = state.get("config")
    if not isinstance(saved, Mapping):
        return
    before, after, default = _flat(saved), _flat(now), _flat(defaults)
    changed = []
    for key, value in after.items():
        if key.split(".")[0] in session:
            continue
        was = before.get(key, default.get(key))
        if was != value:
            flag = _flag(key, prefixes or {})
            changed.append(f"{flag} {_shown(value)} (the run's: {_shown(was)})")
    if changed:
        raise OptionsChanged(
            f"cannot resume {run} with options other than it was trained with: "
            f"{'; '.join(changed)}. A resumed run keeps its options, so that its weights "
            "are those of one recorded command: resume it with the run's options (see "
            f"{run / 'config.json'}), or start a new run with another --out (--init can "
            "take this run's weights, exported with python -m pocketsr_cli.train.export)"
        )


def _flat(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``options`` with nested groups flattened: ``{"weights.gan": 0.01, ...}``."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _flag(key: str, prefixes: Mapping[str, str]) -> str:
    group, dot, name = key.rpartition(".")
    if dot:
        name = f"{prefixes.get(group, group)}_{name}"
    return "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
