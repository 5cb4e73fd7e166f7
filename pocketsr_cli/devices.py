"""Choosing the compute device and the numeric precision.

``auto`` means CUDA, then Apple MPS, then CPU.  Precision ``auto`` means fp16 on CUDA/MPS
when the model is known to be half-safe (the NaN guard in ``inference`` still recomputes a
non-finite result in fp32); on a CPU, bf16 for a model measured faster in it
(``cpu_bf16``) when the CPU computes bf16 natively (AVX512-BF16 or AMX: 1.8 x for the
default model on this project's CPU), else fp32, since elsewhere half precision on a CPU
is slower, not faster.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pocketsr_cli.envvars import switch
from pocketsr_cli.errors import DeviceError

if TYPE_CHECKING:
    import torch

    from pocketsr_cli.descriptor import ModelDescriptor

Precision = Literal["fp32", "fp16", "bf16"]
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
CPU_BF16_ENV = "POCKETSR_CPU_BF16"

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Compute:
    """Where and how inference runs."""

    device: torch.device
    precision: Precision

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            self.precision
        ]

    def __str__(self) -> str:
        return f"{self.device} {self.precision}"


def mps_available() -> bool:
    """Whether this torch build can use Apple's Metal (MPS) device here."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(spec: str) -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a usable ``torch.device``.

    Raises:
        DeviceError: the spelling is wrong or the device is not present.
    """
    import torch

    m = _DEVICE_RE.match(spec.strip().lower())
    if m is None:
        raise DeviceError(f"unknown device {spec!r}; choose one of: {DEVICE_CHOICES}")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if index is not None and kind != "cuda":
        raise DeviceError(f"device {spec!r}: only cuda takes an index (cuda:N)")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not mps_available():
            raise DeviceError("device 'mps' requested but Apple MPS is not available here")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {spec!r} requested but CUDA is not available "
            "(no NVIDIA GPU, or a CPU-only build of torch)"
        )
    n = torch.cuda.device_count()
    i = int(index) if index is not None else torch.cuda.current_device()
    if i >= n:
        raise DeviceError(f"device {spec!r} does not exist: {n} CUDA device(s) found")
    return torch.device("cuda", i)


# Where the Linux NVIDIA driver lists one folder per GPU it drives.
_NVIDIA_GPUS = "/proc/driver/nvidia/gpus"


def likely_device_names(gpu_root: str | Path = _NVIDIA_GPUS) -> list[str]:
    """The ``--device`` values that should work here, found without importing torch.

    For shell completion, which must answer in milliseconds: ``auto`` and ``cpu``; ``cuda``
    and ``cuda:0`` ... ``cuda:N-1`` for the GPUs the Linux NVIDIA driver lists under
    ``gpu_root``, narrowed by ``CUDA_VISIBLE_DEVICES`` as CUDA would narrow them; ``mps``
    on Apple silicon.  A guess, not a promise: :func:`choose_device` (which asks torch)
    decides, and GPUs this cannot see (Windows, WSL, a driver without ``/proc`` entries)
    are simply not offered.
    """
    names = ["auto", "cpu"]
    count = _visible_gpu_count(Path(gpu_root), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if count:
        names += ["cuda", *(f"cuda:{i}" for i in range(count))]
    if sys.platform == "darwin" and os.uname().machine == "arm64":
        names.append("mps")
    return names


def _visible_gpu_count(gpu_root: Path, visible: str | None) -> int:
    try:
        present = sum(1 for entry in gpu_root.iterdir() if entry.is_dir())
    except OSError:
        return 0
    if visible is None:
        return present
    # CUDA reads the list up to its first invalid entry ("-1" hides every GPU); entries
    # may be indices or GPU-UUIDs, so only their number is used.
    listed = 0
    for entry in visible.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        listed += 1
    return min(listed, present)


def choose_precision(
    requested: str,
    device: torch.device,
    *,
    supports_half: bool,
    supports_bf16: bool,
    cpu_bf16: bool = False,
) -> Precision:
    """Resolve ``auto|fp32|fp16|bf16`` for a device and a model.

    An explicit request the model is not known to support is honoured anyway (the NaN guard
    protects the result).  ``auto`` picks fp16 on CUDA and MPS for a model that is fp16-safe;
    else bf16 on a CUDA device that computes in it, for a model that is bf16-safe (bf16 has
    fp32's range, so a network whose activations overflow fp16 may still run in it); bf16
    on a CPU that computes it natively (:func:`cpu_bf16_supported`) for a bf16-safe model
    that is faster in it there (``cpu_bf16``); else fp32.

    Raises:
        DeviceError: unknown spelling.
    """
    requested = requested.strip().lower()
    if requested not in PRECISION_CHOICES:
        raise DeviceError(
            f"unknown precision {requested!r}; choose one of: {', '.join(PRECISION_CHOICES)}"
        )
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if device.type in ("cuda", "mps") and supports_half:
        return "fp16"
    if device.type == "cuda" and supports_bf16 and cuda_bf16_supported(device):
        return "bf16"
    if device.type == "cpu" and cpu_bf16 and supports_bf16 and cpu_bf16_supported():
        return "bf16"
    return "fp32"


def cpu_bf16_forced() -> bool | None:
    """What ``POCKETSR_CPU_BF16`` says (a yes or no word, :mod:`pocketsr_cli.envvars`); None
    when it is unset or empty (the CPU is asked).  Read at the start of every command that
    upscales and by the Python API's ``Upscaler`` (``cli._options.upscaler_spec``), so that
    a bad value is refused before any work.

    Raises:
        UsageError: it says neither yes nor no (``POCKETSR_CPU_BF16=maybe``).
    """
    return switch(
        CPU_BF16_ENV,
        "set it to 1 (bf16 on this CPU where the model allows it), 0 (fp32), or leave it "
        "unset (bf16 where the CPU computes it natively)",
    )


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), where oneDNN's
    bf16 convolutions are faster than fp32 ones; elsewhere it emulates them, slower.
    ``POCKETSR_CPU_BF16=0`` (or another no) says no whatever the CPU (``1``, a yes: yes).

    Raises:
        UsageError: the variable says neither yes nor no (:func:`cpu_bf16_forced`).
    """
    forced = cpu_bf16_forced()
    return _cpu_computes_bf16() if forced is None else forced


@functools.cache
def _cpu_computes_bf16() -> bool:
    """The CPU's own answer to :func:`cpu_bf16_supported` (asked once per process)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:  # private, but the only place torch says it; absent: no
        return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)
    except Exception:
        return False


def cuda_bf16_supported(device: torch.device) -> bool:
    """Whether the CUDA ``device`` computes in bf16 natively (Ampere and later)."""
    import torch

    try:
        major, _ = torch.cuda.get_device_capability(device)
    except (RuntimeError, AssertionError, ValueError):  # no CUDA, or not that device
        return False
    return major >= 8


def compute_label(eight: str, sixteen: str) -> str:
    """What a run's first line says draws its images, from what draws an 8-bit image
    (``eight``) and a 16-bit one (``sixteen``), each ``DEVICE PRECISION``: the one when
    they agree, else ``cpu uint8 (16-bit: bf16)``."""
    if eight == sixteen:
        return eight
    return f"{eight} (16-bit: {sixteen.rsplit(' ', 1)[-1]})"


def compute_for(
    device: torch.device, precision: str, model: ModelDescriptor, *, cpu_bf16: bool = True
) -> Compute:
    """The :class:`Compute` for running ``model`` on ``device`` at ``precision`` (may be
    auto).  ``cpu_bf16=False`` keeps ``auto`` at fp32 on a CPU whatever the model says
    (``pocketsr eval``: scores at the reference precision)."""
    return Compute(
        device,
        choose_precision(
            precision,
            device,
            supports_half=model.supports_half,
            supports_bf16=model.supports_bf16,
            cpu_bf16=cpu_bf16 and model.cpu_bf16,
        ),
    )
