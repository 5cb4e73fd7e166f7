"""What every trainer here shares: the EMA update and the step loop with its logging,
checkpoints and timed evaluations.

A trainer passed to :func:`run_steps` has ``config`` (``log_every``, ``eval_every``,
``ckpt_every``), ``step``, ``elapsed``, ``out`` and the methods ``train_step(batch) ->
record``, ``finished()``, ``save()``, ``evaluate()`` and ``on_log(entry)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
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
    """
    c = trainer.config
    t0 = time.perf_counter()
    start_elapsed = trainer.elapsed
    last_eval = time.perf_counter()
    with (trainer.out / "log.jsonl").open("a", encoding="utf-8") as log:
        while not trainer.finished():
            record = trainer.train_step(next_batch())
            trainer.step += 1
            trainer.elapsed = start_elapsed + time.perf_counter() - t0
            if on_step is not None:
                on_step(trainer.step, record)
            if trainer.step % c.log_every == 0 or trainer.finished():
                seconds = time.perf_counter() - t0 if log_run_seconds else trainer.elapsed
                entry = {"step": trainer.step, "seconds": round(seconds, 1), **record}
                log.write(json.dumps(entry) + "\n")
                log.flush()
                trainer.on_log(entry)
            due = c.eval_every and time.perf_counter() - last_eval >= c.eval_every
            if due or trainer.finished():
                trainer.save()
                if c.eval_every:
                    trainer.evaluate()
                    last_eval = time.perf_counter()
            elif trainer.step % c.ckpt_every == 0:
                trainer.save()


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


def load_checkpoint(
    path: Path, parts: Mapping[str, Any], device: torch.device | str
) -> dict[str, Any] | None:
    """Restore ``parts`` (the names :func:`save_checkpoint` wrote) from ``path``; returns
    the whole saved state for the rest, or None when there is no checkpoint yet."""
    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return state
