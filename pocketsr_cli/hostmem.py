"""Keeping freed host memory for reuse, so that large CPU tensors cost no page faults.

glibc's ``malloc`` serves every block above its mmap threshold (32 MB at most) from a fresh
``mmap`` and gives it back to the kernel on ``free``.  A 4K image's activations, feature
tables and outputs are such blocks, so every image makes the kernel fault in (and zero)
hundreds of megabytes again, page by page: on this project's 2-core CPU a PReLU over a
49 MB activation took 24 ms out of place and 1.9 ms in place, and a whole 960×540 → 4K
upscale spent 30 % (``pocketsr-compact-x4``) to 60 % (``pcsr-x4``) of its time so.
PyTorch's CPU allocator has no cache of its own; its GPU allocator does exactly this.

:func:`retain_freed_memory` asks glibc to serve large blocks from its heap and to keep
up to 1 GiB of freed heap for the next request.  The process then holds its peak
working set between images (it would need it again for the next one) instead of
returning it.  It is process-wide, so the CLI calls it once at start (and in each
``--devices`` worker); library users may call it themselves.  Elsewhere than glibc
(macOS, Windows, musl) it does nothing.  ``POCKETSR_KEEP_FREED_MEMORY=0`` turns it off.

:func:`retained_bytes` says how much freed memory glibc holds, which is free to this
process although the kernel counts it as used (``memory.free_bytes`` adds it, as it adds
what PyTorch's CUDA cache holds unused).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

ENV = "POCKETSR_KEEP_FREED_MEMORY"
TRIM_THRESHOLD = 1 << 30  # freed heap kept for reuse before glibc gives any back
_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_MAX = -4


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
    the C library is not glibc or :data:`ENV` is ``0``.  Safe to call more than once.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV, "1").strip() == "0":
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # Order matters: with the threshold set first, blocks freed meanwhile are kept.
    if not libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return False
    if not libc.mallopt(_M_MMAP_MAX, 0):
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


__all__ = ["ENV", "TRIM_THRESHOLD", "is_retaining", "retain_freed_memory", "retained_bytes"]
