"""A GPU folder run's host side, without a GPU: what the pipeline's other threads cost the
model stage.

The stand-in upscaler does what a GPU model stage does on the host: many short GIL round
trips (one per kernel launch; ``--launches``) and a wait with the GIL released while the
device computes (``--gpu-ms``), then hands over a 4K uint8 result.  The folder is decoded,
upscaled and written as JPEG by ``pipeline.run`` with ``--encode-threads`` encoders, as
``pocketsr upscale`` does.  Printed: the model stage's milliseconds per image (alone it is
about ``--gpu-ms`` plus the launches) and images per second.

Issue 12's GPU folder run showed the model stage at 92 ms per image against 24 ms alone;
this reproduces the effect on a CPU when the encoders hold the GIL (Pillow's JPEG encoder
did) and shows it gone when they do not:

    python scripts/folder_gil_sim.py data/bench8 --encode-threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pocketsr_cli.jobs import Naming, collect_jobs
from pocketsr_cli.pipeline import NullReporter, Options, default_encode_threads, run


class HostSideOfAGpu:
    """×4 upscaler that only does what a GPU model stage does on the host."""

    scale = 4

    def __init__(self, gpu_ms: float, launches: int) -> None:
        self.gpu_s, self.launches = gpu_ms / 1000, launches
        self.results: dict[tuple[int, ...], np.ndarray] = {}  # per output shape
        self.seconds = 0.0

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        h, w = pixels.shape[:2]
        shape = (4 * h, 4 * w, 3)
        if shape not in self.results:  # (made outside the timed part)
            noise = np.random.default_rng(0).random(shape)
            self.results[shape] = (noise * 255).astype(np.uint8)
        start = time.perf_counter()
        for _ in range(self.launches):
            time.sleep(0)  # releases the GIL and takes it back, as each launch does
        time.sleep(self.gpu_s)  # the device computing, the GIL released
        out = self.results[shape].copy()  # the device-to-host copy into a fresh buffer
        self.seconds += time.perf_counter() - start
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="photos, e.g. scripts/opencv_floor.py make's")
    parser.add_argument(
        "--encode-threads", type=int, default=None, help="default: as pocketsr upscale"
    )
    parser.add_argument("--gpu-ms", type=float, default=24.0)
    parser.add_argument("--launches", type=int, default=150)
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--json", action="store_true", help="one JSON object instead")
    args = parser.parse_args()
    threads = args.encode_threads or default_encode_threads()
    out = Path(tempfile.mkdtemp(prefix="pocketsr-gil-"))
    try:
        jobs = collect_jobs([args.folder], Naming(out, None, "4", "jpeg"))
        upscaler = HostSideOfAGpu(args.gpu_ms, args.launches)
        options = Options(fmt="jpeg", quality=args.quality, encode_threads=threads, record=None)
        start = time.perf_counter()
        summary = run(jobs, upscaler, options, NullReporter())
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    done = summary.count("ok")
    if done == 0:
        raise SystemExit("no image was upscaled")
    model_ms = upscaler.seconds / done * 1000
    if args.json:
        figures = {"images": done, "encode_threads": threads, "gpu_ms": args.gpu_ms}
        figures |= {"model_ms_per_image": round(model_ms, 2), "images_per_s": done / wall}
        print(json.dumps(figures))
        return
    print(
        f"{done} images, {threads} encoder threads: model stage "
        f"{model_ms:.1f} ms per image, {done / wall:.2f} images/s"
    )


if __name__ == "__main__":
    main()
