"""What pocketsr trusts that no manifest vouches for, once the user has said so.

**Digests pinned on first use.**  A manifest whose publisher gives no checksum (a
``[weights]`` table without ``sha256``) downloads only when the user allows it
(``--allow-unverified``).  The SHA-256 of what arrived is then recorded, and every later
run, download and ``models verify`` holds the file to it exactly as to a manifest's digest.
A file found already in the cache with no pin is treated the same way: refused, or pinned
when allowed.  Only a whole weights file is pinned (``load.check_whole``, in
``resolve.py``): with no size published and none sent by the server, a download cut short
looks complete.  A mirror that delivers one that is not whole has failed, as on a
connection error, and the next is tried (the downloader takes the check from the
resolver); one found in the cache is deleted from it, with its download lock and, left
empty, its folder (``download.discard``).  ``models verify`` asks the same of a pinned
file (``resolve.unreadable_pin``): one pinned before that check matches its pin and fails
every load.  ``models download`` asks it too, and with ``--allow-unverified`` deletes such
a file and its pin (:func:`unpin`) and fetches it anew.

**Pickles converted once.**  ``weights/load.py`` reads ``.pth``/``.ckpt`` files with
``torch.load(weights_only=True)``, which refuses pickles that name classes or functions
(a training checkpoint's hyper-parameters, say).  With the user's explicit
``--trust-pickle``, such a file, already checked against its digest, is loaded once with
``weights_only=False`` (running whatever code it names), its tensors are saved as
safetensors beside it, and from then on that copy is read instead: the pickle is never
opened again.  The copy is tied to the digest of the pickle it came from, so a new download
is converted anew.

Both live in the model's cache folder (``cache.py``)::

    weights/<model>/.pinned.json          {"net_params_200.pkl": "<sha256>"}
    weights/<model>/<file>.safetensors    the converted copy of the pickle <file>
    weights/<model>/.converted.json       {"<file>": {"source_sha256": ..., "sha256": ...}}

``models remove NAME`` deletes them with the files, so the next download is a first use
again (the way out when a publisher replaces a file).  Each record is read, changed and
replaced whole (``atomicfile.replacing``) under a lock on the model's folder, so that
processes recording different files of one model at once lose none of them.  Unlike the hash memo of
``verify.py``, they are not an optimisation: a pin that cannot be written is an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketsr_cli.atomicfile import locked_folder, replacing
from pocketsr_cli.errors import ModelError, first_line
from pocketsr_cli.weights import verify
from pocketsr_cli.weights.cache import sha256_file, weights_path

if TYPE_CHECKING:
    import torch

PINS_NAME = ".pinned.json"
CONVERTED_NAME = ".converted.json"
CONVERTED_SUFFIX = ".safetensors"
_ALIASES_KEY = "pocketsr_aliases"


# --- pinned digests -----------------------------------------------------------------------


def pinned(model: str, file: str) -> str | None:
    """The digest pinned for ``model``'s ``file``, or None when none was."""
    value = _read(_folder(model) / PINS_NAME).get(file)
    return value if isinstance(value, str) else None


def pin(model: str, file: str, sha256: str) -> None:
    """Record ``sha256`` as the digest ``model``'s ``file`` must have from now on.

    Raises:
        ModelError: the record cannot be written.
    """
    _update(_folder(model) / PINS_NAME, file, sha256.lower())


def unpin(model: str, file: str) -> None:
    """Forget the digest pinned for ``model``'s ``file`` (the file it was pinned for is
    gone: the next download is a first use again).  Nothing to do where none is pinned.

    Raises:
        ModelError: the record cannot be read or written.
    """
    path = _folder(model) / PINS_NAME
    if not path.is_file():
        return
    with locked_folder(path.parent):
        data = _read(path)
        if data.pop(file, None) is not None:
            _write(path, data)


# --- converted pickles --------------------------------------------------------------------


def converted_path(model: str, file: str) -> Path:
    """Where the safetensors copy of ``model``'s pickle ``file`` is kept."""
    return weights_path(model, file + CONVERTED_SUFFIX)


def converted_copy(model: str, file: str, source_sha256: str) -> Path | None:
    """The intact safetensors copy of the pickle ``file`` whose digest is
    ``source_sha256``, or None when there is none (or it is damaged or of another file)."""
    record = _read(_folder(model) / CONVERTED_NAME).get(file)
    if not isinstance(record, Mapping) or record.get("source_sha256") != source_sha256:
        return None
    copy = converted_path(model, file)
    digest = record.get("sha256")
    if not isinstance(digest, str) or not verify.file_matches(copy, digest):
        return None
    return copy


def convert_pickle(model: str, source: Path, source_sha256: str) -> Path:
    """Load the pickle ``source`` (verified to have ``source_sha256``) with
    ``weights_only=False`` and save its tensors as safetensors; return the copy.

    This runs whatever code the pickle names: only with the user's explicit consent.

    Raises:
        ModelError: the pickle does not load (a module it names is not installed, or it
            is damaged), holds no tensors, or the copy cannot be written.
    """
    import torch

    from pocketsr_cli.weights.load import canonical_state_dict, write_safetensors

    try:
        raw = torch.load(str(source), map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"{source.name} needs the Python module {exc.name!r} to load; install it and run again"
        ) from exc
    except Exception as exc:
        raise ModelError(f"cannot load {source.name}: {first_line(exc)}") from exc
    tensors, aliases = _unshared(canonical_state_dict(raw, source.name))
    copy = converted_path(model, source.name)
    try:
        with replacing(copy) as tmp:
            metadata = {"format": "pt", _ALIASES_KEY: json.dumps(aliases, sort_keys=True)}
            write_safetensors(tmp, tensors, metadata)
            digest = sha256_file(tmp)
            verify.forget(copy)
    except OSError as exc:
        raise ModelError(f"cannot write {copy}: {exc.strerror or exc}") from exc
    verify.remember(copy, digest)
    record = {"source_sha256": source_sha256.lower(), "sha256": digest}
    _update(_folder(model) / CONVERTED_NAME, source.name, record)
    return copy


def needs_code(path: Path) -> bool:
    """Whether the weights file ``path`` is a pickle that ``weights_only`` loading refuses
    (read without loading its tensors where torch can, else by trying)."""
    from pocketsr_cli.errors import UnsafePickleError
    from pocketsr_cli.weights.load import read_state_dict

    if path.suffix.lower() == ".safetensors":
        return False
    try:
        from torch.serialization import get_unsafe_globals_in_checkpoint

        return bool(get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # an older torch, or a file it cannot list: find out by loading
        try:
            read_state_dict(path)
        except UnsafePickleError:
            return True
        except ModelError:
            return False
        return False


def read_converted(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a copy made by :func:`convert_pickle`, tensors shared in the pickle
    shared again.

    Raises:
        ModelError: as ``load.read_state_dict``.
    """
    from safetensors import safe_open

    from pocketsr_cli.weights.load import read_state_dict

    tensors = read_state_dict(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            aliases = json.loads((f.metadata() or {}).get(_ALIASES_KEY, "{}"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path.name}: {first_line(exc)}") from exc
    for alias, name in aliases.items():
        tensors[alias] = tensors[name]
    return tensors


def _unshared(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors safetensors can store (no shared memory), plus ``{alias: name}`` for names
    that were the very same tensor as an earlier one (saved once, restored on reading)."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, t in tensors.items():
        identity = (
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        if identity in seen and t.numel():
            aliases[name] = seen[identity]
            continue
        seen[identity] = name
        kept[name] = t.detach().contiguous().clone()  # views of a larger storage too
    return kept, aliases


# --- the two records ----------------------------------------------------------------------


def _folder(model: str) -> Path:
    return weights_path(model, PINS_NAME).parent


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        # A damaged record must not silently drop a pin: refuse until it is looked at.
        raise ModelError(f"cannot read {path}: {exc}; delete it to start over") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a record pocketsr wrote; delete it to start over")
    return data


def _update(path: Path, key: str, value: Any) -> None:
    """Set ``key`` to ``value`` in the record at ``path``: read, changed and replaced whole
    under a lock on its folder, so that two processes recording different files of one
    model at once (two first-use downloads) each keep the other's entry.

    Raises:
        ModelError: the record cannot be read (see :func:`_read`) or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot record {path}: {exc.strerror or exc}") from exc
    with locked_folder(path.parent):
        data = _read(path)
        data[key] = value
        _write(path, data)


def _write(path: Path, data: Mapping[str, Any]) -> None:
    try:
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot record {path}: {exc.strerror or exc}") from exc
