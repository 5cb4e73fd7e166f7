"""Options named in messages, spelled by the face that shows them.

The core's messages often say what to change ("use --overwrite to replace it").  The core
does not know whether its user typed a command line or called the Python API, so a message
names the option symbolically: one of the :class:`Option` constants below, formatted into
the text bare (``f"use {OVERWRITE} to replace it"``) or with a value
(``f"ignoring {TILE.given(512)}"``).  Formatting asks the current :data:`Spelling`:

* the Python API's, :func:`keyword_spelling` (the default): the keyword the API takes,
  ``overwrite=True``, ``tile``, ``tile=512``, ``device='cpu'``; an option the API has no
  keyword for is named in plain words (``output``, ``max memory 2 GiB``);
* the command line's, ``cli/_flags.flag_spelling`` (the table of flag spellings), in force
  while a command runs (``cli/_errors.handle_errors``): ``--overwrite``, ``--tile 512``,
  ``-s 2``.

A face may also lack an option: a command has only its own flags (``eval`` has no
``--outscale``).  A spelling that knows which options its face has says so with an
``offers(option)`` method (``cli/_flags.CommandSpelling``, put in force for the command
that runs), and a message leaves out advice naming an option :func:`offers` denies
(``f" (use {OUTSCALE.given(4)} …)" if offers(OUTSCALE) else ""``); a spelling without
that method offers every option.

The spelling is process-wide, so the threads of a run see it, and the drivers hand it to
their worker processes (``parallel``, ``ray_backend``), whose messages are made there.
This module is the vocabulary (each option's name and API keyword); the flag spellings are
the command line's, in ``cli/_flags.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Spelling = Callable[["Option", object], str]
"""How a face writes ``option`` (with ``value``; None: the option itself)."""


@dataclass(frozen=True)
class Option:
    """An option a message names: ``name`` keys the faces' tables; ``keyword`` is the
    Python API's keyword for it (None: the API has none); ``switch``: an on/off option,
    named bare to mean "turn it on" (``--overwrite``, ``overwrite=True``)."""

    name: str
    keyword: str | None = None
    switch: bool = False

    @property
    def words(self) -> str:
        """The option in plain words (``max memory``), for a face without it."""
        return self.name.replace("_", " ")

    def given(self, value: object) -> Given:
        """The option with a value shown (``--tile 512``, ``tile=512``)."""
        return Given(self, value)

    def __str__(self) -> str:
        return _current(self, None)


@dataclass(frozen=True)
class Given:
    """An option and the value a message shows with it (:meth:`Option.given`)."""

    option: Option
    value: object

    def __str__(self) -> str:
        return _current(self.option, self.value)


def keyword_spelling(option: Option, value: object) -> str:
    """The Python API's spelling: ``overwrite=True``, ``tile``, ``tile=512``,
    ``device='cpu'``; plain words for an option the API has no keyword for."""
    if option.keyword is None:
        return option.words if value is None else f"{option.words} {value}"
    if value is None:
        return f"{option.keyword}=True" if option.switch else option.keyword
    return f"{option.keyword}={value!r}"


_current: Spelling = keyword_spelling


def offers(option: Option) -> bool:
    """Whether the face in force has ``option``, so that advice naming it can be followed:
    the spelling's own ``offers(option)`` when it has one (a command has its own flags
    only), else True."""
    check = getattr(_current, "offers", None)
    return True if check is None else bool(check(option))


def on_command_line() -> bool:
    """Whether the face in force is the command line (any spelling but the Python API's
    :func:`keyword_spelling`), for advice that names no option: where an image to upscale
    is given (after ``pocketsr upscale``, or to ``Upscaler.upscale``)."""
    return _current is not keyword_spelling


def current() -> Spelling:
    """The spelling in force (for a driver to hand to its worker processes)."""
    return _current


def use(spelling: Spelling) -> None:
    """Make ``spelling`` the one in force, for good (a worker process's start)."""
    global _current
    _current = spelling


@contextlib.contextmanager
def spelled(spelling: Spelling) -> Iterator[None]:
    """Make ``spelling`` the one in force while the block runs."""
    previous = _current
    use(spelling)
    try:
        yield
    finally:
        use(previous)


# -- the options core messages name --------------------------------------------------------
# Keyword: what pocketsr_cli.Upscaler (or its upscale_folder) takes; None: no keyword.

ALLOW_UNVERIFIED = Option("allow_unverified", "allow_unverified", switch=True)
ADAPTIVE = Option("adaptive", "adaptive", switch=True)
CROP = Option("crop")
DESCRIPTION = Option("description")
DEVICE = Option("device", "device")
DEVICES = Option("devices")
ENSEMBLE = Option("ensemble", "ensemble")
ENSEMBLE_WEIGHT = Option("ensemble_weight", "ensemble_weight")
FOLDER = Option("folder")
FORCE = Option("force", "force", switch=True)
FORMAT = Option("format", "fmt")
GLOB = Option("glob")
HEIGHT = Option("height")
LICENSE = Option("license")
LIMIT = Option("limit")
LONG_EDGE = Option("long_edge")
MAX_MEMORY = Option("max_memory")
MODEL = Option("model", "model")
OUTPUT = Option("output")
OUTSCALE = Option("outscale", "outscale")
OVERWRITE = Option("overwrite", "overwrite", switch=True)
PCSR_K = Option("pcsr_k", "pcsr_k")
PRECISION = Option("precision", "precision")
QUALITY = Option("quality", "quality")
RAY_WORKERS = Option("ray_workers")
RECURSIVE = Option("recursive", "recursive", switch=True)
REPEAT = Option("repeat")
RESIZE = Option("resize", "resize", switch=True)
SCALE = Option("scale", "scale")
SHA256 = Option("sha256", "sha256")
SIZE = Option("size")
SUFFIX = Option("suffix", "suffix")
TILE = Option("tile", "tile")
TILE_OVERLAP = Option("tile_overlap", "tile_overlap")
TRUST_PICKLE = Option("trust_pickle", "trust_pickle", switch=True)
WIDTH = Option("width")

OPTIONS: tuple[Option, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Option))
"""Every option above (the command line's table must spell each)."""
