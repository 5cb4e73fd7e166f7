"""pocketsr: batch-upscale folders of photographs with fast single-step super-resolution.

``__version__`` is the installed distribution's version (package metadata, the one place
it is written being ``pyproject.toml``), read on first access so that importing the
package — and so ``pocketsr --help`` and shell completion — does not pay for
``importlib.metadata``.  A source tree that was never installed reports ``0+unknown``.

``pocketsr_cli.Upscaler`` is the Python API (:class:`pocketsr_cli.api.Upscaler`), also
imported on first access so that the CLI never loads it; not to be confused with
:class:`pocketsr_cli.inference.Upscaler`, the low-level numpy engine it drives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pocketsr_cli.api import Upscaler

__all__ = ["Upscaler", "__version__"]

_DISTRIBUTION = "pocketsr"
_UNKNOWN_VERSION = "0+unknown"


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTION)
    except PackageNotFoundError:
        return _UNKNOWN_VERSION


def __getattr__(name: str) -> Any:
    if name == "Upscaler":
        from pocketsr_cli.api import Upscaler

        globals()["Upscaler"] = Upscaler
        return Upscaler
    if name == "__version__":
        value = _package_version()
        globals()["__version__"] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
