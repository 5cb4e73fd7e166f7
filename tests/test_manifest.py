"""Manifest schema: every bundled manifest is validated and its numbers recomputed.

Like torchvision's extended model tests, the parameter count in each manifest is checked
by building the network (on the meta device: no memory, no weights) and the size and
digest of every bundled weights file are recomputed from the file.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pocketsr_cli.errors import ModelError
from pocketsr_cli.manifest import (
    Hints,
    Meta,
    ModelSpec,
    WeightsSpec,
    bundled_dir,
    dump_manifest,
    load_manifests,
    parse_manifest,
)
from pocketsr_cli.registry import FAMILIES, get_family
from pocketsr_cli.weights.cache import sha256_file
from pocketsr_cli.weights.community import import_spandrel
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

REPO = Path(__file__).resolve().parents[1]
BUNDLED = sorted(bundled_dir().glob("*.toml"))


def _spandrel_builders() -> dict[str, Callable[[Mapping[str, Any], int, int], nn.Module]]:
    """How to build spandrel's classes from a manifest's [build], scale and channels."""
    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    return {
        "spandrel:ESRGAN": lambda b, s, c: ESRGAN(in_nc=c, out_nc=c, scale=s, **b),
        "spandrel:Compact": lambda b, s, c: Compact(num_in_ch=c, num_out_ch=c, upscale=s, **b),
    }


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_bundled_folder_has_manifests() -> None:
    names = {p.stem for p in BUNDLED}
    assert {"bicubic", "lanczos", "realesrgan-x4plus"} <= names


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_manifest(path: Path) -> None:
    spec = parse_manifest(path)  # strict: unknown keys and wrong types raise
    assert spec.name == path.stem
    assert spec.description and spec.meta.license and spec.meta.source
    assert spec.meta.params is not None, "meta.params is required for bundled models"
    assert spec.family in FAMILIES or spec.family in _spandrel_builders(), spec.family
    if spec.family == "adcsr":  # built from diffusers' blocks: the diffusion extra
        pytest.importorskip("diffusers")

    with torch.device("meta"):
        if spec.is_spandrel:
            module = _spandrel_builders()[spec.family](spec.build, spec.scale, spec.channels)
        else:
            module = get_family(spec.family).build(spec.build, spec.scale)
    assert _count(module) == spec.meta.params

    if spec.weights is None:
        assert spec.family == "resize", "only parameter-free models may lack weights"
        return
    for w in spec.weight_files:
        local = path.parent / w.file
        assert local.is_file() or w.urls, "weights must be bundled or downloadable"
        for url in w.urls:
            assert url.startswith(("https://", "hf://")), url
        # A file whose publisher gives no checksum (trust on first use) may lack a size too.
        assert w.size is not None or w.sha256 is None
        if local.is_file():  # bundled: recompute everything from the file itself
            assert w.sha256 is not None, "bundled weights have a digest"
            assert local.stat().st_size == w.size
            assert sha256_file(local) == w.sha256
            desc = descriptor_from_state_dict(read_state_dict(local), spec.name)
            assert (desc.params, desc.scale) == (spec.meta.params, spec.scale)


def test_a_bundled_manifests_overlap_is_what_its_architecture_states() -> None:
    """A bundled manifest's ``[hints] overlap`` and the one its network states for its
    ``[build]`` (what a weights file of it gets with ``-m FILE``) are one measurement, or
    one derivation from measurements (realesr-general-x4v3's): they must not drift apart.
    The networks are built on the meta device."""
    from pocketsr_cli.descriptor import describe_module
    from pocketsr_cli.weights.community import overlap_derived, seamless_overlap

    stated = {}
    for path in BUNDLED:
        spec = parse_manifest(path, "bundled")
        family = None if spec.is_spandrel else get_family(spec.family)
        if family is not None and family.check is not None:
            try:
                family.check()
            except ModelError:  # adcsr needs the diffusion extra to build
                continue
        with torch.device("meta"):
            if family is None:
                module = _spandrel_builders()[spec.family](spec.build, spec.scale, spec.channels)
                architecture = spec.family.removeprefix("spandrel:")
                derived = seamless_overlap(architecture, module.hyperparameters)
                estimate = overlap_derived(architecture, module.hyperparameters)
            else:
                module = family.build(spec.build, spec.scale)
                desc = describe_module(module, spec.name, spec.family, spec.scale)
                derived, estimate = desc.seamless_overlap, desc.overlap_derived
        if derived is not None:
            assert spec.hints.overlap == derived, spec.name
            # A derived one is marked so, for the seam warning to call it an estimate.
            assert spec.hints.overlap_derived == estimate, spec.name
            stated[spec.name] = derived
    assert stated == {
        "bicubic": 2,
        "lanczos": 4,
        "pcsr-x4": 8,
        "pocketsr-compact-x2": 16,
        "pocketsr-compact-x4": 16,
        "pocketsr-nano-x2": 12,
        "realesr-general-x4v3": 31,  # derived: SRVGG-16's 16 x 34 / 18, rounded up
        "realesrgan-x4plus": 40,
    }


@pytest.mark.slow
def test_wheel_carries_bundled_models(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    result = subprocess.run(
        [*pip, "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip()[-300:]}")
    (wheel,) = tmp_path.glob("pocketsr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "models").iterdir():
        if path.suffix in (".toml", ".safetensors", ".md"):
            assert f"pocketsr_cli/_bundled/{path.name}" in names
    for init in (REPO / "pocketsr_cli").rglob("__init__.py"):  # setup.py finds every package
        assert init.relative_to(REPO).as_posix() in names


# --- parsing and writing ----------------------------------------------------------------------

GOOD = """
name = "m"
family = "spandrel:Compact"
scale = 2
description = "d"
[weights]
file = "m.safetensors"
sha256 = "%s"
size = 10
urls = ["https://example.com/m.safetensors"]
[hints]
multiple_of = 4
[meta]
params = 12
""" % ("ab" * 32)


def test_good_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD)
    spec = parse_manifest(path, "user")
    assert spec.origin == "user" and spec.channels == 3 and spec.hints.multiple_of == 4
    assert spec.weights == WeightsSpec(
        "m.safetensors", "ab" * 32, 10, ("https://example.com/m.safetensors",)
    )
    assert spec.meta == Meta(params=12)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('name = "m"', ""), "missing name"),
        (lambda t: t.replace('name = "m"', 'name = "a/b"'), "not a plain model name"),
        (lambda t: t.replace('name = "m"', 'name = "m.pth"'), "not a plain model name"),
        (lambda t: t.replace("scale = 2", 'scale = "2"'), "scale must be int"),
        (lambda t: t.replace("scale = 2", "scale = 0"), "scale must be at least 1"),
        (lambda t: t.replace("scale = 2", "scale = true"), "scale must be int"),
        (lambda t: t.replace("multiple_of", "multiple-of"), "unknown key hints.multiple-of"),
        (lambda t: t + "colour = 1\n", "unknown key meta.colour"),
        (lambda t: t.replace("size = 10", "size = -1"), "weights.size must be at least 1"),
        (lambda t: t.replace("ab" * 32, "xyz"), "weights.sha256 must be 64 hex"),
        (lambda t: t.replace('file = "m.safetensors"', 'file = "../x"'), "plain file name"),
        (lambda t: t.replace('["https://', '[1, "https://'), "list of URLs"),
        (lambda t: t.replace("params = 12", "params = -3"), "must not be negative"),
        (lambda t: "hints = 3\n" + t.replace("[hints]\nmultiple_of = 4", ""), "hints must be dict"),
        (lambda t: t + "[[", "bad model manifest"),
        # TOML's inf and nan: a model no run could use, and Infinity/NaN in info --json.
        (lambda t: t + "[build]\nupscale = inf\n", r"build\.upscale must be a finite"),
        (lambda t: t + "[build]\nw = [1.0, -nan]\n", r"build\.w\[1\] must be a finite"),
        # Listed as a user model and verified "no weights", yet refused on every use.
        (lambda t: t.split("[weights]")[0] + "[hints]" + t.split("[hints]")[1], "needs exactly"),
    ],
)
def test_bad_manifest(tmp_path: Path, edit: Callable[[str], str], message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(ModelError, match=message) as info:
        parse_manifest(path)
    assert str(path) in str(info.value)


def test_dump_then_parse_gives_the_same_spec(tmp_path: Path) -> None:
    spec = ModelSpec(
        name="rt-1",
        family="shuffle",
        scale=3,
        path=tmp_path / "rt-1.toml",
        origin="user",
        channels=3,
        build={"channels": 8, "ratio": 0.5, "act": "prelu", "flag": True, "sizes": [1, 2]},
        any_scale=True,
        description='quotes " and \\ backslash, tab\t, newline\n, DEL \x7f, é, 🙂',
        weights=WeightsSpec("w.safetensors", "0f" * 32, 123, ("https://a/b", "hf://o/r/w")),
        hints=Hints(
            tiling=False,
            multiple_of=8,
            minimum=16,
            fp16=False,
            cpu_bf16=True,
            default_tile=192,
            mean_anchor=2.5,
            margin=2,
            chroma_guard="clamp",
            overlap=24,
            overlap_derived=True,
        ),
        meta=Meta(license="MIT", source="s", paper="p", params=42),
    )
    spec.path.write_text(dump_manifest(spec, comment="two\nlines"), encoding="utf-8")
    assert parse_manifest(spec.path, "user") == spec
    assert spec.path.read_text().startswith("# two\n# lines\n")


def test_several_weights_files_and_unpublished_digests(tmp_path: Path) -> None:
    spec = ModelSpec(
        name="two-x4",
        family="adcsr",
        scale=4,
        path=tmp_path / "two-x4.toml",
        weights=WeightsSpec("a.pkl", None, None, ("https://a/a.pkl",)),
        extra_weights=(WeightsSpec("b.ckpt", "0f" * 32, 7, ("hf://o/r/b.ckpt",)),),
    )
    text = dump_manifest(spec)
    assert text.count("[[weights]]") == 2 and text.count("sha256") == 1
    spec.path.write_text(text, encoding="utf-8")
    parsed = parse_manifest(spec.path)
    assert parsed == spec
    assert [w.file for w in parsed.weight_files] == ["a.pkl", "b.ckpt"]
    spec.path.write_text(text.replace('"b.ckpt"', '"a.pkl"'), encoding="utf-8")
    with pytest.raises(ModelError, match="lists a file twice"):
        parse_manifest(spec.path)
    spec.path.write_text(text.replace("sha256 = ", "sha256s = "), encoding="utf-8")
    with pytest.raises(ModelError, match=r"unknown key weights\[1\]\.sha256s"):
        parse_manifest(spec.path)


def test_load_manifests_first_folder_wins_and_bad_files_are_reported(tmp_path: Path) -> None:
    user, bundled = tmp_path / "user", tmp_path / "bundled"
    for folder, scale in ((user, 2), (bundled, 4)):
        folder.mkdir()
        (folder / "m.toml").write_text(f'name = "m"\nfamily = "resize"\nscale = {scale}\n')
    (user / "bad.toml").write_text("name = 3\n")
    problems: list[str] = []
    specs = load_manifests(
        [("user", user), ("bundled", bundled), ("user", tmp_path / "no")], problems=problems
    )
    assert (specs["m"].scale, specs["m"].origin) == (2, "user")
    assert len(problems) == 1 and "bad.toml" in problems[0]
    with pytest.raises(ModelError, match=r"bad\.toml"):
        load_manifests([("user", user)])
    # Two of one name in one folder: the first (by file name) wins, and that is said.
    (user / "n1.toml").write_text('name = "n"\nfamily = "resize"\nscale = 2\n')
    (user / "n2.toml").write_text('name = "n"\nfamily = "resize"\nscale = 3\n')
    problems = []
    specs = load_manifests([("user", user), ("bundled", bundled)], problems=problems)
    assert specs["n"].scale == 2
    assert f"{user / 'n2.toml'} is ignored: {user / 'n1.toml'} defines n already" in problems


@pytest.mark.parametrize(("value", "parsed"), [("4", 4.0), ("2.5", 2.5)])
def test_a_mean_anchor_is_a_number_of_input_pixels(
    tmp_path: Path, value: str, parsed: float
) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4\nmean_anchor = {value}"))
    assert parse_manifest(path, "user").hints.mean_anchor == parsed


def test_a_chroma_guard_is_one_the_code_knows(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD.replace("multiple_of = 4", 'multiple_of = 4\nchroma_guard = "clamp"'))
    assert parse_manifest(path, "user").hints.chroma_guard == "clamp"
    for value in ('"clip"', "true", '""'):
        path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4\nchroma_guard = {value}"))
        with pytest.raises(ModelError, match=r"hints\.chroma_guard must be"):
            parse_manifest(path, "user")


@pytest.mark.parametrize("value", ["0", "-1.5", '"4"', "true", "inf", "nan"])
def test_a_mean_anchor_must_be_a_number_above_zero(tmp_path: Path, value: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4\nmean_anchor = {value}"))
    with pytest.raises(ModelError, match=r"hints\.mean_anchor must be"):
        parse_manifest(path, "user")


@pytest.mark.parametrize(("value", "parsed"), [(None, 0), ("0", 0), ("2", 2)])
def test_a_margin_is_a_whole_number_of_input_pixels(
    tmp_path: Path, value: str | None, parsed: int
) -> None:
    path = tmp_path / "m.toml"
    line = "" if value is None else f"\nmargin = {value}"
    path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4{line}"))
    assert parse_manifest(path, "user").hints.margin == parsed


@pytest.mark.parametrize("value", ["-1", "1.5", '"2"', "true"])
def test_a_margin_must_be_a_whole_number_not_below_zero(tmp_path: Path, value: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4\nmargin = {value}"))
    with pytest.raises(ModelError, match=r"hints\.margin must be"):
        parse_manifest(path, "user")


@pytest.mark.parametrize(("value", "parsed"), [(None, None), ("16", 16)])
def test_a_seamless_overlap_is_a_number_of_input_pixels(
    tmp_path: Path, value: str | None, parsed: int | None
) -> None:
    path = tmp_path / "m.toml"
    line = "" if value is None else f"\noverlap = {value}"
    path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4{line}"))
    assert parse_manifest(path, "user").hints.overlap == parsed


def test_a_derived_overlap_is_marked_so_and_only_with_an_overlap(tmp_path: Path) -> None:
    """``overlap_derived = true`` says the overlap beside it is an estimate, not measured;
    without an overlap it marks nothing, and is refused rather than ignored."""
    path = tmp_path / "m.toml"
    path.write_text(GOOD.replace("multiple_of = 4", "multiple_of = 4\noverlap = 31"))
    assert parse_manifest(path, "user").hints.overlap_derived is False
    both = "multiple_of = 4\noverlap = 31\noverlap_derived = true"
    path.write_text(GOOD.replace("multiple_of = 4", both))
    assert parse_manifest(path, "user").hints.overlap_derived is True
    path.write_text(GOOD.replace("multiple_of = 4", "multiple_of = 4\noverlap_derived = true"))
    with pytest.raises(ModelError, match=r"hints\.overlap_derived .* give both"):
        parse_manifest(path, "user")


@pytest.mark.parametrize("value", ["0", "-4", "1.5", '"16"'])
def test_a_seamless_overlap_must_be_a_whole_number_above_zero(tmp_path: Path, value: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(GOOD.replace("multiple_of = 4", f"multiple_of = 4\noverlap = {value}"))
    with pytest.raises(ModelError, match=r"hints\.overlap must be"):
        parse_manifest(path, "user")


def test_the_default_overlap_is_each_bundled_models_own() -> None:
    """Each bundled model states the overlap its tiles need (``[hints] overlap``, measured
    against the untiled run), and the default overlap (auto: None in the API and the
    factory) is the model's own, never below the fixed 16 of earlier versions: the default
    settings draw no seams and warn of none, and realesrgan-x4plus, which needs 40 (11
    levels off at seams with 16, 6 with 32), gets it."""
    import inspect

    import pocketsr_cli
    from pocketsr_cli.descriptor import ModelDescriptor
    from pocketsr_cli.factory import UpscalerSpec
    from pocketsr_cli.inference import own_overlap

    assert UpscalerSpec.__dataclass_fields__["overlap"].default is None
    assert inspect.signature(pocketsr_cli.Upscaler).parameters["tile_overlap"].default is None
    owns = {}
    for path in BUNDLED:
        spec = parse_manifest(path, "bundled")
        shipped = all((path.parent / w.file).is_file() for w in spec.weight_files)
        if shipped:  # (the others are downloaded)
            assert spec.hints.overlap is not None, spec.name
        desc = ModelDescriptor(
            spec.name, "test", nn.Identity(), scale=4, seamless_overlap=spec.hints.overlap
        )
        owns[spec.name] = own_overlap(desc)
        assert owns[spec.name] >= (spec.hints.overlap or 0), spec.name
    assert owns["pocketsr-compact-x4"] == owns["pocketsr-compact-x2"] == 16
    assert owns["bicubic"] == owns["pcsr-x4"] == owns["pocketsr-nano-x2"] == 16
    assert owns["realesrgan-x4plus"] == 40
