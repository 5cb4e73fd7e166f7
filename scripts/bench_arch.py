#!/usr/bin/env python3
"""Seconds per 4K output (960x540 -> 3840x2160) of PocketSR presets against SRVGG-compact.

Everything runs in one process, interleaved, so that the ratios survive a noisy shared
machine: each round times every model once, and each model keeps its best round.  Single
image, no tiling, fp32, after a warm-up pass.

    python scripts/bench_arch.py                       # nano, tiny vs compact, 2 threads
    python scripts/bench_arch.py --presets nano tiny base --rounds 5 --channels-last

The compact model is ``/tmp/compact_x4.safetensors`` loaded through pocketsr's loader
when that file exists (``--compact PATH`` to change), else a randomly initialised SRVGG
with the same shapes (16 convolutions of 64 channels, PReLU, pixel shuffle): speed does not
depend on the weights' values.  ``--scale 2`` times a 1920x1080 input against a x2 SRVGG.
PocketSR inputs are padded to the model's ``multiple_of`` (960x544 for nano), as the tiler
would; that cost is included.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.archs.pocketsr import build, count_macs, count_params

LR_H, LR_W = 540, 960


class SRVGG(nn.Module):
    """Real-ESRGAN's compact network, for timing only: convs + PReLU at LR, shuffle x4."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, scale: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.pixel_shuffle(self.body(x), self.scale) + base


def load_compact(path: Path, scale: int) -> tuple[nn.Module, str]:
    if path.is_file() and scale == 4:  # the file is a x4 model
        from safetensors.torch import load_file

        from pocketsr_cli.weights.load import descriptor_from_state_dict

        desc = descriptor_from_state_dict(load_file(str(path)), "compact")
        return desc.module, f"compact ({path.name}, {desc.family})"
    return SRVGG(scale=scale).eval(), f"compact (random SRVGG 16x64, x{scale})"


@dataclass
class Entry:
    label: str
    model: nn.Module
    x: torch.Tensor
    params: int = 0  # 0: not reported (the reference)
    macs: int = 0
    seconds: float = float("inf")

    def run(self) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            self.model(self.x)
        return time.perf_counter() - start


def to_format(model: nn.Module, fmt: torch.memory_format) -> nn.Module:
    return model.to(memory_format=fmt)  # type: ignore[call-overload]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["nano", "tiny"])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compact", type=Path, default=Path("/tmp/compact_x4.safetensors"))
    ap.add_argument(
        "--channels-last", action="store_true", help="run every model in NHWC memory format"
    )
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    lr_h, lr_w = LR_H * 4 // args.scale, LR_W * 4 // args.scale  # always a 4K output

    compact, compact_label = load_compact(args.compact, args.scale)
    x = torch.rand(1, 3, lr_h, lr_w).contiguous(memory_format=fmt)
    entries = [Entry(compact_label, to_format(compact.eval(), fmt), x)]
    for name in args.presets:
        model = build(name, args.scale).eval()
        m = model.multiple_of
        h, w = -(-lr_h // m) * m, -(-lr_w // m) * m
        xp = torch.rand(1, 3, h, w).contiguous(memory_format=fmt)
        macs = count_macs(model, lr_h, lr_w)
        entries.append(
            Entry(f"pocketsr-{name}", to_format(model, fmt), xp, count_params(model), macs)
        )

    for e in entries:  # warm-up: allocator, oneDNN primitive caches
        e.run()
    for _ in range(args.rounds):
        for e in entries:
            e.seconds = min(e.seconds, e.run())

    ref = entries[0].seconds
    rows = [
        {
            "model": e.label,
            "params": e.params or None,
            "macs_per_lr_px": round(e.macs / (lr_h * lr_w)) if e.macs else None,
            "seconds": round(e.seconds, 3),
            "ratio_vs_compact": round(e.seconds / ref, 3),
        }
        for e in entries
    ]
    if args.json:
        info = {
            "threads": args.threads,
            "channels_last": args.channels_last,
            "scale": args.scale,
            "lr": [lr_w, lr_h],
            "rounds": args.rounds,
            "results": rows,
        }
        print(json.dumps(info))
        return
    print(
        f"4K output, x{args.scale}, {args.threads} threads, best of {args.rounds}, "
        f"{'NHWC' if args.channels_last else 'NCHW'}"
    )
    for e in entries:
        cost = f"{e.macs / (lr_h * lr_w) / 1000:.0f}k MAC/px" if e.macs else ""
        params = f"{e.params / 1e6:.3f}M" if e.params else ""
        print(f"  {e.label:<40} {params:>8} {cost:>12} {e.seconds:7.3f} s  x{e.seconds / ref:.3f}")


if __name__ == "__main__":
    main()
