"""pipeline.run: ordering, bounded read-ahead, failure isolation (with a fake upscaler)."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketsr_cli import pipeline
from pocketsr_cli.errors import ImageWriteError
from pocketsr_cli.imageio import DecodedImage, read_provenance_text
from pocketsr_cli.jobs import Naming, collect_jobs, with_headers
from pocketsr_cli.pipeline import Options, Result, Summary, Variant, run
from pocketsr_cli.provenance import RunSettings, loads
from pocketsr_cli.sizing import Target


class Repeat:
    """Nearest-neighbour x2 upscaler that records how far reading ran ahead of it."""

    scale = 2

    def __init__(self, reads: list[str]) -> None:
        self.reads = reads
        self.calls = 0
        self.max_ahead = 0

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        self.calls += 1
        time.sleep(0.02)  # let the reader run ahead if it could
        self.max_ahead = max(self.max_ahead, len(self.reads) - self.calls)
        if on_tile:
            on_tile(1, 1)
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def _add(self, kind: str, value: object) -> None:
        with self.lock:
            self.events.append((kind, value))

    def start(self, total: int) -> None:
        self._add("start", total)

    def image_started(self, job: object, index: int) -> None:
        self._add("image", index)

    def tile(self, done: int, total: int) -> None:
        self._add("tile", done)

    def image_finished(self, result: Result) -> None:
        self._add("done", result.job.input.name)

    def warning(self, message: str) -> None:
        self._add("warning", message)

    def finished(self, summary: Summary) -> None:
        self._add("finished", summary.total)


def make_folder(root: Path, n: int) -> None:
    root.mkdir()
    for i in range(n):
        Image.fromarray(np.full((6, 8, 3), i * 10, np.uint8)).save(root / f"{i:02d}.png")


def test_read_ahead_is_bounded_and_results_stay_in_order(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    make_folder(tmp_path / "in", 12)
    (tmp_path / "in" / "05.png").write_bytes(b"broken")
    reads: list[str] = []
    real_read = pipeline.read_image

    def counting_read(path: Path, **options):  # type: ignore[no-untyped-def]
        reads.append(path.name)
        return real_read(path, **options)

    monkeypatch.setattr(pipeline, "read_image", counting_read)
    up = Repeat(reads)
    rec = Recorder()
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    summary = run(jobs, up, Options(), rec)
    assert up.max_ahead <= 3  # one queued + one being decoded (+ the failed one)
    done = [v for k, v in rec.events if k == "done"]
    assert done == [f"{i:02d}.png" for i in range(12)]
    assert summary.count("ok") == 11 and summary.count("failed") == 1
    assert rec.events[0] == ("start", 12) and rec.events[-1] == ("finished", 12)
    out = np.asarray(Image.open(tmp_path / "out" / "03.png"))
    assert out.shape == (12, 16, 3) and np.all(out == 30)


def test_inference_error_fails_one_image_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    make_folder(tmp_path / "in", 3)

    class Flaky(Repeat):
        def upscale(self, pixels, on_tile=None):  # type: ignore[no-untyped-def]
            if pixels[0, 0, 0] == 10:
                raise RuntimeError("CUDA error: device-side assert\nmore detail")
            return super().upscale(pixels, on_tile)

    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    summary = run(jobs, Flaky([]), Options(), Recorder())
    failed = summary.failed
    assert [r.job.input.name for r in failed] == ["01.png"]
    assert failed[0].error == "inference failed: CUDA error: device-side assert"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00.png", "02.png"]


class Nearest:
    """Nearest-neighbour upscaler at any integer factor."""

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        return pixels.repeat(self.scale, axis=0).repeat(self.scale, axis=1)


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_output_too_large_for_its_format_fails_before_the_upscale(
    tmp_path: Path, dry_run: bool
) -> None:
    """WebP holds 16,383 pixels on a side: the image was upscaled (minutes, for a large
    photo) and only then failed at encoding, and a dry run said it would be written."""
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((2, 8200, 3), 99, np.uint8)).save(tmp_path / "in" / "wide.webp")
    Image.fromarray(np.full((2, 8, 3), 99, np.uint8)).save(tmp_path / "in" / "small.webp")

    class Counting(Nearest):
        calls = 0

        def upscale(self, pixels, on_tile=None):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().upscale(pixels, on_tile)

    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    summary = run(jobs, Counting(2), Options(dry_run=dry_run), Recorder())
    got = {r.job.input.name: (r.status, r.error) for r in summary.results}
    assert got["wide.webp"] == (
        "failed",
        "WebP cannot store images over 16383 pixels on a side (this one is 16400x4); "
        "choose PNG or TIFF",
    )
    assert got["small.webp"] == ("planned" if dry_run else "ok", None)
    assert Counting.calls == (0 if dry_run else 1)  # the small one only


def test_each_image_runs_the_smallest_variant_that_reaches_the_target(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name, (h, w) in {"big": (12, 16), "small": (6, 8), "tiny": (3, 4)}.items():
        Image.fromarray(np.full((h, w, 3), 99, np.uint8)).save(tmp_path / "in" / f"{name}.png")
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None))
    variants = [Variant(Nearest(2), "n-x2"), Variant(Nearest(4), "n-x4")]
    summary = run(jobs, variants, Options(target=Target("width", 32)), Recorder())
    got = {r.job.input.name: (r.model, r.out_width, r.out_height) for r in summary.results}
    assert got == {
        "big.png": ("n-x2", 32, 24),
        "small.png": ("n-x4", 32, 24),
        "tiny.png": ("n-x4", 32, 24),  # ×8 needed: the largest, then enlarged
    }
    with pytest.raises(ValueError, match="needs a target"):
        run(jobs, variants, Options(), Recorder())


@pytest.mark.parametrize("fmt", [None, "jpeg"])
def test_an_inputs_header_is_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str | None
) -> None:
    """Planning reads the header of an input whose output format depends on its alpha
    (PNG asked as JPEG), or of each input a size target needs (``with_headers``);
    choosing the target's variants and predicting the image's memory use that header
    (``Job.header``) rather than parse it again, while the file is the one it was read
    from: one replaced since is read again."""
    from pocketsr_cli.imageio import header as header_module

    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.full((6, 8, 3), 99, np.uint8)).save(tmp_path / "in" / f"{name}.png")
    parsed: list[str] = []
    parse = header_module.parse_header

    def counted(handle, path):  # type: ignore[no-untyped-def]
        parsed.append(Path(path).name)
        return parse(handle, path)

    monkeypatch.setattr(header_module, "parse_header", counted)
    jobs = with_headers(collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, fmt=fmt)))
    target = Target("width", 32)
    assert pipeline.scales_for_sizes(jobs, target, [2, 4], 2) == [4]
    # replaced after planning: another file (and size) at the same path
    Image.fromarray(np.full((12, 16, 3), 99, np.uint8)).save(tmp_path / "in" / "c.png")
    variants = [Variant(Nearest(2), "n-x2"), Variant(Nearest(4), "n-x4")]
    summary = run(jobs, variants, Options(fmt=fmt, target=target), Recorder())
    assert summary.count("ok") == 3
    assert sorted(parsed) == ["a.png", "b.png", "c.png", "c.png"]  # c: planned, then changed
    assert [r.model for r in summary.results] == ["n-x4", "n-x4", "n-x2"]


@pytest.mark.parametrize("planned", [True, False])
def test_a_webp_output_that_exists_is_compared_without_parsing_its_inputs_header_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planned: bool
) -> None:
    """An existing WebP output is compared with the record this run would write, which
    says whether it is kept lossless (``kept_lossless``, from the input's header): the
    header planning read (``with_headers``, for a size target) is used, or the one read
    to choose the variant, rather than parsed again."""
    from pocketsr_cli.imageio import header as header_module

    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        image = Image.fromarray(np.full((6, 8, 3), 99, np.uint8))
        image.save(tmp_path / "in" / f"{name}.webp", lossless=True)
    variants = [Variant(Nearest(2), "n-x2"), Variant(Nearest(4), "n-x4")]
    options = Options(record=RunSettings(version="9.9", tile="0/0"), target=Target("width", 32))
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None))
    assert run(jobs, variants, options, Recorder()).count("ok") == 2
    parsed: list[str] = []
    parse = header_module.parse_header

    def counted(handle, path):  # type: ignore[no-untyped-def]
        parsed.append(Path(path).name)
        return parse(handle, path)

    monkeypatch.setattr(header_module, "parse_header", counted)
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None))
    if planned:
        jobs = with_headers(jobs)
    summary = run(jobs, variants, options, Recorder())
    assert [r.reason_code for r in summary.results] == ["exists", "exists"]
    # once each: by planning, else to choose the variant
    assert sorted(parsed) == ["a.webp", "b.webp"]


def test_records_are_written_and_existing_outputs_compared(tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 2)
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None))
    settings = RunSettings(version="9.9", tile="0/0")
    variant = Variant(Nearest(2), "n-x2", sha256="ab" * 32, compute="cpu fp32")
    options = Options(record=settings, target=Target.factor(3))
    assert run(jobs, [variant], options, Recorder()).count("ok") == 2
    text = read_provenance_text(tmp_path / "out" / "00.png")
    record = loads(text or "")
    assert record is not None
    assert record["model"] == "n-x2" and record["model_sha256"] == "ab" * 32
    assert (record["model_scale"], record["target"], record["width"]) == (2, "x3", 24)
    assert (record["pocketsr"], record["tile"], record["precision"]) == ("9.9", "0/0", "cpu fp32")
    assert record["source"] == "00.png"

    def codes(summary: Summary) -> list[str | None]:
        return [r.reason_code for r in summary.results]

    assert codes(run(jobs, [variant], options, Recorder())) == ["exists", "exists"]
    # Device and precision are recorded, not compared.
    on_gpu = Variant(Nearest(2), "n-x2", sha256="ab" * 32, compute="cuda:0 fp16")
    assert codes(run(jobs, [on_gpu], options, Recorder())) == ["exists", "exists"]
    reweighted = Variant(Nearest(2), "n-x2", sha256="cd" * 32)
    summary = run(jobs, [reweighted], options, Recorder())
    assert codes(summary) == ["different-settings"] * 2 and summary.conflicts == 2
    assert "weights sha256 abababababab… → cdcdcdcdcdcd…" in (summary.results[0].reason or "")
    bigger = Options(record=settings, target=Target.factor(2))
    assert "size x3 → x2" in (run(jobs, [variant], bigger, Recorder()).results[0].reason or "")
    # Without records, existing outputs are skipped by name alone.
    assert codes(run(jobs, [reweighted], Options(), Recorder())) == ["exists", "exists"]


def test_an_interrupted_run_still_gives_every_input_one_result(tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 5)

    class StopsAtTheThird(Repeat):
        def upscale(self, pixels, on_tile=None):  # type: ignore[no-untyped-def]
            if pixels[0, 0, 0] == 20:
                raise KeyboardInterrupt  # what Ctrl-C, SIGTERM or SIGHUP raise in the CLI
            return super().upscale(pixels, on_tile)

    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    rec = Recorder()
    summary = run(jobs, StopsAtTheThird([]), Options(), rec)
    assert summary.interrupted
    got = [(r.job.input.name, r.status, r.reason_code) for r in summary.results]
    assert got == [
        ("00.png", "ok", None),
        ("01.png", "ok", None),
        ("02.png", "skipped", "interrupted"),
        ("03.png", "skipped", "interrupted"),
        ("04.png", "skipped", "interrupted"),
    ]
    assert [v for k, v in rec.events if k == "done"] == [f"{i:02d}.png" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00.png", "01.png"]


def test_a_full_disk_stops_the_run_and_every_input_still_gets_one_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(tmp_path / "in", 12)
    real_write = pipeline.write_atomic
    written: list[str] = []

    def fills_up(path: Path, data: bytes, **kwargs: object) -> bool:
        if written:  # the first output takes the last of the space
            raise ImageWriteError(f"cannot write {path}: No space left on device") from OSError(
                errno.ENOSPC, "No space left on device"
            )
        written.append(path.name)
        return real_write(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "write_atomic", fills_up)
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    upscaler = Repeat([])
    summary = run(jobs, upscaler, Options(), Recorder())
    assert not summary.interrupted
    why = f"the disk that holds {tmp_path / 'out'} is full (No space left on device)"
    assert summary.stopped == why
    got = [(r.status, r.reason_code) for r in summary.results]
    assert got[0] == ("ok", None) and got[1] == ("failed", None)
    # What was already upscaled is still tried; nothing more is read or upscaled.
    assert upscaler.calls < 6, upscaler.calls
    assert summary.total == 12 and summary.count("skipped") >= 6
    assert set(got[1:]) == {("failed", None), ("skipped", "stopped")}
    first = got.index(("skipped", "stopped"))
    assert all(g == ("skipped", "stopped") for g in got[first:])
    stopped = summary.results[first]
    assert stopped.reason == f"not finished: the run stopped because {summary.stopped}"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["00.png"]


def test_an_output_that_fails_alone_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_folder(tmp_path / "in", 4)
    real_write = pipeline.write_atomic

    def refuses_one(path: Path, data: bytes, **kwargs: object) -> bool:
        if path.name == "01.png":
            raise ImageWriteError(f"cannot write {path}: Permission denied") from OSError(
                errno.EACCES, "Permission denied"
            )
        return real_write(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "write_atomic", refuses_one)
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    summary = run(jobs, Repeat([]), Options(), Recorder())
    assert summary.stopped is None
    assert [r.status for r in summary.results] == ["ok", "failed", "ok", "ok"]


def test_two_identical_runs_at_once_share_the_work(tmp_path: Path) -> None:
    """The second run skips at once what the first is working on (``concurrent``) and
    what it has written (``exists``): each image is upscaled once between them."""
    make_folder(tmp_path / "in", 10)
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    calls: list[int] = []

    class Slow(Repeat):
        def upscale(self, pixels, on_tile=None):  # type: ignore[no-untyped-def]
            calls.append(int(pixels[0, 0, 0]))
            time.sleep(0.1)
            return pixels.repeat(2, axis=0).repeat(2, axis=1)

    summaries: list[Summary] = []

    def one_run() -> None:
        summaries.append(run(jobs, Slow([]), Options(), Recorder()))

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert sorted(calls) == [i * 10 for i in range(10)]  # each image once
    first, second = summaries
    assert first.count("ok") + second.count("ok") == 10
    assert first.count("ok") > 0 and second.count("ok") > 0  # both did a share
    codes = {r.reason_code for s in summaries for r in s.results if r.status == "skipped"}
    assert codes <= {"concurrent", "exists"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{i:02d}.png" for i in range(10)
    ]  # no claim left behind


def test_a_run_stopped_early_lets_go_of_every_claim(tmp_path: Path) -> None:
    make_folder(tmp_path / "in", 6)

    class StopsAtTheSecond(Repeat):
        def upscale(self, pixels, on_tile=None):  # type: ignore[no-untyped-def]
            if pixels[0, 0, 0] == 10:
                raise KeyboardInterrupt
            return super().upscale(pixels, on_tile)

    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, "2"))
    assert run(jobs, StopsAtTheSecond([]), Options(), Recorder()).interrupted
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["00.png"]
    # An image that fails after its claim was made lets go of it too.
    (tmp_path / "in" / "03.png").write_bytes(b"broken")
    summary = run(jobs, Repeat([]), Options(), Recorder())
    assert summary.count("failed") == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{i:02d}.png" for i in range(6) if i != 3
    ]


def test_an_opaque_alpha_input_written_as_jpeg_is_skipped_again_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JPEG an earlier run wrote for an input whose alpha channel is opaque everywhere
    is found by its record, as any existing output is: the same run again decodes nothing
    (a folder of screenshots is not read in full to skip it).  Another run's settings, or
    no record, still leave it to decoding."""
    (tmp_path / "in").mkdir()
    pixels = np.full((6, 8, 4), 255, np.uint8)
    pixels[..., :3] = 90
    Image.fromarray(pixels).save(tmp_path / "in" / "shot.png")
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, fmt="jpeg"))
    assert jobs[0].alt_output == tmp_path / "out" / "shot.jpg"
    settings = RunSettings(version="9.9", tile="0/0")
    variant = Variant(Nearest(2), "n-x2", sha256="ab" * 32)
    options = Options(fmt="jpeg", record=settings)
    first = run(jobs, [variant], options, Recorder())
    assert first.results[0].output == tmp_path / "out" / "shot.jpg"

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(pipeline, "read_image", no_decoding)
    again = run(jobs, [variant], options, Recorder()).results[0]
    assert (again.status, again.reason_code) == ("skipped", "exists")
    assert again.output == tmp_path / "out" / "shot.jpg"
    monkeypatch.undo()
    other = Variant(Nearest(2), "n-x2", sha256="cd" * 32)
    assert run(jobs, [other], options, Recorder()).results[0].reason_code == "different-settings"


def test_a_transparent_input_asked_as_jpeg_has_its_alpha_looked_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether some pixel is transparent is one pass over the alpha channel (a few ms at
    12 MP): the choice between the two names planned and the plan's line about
    transparency share it."""
    (tmp_path / "in").mkdir()
    pixels = np.full((6, 8, 4), 90, np.uint8)
    pixels[0, 0, 3] = 0
    Image.fromarray(pixels).save(tmp_path / "in" / "logo.png")
    jobs = collect_jobs([tmp_path / "in"], Naming(tmp_path / "out", None, fmt="jpeg"))
    assert jobs[0].alt_output == tmp_path / "out" / "logo.jpg"
    looked: list[bool] = []
    real = DecodedImage.is_transparent

    def counted(image: DecodedImage) -> bool:
        looked.append(real.fget(image))  # type: ignore[attr-defined]
        return looked[-1]

    monkeypatch.setattr(DecodedImage, "is_transparent", property(counted))
    result = run(jobs, [Variant(Nearest(2), "n-x2")], Options(fmt="jpeg"), Recorder()).results[0]
    assert result.status == "ok" and result.output == tmp_path / "out" / "logo.png"
    assert "JPEG cannot store transparency; writing PNG instead" in result.warnings
    assert looked == [True]
