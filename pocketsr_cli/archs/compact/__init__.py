"""Real-ESRGAN's SRVGG "compact" body with a learnable linear sub-pixel skip.

SRVGG adds the nearest-neighbour enlargement of the input to the body's pixel-shuffled
output, so the body must draw, at every input pixel, the steps between that blocky base and
a smooth picture, through its PReLU layers.  Wherever it cancels them imperfectly the
output keeps a pattern at the input's pixel pitch: the mesh that the default model's card
follows through stage K.  This family adds one 3x3 convolution from the *input* to the
head's sub-pixel channels (``skip``), summed before the shuffle, so any linear
interpolation (bilinear, bicubic, their blend) is a linear function the network can hold
exactly, leaving the body the texture.  With ``skip`` zero the network is SRVGG, tensor for
tensor (``body.N`` keys, as Real-ESRGAN's ``SRVGGNetCompact``), so training starts from a
trained compact model and computes exactly what it did.

Public API: :data:`FAMILY` (the ``compact`` family: build from a manifest's ``[build]``
``num_feat``, ``num_conv``; detect a state dict by its ``skip.weight`` beside ``body.N``;
infer its shape), :class:`SkipCompact`, :func:`from_srvgg` (an SRVGG state dict plus a
zero skip), :func:`with_post` (plus an identity filter after the shuffle) and
:func:`with_pre` (plus a filter on the input); :data:`SRVGG_OVERLAPS`, the tile overlap
measured for an SRVGG body by its depth, and :func:`srvgg_overlap`, that or, for a depth
not measured, one derived from it, which a network states as its ``seamless_overlap`` and
spandrel's ``Compact`` is given (``weights/community.py``).
"""

from pocketsr_cli.archs.compact.network import (
    SRVGG_OVERLAPS,
    SkipCompact,
    build,
    detect,
    from_srvgg,
    infer,
    srvgg_overlap,
    with_post,
    with_pre,
)
from pocketsr_cli.descriptor import Family

FAMILY = Family("compact", build=build, detect=detect, infer=infer)

__all__ = [
    "FAMILY",
    "SRVGG_OVERLAPS",
    "SkipCompact",
    "build",
    "detect",
    "from_srvgg",
    "infer",
    "srvgg_overlap",
    "with_post",
    "with_pre",
]
