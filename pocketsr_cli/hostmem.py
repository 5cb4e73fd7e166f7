"""Keeping freed host memory for reuse, so that large CPU tensors cost no page faults.

glibc's ``malloc`` serves every block above its mmap threshold (32 MB at most) from a fresh
``mmap`` and gives it back to the kernel on ``free``.  A 4K image's activations, feature
tables and outputs are such blocks, so every image makes the kernel fault in (and zero)
hundreds of megabytes again, page by page: on this project's 2-core CPU a PReLU over a
49 MB activation took 24 ms out of place and 1.9 ms in place, and a whole 960×540 → 4K
upscale spent 30 % (``pocketsr-compact-x4``) to 60 % (``pcsr-x4``) of its time so.
PyTorch's CPU allocator has no cache of its own; its GPU allocator does exactly this.

:func:`retain_freed_memory` asks glibc to serve blocks up to :data:`MMAP_THRESHOLD`
(136 MiB) from its heap and to keep up to :data:`TRIM_THRESHOLD` (1 GiB) of freed heap for
the next request.  The process then holds its working set between images (it would need
it again for the next one) instead of returning it.  Larger blocks (a big image's whole
output, the encoder's copy of it) are still mapped and given back when freed: kept in
the heap they fragmented it, and a 12 MP photo at ×4 peaked at 2.9-3.7 GB of resident
memory instead of 1.9 GB.  It is process-wide, so the CLI calls it once at start (and in
each ``--devices`` worker); library users may call it themselves.  Elsewhere than glibc
(macOS, Windows, musl), and on a glibc that refuses a threshold this high, it does
nothing.  ``POCKETSR_KEEP_FREED_MEMORY=0`` (or another no, :mod:`pocketsr_cli.envvars`)
turns it off; a value that is neither yes nor no is refused.

:func:`retained_bytes` says how much freed memory glibc holds, which is free to this
process although the kernel counts it as used (``memory.free_bytes`` adds it, as it adds
what PyTorch's CUDA cache holds unused).  :func:`give_back_freed` returns it to the kernel
at once: for the end of an image cut into many tiles, whose tiles reused the kept memory
but whose encoder (a whole copy of the output, mapped) comes next and would be added on
top of it.
"""

from __future__ import annotations

import ctypes
import functools
import sys

from pocketsr_cli.envvars import switch

ENV = "POCKETSR_KEEP_FREED_MEMORY"
TRIM_THRESHOLD = 1 << 30  # freed heap kept for reuse before glibc gives any back
# Blocks from the heap below this, mapped at and above it.  Measured on the 2-core CPU:
# 128 MB kept every block of a 4K upscale in the heap (pocketsr-compact-x4 3.2 s per 4K
# output in fp32, as with no mapping at all; 96 MB: 3.8 s, 64 MB: 4.4-5.0 s, off: 5.2 s) and
# a 12 MP photo at x4 at 1.96 GB of resident memory at its peak (no mapping at all: 2.9 GB;
# 256 MB: 3.1 GB; off: 1.84 GB), until the model's 2-pixel border margin made its feature
# maps 964 x 544 x 64 floats, 40 KB over 128 MiB: 3.8-4.0 s again.  136 MiB holds them
# (tests/test_hostmem.py): 3.30-3.32 s, the 12 MP photo's peak still 1.83 GB in fp32;
# 160 MiB: 3.3-3.5 s, but 1.97 GB.
MMAP_THRESHOLD = 136 << 20
_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``): the
    process's own symbols, so nothing is searched for on the way."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("mallopt", "gnu_get_libc_version")):
        return None
    return libc


_applied = False


def retain_freed_memory() -> bool:
    """Make glibc keep large freed blocks for reuse (see the module docstring).

    Returns True when the setting is in force (now or from an earlier call); False where
    the C library is not glibc or refuses the threshold, or :data:`ENV` says no (``0``,
    ``off``...).  Safe to call more than once.

    Raises:
        UsageError: :data:`ENV` says neither yes nor no (``maybe``), even when the setting
            is already in force: the commands and the API read it on every start.
    """
    global _applied
    keep = switch(ENV, "set it to 0 (give freed memory back at once) or 1 (keep it, the default)")
    if _applied:
        return True
    if keep is False:
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # An older glibc refuses thresholds over 32 MB (HEAP_MAX_SIZE / 2): then nothing is
    # changed (a trim threshold alone would keep nothing that matters here).
    if not libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return False
    if not libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return False
    _applied = True
    return True


def is_retaining() -> bool:
    """Whether :func:`retain_freed_memory` is in force in this process."""
    return _applied


def retained_bytes() -> int:
    """Freed bytes glibc holds for reuse (``mallinfo2().fordblks``); 0 where unknown."""
    libc = _glibc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:  # not glibc, or glibc older than 2.33
        return 0
    mallinfo2.restype = _Mallinfo2
    return int(mallinfo2().fordblks)


def give_back_freed() -> bool:
    """Return the freed memory glibc keeps (:func:`retained_bytes`) to the kernel now
    (``malloc_trim(0)``, which also releases free pages inside the heap).

    Only while :func:`retain_freed_memory` is in force; elsewhere glibc gives freed memory
    back by itself and this does nothing.  Returns True when memory was given back.
    """
    libc = _glibc() if _applied else None
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))


__all__ = [
    "ENV",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "give_back_freed",
    "is_retaining",
    "retain_freed_memory",
    "retained_bytes",
]
