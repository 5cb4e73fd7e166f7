#!/usr/bin/env python3
"""How far a trained network's output depends on its input, layer by layer.

For each depth of a network's trunk (SRVGG: its first k convolutions; ESRGAN: the first
k RRDB blocks), the input gradient of the trunk's features at a crop's centre (random
projections of them, averaged in square) is summed per input pixel, and the table gives
the distance (Chebyshev, input pixels) beyond which less than a fraction p of that
gradient's mass lies.  It is the evidence behind ``descriptor.derived_overlap``: the
reach grows with depth, never faster than the receptive field (``k`` for SRVGG's first
k convolutions, ``15 k + 1`` for ESRGAN's first k blocks) and more slowly as depth goes
on, so an overlap measured at one depth, scaled in proportion to a deeper network's
receptive field, errs on the wide side.
fp32 on the CPU, the centre of GreenMeadow; crops of 61 (SRVGG) and 97 (ESRGAN) pixels,
so an ESRGAN reach near 48 is cut off by the crop.  An ESRGAN that pixel-unshuffles its
input (x2plus by 2, x1 by 4) is unshuffled first, on a crop that many times larger, and
its reach read in input pixels.  The command below gave (reach at p = 1e-3; the
receptive field's radius in brackets):

    SRVGG-16, animevideov3 x4 and pocketsr-compact-x4 alike: k convolutions reach k up to
    k = 12, then 14 14, 16 15, 18 (all, [18]) 16
    Real-ESRGAN x4plus: blocks 1 [16] 9, 2 [31] 15, 4 [61] 21, 8 [121] 35, 12 [181] 42,
    16 [241] 47, 23 [346] 47 (cut off; at p = 1e-2, 40)

    python scripts/receptive_reach.py data/teacher/REALESRGAN_ANIMAVIDEOV3_UP4X.param \\
        models/pocketsr-compact-x4.safetensors data/teacher/REALESRGAN_X4PLUS_UP4X.param

No trained ESRGAN x1 is here, so the x1's 160 (x4plus's 40 in proportion to its 4 x
receptive field, ``weights.community.esrgan_reach``) was checked on randomly initialised
ones (spandrel ``ESRGAN(in_nc=3 or 48, num_filters=16, num_blocks=23, scale=4)``, seed
0): blocks near the identity at initialisation reach little (p = 1e-3: x4 4-5 at every
depth), the x1 4 times that in input pixels (16-19), so the unshuffle multiplies the
reach by its factor, as the derivation does; how far the trained x1 reaches is not
measured (5.4 CPU-minutes on 2 threads for the two).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

PROBES = 4
FRACTIONS = (1e-2, 3e-3, 1e-3, 3e-4)


def main(argv: list[str] | None = None) -> int:
    from pocketsr_cli.weights.community import import_spandrel
    from pocketsr_cli.weights.load import read_state_dict
    from pocketsr_cli.weights.ncnn import convert

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("models", type=Path, nargs="+", help="ncnn .param or .safetensors")
    parser.add_argument("--image", type=Path, default=Path("data/val/GreenMeadow.jpg"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    pixels = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32) / 255
    print("model\tdepth\t" + "\t".join(f"p={p:g}" for p in FRACTIONS))
    for path in args.models:
        if path.suffix == ".param":
            state, _info = convert(path, path.with_suffix(".bin"))
        else:
            state = read_state_dict(path)
        net = import_spandrel().ModelLoader().load_from_state_dict(state).model.eval()
        for depth, trunk, side in _trunks(net):
            x = _crop(pixels, side)
            reach = _reach(trunk, x)
            print(f"{path.name}\t{depth}\t" + "\t".join(map(str, reach)), flush=True)
    return 0


def _trunks(net: Any) -> list[tuple[int, Callable[[torch.Tensor], torch.Tensor], int]]:
    """(depth, the trunk to that depth, crop side) for an SRVGG or ESRGAN network."""
    if hasattr(net, "body"):  # SRVGG: conv, PReLU, then num_conv conv + PReLU, conv
        layers = list(net.body)
        ends = [i + 2 for i, layer in enumerate(layers) if type(layer).__name__ == "Conv2d"]
        ends[-1] = len(layers)
        return [(k + 1, _chain(layers[:end]), 61) for k, end in enumerate(ends)]
    first, shortcut = net.model[0], net.model[1]
    blocks = list(shortcut.sub)[:-1]
    # x2plus and x1 pixel-unshuffle the input first (by 2 and 4): the trunk runs on a grid
    # that many input pixels apart, so the crop grows with it, and the reach is read in
    # input pixels.  (Left out, the first convolution met 3 channels where it takes 12
    # or 48, and the script stopped there.)
    factor = int(getattr(net, "shuffle_factor", None) or 1)
    unshuffle = [_unshuffled(factor)] if factor > 1 else []
    depths = sorted({k for k in (1, 2, 4, 8, 12, 16) if k < len(blocks)} | {len(blocks)})
    return [(k, _chain([*unshuffle, first, *blocks[:k]]), 97 * factor) for k in depths]


def _unshuffled(factor: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.pixel_unshuffle(x, factor)


def _chain(layers: list[Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = layer(x)
        return x

    return run


def _crop(pixels: np.ndarray, side: int) -> torch.Tensor:
    h, w = pixels.shape[:2]
    top, left = h // 2 - side // 2, w // 2 - side // 2
    crop = np.ascontiguousarray(pixels[top : top + side, left : left + side].transpose(2, 0, 1))
    return torch.from_numpy(crop)[None]


def _reach(trunk: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> list[int]:
    """Per fraction p, the smallest distance from the centre beyond which the input
    gradient holds at most p of its mass."""
    x = x.clone().requires_grad_(True)
    y = trunk(x)
    centre = y[0, :, y.shape[-2] // 2, y.shape[-1] // 2]
    energy = torch.zeros(x.shape[-2:])
    for i in range(PROBES):
        probe = (centre * torch.randn_like(centre)).sum()
        (grad,) = torch.autograd.grad(probe, x, retain_graph=i < PROBES - 1)
        energy += (grad[0] ** 2).sum(0)
    mass = (energy / PROBES).sqrt().numpy()
    n = mass.shape[-1]
    rows, cols = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    distance = np.maximum(abs(rows), abs(cols))
    tail = np.array([mass[distance > d].sum() for d in range(n // 2 + 1)]) / mass.sum()
    return [int(np.argmax(tail <= p)) for p in FRACTIONS]


if __name__ == "__main__":
    raise SystemExit(main())
