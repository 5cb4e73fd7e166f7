#!/usr/bin/env python3
"""The Python half of ``scripts/gpu_check.sh``: inputs it makes, timings it takes, the summary.

    python3 scripts/gpu_check.py env --device cuda                  > env.json
    python3 scripts/gpu_check.py photos DIR --count 16 --size 960x540
    python3 scripts/gpu_check.py archs DIR --size full              # random-weight archs
    python3 scripts/gpu_check.py forward --device cuda --models ... > forward.jsonl
    python3 scripts/gpu_check.py startup --device cuda               # start-up phases
    python3 scripts/gpu_check.py cli bench ...                      # the CLI's stand-in
    python3 scripts/gpu_check.py summarize --work W --out O         # -> O/gpu_check.json

``archs`` writes, with seeded random weights, the two community architectures whose
weights are too big to carry or download there: ``realesr-general-x4v3`` (SRVGG Compact,
64 features x 32 convolutions) and ``realesrgan-x4plus`` (RRDB, 23 blocks), as spandrel
state dicts in safetensors files that ``pocketsr bench -m FILE`` loads like the real
ones.  Speed does not depend on the weights' values.  ``--size small`` makes narrow,
shallow versions for the CPU toy run.

``forward`` times the networks alone (no tiling, no transfers): ``module(x)`` on the
960x540 synthetic photo under autocast, as ``Upscaler`` runs them, in fp32, fp16 and
bf16, with NCHW and channels-last tensors, best of ``--repeat`` after a warm-up; it also
reports how far each half-precision result is from fp32 (PSNR of the uint8 images) and
whether it stayed finite.  fp32 is what torch runs by default, so on CUDA convolutions
may use TF32 (``env.gpu.tf32_conv``).  ``--compile`` adds ``Upscaler(compile=True)`` on the default
model: its warm-up seconds and its speed against the eager ``Upscaler``.

``forward`` then times a 4K 8-bit result's way from the device to the host's output
buffer: laid out planar, as the network leaves it, against ``tiling.assemble.host_layout``
(and into pinned memory on CUDA); see :func:`transfer_records`.

``cli`` stands in for ``python -m pocketsr_cli`` (``models list``, ``bench``, ``upscale``
with the options gpu_check.sh uses, same JSON lines) when the GPU image cannot import the
real CLI (it needs typer>=0.29 and pydantic, carried as wheels): the numbers still come.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    import numpy as np
    import torch

    from pocketsr_cli.descriptor import ModelDescriptor

FULL_SIZE = (960, 540)  # x4 -> 3840x2160
SMALL_SIZE = (64, 36)
UHD_PIXELS = 3840 * 2160
# (file stem, spandrel architecture, full config, small config)
ARCHS: tuple[tuple[str, str, dict[str, int], dict[str, int]], ...] = (
    (
        "realesr-general-x4v3-arch",
        "Compact",
        {"num_feat": 64, "num_conv": 32},
        {"num_feat": 16, "num_conv": 4},
    ),
    (
        "realesrgan-x4plus-arch",
        "ESRGAN",
        {"num_filters": 64, "num_blocks": 23},
        {"num_filters": 16, "num_blocks": 2},
    ),
)
# module -> distribution, for the versions the check ran with
PACKAGES = {
    "numpy": "numpy",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "safetensors": "safetensors",
    "spandrel": "spandrel",
    "platformdirs": "platformdirs",
    "typer": "typer",
    "pydantic": "pydantic",
    "rich": "rich",
    "pytest": "pytest",
}
# gpu_check.sh's steps in its order: the summary lists each (keep the two in step).
CHECKS = (
    "env",
    "cli",
    "bench_bundled_fp16",
    "folder_photos",
    "folder_bench",
    "folder_bench_nokeep",
    "folder_gil_sim",
    "folder_upscale",
    "startup",
    "opencv_floor",
    "pytest_gpu",
    "bench_bundled_fp32",
    "arch_weights",
    "bench_arch_fp16",
    "bench_arch_fp32",
    "forward",
)


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


# ---------------------------------------------------------------------------------- env


def _version(module: str, distribution: str) -> dict[str, str | None]:
    """Version and origin (a carried wheel or the image) of an importable module."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mod = __import__(module)
    except Exception as exc:  # any import failure is a finding, not a crash
        return {"version": None, "error": f"{type(exc).__name__}: {exc}"[:200]}
    try:
        found = version(distribution)
    except PackageNotFoundError:
        found = str(getattr(mod, "__version__", "?"))
    return {"version": found, "path": str(getattr(mod, "__file__", ""))}


def _nvidia_smi() -> str | None:
    """GPU name, driver and memory as nvidia-smi reports them; ``None`` without it."""
    import subprocess

    query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        done = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def env_report(device: str) -> dict[str, Any]:
    """Interpreter, torch, the device and the versions of the packages the check uses."""
    import torch

    from pocketsr_cli.weights.community import import_spandrel

    with contextlib.suppress(Exception):  # its failure shows in "packages" below
        import_spandrel()
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "packages": {name: _version(name, dist) for name, dist in PACKAGES.items()},
        "nvidia_smi": _nvidia_smi(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        report["gpu"] = {
            "name": props.name,
            "memory_bytes": props.total_memory,
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "tf32_conv": torch.backends.cudnn.allow_tf32,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    return report


# ------------------------------------------------------------------------------- inputs


def make_photos(folder: Path, count: int, size: tuple[int, int], quality: int = 95) -> list[Path]:
    """``count`` JPEGs of ``size`` (width, height): :func:`synthetic_photo` with seeds 0..n-1."""
    import cv2

    from pocketsr_cli.evaluation.bench import synthetic_photo

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rgb = synthetic_photo(*size, seed=i)
        path = folder / f"photo_{i:02d}.jpg"
        if not cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def make_arch_weights(folder: Path, small: bool) -> list[dict[str, Any]]:
    """Seeded random spandrel state dicts of :data:`ARCHS`, saved as safetensors in ``folder``.

    Each is loaded back through pocketsr's own loader, so a file that ``bench -m`` would
    refuse fails here, with the architecture's name.
    """
    import torch
    from safetensors.torch import save_file

    from pocketsr_cli.weights.community import import_spandrel
    from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    builders = {"Compact": Compact, "ESRGAN": ESRGAN}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, arch, full, toy in ARCHS:
        torch.manual_seed(0)
        config = toy if small else full
        state = builders[arch](**config).state_dict()
        path = folder / f"{stem}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        desc = descriptor_from_state_dict(read_state_dict(path), path.name)
        written.append(
            {
                "file": str(path),
                "arch": arch,
                "config": config,
                "family": desc.family,
                "params": desc.params,
                "bytes": path.stat().st_size,
            }
        )
    return written


# ------------------------------------------------------------------------------ forward


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(call: Any, device: torch.device, repeat: int) -> tuple[float, Any]:
    """One warm-up call, then the fastest of ``repeat`` timed calls, and the last result."""
    result = call()
    _sync(device)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB between two uint8 images, 2 decimals; ``None`` when they are identical."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else round(10 * math.log10(255.0**2 / mse), 2)


def _as_uint8(y: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` float in [0, 1] -> uint8 array, rounded as the tiler rounds."""
    return (y.float().clamp(0, 1) * 255).round().byte().cpu().numpy()


def forward_records(
    desc: ModelDescriptor, device: torch.device, size: tuple[int, int], repeat: int
) -> Iterator[dict[str, Any]]:
    """Network-only timings of ``desc`` (see the module doc), one record per variant."""
    import torch
    import torch.nn.functional as F

    from pocketsr_cli.devices import Compute
    from pocketsr_cli.evaluation.bench import synthetic_photo

    width, height = size
    pixels = torch.from_numpy(synthetic_photo(width, height)).permute(2, 0, 1)[None].float() / 255
    pad_h, pad_w = desc.size.padded(height) - height, desc.size.padded(width) - width
    image = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate").to(device)
    module = desc.module.to(device).eval()
    reference: np.ndarray | None = None
    for precision in ("fp32", "fp16", "bf16"):
        dtype = Compute(device, precision).dtype
        for layout in ("nchw", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            module.to(memory_format=fmt)  # type: ignore[call-overload]
            x = image.contiguous(memory_format=fmt)
            record: dict[str, Any] = {
                "kind": "forward",
                "model": desc.name,
                "family": desc.family,
                "params": desc.params,
                "precision": precision,
                "layout": layout,
                "width": width,
                "height": height,
            }

            def call(x: torch.Tensor = x, dtype: torch.dtype = dtype) -> torch.Tensor:
                half = dtype != torch.float32
                with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=half):
                    return module(x)

            try:
                best, y = _best_seconds(call, device, repeat)
            except Exception as exc:  # an unsupported dtype/layout is a result, not a crash
                yield {**record, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            out = _as_uint8(y[..., : height * desc.scale, : width * desc.scale])
            if reference is None:
                reference = out
            record.update(
                seconds=best,
                ms_per_4k=1000 * best * UHD_PIXELS / (out.shape[-1] * out.shape[-2]),
                finite=bool(torch.isfinite(y).all()),
                psnr_vs_fp32=None if precision == "fp32" else _psnr(out, reference),
            )
            yield record
    module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def transfer_records(device: torch.device, size: tuple[int, int]) -> Iterator[dict[str, Any]]:
    """How long a ``size`` x4 8-bit RGB result takes to reach the host's channels-last output
    buffer from ``device``, best of 5 after a warm-up, one record per way:

    ``planar``: the result laid out NCHW (as ``pixel_shuffle`` leaves it on CUDA) copied
    straight in, which makes torch stage and transpose it on the host (what the tiler did
    before ``tiling.assemble.host_layout``); ``host_layout``: laid out H x W x C on the
    device first, then one plain copy (what it does now); ``host_layout_pinned``: the same
    into page-locked host memory (CUDA only: would a pinned output buffer pay?).
    """
    import torch

    from pocketsr_cli.tiling.assemble import allocate_output, host_layout

    width, height = size[0] * 4, size[1] * 4
    generator = torch.Generator().manual_seed(0)
    planar = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    planar = planar.to(device)
    expected = planar.cpu()
    out = allocate_output(3, height, width, torch.uint8)[0]  # (C, H, W), channels last
    # way -> (the copy, the host tensor it fills, seen as (C, H, W))
    ways: dict[str, tuple[Any, torch.Tensor]] = {
        "planar": (lambda: out.copy_(planar), out),
        "host_layout": (
            lambda: out.permute(1, 2, 0).copy_(host_layout(planar, torch.uint8)),
            out,
        ),
    }
    if device.type == "cuda":
        pinned = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True)
        ways["host_layout_pinned"] = (
            lambda: pinned.copy_(host_layout(planar, torch.uint8)),
            pinned.permute(2, 0, 1),
        )
    for way, (call, landed) in ways.items():
        record: dict[str, Any] = {"kind": "transfer", "way": way, "width": width, "height": height}
        try:
            best, _ = _best_seconds(call, device, 5)
        except Exception as exc:
            yield {**record, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        yield {**record, "ms": round(1000 * best, 3), "exact": bool(torch.equal(landed, expected))}


def compile_record(
    desc: ModelDescriptor, device: torch.device, size: tuple[int, int], repeat: int
) -> dict[str, Any]:
    """``Upscaler(compile=True)`` against the eager ``Upscaler``, whole image, auto precision."""
    from pocketsr_cli.devices import compute_for
    from pocketsr_cli.evaluation.bench import synthetic_photo
    from pocketsr_cli.inference import Upscaler

    image = synthetic_photo(*size)
    compute = compute_for(device, "auto", desc)
    warnings: list[str] = []
    eager = Upscaler(desc, compute, tile=0)
    compiled = Upscaler(desc, compute, tile=0, compile=True, on_warning=warnings.append)
    eager_best, eager_out = _best_seconds(lambda: eager.upscale(image), device, repeat)
    start = time.perf_counter()
    compiled.upscale(image)
    first = time.perf_counter() - start
    best, out = _best_seconds(lambda: compiled.upscale(image), device, repeat)
    per_4k = 1000 * UHD_PIXELS / (out.shape[0] * out.shape[1])
    return {
        "kind": "compile",
        "model": desc.name,
        "precision": compute.precision,
        "width": size[0],
        "height": size[1],
        "compile_seconds": compiled.compile_seconds,
        "first_call_seconds": first,
        "ms_per_4k_compiled": best * per_4k,
        "ms_per_4k_eager": eager_best * per_4k,
        "speedup": eager_best / best if best > 0 else None,
        "psnr_vs_eager": _psnr(out, eager_out),
        "warnings": warnings,
    }


def run_forward(args: argparse.Namespace) -> int:
    import torch

    from pocketsr_cli.devices import choose_device
    from pocketsr_cli.weights.resolve import resolve_model

    device = choose_device(args.device)
    size = SMALL_SIZE if args.size == "small" else FULL_SIZE
    status = 0
    for ref in [None, *args.models]:
        try:
            desc = resolve_model(ref, None, offline=True)
            for record in forward_records(desc, device, size, args.repeat):
                status |= "error" in record
                _emit(record)
            del desc
        except Exception as exc:
            status = 1
            _emit({"kind": "forward", "model": ref, "error": f"{type(exc).__name__}: {exc}"[:300]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    try:
        for record in transfer_records(device, size):
            status |= "error" in record or not record["exact"]
            _emit(record)
    except Exception as exc:
        status = 1
        _emit({"kind": "transfer", "error": f"{type(exc).__name__}: {exc}"[:300]})
    if args.compile:
        try:
            _emit(
                compile_record(resolve_model(None, None, offline=True), device, size, args.repeat)
            )
        except Exception as exc:
            status = 1
            _emit({"kind": "compile", "error": f"{type(exc).__name__}: {exc}"[:300]})
    return status


# ------------------------------------------------------------------------------ startup


def startup_record(device_name: str, size: tuple[int, int]) -> dict[str, Any]:
    """Where a fresh ``pocketsr upscale`` process spends its time before and on its first
    images, phase by phase, in seconds (run it as a process of its own: imports count).

    ``import_torch``, ``import_cli`` (the Typer app and what it imports), ``device_init``
    (the first tensor on the device: the CUDA context), ``model_load`` (the default model
    resolved and read), ``upscaler_open`` (moved to the device, tile policy), then
    ``first_image``, ``second_image`` and ``third_image`` (a ``size`` synthetic photo each,
    fp16 on CUDA: the first pays cuDNN's set-up and the tile policy's probe).
    """
    start = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        phases[name] = round(time.perf_counter() - start - sum(phases.values()), 4)

    import torch

    lap("import_torch")
    import pocketsr_cli.cli  # noqa: F401  (what the console script imports first)
    from pocketsr_cli.hostmem import retain_freed_memory

    retain_freed_memory()  # as the CLI's root callback does
    lap("import_cli")
    from pocketsr_cli.devices import choose_device
    from pocketsr_cli.evaluation.bench import synthetic_photo
    from pocketsr_cli.factory import UpscalerSpec, open_upscaler

    device = choose_device(device_name)
    torch.zeros(1, device=device)
    _sync(device)
    lap("device_init")
    spec = UpscalerSpec(device, "fp16" if device.type == "cuda" else "auto", offline=True)
    desc = spec.resolve(None)
    lap("model_load")
    upscaler = open_upscaler(desc, spec)
    _sync(device)
    lap("upscaler_open")
    image = synthetic_photo(*size)
    for name in ("first_image", "second_image", "third_image"):
        upscaler.upscale(image)
        lap(name)
    return {
        "kind": "startup",
        "model": desc.name,
        "device": str(device),
        "precision": upscaler.compute.precision,
        "width": size[0],
        "height": size[1],
        "phases": phases,
        "seconds": round(time.perf_counter() - start, 4),
    }


# ----------------------------------------------------------------------- CLI stand-in


def _cli_models() -> int:
    from pocketsr_cli.manifest import load_manifests
    from pocketsr_cli.weights.resolve import DEFAULT_MODEL, where

    for spec in load_manifests().values():
        _emit({"name": spec.name, "default": spec.name == DEFAULT_MODEL, "where": where(spec)})
    return 0


def _cli_bench(args: argparse.Namespace) -> int:
    from pocketsr_cli.devices import choose_device
    from pocketsr_cli.evaluation.bench import bench, bench_folder, parse_size
    from pocketsr_cli.factory import UpscalerSpec, precision_choice

    spec = UpscalerSpec(choose_device(args.device), precision_choice(args.precision), offline=True)
    if args.folder is None:
        report: Any = bench(args.model, spec, parse_size(args.size), args.repeat or 3)
        settings = {"mode": "synthetic", "width": report.width, "height": report.height}
    else:
        fmt = None if args.format == "same" else args.format
        report = bench_folder(args.model, args.folder, spec, fmt=fmt, repeat=args.repeat or 1)
        settings = {"mode": "folder", "folder": report.folder, "format": report.fmt}
    settings.update(repeat=report.repeat, device=report.device, threads=report.threads)
    for result in report.models:
        _emit({**settings, **result.to_dict(), "via": "gpu_check.py cli"})
    return 1 if any(getattr(r, "failed", 0) for r in report.models) else 0


def _cli_upscale(args: argparse.Namespace) -> int:
    from pocketsr_cli.devices import choose_device, compute_for
    from pocketsr_cli.imageio import format_from_name
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.jobs import Naming, collect_jobs
    from pocketsr_cli.pipeline import NullReporter, Options, run
    from pocketsr_cli.weights.resolve import resolve_model

    class _JsonReporter(NullReporter):
        """Pipeline reporter printing ``upscale --json``'s image and summary lines."""

        def __init__(self, model: str, device: str) -> None:
            self.model, self.device = model, device

        def warning(self, message: str) -> None:
            print(f"warning: {message}", file=sys.stderr)

        def image_finished(self, result: Any) -> None:
            fields = ("status", "error", "width", "height", "out_width", "out_height", "seconds")
            record = {"type": "image", "input": str(result.job.input)}
            record.update({name: getattr(result, name) for name in fields})
            _emit({**record, "model": self.model, "device": self.device})

        def finished(self, summary: Any) -> None:
            counts = {status: summary.count(status) for status in ("ok", "skipped", "failed")}
            totals = {"total": len(summary.results), **counts, "seconds": round(summary.seconds, 4)}
            _emit({"type": "summary", "summary": totals})

    fmt = None if args.format == "same" else format_from_name(args.format)
    desc = resolve_model(args.model, None, offline=True)
    compute = compute_for(choose_device(args.device), args.precision, desc)
    jobs = collect_jobs(
        args.inputs, Naming(out_dir=args.output, suffix=None, scale_label="4", fmt=fmt)
    )
    reporter = _JsonReporter(desc.name, str(compute))
    upscaler = Upscaler(desc, compute, on_warning=reporter.warning)
    summary = run(jobs, upscaler, Options(fmt=fmt, overwrite=True), reporter)
    return 1 if summary.failed else 0


def run_cli(argv: Sequence[str]) -> int:
    """``models list --json`` | ``bench ...`` | ``upscale ...``: the subset gpu_check.sh uses."""
    parser = argparse.ArgumentParser(prog="gpu_check.py cli")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models")
    models.add_argument("action", choices=["list"])
    models.add_argument("--json", action="store_true")
    bench_p, upscale_p = sub.add_parser("bench"), sub.add_parser("upscale")
    for p in (bench_p, upscale_p):
        p.add_argument("-m", "--model", action="append", default=[])
        p.add_argument("--device", default="auto")
        p.add_argument("--precision", default="auto")
        p.add_argument("--format", default="same")
        p.add_argument("--repeat", type=int)
        for flag in ("--json", "--quiet", "--offline", "--overwrite"):
            p.add_argument(flag, action="store_true")
    bench_p.add_argument("--size", default="960x540")
    bench_p.add_argument("--folder", type=Path)
    upscale_p.add_argument("inputs", nargs="+", type=Path)
    upscale_p.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    if args.command == "models":
        return _cli_models()
    if args.command == "bench":
        return _cli_bench(args)
    args.model = args.model[-1] if args.model else None
    return _cli_upscale(args)


# ----------------------------------------------------------------------------- summary


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def _pytest_results(junit: Path) -> dict[str, Any] | None:
    """Counts and per-test outcomes from pytest's JUnit XML."""
    if not junit.is_file():
        return None
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError:
        return None
    tests: dict[str, str] = {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        tests[name] = outcome
    counts = {
        k: sum(v == k for v in tests.values()) for k in ("passed", "failed", "error", "skipped")
    }
    return {**counts, "tests": tests}


def _pick(records: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The first record whose fields have the given values."""
    return next((r for r in records if all(r.get(k) == v for k, v in match.items())), None)


def _ms(record: dict[str, Any] | None, field: str = "seconds_per_4k") -> float | None:
    value = None if record is None else record.get(field)
    return None if value is None else round(1000 * value, 3)


def _rate(count: Any, seconds: Any) -> float | None:
    return round(count / seconds, 3) if count and seconds else None


def key_figures(
    default: str | None,
    bench: list[dict[str, Any]],
    folder: list[dict[str, Any]],
    forward: list[dict[str, Any]],
) -> dict[str, Any]:
    """What issue 12 asks for, from the result files (``None`` where a step gave nothing).

    ``*_upscaler``: ``pocketsr bench`` (960x540 -> 4K through ``Upscaler``: tiling,
    transfers and uint8 conversion included); ``*_network``: the network alone
    (``forward``); ``images_per_s_4k_jpeg``: ``bench --folder`` (decode, upscale, JPEG
    encode and write, after a warm-up), ``…_memory_given_back`` the same with
    ``POCKETSR_KEEP_FREED_MEMORY=0``; ``gil_sim_model_ms_per_image``: the model stage
    of ``scripts/folder_gil_sim.py`` on that folder, a 24 ms wait with the GIL released
    and the launches' round trips among the real decoder and encoder threads (near 24:
    the host side does not hold the GPU back); ``upscale_cli_*``: ``pocketsr upscale`` on the
    same folder, by wall clock (process start and model load included) and by its own
    pipeline seconds; ``startup_phases``: a fresh process's seconds per start-up phase
    (:func:`startup_record`).
    """
    folder_bench = _pick(folder, step="folder_bench", mode="folder") or {}
    nokeep = _pick(folder, step="folder_bench_nokeep", mode="folder") or {}
    upscaled = (_pick(folder, step="folder_upscale", type="summary") or {}).get("summary", {})
    wall = (_pick(folder, step="folder_upscale_wall") or {}).get("wall_seconds")
    floor = _pick(folder, step="opencv_floor") or {}
    gil_sim = _pick(folder, step="folder_gil_sim") or {}

    def network(precision: str, layout: str) -> float | None:
        record = _pick(forward, kind="forward", model=default, precision=precision, layout=layout)
        return None if record is None else record.get("ms_per_4k")

    return {
        "default_model": default,
        "ms_per_4k_fp16_upscaler": _ms(_pick(bench, step="bench_bundled_fp16", model=default)),
        "ms_per_4k_fp32_upscaler": _ms(_pick(bench, step="bench_bundled_fp32", model=default)),
        "ms_per_4k_fp16_network": network("fp16", "nchw"),
        "ms_per_4k_fp16_network_channels_last": network("fp16", "channels_last"),
        "ms_per_4k_bf16_network": network("bf16", "nchw"),
        "ms_per_4k_fp32_network": network("fp32", "nchw"),
        # a 4K 8-bit result's way to the host: planar (before host_layout) against now
        "transfer_ms_4k": {
            r["way"]: r.get("ms") for r in forward if r.get("kind") == "transfer" and "way" in r
        }
        or None,
        "images_per_s_4k_jpeg": folder_bench.get("images_per_s"),
        "e2e_over_model": folder_bench.get("e2e_over_model"),
        "images_per_s_4k_jpeg_memory_given_back": nokeep.get("images_per_s"),
        "gil_sim_model_ms_per_image": gil_sim.get("model_ms_per_image"),
        "upscale_cli_images_per_s_wall": _rate(upscaled.get("ok"), wall),
        "upscale_cli_images_per_s_pipeline": _rate(upscaled.get("ok"), upscaled.get("seconds")),
        "startup_phases": (_pick(folder, step="startup") or {}).get("phases"),
        "opencv_floor": {k: v for k, v in floor.items() if k != "step"} or None,
        # where Upscaler's NaN guard would silently turn a "fp16" bench into an fp32 one
        "nonfinite_half": [
            f"{r.get('model')} {r.get('precision')}"
            for r in forward
            if r.get("kind") == "forward" and r.get("finite") is False
        ],
    }


def summarize(work: Path, out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Write ``out/gpu_check.json`` from gpu_check.sh's step log and result files.

    ``checks`` lists every name in :data:`CHECKS` (``"not run"`` when the script never
    reached it); ``ok`` is true when every check passed.  Returns the summary.
    """
    env_file = work / "env.json"
    env = json.loads(env_file.read_text()) if env_file.is_file() else None
    steps = {s["check"]: s for s in _jsonl(work / "steps.jsonl") if "check" in s}
    checks = {name: steps.get(name, {"check": name, "status": "not run"}) for name in CHECKS}
    default = next((m["name"] for m in _jsonl(work / "models.jsonl") if m.get("default")), None)
    bench = _jsonl(out / "bench.jsonl")
    forward = _jsonl(out / "forward.jsonl")
    table = [
        {
            "step": r.get("step"),
            "model": r.get("model"),
            "precision": r.get("precision"),
            "ms_per_4k": _ms(r),
            "device_peak_bytes": r.get("device_peak_bytes"),
            "host_peak_bytes": r.get("host_peak_bytes"),
        }
        for r in bench
        if "seconds_per_4k" in r
    ]
    summary = {
        **run,
        "ok": all(c["status"] == "pass" for c in checks.values()),
        "gpu": None if env is None else env.get("gpu"),
        "env": env,
        "checks": checks,
        "figures": key_figures(default, bench, _jsonl(out / "folder.jsonl"), forward),
        "bench": table,
        "pytest": _pytest_results(work / "pytest.xml"),
        "compile": _pick(forward, kind="compile"),
    }
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# -------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cli"]:
        return run_cli(argv[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("env", help="versions, device: one JSON object")
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("photos", help="synthetic JPEG photos")
    p.add_argument("folder", type=Path)
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--size", type=_size, default=FULL_SIZE)
    p = sub.add_parser("archs", help="random-weight Compact and RRDB safetensors files")
    p.add_argument("folder", type=Path)
    p.add_argument("--size", choices=["full", "small"], default="full")
    p = sub.add_parser("forward", help="network-only timings: JSON lines")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=["full", "small"], default="full")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--models", nargs="*", default=[], help="beside the default model")
    p.add_argument("--compile", action="store_true")
    p = sub.add_parser("startup", help="a fresh process's start-up, phase by phase: JSON")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=["full", "small"], default="full")
    p = sub.add_parser("summarize", help="write OUT/gpu_check.json")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", default="full")
    p.add_argument("--budget", type=float)
    p.add_argument("--elapsed", type=float)
    args = parser.parse_args(argv)
    if args.command == "env":
        _emit(env_report(args.device))
    elif args.command == "photos":
        paths = make_photos(args.folder, args.count, args.size)
        _emit({"photos": len(paths), "folder": str(args.folder), "size": list(args.size)})
    elif args.command == "archs":
        for record in make_arch_weights(args.folder, args.size == "small"):
            _emit(record)
    elif args.command == "forward":
        return run_forward(args)
    elif args.command == "startup":
        _emit(startup_record(args.device, SMALL_SIZE if args.size == "small" else FULL_SIZE))
    else:
        run = {
            "device": args.device,
            "size": args.size,
            "budget_s": args.budget,
            "seconds": args.elapsed,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        summary = summarize(args.work, args.out, run)
        missed = [name for name, c in summary["checks"].items() if c["status"] != "pass"]
        passed = len(CHECKS) - len(missed)
        print(
            f"gpu_check: {passed}/{len(CHECKS)} checks passed" + (f"; not: {missed}" * bool(missed))
        )
        print(json.dumps(summary["figures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
