"""Reading weight files into state dicts, and a state dict into a ready model.

Loading never runs code from a model file: ``.safetensors`` are read as tensors,
``.pth/.pt/.ckpt`` with ``torch.load(weights_only=True)``; a pickle that needs more than
tensors and plain containers is refused with an explanation.  Common wrappers
(``params_ema``, ``params``, ``state_dict``, ``model``, PCSR's ``model.sd``,
DataParallel's ``module.``) are removed so that detection sees the bare parameter names.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketsr_cli import libwarnings, manifest
from pocketsr_cli.errors import (
    ModelError,
    UnsafePickleError,
    first_line,
    home_hint,
    present,
    present_file,
    unreachable,
)
from pocketsr_cli.spelling import MODEL, on_command_line

if TYPE_CHECKING:
    import torch

    from pocketsr_cli.descriptor import ModelDescriptor

WEIGHT_SUFFIXES = manifest.WEIGHT_SUFFIXES  # re-exported: the resolver and store read it here
# Model files of formats pocketsr does not read, whose error says what to do instead
# (:func:`_other_format`): ncnn's graph and weights, ONNX.
OTHER_MODEL_SUFFIXES = (".param", ".bin", ".onnx")
_GLOBAL_RE = re.compile(r"GLOBAL (\S+)")
# "sd": PCSR's official checkpoints nest the weights as {"model": {"name", "args", "sd"}}.
_WRAPPERS = (
    "params_ema",
    "params",
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "generator",
    "sd",
)


def read_state_dict(path: Path, *, name: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, wrappers removed.

    ``name``: the file's name in messages, whose suffix also says its format; ``path``'s
    own by default (a download is read under a temporary name, ``name.incomplete``).

    Raises:
        UnsafePickleError: a pickle that needs to run code to load (a ModelError).
        ModelError: missing, unreadable or not a weights file.
    """
    import torch

    try:
        found = present_file(path)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {unreachable(path, exc)}") from None
    if not found and path.is_dir():
        raise ModelError(f"{path} is a folder: {MODEL} takes a weights file or a model name")
    if not found:
        raise ModelError(f"model file not found: {path}{home_hint(path)}")
    name = name or path.name
    safetensors = Path(name).suffix.lower() == ".safetensors"
    kind = "safetensors file" if safetensors else "PyTorch checkpoint or safetensors file"
    if path.stat().st_size == 0:
        raise ModelError(f"cannot read weights {name}: not a {kind} (the file is empty)")
    try:
        # torch's notes about a file's pickle protocol add nothing to the error below, and
        # nothing for a file that loads: they are collected and dropped.
        with libwarnings.collecting([]):
            if safetensors:
                from safetensors.torch import load_file

                raw: Any = load_file(str(path), device="cpu")
            else:
                raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler reports both a file that is no pickle at all and
        # one that names a class or function ("GLOBAL ..."); only the latter needs code.
        needed = _GLOBAL_RE.search(str(exc))
        if needed is None:
            raise ModelError(
                f"cannot read weights {name}: not a {kind}{_other_format(path, name)}"
            ) from exc
        raise UnsafePickleError(
            f"{name} is a pickle that needs to run code to load (it references "
            f"{needed.group(1)}: a whole pickled model or training state, not just weights); "
            "pocketsr runs no code from a model file unless you allow it. Re-save its "
            "state_dict, or convert it to .safetensors"
        ) from exc
    except OSError as exc:  # the file is there but cannot be read: no word on what it holds
        # (a file without read permission was called "not a safetensors file, or a damaged
        # one"); safetensors' errors carry no strerror, only their text
        raise ModelError(f"cannot read weights {name}: {exc.strerror or _detail(exc)}") from exc
    except Exception as exc:  # corrupt zip, truncated file, safetensors header error...
        # Whatever the reader tripped on (a zip directory, a pickle opcode, "pop from empty
        # list"), the news is the same: this is not a weights file, or a damaged one.
        raise ModelError(
            f"cannot read weights {name}: not a {kind}, or a damaged one ({_detail(exc)})"
            + _other_format(path, name)
        ) from exc
    return canonical_state_dict(raw, name)


def _other_format(path: Path, name: str) -> str:
    """What the file ``path`` (called ``name``), which cannot be read as weights, is known
    by its suffix to be instead, and what to do with it, as a clause to end a message
    with; ``""`` when nothing is known: an ONNX model (not run), an ncnn model's graph
    (``.param``), or its weights (``.bin``, only with a ``.param`` of its stem beside it:
    a ``pytorch_model.bin`` is a checkpoint), which ``models import-ncnn`` converts."""
    suffix = Path(name).suffix.lower()
    if suffix == ".onnx":
        return (
            "; it is an ONNX model, which pocketsr does not run: give the PyTorch weights "
            "it was exported from"
        )
    if suffix not in (".param", ".bin") or name != path.name:  # (a download's temporary)
        return ""
    param, weights = path.with_suffix(".param"), path.with_suffix(".bin")
    if suffix == ".bin":
        try:
            if not present_file(param):
                return ""
        except OSError:
            return ""
    return (
        f"; it is an ncnn model's {'graph' if suffix == '.param' else 'weights'}: import "
        f"the two files once, `pocketsr models import-ncnn {param} {weights} --name NAME`, "
        f"then use {MODEL.given('NAME')}"
    )


def check_whole(path: Path, *, name: str | None = None) -> None:
    """Raise when ``path`` cannot be read as a weights file, judged without reading its
    tensors where its format allows: a safetensors file whose header is not whole or does
    not cover the file exactly (one cut short), a PyTorch checkpoint without the zip
    directory at its end; any other file (a checkpoint of the old, pickle-only format)
    is read as :func:`read_state_dict` reads it (``name`` as there).

    For a file nothing vouches for (no SHA-256 published: trust on first use), before its
    digest is pinned: a download cut short where the server gave no length looks whole.

    Raises:
        UnsafePickleError: a checkpoint of the old format that needs to run code to load
            (whole: read later with the user's consent, ``trust.py``).
        ModelError: as :func:`read_state_dict`, the file is not one it could read.
    """
    name = name or path.name
    if Path(name).suffix.lower() == ".safetensors":
        kind = "safetensors file"
        try:
            from safetensors import safe_open

            # Reads and checks the header only (its tensors must cover the file exactly),
            # without importing torch.
            with safe_open(str(path), framework="numpy"):
                return
        except Exception as exc:  # SafetensorError, OSError
            if path.is_file() and path.stat().st_size == 0:
                raise ModelError(
                    f"cannot read weights {name}: not a {kind} (the file is empty)"
                ) from exc
            raise ModelError(
                f"cannot read weights {name}: not a {kind}, or a damaged one ({_detail(exc)})"
            ) from exc
    if zipfile.is_zipfile(path):  # its directory is at its end: a file cut short has none
        return
    read_state_dict(path, name=name)


def read_shapes(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file as meta tensors: names, shapes and dtypes
    from its header, no data read (what an architecture's hyper-parameters are inferred
    from, cheaply), wrappers removed as :func:`read_state_dict` removes them.

    Raises:
        ModelError: not a readable ``.safetensors`` file.
    """
    import torch
    from safetensors import safe_open

    dtypes = _safetensors_dtypes()
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                part = f.get_slice(key)
                dtype = dtypes.get(part.get_dtype(), torch.float32)
                tensors[key] = torch.empty(part.get_shape(), dtype=dtype, device="meta")
    except Exception as exc:  # missing, truncated, not a safetensors header
        raise ModelError(f"cannot read weights {path.name}: {_detail(exc)}") from exc
    return canonical_state_dict(tensors, path.name)


def _safetensors_dtypes() -> dict[str, torch.dtype]:
    import torch

    return {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }


def image_hint(ref: str, takes: str) -> str | None:
    """What to tell a user who gave an image where a model belongs (``-m photo.jpg``,
    ``models import photo.jpg``: an input put in the wrong place), known by its first bytes
    when it is a file, else by its extension; None for anything else.  ``takes`` says what
    that place takes instead (``-m takes a model name or a weights file (...)``); where the
    image goes is said as the face in force takes it (``pocketsr upscale photo.jpg``, or
    the Python API's ``upscale()``)."""
    from pocketsr_cli import imageio

    path = Path(ref)
    fmt = None
    with contextlib.suppress(OSError), path.open("rb") as handle:
        fmt = imageio.sniff_format(handle.read(16), os.fstat(handle.fileno()).st_size)
    fmt = fmt or imageio.format_of_path(path)
    if fmt is None:
        return None
    try:
        there = present(path)
    except OSError:  # cannot even be looked at (a name too long): no image is there
        there = False
    what = "an image" if there else "the name of an image"
    where = (
        f"given after the command (pocketsr upscale {ref})"
        if on_command_line()
        else "given to upscale() or upscale_file()"
    )
    return (
        f"{ref} is {what} ({imageio.format_label(fmt)}), not a model: {takes}; an image to "
        f"upscale is an input, {where}"
    )


def write_safetensors(
    tmp: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None
) -> None:
    """Write ``tensors`` as safetensors into the existing file ``tmp`` (a temporary file of
    ``atomicfile.replacing``/``held_temp``), keeping that file: its lock, and the mode the
    umask gives a new file (0644 under 022).  ``safetensors.torch.save_file`` would put a
    file of its own in its place, mode 0600, which the lock no longer guards.  The bytes
    are ``save_file``'s for the same ``metadata`` (None: no metadata header at all, which
    an empty dict would add).

    Raises:
        OSError: it cannot be written.
    """
    from safetensors.torch import save

    data = save(dict(tensors), metadata=metadata)
    with open(tmp, "r+b") as handle:
        handle.write(data)
        handle.truncate()


def _detail(exc: BaseException) -> str:
    """The reader's own reason, shortened to its first sentence."""
    if isinstance(exc, KeyError):  # a pickle opcode or table lookup: the key alone says nothing
        return "unreadable data"
    text = first_line(exc)
    sentence = text.split(". ", 1)[0]
    return sentence if len(sentence) <= 120 else sentence[:117] + "..."


def canonical_state_dict(raw: Any, label: str = "weights") -> dict[str, torch.Tensor]:
    """Unwrap ``{"params_ema": {...}}``-style containers and strip ``module.`` prefixes."""
    import torch

    obj = raw
    for _ in range(3):  # wrappers nest at most a couple of levels deep in practice
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ModelError(f"{label}: no tensors found (not a state dict)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{label}: no tensors found (not a state dict)")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def descriptor_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], name: str
) -> ModelDescriptor:
    """The model a state dict holds: pocketsr's own families first, then spandrel's.

    The one loading seam for weights without a manifest (``-m file.pth``, ``models
    import``, the training teacher); the resolver builds registry models from their
    manifests through the same families (``Family.instantiate``).

    Raises:
        ModelError: no architecture recognises the dict, it is not an RGB image model, or
            a tensor holds NaN or infinite values.
    """
    from pocketsr_cli.registry import detect_family

    refuse_non_finite(state_dict, name)
    family = detect_family(state_dict)
    if family is not None:
        return family.load(state_dict, name)
    from pocketsr_cli.weights.community import load_spandrel

    return load_spandrel(state_dict, name)


def refuse_non_finite(state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Refuse weights holding NaN or infinite values (a checkpoint saved after training
    diverged, or damaged in a conversion): such a network draws black images, which would
    be written as if all were well.  The one check of every source of weights (a file, a
    download, a converted ncnn model: ``descriptor_from_state_dict`` runs it), so each is
    scanned once.

    Raises:
        ModelError: the first tensor that holds one, named.
    """
    import torch

    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(
                f"{name}: tensor {key!r} holds NaN or infinite values (a damaged checkpoint, "
                "or one saved after training diverged); its network would draw black images"
            )
