"""Peak memory of this process over a block of code: :class:`PeakMemory`.

Host memory is the process's resident set size (RSS): everything it holds in RAM — the
interpreter, torch, model weights, decoded images, caches — not an increment over the
start of the block; while freed memory is kept for reuse (``hostmem``), less what the
allocator holds free, so that a block is not charged with what earlier ones left.  On
Linux a daemon thread samples ``/proc/self/statm`` every :data:`SAMPLE_SECONDS` (plus
once at enter and at exit), so the peak is that of the block itself; a spike shorter
than one sampling interval that is freed before the next sample can be missed.
Elsewhere the only portable figure is ``getrusage``'s ``ru_maxrss``, the peak of the
whole process lifetime so far: it is reported with
:attr:`PeakMemory.host_peak_lifetime` set.  On Windows there is no such figure: ``None``.

Device memory: on CUDA the caching allocator's own peak counters (reset at enter, read at
exit, so exact); on Apple MPS the driver's allocated memory, sampled by the same thread;
on the CPU there is no separate device memory: ``None``.

Nothing here prints, and a failure to measure gives ``None``, never an exception.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pocketsr_cli import hostmem

if TYPE_CHECKING:
    import torch

SAMPLE_SECONDS = 0.005
_STATM = Path("/proc/self/statm")


def current_rss_bytes() -> int | None:
    """This process's resident set size now, from ``/proc/self/statm`` (``None`` if absent)."""
    try:
        fields = _STATM.read_bytes().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def current_anonymous_bytes() -> int | None:
    """This process's resident memory less its file-backed and shared pages (``statm``'s
    resident minus shared; ``None`` if absent): the memory it allocated itself, without
    the code pages of libraries, which are mapped in as they are first run (and more of
    them the warmer the page cache is)."""
    try:
        fields = _STATM.read_bytes().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def lifetime_peak_rss_bytes() -> int | None:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (``None`` where ``resource`` is missing).

    The unit of ``ru_maxrss`` differs: bytes on macOS, KiB on Linux and the BSDs.
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def _mps_allocated() -> Callable[[], int] | None:
    import torch

    mps = getattr(torch, "mps", None)
    return getattr(mps, "driver_allocated_memory", None) or getattr(
        mps, "current_allocated_memory", None
    )


class PeakMemory:
    """Context manager: peak host RSS and peak device memory over the ``with`` block.

    ``device`` is the torch device the block computes on (``None`` or CPU: no device
    figures).  The attributes are set on exit (``None`` before, and whenever the platform
    does not say):

    Attributes:
        host_peak_bytes: the highest RSS seen during the block.
        host_peak_lifetime: ``host_peak_bytes`` is the process's lifetime peak (no
            ``/proc/self/statm``), which may predate the block.
        host_start_bytes: RSS at enter (Linux only).
        anonymous_peak_bytes, anonymous_start_bytes: the same of
            :func:`current_anonymous_bytes` (Linux only): what the block allocated, without
            library code paged in.
        device_peak_bytes: the most bytes held by tensors (CUDA) or allocated by the
            driver (MPS) during the block.
        device_reserved_peak_bytes: CUDA only: the most bytes the caching allocator
            reserved from the driver (what ``nvidia-smi`` sees, minus the context).

    One instance measures one block; it is not reentrant.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.host_peak_bytes: int | None = None
        self.host_peak_lifetime = False
        self.host_start_bytes: int | None = None
        self.anonymous_peak_bytes: int | None = None
        self.anonymous_start_bytes: int | None = None
        self.device_peak_bytes: int | None = None
        self.device_reserved_peak_bytes: int | None = None
        self._host_peak: int | None = None
        self._anon_peak: int | None = None
        self._mps_peak: int | None = None
        self._mps_read: Callable[[], int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _kind(self) -> str:
        return "cpu" if self.device is None else self.device.type

    def __enter__(self) -> PeakMemory:
        if self._kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._kind == "mps":
            self._mps_read = _mps_allocated()
        self.host_start_bytes = current_rss_bytes()
        self.anonymous_start_bytes = current_anonymous_bytes()
        self._sample()
        if self.host_start_bytes is not None or self._mps_read is not None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._sample_until_stopped, name="pocketsr-peakmem", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._sample()
        self.anonymous_peak_bytes = self._anon_peak
        if self.host_start_bytes is not None:
            self.host_peak_bytes = self._host_peak
        else:
            self.host_peak_bytes = lifetime_peak_rss_bytes()
            self.host_peak_lifetime = self.host_peak_bytes is not None
        if self._kind == "cuda":
            import torch

            self.device_peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
            self.device_reserved_peak_bytes = int(torch.cuda.max_memory_reserved(self.device))
        elif self._kind == "mps":
            self.device_peak_bytes = self._mps_peak

    def _sample(self) -> None:
        self._host_peak = _higher(self._host_peak, _in_use(current_rss_bytes()))
        self._anon_peak = _higher(self._anon_peak, _in_use(current_anonymous_bytes()))
        if self._mps_read is not None:
            try:
                used = int(self._mps_read())
            except RuntimeError:  # the driver can refuse while shutting down
                return
            if self._mps_peak is None or used > self._mps_peak:
                self._mps_peak = used

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()


def _in_use(resident: int | None) -> int | None:
    """``resident`` bytes less the freed memory kept for reuse (``hostmem``): it stays
    resident but is not in use, and without this a block would be charged with what
    earlier blocks left behind."""
    if resident is not None and hostmem.is_retaining():
        return max(0, resident - hostmem.retained_bytes())
    return resident


def _higher(peak: int | None, now: int | None) -> int | None:
    """The peak so far after a sample ``now`` (either may be unknown: ``None``)."""
    if now is None:
        return peak
    return now if peak is None else max(peak, now)
