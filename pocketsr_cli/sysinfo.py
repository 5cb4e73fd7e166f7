"""What this machine offers pocketsr: versions, devices, memory, the default model, extras.

:func:`collect` answers, ``pocketsr doctor`` renders (``cli/doctor.py``); nothing here
prints or decides.  Every figure the platform does not give is ``None`` rather than a
guess, and a query that fails (a GPU that cannot be asked for its free memory, a default
model that cannot load) is reported, never raised: a diagnosis must survive a sick machine.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Optional distributions that change what pocketsr can do (name on PyPI -> what for).
EXTRAS = {
    "spandrel": "community model files (-m file.pth, models import)",
    "pillow-heif": "HEIC/AVIF input (the heif extra)",
    "huggingface_hub": "hf:// URLs in models import (the hf extra)",
    "diffusers": "AdcSR models, -m adcsr-x4 (the diffusion extra)",
    "torchvision": "two non-SR spandrel architectures (not needed for upscaling)",
}


@dataclass(frozen=True)
class Gpu:
    """One CUDA device as torch sees it (``index`` is the N of ``--device cuda:N``)."""

    index: int
    name: str
    total_memory: int | None
    free_memory: int | None
    compute_capability: str | None  # "8.6"


@dataclass(frozen=True)
class Cpu:
    """The host's cores, the threads torch will use, and the RAM it can still give."""

    physical_cores: int | None
    logical_cores: int | None
    usable_cores: int | None  # this process's CPU affinity (a container may allow fewer)
    torch_threads: int
    available_memory: int | None
    bf16: bool = False  # computes bf16 natively: ``--precision auto`` may pick it here


@dataclass(frozen=True)
class DefaultModel:
    """Whether the default model loads without the network, and if not, why."""

    name: str
    where: str | None
    loads_offline: bool
    error: str | None


@dataclass(frozen=True)
class SystemReport:
    """Everything ``pocketsr doctor`` shows; :meth:`to_dict` is its ``--json`` object."""

    pocketsr: str
    python: str
    platform: str
    torch: str
    torch_cuda: str | None  # the CUDA version torch was built for; None: a CPU-only build
    cuda_available: bool
    gpus: list[Gpu]
    mps_available: bool
    cpu: Cpu
    auto_device: str
    auto_free_memory: int | None
    default_model: DefaultModel
    cache_dir: str
    user_models_dir: str
    extras: dict[str, str | None] = field(default_factory=dict)  # name -> version or None
    # user manifests that define no model, each with why (as `models list` warns)
    skipped_manifests: list[str] = field(default_factory=list)
    # the cache and user model folder where nothing can be stored, each with why
    folder_problems: list[str] = field(default_factory=list)
    # models whose names differ only in case, each group with why (resolve.case_collisions)
    model_problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; byte counts are integers, absent figures ``None``."""
        return asdict(self)


def collect(*, load_default_model: bool = True) -> SystemReport:
    """Ask torch, the OS and the model registry what this machine offers.

    Imports torch.  ``load_default_model`` builds the default model from local files only
    (``offline=True``): it tells whether upscaling works without the network.
    """
    import torch

    from pocketsr_cli import __version__
    from pocketsr_cli.devices import choose_device, cpu_bf16_supported, mps_available
    from pocketsr_cli.memory import free_bytes, host_available_bytes
    from pocketsr_cli.weights.cache import cache_dir, user_models_dir

    auto = choose_device("auto")
    cuda = bool(torch.cuda.is_available())
    return SystemReport(
        pocketsr=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        torch=str(torch.__version__),
        torch_cuda=getattr(torch.version, "cuda", None),
        cuda_available=cuda,
        gpus=cuda_devices() if cuda else [],
        mps_available=mps_available(),
        cpu=Cpu(
            physical_cores=physical_cores(),
            logical_cores=os.cpu_count(),
            usable_cores=_usable_cores(),
            torch_threads=torch.get_num_threads(),
            available_memory=host_available_bytes(),
            bf16=cpu_bf16_supported(),
        ),
        auto_device=str(auto),
        auto_free_memory=_quietly(lambda: free_bytes(auto)),
        default_model=default_model(load=load_default_model),
        cache_dir=str(cache_dir()),
        user_models_dir=str(user_models_dir()),
        extras=extras(),
        skipped_manifests=skipped_manifests(),
        folder_problems=folder_problems(),
        model_problems=model_problems(),
    )


def cuda_devices() -> list[Gpu]:
    """Every CUDA device torch can use, with its memory (total, and free to this process)."""
    import torch

    return [_gpu(index) for index in range(torch.cuda.device_count())]


def _gpu(index: int) -> Gpu:
    import torch

    from pocketsr_cli.memory import free_bytes

    props = _quietly(partial(torch.cuda.get_device_properties, index))
    name = getattr(props, "name", None) or _quietly(partial(torch.cuda.get_device_name, index))
    major, minor = getattr(props, "major", None), getattr(props, "minor", None)
    total = getattr(props, "total_memory", None)
    return Gpu(
        index=index,
        name=str(name or "unknown"),
        total_memory=None if total is None else int(total),
        free_memory=_quietly(partial(free_bytes, torch.device("cuda", index))),
        compute_capability=None if major is None else f"{major}.{minor}",
    )


def default_model(*, load: bool = True) -> DefaultModel:
    """The default model's name, where its weights are, and whether it loads offline."""
    from pocketsr_cli.weights.resolve import DEFAULT_MODEL, find_spec, resolve_model, where

    try:
        place: str | None = where(find_spec(DEFAULT_MODEL))
    except Exception:  # reported below, by the load
        place = None
    if not load:
        return DefaultModel(DEFAULT_MODEL, place, loads_offline=False, error="not tried")
    try:
        resolve_model(None, offline=True)
    except Exception as exc:  # the diagnosis is the message, whatever failed
        return DefaultModel(DEFAULT_MODEL, place, loads_offline=False, error=str(exc))
    return DefaultModel(DEFAULT_MODEL, place, loads_offline=True, error=None)


def skipped_manifests() -> list[str]:
    """The user manifests that cannot be read, so define no model, each with why (what
    ``pocketsr models list`` warns of); empty when every one can be."""
    from pocketsr_cli.weights.resolve import registry

    problems: list[str] = []
    try:
        registry(problems)
    except Exception as exc:  # a folder that cannot be listed: the diagnosis is the message
        return [str(exc)]
    return problems


def model_problems() -> list[str]:
    """The models whose names differ only in case (``resolve.case_collisions``), one line
    per group; empty when there is none, or when the folders cannot be read (as
    :func:`skipped_manifests` says)."""
    from pocketsr_cli.weights.resolve import case_collisions, registry

    try:
        return case_collisions(registry([]))
    except Exception:  # a folder that cannot be listed: skipped_manifests says so
        return []


def folder_problems() -> list[str]:
    """Why downloads or imports could not be stored: one line for the cache and one for
    the user model folder where files cannot be made (``atomicfile.folder_write_problem``:
    a ``POCKETSR_HOME`` that is a file, a read-only folder), each naming the folder;
    empty when both can be written or made."""
    from pocketsr_cli.atomicfile import folder_write_problem
    from pocketsr_cli.weights.cache import cache_dir, user_models_dir

    problems = []
    for label, folder in (("cache", cache_dir()), ("user models", user_models_dir())):
        problem = folder_write_problem(folder)
        if problem is not None:
            problems.append(f"{label} {folder}: {problem}")
    return problems


def extras() -> dict[str, str | None]:
    """The installed version of each optional distribution in :data:`EXTRAS`, or None."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in EXTRAS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def physical_cores(cpuinfo: str | None = None) -> int | None:
    """Physical cores: distinct (package, core) pairs of ``/proc/cpuinfo`` (or the text
    given) on Linux, ``sysctl hw.physicalcpu`` on macOS, else ``psutil`` when installed
    (Windows), else ``None``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    cores: set[tuple[str, str]] = set()
    for block in cpuinfo.split("\n\n"):
        package = re.search(r"^physical id\s*:\s*(\S+)", block, re.MULTILINE)
        core = re.search(r"^core id\s*:\s*(\S+)", block, re.MULTILINE)
        if core is not None:
            cores.add((package.group(1) if package else "0", core.group(1)))
    if cores:
        return len(cores)
    if sys.platform == "darwin":
        count = _sysctl_int("hw.physicalcpu")
        if count:
            return count
    try:
        import psutil  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    count = psutil.cpu_count(logical=False)
    return None if count is None else int(count)


def _sysctl_int(name: str) -> int | None:
    """The integer ``sysctlbyname(name)`` gives (macOS, the BSDs), or None where the C
    library has no such call or the name is unknown."""
    import ctypes

    try:
        call = ctypes.CDLL(None).sysctlbyname
    except (OSError, AttributeError):
        return None
    value = ctypes.c_int64(0)  # hw.* counts are 4 bytes; little-endian, they fill the low end
    size = ctypes.c_size_t(ctypes.sizeof(value))
    if call(name.encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)):
        return None
    return int(value.value) if size.value in (4, 8) else None


def _usable_cores() -> int | None:
    getaffinity = getattr(os, "sched_getaffinity", None)
    return None if getaffinity is None else len(getaffinity(0))


def _quietly(query: Callable[[], T]) -> T | None:
    """``query()``, or ``None`` when the driver refuses to answer."""
    try:
        return query()
    except Exception:
        return None
