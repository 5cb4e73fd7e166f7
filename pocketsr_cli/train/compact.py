"""Starting points for the SRVGG-compact quality student.

``python -m pocketsr_cli.train.compact init TEACHER_DIR DEST.safetensors``
    converts Real-ESRGAN's GAN-trained ``animevideov3`` ×4 network (the ncnn files that
    ``scripts/fetch_teacher.py`` puts beside the teacher) into a float32 safetensors file,
    the ``--init`` of a compact ×4 training run.  Its crisp edges are a far better start for
    distillation than random weights (docs/measurement.md, "Measured findings").

``python -m pocketsr_cli.train.compact deepen SRC.safetensors DEST.safetensors``
    doubles the body of a compact network (16 → 32 convolutions, the depth of Real-ESRGAN's
    ``realesr-general-x4v3``) with identity layers (see :func:`deepen`): the deeper network
    computes exactly what the source did, so training continues from trained weights with
    twice the capacity.

``python -m pocketsr_cli.train.compact skip SRC.safetensors DEST.safetensors``
    adds a zero linear skip from the input to the head's sub-pixels (the ``compact``
    family, :mod:`pocketsr_cli.archs.compact`): the same output, and a path that holds any
    linear interpolation exactly, so the body no longer has to cancel the nearest base.

``python -m pocketsr_cli.train.compact post SRC.safetensors DEST.safetensors [--size 5] [--lift A]``
    adds an identity depthwise filter after the pixel shuffle (and a zero skip if there is
    none): the same output, and a filter over the sub-pixel phases side by side that
    training can turn into a notch at the input's pixel pitch (the mesh).  ``--lift A``
    makes it the identity plus ``A`` × the visible band instead (a fixed unsharp mask in
    that band, :func:`band_lift_kernel`).

``python -m pocketsr_cli.train.compact pre SRC DEST [--size 5] [--unsharp SIGMA AMOUNT]``
    adds a depthwise filter on the input (and a zero skip if there is none): the identity,
    or with ``--unsharp SIGMA AMOUNT`` an unsharp mask (:func:`unsharp_kernel`); with
    ``--compose``, SRC's own input filter followed by that mask (:func:`compose_pre`).  The ×2
    variant of the default model is the ×4 fold with such a filter: ×2 inputs are blurrier
    per input pixel than the ×4 inputs the network learnt (models/pocketsr-compact-x2.md).

``python -m pocketsr_cli.train.compact x2 SRC.safetensors DEST.safetensors``
    folds a compact ×4 network into a compact ×2 one that computes *exactly* the ×4 output
    area-downscaled by 2 (see :func:`fold_to_x2`): the ×2 model costs what the ×4 model
    costs per input pixel and needs no training of its own.

The state dicts use the key names of Real-ESRGAN's ``SRVGGNetCompact`` (``body.N``), so
pocketsr (through spandrel) and other tools load the files as "Compact" models; with a
skip (``skip.weight``, ``skip.bias``) they are pocketsr's ``compact`` family.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pocketsr_cli.archs.compact.network import (
    BODY_KEY,
    POST_KEY,
    PRE_KEY,
    SKIP_KEYS,
    from_srvgg,
    with_post,
    with_pre,
)
from pocketsr_cli.train.cmdline import CommandParser
from pocketsr_cli.train.export import write_weights
from pocketsr_cli.train.losses import VISIBLE_BAND_SIGMAS

INIT_STEM = "REALESRGAN_ANIMAVIDEOV3_UP4X"


def last_conv_index(state: dict[str, torch.Tensor]) -> int:
    """Index ``N`` of the final convolution ``body.N`` (the one feeding the pixel shuffle).

    Raises:
        ValueError: the dict is not an SRVGG-compact state dict.
    """
    indices = [int(m.group(1)) for k in state if (m := BODY_KEY.fullmatch(k))]
    extras = (*SKIP_KEYS, POST_KEY, PRE_KEY)
    if not indices or len(indices) != len([k for k in state if k not in extras]):
        raise ValueError("not an SRVGG-compact state dict (expected only body.N tensors)")
    last = max(indices)
    if state[f"body.{last}.weight"].ndim != 4:
        raise ValueError(f"body.{last} is not a convolution")
    return last


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    """``(size, size)`` float64: a Gaussian of ``sigma`` truncated to the kernel, summing
    to one."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def _identity(size: int) -> torch.Tensor:
    """``(size, size)`` float64: the kernel that passes its input as it is."""
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[size // 2, size // 2] = 1.0
    return kernel


def band_lift_kernel(size: int, amount: float) -> torch.Tensor:
    """``(size, size)``: the identity plus ``amount`` × the visible band (difference of
    Gaussians ``VISIBLE_BAND_SIGMAS``, each truncated to the kernel and summing to one, so
    the kernel sums to one: flat areas and colours pass unchanged).  An unsharp mask
    limited to the band a viewer sees at 100 %; above it (grain) it lifts little."""
    fine, coarse = (_gaussian(size, s) for s in VISIBLE_BAND_SIGMAS)
    return (_identity(size) + amount * (fine - coarse)).float()


def unsharp_kernel(size: int, sigma: float, amount: float) -> torch.Tensor:
    """``(size, size)``: the identity plus ``amount`` × (identity − a Gaussian of ``sigma``
    truncated to the kernel and summing to one), so the kernel sums to one: flat areas and
    colours pass unchanged.  OpenCV's unsharp mask ``x + amount·(x − GaussianBlur(x, σ))``
    within its truncation (at σ 0.7 a 5×5 kernel keeps all but 1e-4 of the Gaussian)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    identity = _identity(size)
    return (identity + amount * (identity - _gaussian(size, sigma))).float()


def compose_pre(state: dict[str, torch.Tensor], kernel: torch.Tensor) -> dict[str, torch.Tensor]:
    """``state`` whose input filter (``pre.weight``, ``k×k``) is followed by ``kernel``
    (``m×m``, the same for every colour): one ``(k+m-1)²`` filter computing both, so the
    network computes its old function of the input filtered by ``kernel`` (up to the
    borders, where padding the input once by replication differs from padding twice).

    Raises:
        ValueError: ``state`` has no input filter, or ``kernel`` is not square and odd.
    """
    if PRE_KEY not in state:
        raise ValueError("the state dict has no pre filter to compose with")
    m = kernel.shape[-1]
    if kernel.shape != (m, m) or m % 2 == 0:
        raise ValueError(f"the kernel must be square with an odd side, got {tuple(kernel.shape)}")
    pre = state[PRE_KEY].double()
    # the composition of two convolutions is the convolution of their kernels (full size)
    flipped = kernel.double().flip(0, 1)[None, None]
    composed = torch.nn.functional.conv2d(torch.nn.functional.pad(pre, (m - 1,) * 4), flipped)
    return {**state, PRE_KEY: composed.to(state[PRE_KEY].dtype).contiguous()}


def fold_to_x2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A compact ×2 state dict computing a compact ×4 network's output area-downscaled ×2.

    The ×4 head's convolution has ``3·16`` output channels, channel ``c·16 + 4i + j`` being
    sub-pixel ``(i, j)`` of colour ``c`` after the pixel shuffle.  Averaging the output over
    each 2×2 block of sub-pixels is linear, so it folds into the convolution: ×2 channel
    ``c·4 + 2a + b`` gets the mean of the weights and biases of ×4 sub-pixels
    ``(2a + {0,1}, 2b + {0,1})``.  The nearest-neighbour ×4 skip, area-downscaled by 2, is
    the nearest ×2 skip the ×2 network adds.  So the fold is exact (up to rounding).  A
    linear skip (``skip.*``, the ``compact`` family) feeds the same sub-pixel channels and
    folds the same way.  A filter after the shuffle (``post.weight``) does not; one on the
    input (``pre.weight``) is carried over as it is.

    Raises:
        ValueError: not a compact ×4 state dict, or it has a post filter.
    """
    if POST_KEY in state:
        raise ValueError("a filter after the ×4 shuffle does not fold into a ×2 network")
    last = last_conv_index(state)
    weight, bias = state[f"body.{last}.weight"], state[f"body.{last}.bias"]
    if weight.shape[0] % 16:
        raise ValueError(f"the head has {weight.shape[0]} channels, not colours × 16 (×4)")
    colours = weight.shape[0] // 16

    def fold(t: torch.Tensor) -> torch.Tensor:
        grid = t.reshape(colours, 2, 2, 2, 2, *t.shape[1:])  # c, a, di, b, dj: i=2a+di, j=2b+dj
        return grid.mean(dim=(2, 4)).reshape(colours * 4, *t.shape[1:])

    out = dict(state)
    out[f"body.{last}.weight"] = fold(weight).contiguous()
    out[f"body.{last}.bias"] = fold(bias).contiguous()
    for key in SKIP_KEYS:
        if key in state:
            out[key] = fold(state[key]).contiguous()
    return out


def deepen(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict of a compact network with twice the body convolutions, computing
    exactly what ``state``'s network computes.

    SRVGG-compact's body is ``conv_first, act, (conv, act) × num_conv, conv_last``; after
    each of the ``num_conv`` inner pairs an identity pair is inserted: a 3×3 convolution
    whose kernel is the identity at its centre (zero bias) and a PReLU of slope 1.  Both
    are exact identities, so the output does not change; training then moves them.  A
    skip and a post filter (the ``compact`` family) are carried over as they are.

    Raises:
        ValueError: not a compact state dict with PReLU activations.
    """
    last = last_conv_index(state)
    num_conv = (last - 2) // 2
    width = state["body.0.weight"].shape[0]
    out: dict[str, torch.Tensor] = {"body.0.weight": state["body.0.weight"]}
    out["body.0.bias"] = state["body.0.bias"]
    if state.get("body.1.weight") is None or state["body.1.weight"].shape != (width,):
        raise ValueError("deepen needs PReLU activations (body.1.weight of the body's width)")
    out["body.1.weight"] = state["body.1.weight"]
    identity = torch.zeros(width, width, 3, 3, dtype=state["body.0.weight"].dtype)
    identity[:, :, 1, 1] = torch.eye(width, dtype=identity.dtype)
    index = 2
    for k in range(1, num_conv + 1):
        for suffix in ("weight", "bias"):
            out[f"body.{index}.{suffix}"] = state[f"body.{2 * k}.{suffix}"]
        out[f"body.{index + 1}.weight"] = state[f"body.{2 * k + 1}.weight"]
        out[f"body.{index + 2}.weight"] = identity.clone()
        out[f"body.{index + 2}.bias"] = torch.zeros(width, dtype=identity.dtype)
        out[f"body.{index + 3}.weight"] = torch.ones(width, dtype=identity.dtype)
        index += 4
    out[f"body.{index}.weight"] = state[f"body.{last}.weight"]
    out[f"body.{index}.bias"] = state[f"body.{last}.bias"]
    out.update({k: state[k] for k in (*SKIP_KEYS, POST_KEY, PRE_KEY) if k in state})
    return out


def init_from_ncnn(teacher_dir: Path) -> dict[str, torch.Tensor]:
    """The animevideov3 ×4 network of ``teacher_dir`` as a float32 compact state dict.

    Raises:
        FileNotFoundError: the ncnn files are missing (run ``scripts/fetch_teacher.py``).
        pocketsr_cli.errors.ModelError: they are not the expected SRVGG graph, or hold NaN
            or infinite weights.
    """
    from pocketsr_cli.weights.load import refuse_non_finite
    from pocketsr_cli.weights.ncnn import convert

    param, weights = teacher_dir / f"{INIT_STEM}.param", teacher_dir / f"{INIT_STEM}.bin"
    for path in (param, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (fetch it with scripts/fetch_teacher.py)")
    state, info = convert(param, weights)
    if info["family"] != "srvgg" or info["scale"] != 4:
        raise ValueError(f"{param.name} is not a compact ×4 network")
    refuse_non_finite(state, param.name)  # no network is built here to check them
    return {k: v.float() for k, v in state.items()}


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(
        prog="python -m pocketsr_cli.train.compact", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser("init", help="animevideov3 ×4 (ncnn) -> compact ×4 safetensors")
    p_init.add_argument("teacher_dir", type=Path)
    p_init.add_argument("dest", type=Path)
    conversions = {  # SRC.safetensors -> DEST.safetensors
        "deepen": "compact -> twice the body, the same output",
        "skip": "compact -> the same plus a zero linear skip",
        "post": "compact -> the same plus an identity post filter",
        "pre": "compact -> the same plus an identity (or unsharp) filter on the input",
        "x2": "compact ×4 -> the exact compact ×2 (area-downscaled)",
    }
    for name, help_text in conversions.items():
        p_conv = sub.add_parser(name, help=help_text)
        p_conv.add_argument("src", type=Path)
        p_conv.add_argument("dest", type=Path)
        if name == "post":
            p_conv.add_argument("--size", type=int, default=5, help="odd kernel side (default 5)")
            p_conv.add_argument(
                "--lift", type=float, default=0.0,
                help="start as the identity plus this × the visible band (default 0)",
            )  # fmt: skip
        if name == "pre":
            p_conv.add_argument("--size", type=int, default=5, help="odd kernel side (default 5)")
            p_conv.add_argument(
                "--unsharp", type=float, nargs=2, metavar=("SIGMA", "AMOUNT"),
                help="an unsharp mask (unsharp_kernel) instead of the identity",
            )  # fmt: skip
            p_conv.add_argument(
                "--compose", action="store_true",
                help="SRC has a pre filter: follow it by the --unsharp mask (one larger filter)",
            )  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "init":
        state = init_from_ncnn(args.teacher_dir)
    else:
        from safetensors.torch import load_file

        source = load_file(str(args.src))
        if args.command == "post":
            lift = band_lift_kernel(args.size, args.lift) if args.lift else None
            state = with_post(source, args.size, lift)
        elif args.command == "pre":
            sharpen = unsharp_kernel(args.size, *args.unsharp) if args.unsharp else None
            if args.compose:
                if sharpen is None:
                    parser.error("--compose needs --unsharp")
                state = compose_pre(source, sharpen)
            else:
                state = with_pre(source, args.size, sharpen)
        else:
            convert = {"deepen": deepen, "skip": from_srvgg, "x2": fold_to_x2}[args.command]
            state = convert(source)
    print(json.dumps(write_weights(state, args.dest)))


if __name__ == "__main__":
    main()
