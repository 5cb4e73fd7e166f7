"""What the pipeline needs to know about a loaded model, whatever its origin.

A :class:`ModelDescriptor` wraps a ``torch.nn.Module`` that maps a float tensor
``(N, 3, h, w)`` in ``[0, 1]`` to ``(N, 3, h * scale, w * scale)``.  Architecture families
(``archs/``), community files (spandrel) and built-in resamplers all end up as one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SizeRequirements:
    """Input sides the model accepts: at least ``minimum`` and a multiple of ``multiple_of``.

    The tiler pads (reflect) an input to satisfy them and crops the result back.
    """

    minimum: int = 1
    multiple_of: int = 1

    def padded(self, side: int) -> int:
        """Smallest side ``>= side`` that meets both requirements."""
        side = max(side, self.minimum)
        m = self.multiple_of
        return -(-side // m) * m


@dataclass
class ModelDescriptor:
    """A model ready for inference, plus the facts the pipeline and tiler rely on.

    Attributes:
        name: registry name or file name, shown to the user and written to ``--json``.
        family: architecture family (``resize``, ``pocketsr``, ``spandrel:ESRGAN``...).
        module: the network; called as ``module(x)`` or, when ``image_stats`` is set,
            ``module(x, stats)``.
        scale: integer upscaling factor.
        supports_half / supports_bf16: whether fp16 / bf16 inference is known to be safe.
        size: input size requirements (tiles are padded to meet them).
        tiling: ``False`` when the model must see the whole image at once.
        image_stats: optional hook computing statistics of the *whole* input (for example
            per-channel mean/std for colour matching); the result is passed to every tile so
            that tiles are treated identically.
        params: number of parameters (0 for parameter-free resamplers).
        sha256: lowercase hex SHA-256 of the weights file it was built from, when known
            (a registry model's manifest records it; a weights file given by path is
            hashed by ``weights.resolve.open_family``); None for resamplers.  Outputs
            record it so that a later run can tell outputs of other weights apart.
    """

    name: str
    family: str
    module: torch.nn.Module
    scale: int
    supports_half: bool = True
    supports_bf16: bool = True
    size: SizeRequirements = field(default_factory=SizeRequirements)
    tiling: bool = True
    image_stats: Callable[[torch.Tensor], Any] | None = None
    params: int = 0
    sha256: str | None = None
