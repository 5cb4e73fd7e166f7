"""Tile seams: the default overlap is the model's own, and a smaller one is warned of.

A tile's output is exact only where the tile holds the model's whole receptive field;
the feather reaches half the overlap past a core, so a model needs an overlap of about
twice the radius its output really depends on (its manifest's ``overlap`` hint, measured
against the untiled run: 16 for the default model, 40 for realesrgan-x4plus).  A run that
names no overlap uses the model's own, at least 16; a fixed tile holds at most a quarter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import pocketsr_cli
from pocketsr_cli.cli import app
from pocketsr_cli.descriptor import ModelDescriptor
from pocketsr_cli.devices import Compute
from pocketsr_cli.imageio import read_provenance_text
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.manifest import Hints
from pocketsr_cli.provenance import loads
from tests._imagegen import make_photo_like, save_pillow
from tests._zoo import compact_state, params_of, save_safetensors, use_home, write_manifest


class Blur(nn.Module):
    """A x2 model whose output depends on input pixels up to 4 away (two 5x5 box blurs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 5, padding=2, groups=3, bias=False, padding_mode="replicate")
        nn.init.constant_(self.conv.weight, 1 / 25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(self.conv(x)), scale_factor=2, mode="nearest")


def blur_upscaler(
    overlap: int | None, tile: int | None, need: int | None = 8, derived: bool = False
) -> Upscaler:
    desc = ModelDescriptor(
        name="blur",
        family="test",
        module=Blur(),
        scale=2,
        seamless_overlap=need,
        overlap_derived=derived,
    )
    warnings: list[str] = []
    compute = Compute(torch.device("cpu"), "fp32")
    up = Upscaler(desc, compute, tile=tile, overlap=overlap, on_warning=warnings.append)
    up.warnings = warnings  # type: ignore[attr-defined]
    return up


def test_an_image_cut_with_less_overlap_than_the_model_needs_is_warned_of_once() -> None:
    image = make_photo_like(40, 44)
    up = blur_upscaler(overlap=2, tile=16)
    out = up.upscale(image)
    assert up.warnings == [  # type: ignore[attr-defined]
        "tile_overlap=2 is less than the 8 pixels blur needs: its tiles differ from the "
        "whole image's result along their seams; use tile_overlap=8 or more and tile=32 "
        "or more for seamless tiles, or tile=0 to run images whole"
    ]
    whole = blur_upscaler(overlap=2, tile=0).upscale(image)
    assert np.abs(out.astype(int) - whole).max() > 2  # the seams it warns of are there
    up.upscale(image)
    assert len(up.warnings) == 1  # type: ignore[attr-defined]  # once per upscaler


def test_a_derived_overlap_is_warned_of_as_an_estimate() -> None:
    """An overlap derived for a shape nobody measured (realesr-general-x4v3's 31) may be
    wider than the model needs: the warning said the model "needs" it and that its tiles
    "differ", claims only a measurement makes.  It now calls the figure an estimate."""
    image = make_photo_like(40, 44)
    up = blur_upscaler(overlap=2, tile=16, derived=True)
    up.upscale(image)
    assert up.warnings == [  # type: ignore[attr-defined]
        "tile_overlap=2 is less than the 8 pixels blur is estimated to need: its tiles may "
        "differ from the whole image's result along their seams; use tile_overlap=8 or "
        "more and tile=32 or more for seamless tiles, or tile=0 to run images whole"
    ]
    small = blur_upscaler(overlap=None, tile=64, need=32, derived=True)
    small.upscale(make_photo_like(150, 140))
    assert small.warnings == [  # type: ignore[attr-defined]
        "tile=64 leaves room for an overlap of 16 pixels (a quarter of a tile), less than "
        "the 32 pixels blur is estimated to need: its tiles may differ from the whole "
        "image's result along their seams; use tile=128 or more for seamless tiles, or "
        "tile=0 to run images whole"
    ]


def test_the_command_line_calls_a_derived_overlap_an_estimate(tmp_path: Path) -> None:
    """A weights file of a depth nobody measured (a compact body of 32 convolutions: 31,
    derived from the 16 measured for 16) cut into tiles with less: the estimate is
    worded as one, end to end."""
    src = save_pillow(tmp_path / "a.png", make_photo_like(150, 140), "PNG")
    weights = tmp_path / "deep.safetensors"
    save_safetensors(weights, compact_state(2, num_conv=32))
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "-m", str(weights)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--tile", "64"])
    assert result.exit_code == 0, result.stderr
    assert (
        "less than the 31 pixels deep.safetensors is estimated to need: its tiles may differ"
        in " ".join(result.stderr.split())
    )


@pytest.mark.parametrize(
    ("overlap", "tile", "need", "shape"),
    [
        (8, 32, 8, (40, 44)),  # the model's overlap: seamless
        (2, 0, 8, (40, 44)),  # whole images have no seams
        (2, 64, 8, (40, 44)),  # nor does an image smaller than a tile
        (2, None, 8, (40, 44)),  # nor one that auto runs whole (small, on the CPU)
        (2, 16, None, (40, 44)),  # a model that states no overlap: nothing to say
    ],
)
def test_no_seam_warning_where_there_are_no_seams(
    overlap: int, tile: int | None, need: int | None, shape: tuple[int, int]
) -> None:
    image = make_photo_like(*shape)
    up = blur_upscaler(overlap, tile, need)
    out = up.upscale(image)
    assert up.warnings == []  # type: ignore[attr-defined]
    if need is not None:
        whole = blur_upscaler(overlap, 0, need).upscale(image)
        assert np.abs(out.astype(int) - whole).max() <= 1


def test_the_default_models_default_overlap_is_seamless() -> None:
    """The default settings, tiles forced small (auto runs so small an image whole): the
    output is the untiled one to within the model's rounding, and nothing is warned."""
    # A photo's gradients under a strong fine texture (the texture shows seams best).
    noise = np.random.default_rng(5).integers(0, 256, (72, 72, 3))
    image = (make_photo_like(72, 72, seed=3) * 0.6 + noise * 0.4).astype(np.uint8)
    warnings: list[str] = []
    tiled = pocketsr_cli.Upscaler(device="cpu", tile=64, on_warning=warnings.append)
    whole = pocketsr_cli.Upscaler(device="cpu", tile=0)
    diff = np.abs(tiled.upscale(image).astype(int) - whole.upscale(image))
    assert diff.max() <= 2, diff.max()
    assert np.percentile(diff, 99.9) <= 1
    assert warnings == []


def test_the_command_line_warns_of_a_small_overlap_and_still_writes(tmp_path: Path) -> None:
    src = save_pillow(tmp_path / "a.png", make_photo_like(40, 36), "PNG")
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "--device", "cpu", "--tile", "16"]
    result = CliRunner().invoke(app, [*args, "--tile-overlap", "0"])
    assert result.exit_code == 0, result.stderr
    assert "--tile-overlap 0 is less than the 16 pixels pocketsr-compact-x4 needs" in result.stderr
    assert "use --tile-overlap 16 or more and --tile 64 or more" in result.stderr
    assert (tmp_path / "out" / "a.png").is_file()
    result = CliRunner().invoke(app, [*args, "--tile-overlap", "4", "--overwrite"])
    assert result.exit_code == 0 and "--tile-overlap 4 is less than" in result.stderr


# -- the default overlap: the model's own ------------------------------------------------


def test_a_model_that_needs_more_overlap_gets_it_by_default_and_is_not_warned() -> None:
    """A model whose manifest says 32 (one that draws seams with 16)
    runs with 32 when the run names no overlap; a run that names 16 gets 16, and is told."""
    image = make_photo_like(150, 140)
    up = blur_upscaler(overlap=None, tile=128, need=32)
    tiles: list[int] = []
    out = up.upscale(image, lambda _done, total: tiles.append(total))
    assert up.overlap == 32 and max(tiles) > 1  # cut into tiles, with the model's overlap
    assert up.warnings == []  # type: ignore[attr-defined]
    whole = blur_upscaler(overlap=None, tile=0, need=32).upscale(image)
    assert np.abs(out.astype(int) - whole).max() <= 1
    given = blur_upscaler(overlap=16, tile=128, need=32)
    given.upscale(image)
    assert given.overlap == 16
    assert given.warnings == [  # type: ignore[attr-defined]
        "tile_overlap=16 is less than the 32 pixels blur needs: its tiles differ from the "
        "whole image's result along their seams; use tile_overlap=32 or more for seamless "
        "tiles, or tile=0 to run images whole"
    ]


@pytest.mark.parametrize(("need", "tile", "overlap"), [(8, None, 16), (None, 0, 16), (32, 0, 32)])
def test_the_default_overlap_is_the_models_own_and_at_least_16(
    need: int | None, tile: int | None, overlap: int
) -> None:
    assert blur_upscaler(overlap=None, tile=tile, need=need).overlap == overlap


def test_a_fixed_tile_too_small_for_the_models_overlap_gets_a_quarter_and_a_warning() -> None:
    """``--tile 64`` worked before with any model (overlap 16): it still does, with the
    most a 64-pixel tile holds, and the warning says what tile the model's overlap needs."""
    image = make_photo_like(150, 140)
    up = blur_upscaler(overlap=None, tile=64, need=32)
    up.upscale(image)
    assert up.overlap == 16
    assert up.warnings == [  # type: ignore[attr-defined]
        "tile=64 leaves room for an overlap of 16 pixels (a quarter of a tile), less than "
        "the 32 pixels blur needs: its tiles differ from the whole image's result along "
        "their seams; use tile=128 or more for seamless tiles, or tile=0 to run images whole"
    ]
    assert blur_upscaler(overlap=None, tile=100, need=32).overlap == 25


def test_auto_tiles_hold_four_times_the_overlap() -> None:
    """``--tile auto`` sized from memory never picks a tile the overlaps would take more
    than half of (a fixed ``--tile N`` below 4 × the overlap is refused): with the model's
    32 it picked 64-pixel tiles, all overlap and no core, where memory was short."""
    image = make_photo_like(300, 280)
    up = blur_upscaler(overlap=None, tile=None, need=32)
    up.policy.cpu_budget_bytes = up.policy.cpu_tile_bytes = 1  # memory short: smallest tiles
    up.upscale(image)
    assert up.policy.tile_side == 128
    assert up.warnings == []  # type: ignore[attr-defined]


@pytest.fixture
def wide_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user model ``wide`` (a tiny x2 compact network) whose manifest states an overlap
    of 32."""
    home = use_home(tmp_path, monkeypatch)
    state = compact_state(scale=2)
    data = save_safetensors(home / "models" / "wide.safetensors", state)
    hints = Hints(overlap=32)
    write_manifest(home / "models", "wide", data, params=params_of(state), hints=hints)
    return "wide"


def _record_tile(path: Path) -> str:
    record = loads(read_provenance_text(path) or "")
    assert record is not None
    return str(record["tile"])


def test_the_command_line_runs_each_model_with_its_own_overlap(
    tmp_path: Path, wide_model: str
) -> None:
    src = save_pillow(tmp_path / "a.png", make_photo_like(150, 140), "PNG")
    out = tmp_path / "out" / "a.png"
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "-m", wide_model, "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--tile", "128"])
    assert result.exit_code == 0, result.stderr
    assert "less than the 32 pixels" not in result.stderr
    assert _record_tile(out) == "128/32"
    again = [*args, "--tile", "128", "--overwrite", "--tile-overlap"]
    result = CliRunner().invoke(app, [*again, "auto"])
    assert result.exit_code == 0 and "less than the 32 pixels" not in result.stderr
    result = CliRunner().invoke(app, [*again, "16"])
    assert result.exit_code == 0, result.stderr
    assert "--tile-overlap 16 is less than the 32 pixels wide needs" in result.stderr
    assert _record_tile(out) == "128/16"
    result = CliRunner().invoke(app, [*args, "--tile", "64", "--overwrite"])
    assert result.exit_code == 0, result.stderr
    assert "--tile 64 leaves room for an overlap of 16 pixels" in " ".join(result.stderr.split())
    assert "use --tile 128 or more" in " ".join(result.stderr.split())


@pytest.mark.parametrize("value", ["-1", "257", "x", "8.5"])
def test_a_bad_tile_overlap_is_a_usage_error(tmp_path: Path, value: str) -> None:
    src = save_pillow(tmp_path / "a.png", make_photo_like(20, 20), "PNG")
    result = CliRunner().invoke(app, ["upscale", str(src), "--tile-overlap", value])
    assert result.exit_code == 2
    assert "--tile-overlap must be auto or a number of pixels from 0 to 256" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "a_x4.png").exists()


def test_the_api_runs_each_model_with_its_own_overlap(wide_model: str) -> None:
    image = make_photo_like(150, 140)
    told: list[str] = []
    up = pocketsr_cli.Upscaler(wide_model, device="cpu", tile=128, on_warning=told.append)
    up.upscale(image)
    assert up.tile_overlap == 32 and told == []
    up = pocketsr_cli.Upscaler(
        wide_model, device="cpu", tile=128, tile_overlap="auto", on_warning=told.append
    )
    assert up.tile_overlap == 32
    up = pocketsr_cli.Upscaler(
        wide_model, device="cpu", tile=128, tile_overlap=16, on_warning=told.append
    )
    up.upscale(image)
    assert up.tile_overlap == 16
    assert told == [
        "tile_overlap=16 is less than the 32 pixels wide needs: its tiles differ from the "
        "whole image's result along their seams; use tile_overlap=32 or more for seamless "
        "tiles, or tile=0 to run images whole"
    ]
    assert pocketsr_cli.Upscaler(device="cpu").tile_overlap == 16  # the default model's


def test_a_default_run_of_the_default_model_records_what_earlier_versions_did(
    tmp_path: Path,
) -> None:
    """``"tile": "auto/16"``, as when the default overlap was a fixed 16, so that outputs
    written before read as this run's and are skipped, not reported as other settings."""
    src = save_pillow(tmp_path / "a.png", make_photo_like(24, 20), "PNG")
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert _record_tile(tmp_path / "out" / "a.png") == "auto/16"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert '"status": "skipped"' in result.stdout and "other settings" not in result.stderr


def test_the_command_line_records_tile_as_read_and_refuses_other_digits(tmp_path: Path) -> None:
    """``--tile AUTO`` recorded ``AUTO/16``, as typed; ``--tile ²`` passed ``str.isdigit``
    and ended in an internal error (``int('²')``); ``--tile ٦٤`` ran with tiles of 64."""
    src = save_pillow(tmp_path / "a.png", make_photo_like(24, 20), "PNG")
    base = ["upscale", str(src), "-o", str(tmp_path / "out"), "-m", "bicubic", "-s", "2"]
    result = CliRunner().invoke(app, [*base, "--tile", "AUTO"])
    assert result.exit_code == 0, result.stderr
    assert _record_tile(tmp_path / "out" / "a.png") == "auto/16"
    for tile in ("\u00b2", "\u0666\u0664"):
        result = CliRunner().invoke(app, [*base, "--overwrite", "--tile", tile])
        assert result.exit_code == 2, result.stderr
        assert "--tile must be auto, 0 or a number of pixels" in result.stderr
    result = CliRunner().invoke(app, [*base, "--overwrite", "--tile-overlap", "\u00b2"])
    assert result.exit_code == 2, result.stderr
    assert "--tile-overlap must be auto or a number of pixels" in result.stderr


def test_nano_x2s_tiles_attend_with_the_whole_image() -> None:
    """pocketsr-nano-x2's lowest level attends over its whole input: each tile, given the
    whole image's attention statistics (``archs/pocketsr/stats.py``), gives the untiled
    result at the default overlap; alone, tiles were 5-13 levels off whatever the
    overlap.  (That the untiled result is unchanged: ``test_arch_pocketsr.py``.)"""
    noise = np.random.default_rng(7).integers(0, 256, (96, 120, 3))
    image = (make_photo_like(96, 120, seed=4) * 0.6 + noise * 0.4).astype(np.uint8)
    warnings: list[str] = []
    tiled = pocketsr_cli.Upscaler(
        model="pocketsr-nano-x2", device="cpu", tile=64, on_warning=warnings.append
    )
    whole = pocketsr_cli.Upscaler(model="pocketsr-nano-x2", device="cpu", tile=0)
    untiled = whole.upscale(image)
    diff = np.abs(tiled.upscale(image).astype(int) - untiled)
    assert diff.max() <= 2, diff.max()
    assert np.percentile(diff, 99.9) <= 1
    assert warnings == []
