"""What the guard sweeps (``chroma_sweep.py``, ``ring_sweep.py``) share: their common
options, the validation crops, their degradation, colour in BT.601 YCbCr, PSNR, the
saved PNGs, the table of means and the enlarged sheets of where two outputs differ most."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pocketsr_cli.descriptor import ModelDescriptor
from pocketsr_cli.devices import choose_device
from pocketsr_cli.evaluation.degrade import degrade_or_jpeg, seed_for
from pocketsr_cli.evaluation.run import collect_images, ground_truth
from pocketsr_cli.factory import UpscalerSpec
from pocketsr_cli.imageio import read_image
from pocketsr_cli.weights.resolve import resolve_model

F = np.ndarray


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every sweep has: folders, model, crops, degradation, where to save."""
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("-m", "--model", default="pocketsr-compact-x4")
    parser.add_argument("-s", "--scale", type=int, default=None)
    parser.add_argument("--crop", type=int, default=768)
    parser.add_argument("--degradation", default="real", choices=["real", "bicubic"])
    parser.add_argument("--jpeg", type=int, default=None, metavar="Q")
    parser.add_argument("--at", action="append", default=[], metavar="NAME:LEFT,TOP")
    parser.add_argument("--save", type=Path, default=None, help="folder for the outputs")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="run -m as it ships (its hints) with these weights of its architecture instead",
    )


def model(args: argparse.Namespace, **unset: None) -> tuple[UpscalerSpec, ModelDescriptor]:
    """The spec (fp32 on the CPU) and ``args.model``'s descriptor, as it ships but with
    the hints named in ``unset`` (``chroma_guard=None``) off, and with the weights of
    ``args.weights`` (a candidate of training, same architecture) where given."""
    spec = UpscalerSpec(device=choose_device("cpu"), cpu_bf16=False)
    desc = dataclasses.replace(spec.resolve(args.model, args.scale), **unset)
    if args.weights is not None:
        other = resolve_model(str(args.weights))
        desc.module.load_state_dict(other.module.state_dict())  # same architecture or error
        desc = dataclasses.replace(desc, name=f"{desc.name}@{args.weights.name}", sha256=None)
    return spec, desc


def crops(args: argparse.Namespace, scale: int) -> list[tuple[str, F]]:
    """``(name, ground truth)``: each photo's centred ``args.crop`` crop, then each
    ``--at NAME:LEFT,TOP`` crop of a photo in the folders."""
    paths = [p for folder in args.folders for p in collect_images(folder)]
    found = [(path.name, ground_truth(path, scale, args.crop)) for path in paths]
    for at in args.at:
        name, where = at.split(":")
        left, top = (int(v) for v in where.split(","))
        path = next(p for p in paths if p.name == name)
        pixels = read_image(path).pixels[..., :3]
        side = args.crop - args.crop % scale
        found.append((f"{name}@{left},{top}", pixels[top : top + side, left : left + side]))
    return found


def degraded(args: argparse.Namespace, name: str, gt: F, scale: int) -> F:
    """The input of crop ``name``, degraded as ``pocketsr eval`` degrades it."""
    return degrade_or_jpeg(gt, args.degradation, seed_for(name), scale, args.jpeg)


def kind(args: argparse.Namespace) -> str:
    return args.degradation if args.jpeg is None else f"JPEG q{args.jpeg}"


def save(args: argparse.Namespace, name: str, tag: str, img: F) -> None:
    """``img`` (RGB) as ``{name}.{tag}.png`` under ``--save``, when given."""
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        stem = name.replace("/", "_")
        cv2.imwrite(str(args.save / f"{stem}.{tag}.png"), np.ascontiguousarray(img[..., ::-1]))


def ycc(img: F) -> tuple[F, F, F]:
    """BT.601 full-range Y, Cb, Cr (float64, 8-bit levels; Cb, Cr centred on 0)."""
    a = img[..., :3].astype(np.float64)
    y = a @ np.array([0.299, 0.587, 0.114])
    return y, (a[..., 2] - y) * (0.5 / 0.886), (a[..., 0] - y) * (0.5 / 0.701)


def psnr(a: F, b: F) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def strong_edges(y_gt: F) -> F:
    """Where the ground truth's luma spans over 40 levels in 5 x 5 pixels."""
    y = y_gt.astype(np.float32)
    kernel = np.ones((5, 5), np.uint8)
    return (cv2.dilate(y, kernel) - cv2.erode(y, kernel)) > 40


def table(header: Sequence[str], rows: dict[str, list[str]], width: int = 10) -> None:
    """Print ``rows`` (a name and its cells) under ``header``, right-aligned."""
    print("".join(h.rjust(width) for h in header))
    for name, cells in rows.items():
        print(name.rjust(width) + "".join(c.rjust(width) for c in cells))


def changed_window(a: F, b: F, side: int) -> tuple[int, int, int, float]:
    """Top, left and side of the ``side``-px window where ``a`` and ``b`` differ most,
    and the mean absolute difference there (levels).  A ``side`` over the images' is
    cut to theirs (the whole of a crop smaller than the window)."""
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2)
    side = min(side, *diff.shape)
    mean = cv2.boxFilter(diff, -1, (side, side), normalize=True, borderType=cv2.BORDER_CONSTANT)
    h = side // 2
    inner = mean[h : diff.shape[0] - side + h + 1, h : diff.shape[1] - side + h + 1]
    top, left = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(top), int(left), side, float(inner[top, left])


def sheet(panels: dict[str, F], top: int, left: int, side: int, zoom: int, across: int = 3) -> F:
    """The ``side``-px window at ``top, left`` of each panel, enlarged ``zoom`` times
    (nearest neighbour), labelled, ``across`` to a row."""
    tiles = []
    for label, img in panels.items():
        cut = img[top : top + side, left : left + side, :3]
        big = np.ascontiguousarray(np.repeat(np.repeat(cut, zoom, 0), zoom, 1))
        cv2.putText(big, label, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4)
        cv2.putText(big, label, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1)
        tiles.append(np.pad(big, ((0, 6), (0, 6), (0, 0)), constant_values=255))
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % across)
    strips = [np.concatenate(tiles[i : i + across], axis=1) for i in range(0, len(tiles), across)]
    return np.concatenate(strips, axis=0)
