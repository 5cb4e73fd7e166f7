"""How much memory a device has left, and whether an exception means it ran out.

Everything here answers questions about the machine; nothing here decides what to do about
the answer (that is the tiler's business, see ``tiling.TilePolicy``).  Every query returns
``None`` rather than guessing when the platform does not say.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# cgroup v2, then v1: (limit file, usage file).  A container's limit is invisible in
# /proc/meminfo, and exceeding it gets the process killed, not a MemoryError.
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
    ),
)
# cgroup v1 writes "no limit" as a huge page-aligned number rather than "max".
_CGROUP_UNLIMITED = 1 << 60

_OOM_MESSAGE = re.compile(r"out of memory", re.IGNORECASE)


def free_bytes(device: torch.device) -> int | None:
    """Bytes this process could still allocate on ``device``, or ``None`` if unknown.

    - CUDA: the driver's free memory plus what PyTorch's caching allocator holds but does
      not use (it is free to us, though the driver counts it as taken).
    - MPS: Metal's recommended working-set size minus what the driver has allocated for
      this process, and never more than the host's available RAM (memory is unified).
    - CPU (and anything else): :func:`host_available_bytes`.
    """
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free) + max(0, int(cached))
    if device.type == "mps":
        return _mps_free_bytes()
    return host_available_bytes()


def _mps_free_bytes() -> int | None:
    import torch

    mps = getattr(torch, "mps", None)
    recommended = getattr(mps, "recommended_max_memory", None)
    # driver_allocated_memory includes Metal's cached buffers, which count against the
    # working set; current_allocated_memory (tensors only) is the fallback.
    used = getattr(mps, "driver_allocated_memory", None) or getattr(
        mps, "current_allocated_memory", None
    )
    host = host_available_bytes()
    if recommended is None or used is None:
        return host
    free = max(0, int(recommended()) - int(used()))
    return free if host is None else min(free, host)


def host_available_bytes() -> int | None:
    """RAM the host can give this process without swapping, or ``None`` if unknown.

    Linux: ``MemAvailable`` from ``/proc/meminfo``, lowered to the cgroup (container)
    limit when there is one.  Elsewhere: ``psutil`` when installed, else POSIX ``sysconf``
    (free pages; an underestimate, since it ignores reclaimable cache).
    """
    found: list[int] = []
    meminfo = _read_text("/proc/meminfo")
    if meminfo is not None:
        value = parse_meminfo_available(meminfo)
        if value is not None:
            found.append(value)
    if not found:
        value = _psutil_available() or _sysconf_available()
        if value is not None:
            found.append(value)
    cgroup = cgroup_headroom_bytes()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def parse_meminfo_available(text: str) -> int | None:
    """Bytes in the ``MemAvailable:`` line of a ``/proc/meminfo`` text (``None`` if absent)."""
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def cgroup_headroom_bytes(root: str = "") -> int | None:
    """Memory limit minus usage of this process's cgroup, or ``None`` when unlimited/unknown.

    ``root`` prefixes the ``/sys/fs/cgroup`` paths (tests point it at a temporary folder).
    """
    for limit_path, usage_path in _CGROUP_FILES:
        limit_text = _read_text(root + limit_path)
        usage_text = _read_text(root + usage_path)
        if limit_text is None or usage_text is None:
            continue
        limit_text = limit_text.strip()
        if limit_text == "max" or not limit_text.isdigit() or not usage_text.strip().isdigit():
            return None
        limit = int(limit_text)
        if limit >= _CGROUP_UNLIMITED:
            return None
        return max(0, limit - int(usage_text.strip()))
    return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _psutil_available() -> int | None:
    try:
        import psutil  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means a device or the host ran out of memory.

    True for ``torch.OutOfMemoryError`` / ``torch.cuda.OutOfMemoryError``, ``MemoryError``
    and any ``RuntimeError`` whose message says "out of memory" (MPS raises
    "MPS backend out of memory", older CUDA builds "CUDA out of memory", the CPU allocator
    "DefaultCPUAllocator: not enough memory" / "can't allocate memory").
    """
    import torch

    oom_types: tuple[type[BaseException], ...] = (MemoryError,)
    for owner in (torch, getattr(torch, "cuda", None)):
        cls = getattr(owner, "OutOfMemoryError", None)
        if isinstance(cls, type):
            oom_types += (cls,)
    if isinstance(error, oom_types):
        return True
    if isinstance(error, RuntimeError):
        text = str(error)
        return bool(
            _OOM_MESSAGE.search(text)
            or "not enough memory" in text
            or "can't allocate memory" in text
        )
    return False


def release_cached(device: torch.device) -> None:
    """Give cached-but-unused blocks back after an out-of-memory error, so a retry can use them."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        empty = getattr(getattr(torch, "mps", None), "empty_cache", None)
        if empty is not None:
            empty()
