"""Where pocketsr keeps model files on disk, the offline switch, and file hashing.

Layout. With ``POCKETSR_HOME`` set, everything lives under that one folder::

    $POCKETSR_HOME/
        cache/                  cache_dir(): downloads; safe to delete, fetched again on demand
            weights/<model>/<file>      weights_path(): one verified file per model file
            weights/<model>/<file>.incomplete   a partial download, resumed by the next fetch
            weights/<model>/<file>.lock         serialises processes fetching the same file
                                        (a failed fetch with nothing to resume leaves none,
                                        nor the model's folder if it is empty then)
            weights/<model>/.pinned.json, .converted.json, <file>.safetensors
                                        digests pinned on first use, pickles converted
                                        once (trust.py)
        models/                 user_models_dir(): files added by `pocketsr models import`

Without it, the cache follows the platform's cache folder and user models its data folder
(``platformdirs``), because the two have different lifetimes: cleaners may empty caches,
but imported models are the user's own and must survive::

    user_cache_dir("pocketsr")/weights/<model>/<file>   (e.g. ~/.cache/pocketsr/...)
    user_data_dir("pocketsr")/models/                   (e.g. ~/.local/share/pocketsr/models)

Weights sit in one folder per model so that two models shipping a file of the same name
(``model.safetensors``) never collide.  Nothing here creates folders: callers that write
(the downloader, ``models import``) create what they need.

Offline mode: ``POCKETSR_OFFLINE`` set to ``1``, ``true``, ``yes``, ``on``, ``t`` or ``y``
(any case) forbids network access; the downloader then reports a missing file instead of
fetching it.  A value that is neither one of them nor a "no" (``0``, ``false``, ``no``,
``off``, ``f``, ``n``, empty) is refused (the words of every such variable:
:mod:`pocketsr_cli.envvars`).  :func:`is_offline` is the variable's one reader:
the commands' ``--offline`` defers to it (``cli._options.offline_mode``) rather than
letting Typer read the variable, so that every command, the downloader and the Python API
take the same words and refuse a bad value with the same message.  The words are those
that earlier versions' ``--offline`` read the variable with (pydantic's bool parsing).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import platformdirs

from pocketsr_cli import envvars
from pocketsr_cli.errors import ModelError

HOME_ENV = "POCKETSR_HOME"
OFFLINE_ENV = "POCKETSR_OFFLINE"
_APP_NAME = "pocketsr"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    # An empty value means "unset": `POCKETSR_HOME= pocketsr ...` must not mean the cwd.
    return Path(value).expanduser().absolute() if value else None


def cache_dir() -> Path:
    """Return the root of the download cache (``$POCKETSR_HOME/cache`` or the platform's).

    Everything under it can be deleted at any time and is downloaded again when needed.
    The folder is not created.
    """
    home = _home()
    if home is not None:
        return home / "cache"
    return Path(platformdirs.user_cache_dir(_APP_NAME))


def weights_dir() -> Path:
    """Return the folder holding downloaded weights, one sub-folder per model."""
    return cache_dir() / "weights"


def weights_path(model: str, filename: str) -> Path:
    """Return where the downloaded file ``filename`` of model ``model`` is kept.

    Raises ModelError when either part is not a plain file name (empty, ``.``/``..``, or
    containing a path separator), so that a manifest can never address a file outside the
    cache.
    """
    for part in (model, filename):
        if part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise ModelError(f"invalid model or file name {part!r}: must be a plain file name")
    return weights_dir() / model / filename


def remove_empty_folder(folder: Path) -> None:
    """Remove ``folder`` if it is empty (what a failed download leaves of a model's cache
    folder once it has removed its lock file); anything in it, or any error, keeps it.  A
    process about to download into it makes it again (``download.py``)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def user_models_dir() -> Path:
    """Return where ``models import`` stores the user's own models (``$POCKETSR_HOME/models``
    or ``<platform data dir>/models``). The folder is not created."""
    home = _home()
    if home is not None:
        return home / "models"
    return Path(platformdirs.user_data_dir(_APP_NAME)) / "models"


def is_offline() -> bool:
    """Return True when ``POCKETSR_OFFLINE`` says yes (``1``, ``true``, ``on``..., any case;
    the module docs), False when it says no or is not set.

    Raises:
        UsageError: it says neither (``maybe``), rather than going online on a guess.
    """
    return bool(envvars.switch(OFFLINE_ENV, "set it to 1 (offline) or 0"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the lowercase hex SHA-256 of the file at ``path``, read ``chunk`` bytes at a time.

    OSError (missing or unreadable file) propagates: the caller knows what the file is for.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
