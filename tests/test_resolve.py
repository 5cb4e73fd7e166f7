"""Tests for the ordered resolver (``weights/resolve.py``), the hash memo (``verify.py``) and
weight loading (``load.py``): explicit file -> user folder -> bundled -> cache -> download.

Downloads go to a loopback server (``tests/_http.py``); the downloader's own internals
are tested in ``test_download.py``, so here each test checks what the resolver does with
them: which file is used, when the network is touched, what the user is told.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _http import Behaviour, Loopback, refuse_network, serve
from _zoo import (
    compact_state,
    params_of,
    replace_spec,
    save_safetensors,
    sha256,
    use_bundled,
    use_home,
    write_manifest,
)
from test_ncnn import esrgan_state
from torch import nn

from pocketsr_cli.descriptor import Tiling
from pocketsr_cli.errors import ModelError, UnsafePickleError
from pocketsr_cli.inference import own_overlap
from pocketsr_cli.manifest import Hints, ModelSpec, bundled_dir
from pocketsr_cli.registry import FAMILIES, Family
from pocketsr_cli.weights import trust, verify
from pocketsr_cli.weights.cache import user_models_dir, weights_path
from pocketsr_cli.weights.community import import_spandrel
from pocketsr_cli.weights.load import descriptor_from_state_dict
from pocketsr_cli.weights.resolve import (
    find_spec,
    locate_weights,
    open_family,
    resolve_model,
    where,
)

SD = compact_state(scale=2, seed=1)
OTHER_SD = compact_state(scale=2, seed=2)
X = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))


def reference(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """What spandrel's own model computes for ``X`` with these weights."""
    model = import_spandrel().ModelLoader().load_from_state_dict(dict(sd)).model.eval()
    with torch.no_grad():
        return model(X)


def run(descriptor: Any) -> torch.Tensor:
    with torch.no_grad():
        return descriptor.module(X)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_home(tmp_path, monkeypatch)


@pytest.fixture
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_bundled(tmp_path, monkeypatch)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_network(monkeypatch)


@pytest.fixture
def weights_bytes(tmp_path: Path) -> bytes:
    return save_safetensors(tmp_path / "src" / "tiny.safetensors", SD)


@pytest.fixture
def server(weights_bytes: bytes) -> Iterator[Loopback]:
    with serve({"/tiny.safetensors": weights_bytes}) as state:
        yield state


def remote_spec(home: Path, data: bytes, urls: tuple[str, ...]) -> ModelSpec:
    """A user-folder manifest whose weights are not beside it: cache, then download."""
    return write_manifest(home / "models", "tiny", data, urls=urls, params=params_of(SD))


# --- 1. explicit files, and what loading accepts --------------------------------------------


def test_explicit_file_is_detected(tmp_path: Path, home: Path, no_network: None) -> None:
    path = tmp_path / "my model.safetensors"
    save_safetensors(path, SD)
    desc = resolve_model(str(path))
    assert (desc.name, desc.family, desc.scale, desc.params) == (
        "my model.safetensors",
        "spandrel:Compact",
        2,
        params_of(SD),
    )
    torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)
    with pytest.raises(ModelError, match=r"x2 model; scale=4 is not available .*outscale=4"):
        resolve_model(str(path), 4)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"params_ema": sd},
        lambda sd: {"params": sd, "iter": 5},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["params_ema", "params", "state_dict+module", "module"],
)
def test_pth_wrappers_are_canonicalised(tmp_path: Path, home: Path, wrap: Any) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(SD), path)
    torch.testing.assert_close(run(resolve_model(str(path))), reference(SD), rtol=0, atol=0)


class _Payload:
    """Unpickling this would run ``open(marker, "w")``: code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_needing_code_is_refused_without_running_it(tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    with pytest.raises(ModelError, match=r"references io\.open.*runs no code"):
        resolve_model(str(path))
    assert not marker.exists()


def test_garbage_file(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a zip, not a pickle")
    with pytest.raises(ModelError, match=r"cannot read weights bad\.pth"):
        resolve_model(str(path))


def test_file_without_tensors(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "opt.pth"
    torch.save({"lr": 0.1, "step": 3}, path)
    with pytest.raises(ModelError, match=r"opt\.pth: no tensors found"):
        resolve_model(str(path))


def test_missing_explicit_file(tmp_path: Path, home: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("given", ["nope.param", "nope.bin", "nope.onnx", "nope.pth"])
def test_a_missing_model_file_of_another_format_is_not_found_as_a_weights_file_is(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """``-m nope.param`` (an ncnn graph not there) was called an unknown model, the
    registry's names listed; a name ending like a model file of a format pocketsr names
    (ncnn's ``.param``/``.bin``, ``.onnx``) is a file, as ``nope.pth`` is: not found."""
    monkeypatch.chdir(tmp_path)
    for load in (resolve_model, open_family):
        with pytest.raises(ModelError) as info:
            load(given)
        assert str(info.value) == f"model file not found: {given}"


def test_a_model_named_like_an_ncnn_file_is_still_found_by_its_name(home: Path) -> None:
    """A registry name may end in ``.bin`` (not in a weights suffix): the name wins."""
    data = save_safetensors(home / "w.safetensors", SD)
    write_manifest(user_models_dir(), "tiny.bin", data)
    (user_models_dir() / "tiny.bin.safetensors").write_bytes(data)
    assert resolve_model("tiny.bin").params == params_of(SD)


def test_unknown_architecture(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_safetensors(path, {"encoder.weight": torch.zeros(2, 2)})
    with pytest.raises(ModelError, match="unknown model architecture"):
        resolve_model(str(path))


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside spandrel's SwinIR
def test_descriptors_are_immutable_and_keep_spandrels_tiling_hint(home: Path) -> None:
    desc = descriptor_from_state_dict(dict(SD), "compact")
    assert desc.tiling is Tiling.SUPPORTED and desc.default_tile is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        desc.scale = 4  # type: ignore[misc]
    desc = descriptor_from_state_dict(swinir_state(), "swinir")
    assert (desc.family, desc.tiling) == ("spandrel:SwinIR", Tiling.DISCOURAGED)


def swinir_state() -> dict[str, Any]:
    """A tiny spandrel SwinIR ×2 state dict (an architecture whose seams are not measured)."""
    import_spandrel()
    from spandrel.architectures.SwinIR import SwinIR

    swinir = SwinIR(
        img_size=16,
        embed_dim=12,
        depths=[1],
        num_heads=[2],
        window_size=4,
        mlp_ratio=2,
        upscale=2,
        upsampler="pixelshuffledirect",
    )
    return swinir.state_dict()


def test_torchvision_stand_in_lasts_only_for_the_spandrel_import() -> None:
    code = """
import importlib, sys
from pocketsr_cli.weights.community import import_spandrel
from pocketsr_cli.weights.load import descriptor_from_state_dict
import_spandrel()
tv = sys.modules.get("torchvision")
assert tv is None or not getattr(tv, "__pocketsr_stand_in__", False), tv
lama = importlib.import_module("spandrel.architectures.LaMa.__arch.LaMa")
if tv is None:
    try:
        lama.rotate(None, 0)
    except RuntimeError as exc:
        assert "needs torchvision" in str(exc)
    else:
        raise AssertionError("the stand-in's rotate ran")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- 2./3. user folder and bundled ------------------------------------------------------------


def test_bundled_weights_beside_manifest(
    home: Path, bundled: Path, weights_bytes: bytes, no_network: None
) -> None:
    (bundled / "tiny.safetensors").write_bytes(weights_bytes)
    spec = write_manifest(bundled, "tiny", weights_bytes, params=params_of(SD))
    assert where(spec) == "bundled"
    desc = resolve_model("tiny")
    assert (desc.name, desc.family, desc.scale) == ("tiny", "spandrel:Compact", 2)
    torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)
    assert not (home / "cache").exists()  # used in place, never copied


def test_user_model_shadows_bundled_name(
    home: Path, bundled: Path, weights_bytes: bytes, no_network: None
) -> None:
    (bundled / "tiny.safetensors").write_bytes(weights_bytes)
    write_manifest(bundled, "tiny", weights_bytes)
    other = save_safetensors(user_models_dir() / "tiny.safetensors", OTHER_SD)
    write_manifest(user_models_dir(), "tiny", other)
    assert find_spec("tiny").origin == "user"
    torch.testing.assert_close(run(resolve_model("tiny")), reference(OTHER_SD), rtol=0, atol=0)


@pytest.mark.parametrize("origin", ["user", "bundled"])
def test_damaged_file_beside_manifest_is_refused(
    home: Path, bundled: Path, weights_bytes: bytes, origin: str
) -> None:
    folder = user_models_dir() if origin == "user" else bundled
    spec = write_manifest(folder, "tiny", weights_bytes)
    damaged = bytearray(weights_bytes)
    damaged[-1] ^= 0xFF
    (folder / "tiny.safetensors").write_bytes(bytes(damaged))
    fix = "--force" if origin == "user" else "reinstall pocketsr"
    with pytest.raises(ModelError, match=rf"does not have the SHA-256 .*{fix}"):
        resolve_model("tiny")
    assert spec.weights is not None


def test_manifest_must_describe_its_weights(home: Path, weights_bytes: bytes) -> None:
    (user_models_dir()).mkdir(parents=True)
    (user_models_dir() / "tiny.safetensors").write_bytes(weights_bytes)
    spec = write_manifest(user_models_dir(), "tiny", weights_bytes, params=params_of(SD))
    replace_spec(spec, family="spandrel:ESRGAN")
    with pytest.raises(ModelError, match="holds a spandrel:Compact model, but its manifest says"):
        resolve_model("tiny")
    replace_spec(spec, scale=4)
    with pytest.raises(ModelError, match="weights are a x2 model but the manifest says x4"):
        resolve_model("tiny")
    replace_spec(spec, meta=dataclass_replace(spec.meta, params=7))
    with pytest.raises(ModelError, match="manifest does not describe this file"):
        resolve_model("tiny")


def esrgan(num_blocks: int, scale: int = 4, shuffle: int | None = None) -> dict[str, Any]:
    """A spandrel ESRGAN (old-arch RRDBNet) state dict with 4 features: the blocks of
    Real-ESRGAN x4plus at a quarter of its parameters; ``shuffle``: pixel-unshuffled input
    (x2plus: ``shuffle=2`` on a x4 network)."""
    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    in_nc = 3 * (shuffle or 1) ** 2
    net = ESRGAN(in_nc=in_nc, num_filters=4, num_blocks=num_blocks, scale=scale)
    return net.state_dict()


@pytest.mark.parametrize(
    ("make", "overlap", "derived"),
    [
        pytest.param(lambda: esrgan(23), 40, False, id="esrgan-23-blocks-x4"),
        pytest.param(  # Real-ESRGAN's own keys, as the ncnn conversion writes them
            lambda: esrgan_state(nf=4, gc=32, nb=23, num_up=2),
            40,
            False,
            id="rrdbnet-23-blocks-x4",
        ),
        # Other depths of a measured architecture: derived (descriptor.derived_overlap),
        # in proportion to the receptive field when it reaches further, else the measured.
        pytest.param(lambda: esrgan(22), 40, True, id="esrgan-22-blocks"),
        pytest.param(lambda: esrgan(46), 80, True, id="esrgan-46-blocks"),
        pytest.param(lambda: esrgan(23, scale=2), 40, True, id="esrgan-23-blocks-x2"),
        pytest.param(lambda: esrgan(23, shuffle=2), 80, True, id="esrgan-x2plus-unshuffle"),
        pytest.param(lambda: compact_state(scale=4, num_conv=16), 16, False, id="srvgg-16-x4"),
        pytest.param(lambda: compact_state(scale=2, num_conv=16), 16, False, id="srvgg-16-x2"),
        pytest.param(lambda: compact_state(scale=4, num_conv=32), 31, True, id="srvgg-32"),
        # Twice its 3 convolutions' reach makes tiles exact: no more than 6.
        pytest.param(lambda: compact_state(scale=2, num_conv=1), 6, True, id="srvgg-1"),
        pytest.param(lambda: esrgan(1), 38, True, id="esrgan-1-block"),  # 2 x (15 + 4)
        pytest.param(swinir_state, None, False, id="swinir-not-measured"),
    ],
)
@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside spandrel's SwinIR
def test_a_community_file_gets_the_overlap_measured_for_its_architecture(
    make: Any, overlap: int | None, derived: bool
) -> None:
    """A weights file states no overlap, so ``-m FILE`` (and an import) ran Real-ESRGAN
    x4plus's network with the default 16, 11 levels off at seams, without a warning.  The
    architectures measured get their overlap whatever their width, and other depths of
    them one derived from it (realesr-general-x4v3's 32 convolutions ran with 16, half
    its receptive field's SRVGG-16 proportion), marked derived (the seam warning called
    an estimate a need); other architectures none."""
    desc = descriptor_from_state_dict(make(), "community")
    assert (desc.seamless_overlap, desc.overlap_derived) == (overlap, derived)
    if overlap is not None:
        assert own_overlap(desc) == max(16, overlap)


def test_an_overlap_is_derived_from_the_measured_depths_as_an_upper_estimate() -> None:
    """Scaled up with the receptive field from a measured network that sees less far, the
    measured one's from one that sees further, twice the receptive field at most; the
    smallest of those estimates."""
    from pocketsr_cli.descriptor import derived_overlap

    assert derived_overlap(18, {18: 16}) == 16  # measured
    assert derived_overlap(34, {18: 16}) == 31  # 16 x 34 / 18 = 30.2
    assert derived_overlap(12, {18: 16}) == 16  # not scaled down
    assert derived_overlap(3, {18: 16}) == 6  # exact tiles with twice its reach
    assert derived_overlap(3, {18: 16}, radius=9) == 16  # filters around it see further
    assert derived_overlap(30, {18: 16, 40: 30}) == 27  # 16 x 30 / 18 = 26.7 < 30
    assert derived_overlap(50, {18: 16, 40: 30}) == 38  # 30 x 50 / 40 = 37.5 < 44.4
    assert derived_overlap(5, {}) is None


def test_a_manifest_overlap_wins_over_the_measured_one_which_a_manifest_without_gets(
    home: Path,
) -> None:
    """A model imported before its architecture's overlap was measured has none in its
    manifest, and gets the measured one; an overlap the manifest states is taken."""
    folder = user_models_dir()
    data = save_safetensors(folder / "w.safetensors", compact_state(scale=2, num_conv=16))
    write_manifest(folder, "old", data, file="w.safetensors")
    write_manifest(folder, "stated", data, file="w.safetensors", hints=Hints(overlap=24))
    assert resolve_model("old").seamless_overlap == 16
    assert resolve_model("stated").seamless_overlap == 24


def skip_compact(num_conv: int = 16, pre: int = 0, post: int = 0) -> dict[str, Any]:
    """A pocketsr ``compact`` (SRVGG plus a skip) ×2 state dict with 4 features, with an
    input filter of ``pre`` taps and an output one of ``post`` (0: none)."""
    from pocketsr_cli.archs.compact import from_srvgg, with_post, with_pre

    sd = from_srvgg(compact_state(scale=2, num_conv=num_conv))
    sd = with_pre(sd, pre) if pre else sd
    return with_post(sd, post) if post else sd


def pcsr_state(preset: str) -> dict[str, Any]:
    from pocketsr_cli.archs.pcsr import build

    torch.manual_seed(0)
    return build(preset, 4).state_dict()


@pytest.mark.parametrize(
    ("make", "overlap", "derived"),
    [
        pytest.param(lambda: skip_compact(16), 16, False, id="compact-16"),
        # pocketsr-compact-x2's 13-tap input filter was measured to need no more.
        pytest.param(lambda: skip_compact(16, pre=13), 16, False, id="compact-16-pre-13"),
        pytest.param(lambda: skip_compact(16, post=5), 16, False, id="compact-16-post-5"),
        pytest.param(lambda: skip_compact(16, pre=15), None, False, id="compact-16-pre-15"),
        pytest.param(lambda: skip_compact(32), 31, True, id="compact-32"),  # derived
        pytest.param(lambda: pcsr_state("fsrcnn"), 8, False, id="pcsr-fsrcnn"),
        pytest.param(lambda: pcsr_state("carn"), None, False, id="pcsr-carn"),
    ],
)
def test_pocketsrs_own_architectures_state_the_overlap_measured_for_their_shape(
    tmp_path: Path, make: Any, overlap: int | None, derived: bool
) -> None:
    """A trained export given as ``-m FILE`` has no manifest: pocketsr's own families ran
    it with no overlap of their own, so a smaller ``--tile-overlap`` drew seams without a
    warning.  Their networks now state the overlap measured for their hyper-parameters
    (the compact family by its body's depth, as spandrel's Compact; pcsr by its
    backbone, or derived for a depth not measured, and marked so), and none for a shape
    not measured."""
    path = tmp_path / "export.safetensors"
    save_safetensors(path, make())
    desc = resolve_model(str(path))
    assert (desc.seamless_overlap, desc.overlap_derived) == (overlap, derived)
    assert own_overlap(desc) == max(16, overlap or 0)


@pytest.mark.parametrize(
    ("file", "overlap"),
    [
        ("pocketsr-compact-x2.safetensors", 16),
        ("pocketsr-compact-x4.safetensors", 16),
        ("pcsr-x4.safetensors", 8),
        # Its image-wide attention: no overlap makes its tiles seamless (its card).
        ("pocketsr-nano-x2.safetensors", 12),
    ],
)
def test_a_bundled_weights_file_given_by_path_gets_its_manifests_overlap(
    file: str, overlap: int | None
) -> None:
    """``-m models/pocketsr-compact-x2.safetensors`` ran with no overlap of its own where
    ``-m pocketsr-compact-x2`` had 16; the file alone now gets what its manifest states."""
    path = bundled_dir() / file
    assert resolve_model(str(path)).seamless_overlap == overlap
    assert resolve_model(path.stem).seamless_overlap == overlap


def test_a_manifest_overlap_wins_over_the_one_a_pocketsr_network_states(home: Path) -> None:
    folder = user_models_dir()
    sd = skip_compact(16)
    data = save_safetensors(folder / "w.safetensors", sd)
    build = {"num_feat": 4, "num_conv": 16}
    for name, hints in (("plain", Hints()), ("stated", Hints(overlap=24))):
        write_manifest(
            folder, name, data, file="w.safetensors", family="compact", build=build, hints=hints
        )
    assert resolve_model("plain").seamless_overlap == 16
    assert resolve_model("stated").seamless_overlap == 24


def test_a_manifests_derived_overlap_is_carried_to_the_model_and_its_own_wins(
    home: Path,
) -> None:
    """A manifest marks an overlap derived, not measured (realesr-general-x4v3's 31): the
    model it builds says so, whatever its network states; one that states no overlap
    takes the network's mark with its figure (a 32-convolution compact: derived)."""
    folder = user_models_dir()
    deep = save_safetensors(folder / "deep.safetensors", skip_compact(32))
    build = {"num_feat": 4, "num_conv": 32}
    for name, hints in (
        ("derived", Hints(overlap=31, overlap_derived=True)),
        ("measured", Hints(overlap=24)),
        ("plain", Hints()),
    ):
        write_manifest(
            folder, name, deep, file="deep.safetensors", family="compact", build=build, hints=hints
        )
    found = {
        name: (desc.seamless_overlap, desc.overlap_derived)
        for name in ("derived", "measured", "plain")
        for desc in [resolve_model(name)]
    }
    assert found == {"derived": (31, True), "measured": (24, False), "plain": (31, True)}


def dataclass_replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


def test_hints_only_restrict(home: Path, weights_bytes: bytes) -> None:
    (user_models_dir()).mkdir(parents=True)
    (user_models_dir() / "tiny.safetensors").write_bytes(weights_bytes)
    hints = Hints(fp16=False, multiple_of=8, minimum=16, tiling=False, default_tile=192)
    write_manifest(user_models_dir(), "tiny", weights_bytes, hints=hints)
    desc = resolve_model("tiny")
    assert (desc.supports_half, desc.supports_bf16, desc.tiling) == (False, True, Tiling.INTERNAL)
    assert (desc.size.multiple_of, desc.size.minimum) == (8, 16)
    assert desc.default_tile == 192  # passed on, for the tiler


class _Shuffle(nn.Module):
    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def test_registry_family_is_built_from_manifest_then_loaded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for pocketsr's own families: built from [build], then loaded.
    shuffle = Family("shuffle", lambda p, s: _Shuffle(int(p["channels"]), s))
    monkeypatch.setitem(FAMILIES, "shuffle", lambda: shuffle)
    module = _Shuffle(3, 2)
    folder = user_models_dir()
    data = save_safetensors(folder / "sh.safetensors", module.state_dict())
    spec = write_manifest(
        folder,
        "sh",
        data,
        family="shuffle",
        build={"channels": 3},
        params=params_of(module.state_dict()),
    )
    desc = resolve_model("sh")
    assert (desc.family, desc.scale) == ("shuffle", 2)
    with torch.no_grad():
        torch.testing.assert_close(desc.module(X), module(X), rtol=0, atol=0)
    replace_spec(spec, build={"channels": 5}, meta=dataclass_replace(spec.meta, params=None))
    with pytest.raises(ModelError, match="weights do not fit its manifest's network"):
        resolve_model("sh")
    replace_spec(spec, family="nonesuch")
    with pytest.raises(ModelError, match="unknown architecture family 'nonesuch'"):
        resolve_model("sh")


def test_unknown_name_lists_models_and_bad_manifests(home: Path) -> None:
    folder = user_models_dir()
    folder.mkdir(parents=True)
    (folder / "broken.toml").write_text('name = "broken"\nscale = "four"\n')
    with pytest.raises(ModelError, match=r"unknown model 'nope'; available: .*lanczos") as info:
        resolve_model("nope")
    assert "broken.toml" in str(info.value)
    assert resolve_model("lanczos").name == "lanczos"  # one broken file hides nothing else


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("Lanczos", "lanczos"), ("pcsr-4x", "pcsr-x4"), ("pocketsr-compat", "pocketsr-compact")],
)
def test_a_misspelt_model_name_gets_a_suggestion(home: Path, typed: str, meant: str) -> None:
    with pytest.raises(ModelError, match=rf"unknown model '{typed}' \(did you mean '{meant}'\?\)"):
        resolve_model(typed)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("LANCZOS", "lanczos"), ("lanczso", "lanczos"), ("Lanczso", "Lanczos"), ("lanczo", "lanczos")],
)
def test_a_suggestion_beside_a_model_named_but_for_case_as_a_bundled_one(
    home: Path, typed: str, meant: str
) -> None:
    """With an imported ``Lanczos`` beside the bundled ``lanczos``, the suggestion was
    whichever of the two a set of names happened to hold last (it changed with the hash
    seed): a bundled name equal but for case wins, else the name closer in case too."""
    folder = user_models_dir()
    folder.mkdir(parents=True)
    bundled_toml = (bundled_dir() / "lanczos.toml").read_text()
    (folder / "Lanczos.toml").write_text(bundled_toml.replace('"lanczos"', '"Lanczos"', 1))
    assert resolve_model("Lanczos").name == "Lanczos"
    with pytest.raises(ModelError, match=rf"unknown model '{typed}' \(did you mean '{meant}'\?\)"):
        resolve_model(typed)


def test_user_models_named_alike_but_for_case_are_all_suggested(home: Path) -> None:
    """User models ``Foo`` and ``foo`` (made by hand, or by an older version): ``FOO`` was
    answered with ``Foo`` alone, as if the other did not exist; the case typed cannot
    tell which was meant.  A misspelling still gets the one most alike."""
    folder = user_models_dir()
    folder.mkdir(parents=True)
    bundled_toml = (bundled_dir() / "lanczos.toml").read_text()
    for name in ("foo", "Foo"):
        (folder / f"{name}.toml").write_text(bundled_toml.replace('"lanczos"', f'"{name}"', 1))
    if len(list(folder.glob("*.toml"))) < 2:
        pytest.skip("this disk ignores case: Foo.toml is foo.toml")
    for typed in ("FOO", "fOO"):
        with pytest.raises(ModelError, match=rf"'{typed}' \(did you mean 'Foo' or 'foo'\?\)"):
            resolve_model(typed)
    with pytest.raises(ModelError, match=r"'fooo' \(did you mean 'foo'\?\)"):
        resolve_model("fooo")


def test_a_folder_or_an_unreadable_file_given_as_weights_says_so(tmp_path: Path) -> None:
    from pocketsr_cli.cli._flags import flag_spelling
    from pocketsr_cli.spelling import spelled

    # Named as the face spells it: the API's keyword, the command line's flag.
    with pytest.raises(ModelError, match="is a folder: model takes a weights file or a model"):
        resolve_model(str(tmp_path))
    with (
        spelled(flag_spelling),
        pytest.raises(ModelError, match="is a folder: -m takes a weights file or a model name"),
    ):
        resolve_model(str(tmp_path))
    text = tmp_path / "notes.pth"
    text.write_text("hello world, not a checkpoint")
    with pytest.raises(ModelError, match=r"or a damaged one \(unreadable data\)$"):
        resolve_model(str(text))


def test_an_image_given_as_the_model_says_it_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-m photo.jpg``, an input given as the model: an image by its first bytes (a file)
    or its extension (no such file), not "not a PyTorch checkpoint" nor "unknown model";
    where an image goes is said as the face takes it."""
    from PIL import Image

    from pocketsr_cli.cli._flags import flag_spelling
    from pocketsr_cli.spelling import spelled

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "scan", format="PNG")  # no extension
    Image.new("RGB", (8, 8)).save(tmp_path / "old.bmp")
    for ref, what in [
        ("photo.jpg", "is an image (JPEG)"),
        (str(tmp_path / "photo.jpg"), "is an image (JPEG)"),
        ("scan", "is an image (PNG)"),
        ("old.bmp", "is an image (BMP)"),
        ("absent.webp", "is the name of an image (WebP)"),
        ("dir/absent.tif", "is the name of an image (TIFF)"),
    ]:
        for resolve in (resolve_model, open_family):
            with pytest.raises(ModelError) as info:
                resolve(ref)
            message = str(info.value)
            assert message.startswith(f"{ref} {what}, not a model: model takes"), message
            assert message.endswith("an input, given to upscale() or upscale_file()")
            with spelled(flag_spelling), pytest.raises(ModelError) as info:
                resolve(ref)
            message = str(info.value)
            assert message.startswith(f"{ref} {what}, not a model: -m takes"), message
            assert message.endswith(f"given after the command (pocketsr upscale {ref})")
    with pytest.raises(ModelError, match="unknown model 'absent'"):  # no image: as before
        resolve_model("absent")


# --- 4./5. cache and download -----------------------------------------------------------------


def test_cached_file_needs_no_network(home: Path, weights_bytes: bytes, no_network: None) -> None:
    spec = remote_spec(home, weights_bytes, ("https://example.invalid/tiny.safetensors",))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_bytes)
    assert where(spec) == "cached"
    torch.testing.assert_close(run(resolve_model("tiny", offline=True)), reference(SD))


def test_good_download_then_cached(home: Path, server: Loopback, weights_bytes: bytes) -> None:
    spec = remote_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    assert where(spec) == "remote"
    progress: list[tuple[int, int | None]] = []
    desc = resolve_model("tiny", on_progress=lambda done, total: progress.append((done, total)))
    torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)
    assert where(spec) == "cached"
    assert progress[-1] == (len(weights_bytes), len(weights_bytes))
    resolve_model("tiny")
    assert len(server.hits) == 1  # the second run used the cache


def test_checksum_mismatch_leaves_nothing_in_cache(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    server.behaviours["/tiny.safetensors"] = Behaviour(body=bytes(reversed(weights_bytes)))
    remote_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    with pytest.raises(ModelError, match="checksum mismatch"):
        resolve_model("tiny")
    assert not weights_path("tiny", "tiny.safetensors").parent.exists()  # nor its lock file


def test_interrupted_download_resumes(home: Path, server: Loopback, weights_bytes: bytes) -> None:
    cut = len(weights_bytes) // 2
    server.behaviours["/tiny.safetensors"] = Behaviour(cut_after=cut)
    remote_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    with pytest.raises(ModelError, match="run again to resume"):
        resolve_model("tiny")
    resolve_model("tiny")
    assert [h.range for h in server.hits] == [None, f"bytes={cut}-"]
    assert server.bytes_served() == len(weights_bytes)


def test_404_on_first_mirror_then_second(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    urls = (server.url("/gone.safetensors"), server.url("/tiny.safetensors"))
    remote_spec(home, weights_bytes, urls)
    torch.testing.assert_close(run(resolve_model("tiny")), reference(SD), rtol=0, atol=0)
    assert [(h.path, h.status) for h in server.hits] == [
        ("/gone.safetensors", 404),
        ("/tiny.safetensors", 200),
    ]


def test_a_failed_download_names_the_model(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    """The downloader's message names the file and each URL; a run names a model (or none,
    for the default), so the message starts with the model's name.  The URLs of the user's
    own manifest are theirs to correct: the message names the file that lists them."""
    url = server.url("/gone.safetensors")
    spec = remote_spec(home, weights_bytes, (url,))
    for resolve in (resolve_model, lambda ref: open_family(ref).load(2)):
        with pytest.raises(ModelError) as info:
            resolve("tiny")
        assert str(info.value) == (
            f"tiny: could not download tiny.safetensors: {url} (HTTP 404 Not Found) (its URLs "
            f"are listed in {spec.path}: correct a stale one there)"
        )


def test_a_failed_download_of_a_bundled_model_names_no_manifest(
    home: Path, bundled: Path, server: Loopback, weights_bytes: bytes
) -> None:
    """A bundled manifest is pocketsr's to correct, not the user's."""
    url = server.url("/gone.safetensors")
    write_manifest(bundled, "tiny", weights_bytes, urls=(url,), params=params_of(SD))
    with pytest.raises(ModelError) as info:
        resolve_model("tiny")
    assert str(info.value) == (
        f"tiny: could not download tiny.safetensors: {url} (HTTP 404 Not Found)"
    )


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_offline_cache_miss_names_the_command(
    home: Path,
    weights_bytes: bytes,
    no_network: None,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    remote_spec(home, weights_bytes, ("https://example.invalid/tiny.safetensors",))
    if how == "environment":
        monkeypatch.setenv("POCKETSR_OFFLINE", "1")
    with pytest.raises(
        ModelError, match=r"offline mode is on; run `pocketsr models download tiny`"
    ):
        resolve_model("tiny", offline=how == "argument")


def test_manifest_without_urls_or_file(home: Path, weights_bytes: bytes) -> None:
    remote_spec(home, weights_bytes, ())
    with pytest.raises(ModelError, match=r"missing from .* names no download URL"):
        resolve_model("tiny")


def test_damaged_cache_is_fetched_again(home: Path, server: Loopback, weights_bytes: bytes) -> None:
    spec = remote_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\0" * len(weights_bytes))
    assert locate_weights(spec) == (cached,)
    assert cached.read_bytes() == weights_bytes
    assert len(server.hits) == 1


# --- the hash memo ----------------------------------------------------------------------------


def test_verified_files_are_not_hashed_every_run(
    home: Path, weights_bytes: bytes, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    hashed: list[Path] = []
    real = verify.sha256_file
    monkeypatch.setattr(verify, "sha256_file", lambda p: hashed.append(p) or real(p))
    spec = remote_spec(home, weights_bytes, ("https://example.invalid/x",))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_bytes)

    assert locate_weights(spec) == (cached,)
    assert locate_weights(spec) == (cached,)
    assert hashed == [cached]  # once, then remembered

    os.utime(cached, ns=(1, 1))  # a touched file is hashed again
    locate_weights(spec)
    assert len(hashed) == 2

    cached.write_bytes(bytes(reversed(weights_bytes)))  # replaced: same size, new mtime
    with pytest.raises(ModelError, match="is damaged"):
        locate_weights(spec, offline=True)
    assert verify.file_matches(cached, spec.weights.sha256 if spec.weights else "", None) is False


def test_memo_is_only_an_optimisation(home: Path, weights_bytes: bytes, no_network: None) -> None:
    spec = remote_spec(home, weights_bytes, ("https://example.invalid/x",))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_bytes)
    (cached.parent / verify.MEMO_NAME).write_text("{not json")
    assert locate_weights(spec) == (cached,)
    assert "tiny.safetensors" in (cached.parent / verify.MEMO_NAME).read_text()


# --- families: every variant of one -m reference ----------------------------------------------


def test_a_family_lists_its_variants_and_loads_each_once(home: Path) -> None:
    family = open_family("pocketsr-compact")
    assert (family.name, family.scales, family.default_scale) == ("pocketsr-compact", (2, 4), 4)
    assert open_family("pocketsr-compact-x2").default_scale == 2  # the variant named
    assert open_family(None).name == "pocketsr-compact"
    x2 = family.load(2)
    spec = find_spec("pocketsr-compact-x2")
    assert x2.name == "pocketsr-compact-x2" and spec.weights is not None
    assert x2.sha256 == spec.weights.sha256 and family.load(2) is x2
    with pytest.raises(ModelError, match=r"^pocketsr-compact has no ×3 variant; it has ×2, ×4$"):
        family.load(3)
    lanczos = open_family("lanczos")
    assert lanczos.scales == () and lanczos.load(3).scale == 3 and lanczos.load(3).sha256 is None
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        open_family("nope")


def test_a_withdrawn_model_says_why_and_what_to_use_instead(home: Path) -> None:
    for call in (lambda: find_spec("pocketsr-nano-x4"), lambda: open_family("pocketsr-nano-x4")):
        with pytest.raises(ModelError) as info:
            call()
        message = str(info.value)
        assert message.startswith("model 'pocketsr-nano-x4' is no longer bundled: ")
        assert "use pocketsr-compact-x4" in message and "available:" not in message
    assert open_family("pocketsr-nano").scales == (2,)  # its x2 sibling stays


def test_a_missing_variant_is_listed_in_words(home: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("pocketsr-compact", 3)
    message = str(info.value)
    assert message.startswith("pocketsr-compact has no ×3 variant; it has ×2, ×4 (")
    assert "[" not in message and "upscale scale=3 runs the nearest larger one" in message


def test_a_weights_files_family_is_itself_and_records_its_digest(
    tmp_path: Path, home: Path
) -> None:
    path = tmp_path / "mine.safetensors"
    data = save_safetensors(path, SD)
    family = open_family(str(path))
    assert (family.name, family.scales, family.default_scale) == ("mine.safetensors", (2,), 2)
    assert family.load(2).sha256 == sha256(data)


# --- trust on first use, converted pickles, families that need an extra ------------------------


def unpublished_spec(home: Path, data: bytes, urls: tuple[str, ...]) -> ModelSpec:
    """``remote_spec`` whose publisher gives no SHA-256 (nor size)."""
    spec = remote_spec(home, data, urls)
    assert spec.weights is not None
    return replace_spec(spec, weights=dataclasses.replace(spec.weights, sha256=None, size=None))


def test_unpublished_digest_downloads_only_when_allowed_then_is_pinned(
    home: Path, server: Loopback, weights_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpublished_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    with pytest.raises(ModelError, match=r"no SHA-256 .*models download tiny --allow-unverified"):
        resolve_model("tiny")
    assert server.hits == []  # refused before any request
    desc = resolve_model("tiny", allow_unverified=True)
    torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)
    assert trust.pinned("tiny", "tiny.safetensors") == sha256(weights_bytes) == desc.sha256
    refuse_network(monkeypatch)
    resolve_model("tiny")  # pinned: no flag, no network
    assert len(server.hits) == 1


def test_two_pins_of_one_model_at_once_keep_both(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first-use downloads of different files of one model pin at the same moment: the
    second waits for the first's read-modify-write, and neither pin is lost."""
    import threading

    real_read = trust._read
    first_has_read, go_on = threading.Event(), threading.Event()

    def slow_read(path: Path) -> dict[str, Any]:
        data = real_read(path)
        if threading.current_thread().name == "first":
            first_has_read.set()
            go_on.wait(10)  # the second pin runs meanwhile, as far as it can
        return data

    monkeypatch.setattr(trust, "_read", slow_read)
    first = threading.Thread(target=trust.pin, args=("m", "a.bin", "a" * 64), name="first")
    second = threading.Thread(target=trust.pin, args=("m", "b.bin", "b" * 64))
    first.start()
    assert first_has_read.wait(10)
    second.start()
    second.join(0.5)
    go_on.set()
    first.join(10)
    second.join(10)
    assert trust.pinned("m", "a.bin") == "a" * 64
    assert trust.pinned("m", "b.bin") == "b" * 64


def test_a_pinned_digest_is_enforced_on_the_next_download(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    unpublished_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    resolve_model("tiny", allow_unverified=True)
    cached = weights_path("tiny", "tiny.safetensors")
    cached.unlink()
    server.behaviours["/tiny.safetensors"] = Behaviour(body=bytes(reversed(weights_bytes)))
    pins = weights_path("tiny", trust.PINS_NAME)
    with pytest.raises(ModelError, match=r"checksum mismatch.*pinned on first use") as caught:
        resolve_model("tiny", allow_unverified=True)  # the flag does not unpin
    assert f"in {pins}; if the publisher has replaced the file, delete that pin" in str(
        caught.value
    )
    assert not cached.exists()
    # What it says to do: the new file is fetched and pinned, the manifest left alone.
    manifests = sorted((home / "models").iterdir())
    pins.unlink()
    replaced = save_safetensors(home / "replaced.safetensors", OTHER_SD)
    server.behaviours["/tiny.safetensors"] = Behaviour(body=replaced)
    resolve_model("tiny", allow_unverified=True)
    assert trust.pinned("tiny", "tiny.safetensors") == sha256(replaced)
    assert sorted((home / "models").iterdir()) == manifests


def test_check_whole_tells_a_weights_file_cut_short_without_loading_it(tmp_path: Path) -> None:
    from pocketsr_cli.weights.load import check_whole

    files = {"w.safetensors": save_safetensors(tmp_path / "w.safetensors", SD)}
    torch.save(SD, tmp_path / "w.pth")
    files["w.pth"] = (tmp_path / "w.pth").read_bytes()
    torch.save(SD, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    files["old.pth"] = (tmp_path / "old.pth").read_bytes()
    for name in files:
        check_whole(tmp_path / name)
    broken = {f"cut-{n}": d[: len(d) // 2] for n, d in files.items()}
    broken["long-w.safetensors"] = files["w.safetensors"] + b"x"
    broken["empty.safetensors"] = b""
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=f"^cannot read weights {name}: not a"):
            check_whole(tmp_path / name)
    # Whole, but needing code to load: a zip is not read; one of the old format, read,
    # says so (the resolver then pins it, and reading it later says how to allow it).
    _pickle_with_hyper_parameters(tmp_path / "ckpt.pth")
    check_whole(tmp_path / "ckpt.pth")
    hparams = {"state_dict": SD, "hparams": argparse.Namespace(lr=1e-4)}
    torch.save(hparams, tmp_path / "old-ckpt.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafePickleError):
        check_whole(tmp_path / "old-ckpt.pth")


def test_a_download_cut_short_with_no_length_to_tell_is_not_pinned(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    """No SHA-256 or size in the manifest, no Content-Length from the server: a transfer
    cut short ends like a whole one.  It is seen not to be a whole weights file, deleted
    and not pinned (every later run failed on the digest pinned from it), nothing of it
    is left, and the next run fetches it anew."""
    server.behaviours["/tiny.safetensors"] = Behaviour(cut_after=1000, length=False)
    unpublished_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    cached = weights_path("tiny", "tiny.safetensors")
    with pytest.raises(ModelError) as caught:
        resolve_model("tiny", allow_unverified=True)
    assert str(caught.value).startswith(
        f"tiny: could not download tiny.safetensors: {server.url('/tiny.safetensors')} "
        "(cannot read weights tiny.safetensors: not a safetensors file, or a damaged one ("
    )
    assert str(caught.value).endswith(
        " (what was received could not be read as a weights file, so it was deleted and "
        "nothing was pinned: with no SHA-256 or size published, a download cut short looks "
        "whole when the server does not give its length; run again to fetch it anew) (its "
        f"URLs are listed in {home / 'models' / 'tiny.toml'}: correct a stale one there)"
    )
    assert trust.pinned("tiny", "tiny.safetensors") is None
    assert not cached.parent.exists()  # no file, no partial download, no lock
    desc = resolve_model("tiny", allow_unverified=True)  # the server no longer cuts it
    assert trust.pinned("tiny", "tiny.safetensors") == sha256(weights_bytes) == desc.sha256
    assert [h.bytes_sent for h in server.hits] == [1000, len(weights_bytes)]
    assert [h.range for h in server.hits] == [None, None]  # the cut file was not resumed


def test_a_mirror_that_cuts_a_file_short_with_no_length_to_tell_falls_through(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    """As above, with a second mirror: the first one's file, not whole, is that mirror's
    failure (it was found only after the download had ended, and the run failed), so the
    second is tried, from the first byte, and its whole file is pinned."""
    server.files["/cut.safetensors"] = weights_bytes
    server.behaviours["/cut.safetensors"] = Behaviour(cut_after=1000, length=False)
    server.behaviours["/tiny.safetensors"] = Behaviour(length=False)
    urls = (server.url("/cut.safetensors"), server.url("/tiny.safetensors"))
    unpublished_spec(home, weights_bytes, urls)
    desc = resolve_model("tiny", allow_unverified=True)
    torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)
    assert trust.pinned("tiny", "tiny.safetensors") == sha256(weights_bytes) == desc.sha256
    hits = [(h.path, h.range, h.bytes_sent) for h in server.hits]
    assert hits == [
        ("/cut.safetensors", None, 1000),
        ("/tiny.safetensors", None, len(weights_bytes)),
    ]
    assert weights_path("tiny", "tiny.safetensors").read_bytes() == weights_bytes


def test_a_file_beside_its_manifest_that_is_not_whole_is_not_pinned(
    home: Path, weights_bytes: bytes, no_network: None
) -> None:
    spec = unpublished_spec(home, weights_bytes, ())
    beside = spec.path.parent / "tiny.safetensors"
    beside.write_bytes(weights_bytes[:-1])
    with pytest.raises(ModelError, match=r"^tiny: cannot read weights tiny.safetensors: .*; its "):
        resolve_model("tiny", allow_unverified=True)
    assert trust.pinned("tiny", "tiny.safetensors") is None
    assert beside.read_bytes() == weights_bytes[:-1]  # the user's own file stays


def test_a_pinned_file_that_cannot_be_read_names_its_model_and_the_way_out(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    """A file pinned before pins were checked for readability (or damaged in a way its
    digest does not show): the error names the model and how to be rid of the file."""
    from pocketsr_cli.weights.store import remove_model

    spec = unpublished_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_bytes[:1000])
    trust.pin("tiny", "tiny.safetensors", sha256(weights_bytes[:1000]))
    with pytest.raises(ModelError) as caught:
        resolve_model("tiny")
    assert str(caught.value).startswith("tiny: cannot read weights tiny.safetensors: ")
    assert str(caught.value).endswith(
        f"; it is the file whose digest was pinned on first use ({cached}): `pocketsr "
        "models remove tiny` deletes it and its pin, and `pocketsr models download tiny "
        "--allow-unverified` fetches it anew"
    )
    remove_model(spec)  # what it says to do
    resolve_model("tiny", allow_unverified=True)
    assert trust.pinned("tiny", "tiny.safetensors") == sha256(weights_bytes)


def test_a_cached_file_without_a_pin_is_pinned_only_when_allowed(
    home: Path, weights_bytes: bytes, no_network: None
) -> None:
    unpublished_spec(home, weights_bytes, ("https://example.invalid/tiny.safetensors",))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_bytes)  # copied there by hand
    with pytest.raises(
        ModelError, match=r"no SHA-256 to be checked against.*allow_unverified=True"
    ):
        resolve_model("tiny")
    assert locate_weights(find_spec("tiny"), allow_unverified=True) == (cached,)
    assert trust.pinned("tiny", "tiny.safetensors") == sha256(weights_bytes)


def test_a_cached_file_that_is_not_whole_goes_with_its_lock_and_folder(
    home: Path, weights_bytes: bytes, no_network: None
) -> None:
    """A cached file without a pin that is not whole (a download cut short, its pin
    deleted by hand; one copied there) is deleted, and with it its download lock and the
    model's folder, as after a failed fetch; not while another process downloads it (it
    holds the lock: its download replaces the file)."""
    import threading

    from filelock import FileLock

    unpublished_spec(home, weights_bytes, ("https://example.invalid/tiny.safetensors",))
    cached = weights_path("tiny", "tiny.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_bytes[:1000])
    lock = Path(str(cached) + ".lock")
    held, done = threading.Event(), threading.Event()

    def downloading() -> None:  # a thread stands for it: filelock's locks are per thread
        with FileLock(str(lock)):
            held.set()
            done.wait(10)

    other = threading.Thread(target=downloading)
    other.start()
    assert held.wait(10)
    try:
        with pytest.raises(ModelError, match=r"another pocketsr process is replacing it"):
            resolve_model("tiny", allow_unverified=True)
        assert cached.read_bytes() == weights_bytes[:1000]
    finally:
        done.set()
        other.join(10)
    with pytest.raises(ModelError, match=r"; it was deleted from the cache, not pinned ") as info:
        resolve_model("tiny", allow_unverified=True)
    # why, in the words a fetch that received such a file uses (test_a_download_cut_short_...)
    assert "not pinned (with no SHA-256 or size published, a download cut short looks whole " in (
        str(info.value)
    )
    assert trust.pinned("tiny", "tiny.safetensors") is None
    assert not cached.parent.exists()  # no file, no lock, no folder


def test_offline_unpublished_miss_names_the_command_with_the_flag(
    home: Path, weights_bytes: bytes, no_network: None
) -> None:
    unpublished_spec(home, weights_bytes, ("https://example.invalid/tiny.safetensors",))
    with pytest.raises(
        ModelError,
        match=r"offline mode is on; run `pocketsr models download tiny --allow-unverified`",
    ):
        resolve_model("tiny", offline=True)


def test_removing_a_model_forgets_its_pins(
    home: Path, server: Loopback, weights_bytes: bytes
) -> None:
    from pocketsr_cli.weights.store import remove_model

    spec = unpublished_spec(home, weights_bytes, (server.url("/tiny.safetensors"),))
    resolve_model("tiny", allow_unverified=True)
    removed = remove_model(spec)
    assert weights_path("tiny", trust.PINS_NAME) in removed
    assert trust.pinned("tiny", "tiny.safetensors") is None


def _pickle_with_hyper_parameters(path: Path) -> bytes:
    """SD as a training checkpoint whose hyper-parameters are a class: weights_only refuses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": SD, "hparams": argparse.Namespace(lr=1e-4)}, path)
    return path.read_bytes()


def test_a_pickle_needing_code_is_converted_once_with_trust_pickle(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    data = _pickle_with_hyper_parameters(tmp_path / "src" / "ckpt.pth")
    write_manifest(home / "models", "pick", data, file="ckpt.pth", params=params_of(SD))
    (home / "models" / "ckpt.pth").write_bytes(data)
    with pytest.raises(UnsafePickleError, match=r"argparse\.Namespace.*trust_pickle=True"):
        resolve_model("pick")
    desc = resolve_model("pick", trust_pickle=True)
    torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)
    assert desc.sha256 == sha256(data)  # the published file's digest, not the copy's
    copy = trust.converted_path("pick", "ckpt.pth")
    assert copy.is_file()

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pickle was opened again")

    real_load = torch.load
    monkeypatch.setattr(torch, "load", no_unpickling)
    torch.testing.assert_close(run(resolve_model("pick")), reference(SD), rtol=0, atol=0)
    monkeypatch.setattr(torch, "load", real_load)
    copy.write_bytes(b"damaged")  # a damaged copy is not used: the pickle is refused again
    with pytest.raises(UnsafePickleError):
        resolve_model("pick")


def test_a_weights_file_needing_code_loads_with_trust_pickle_once(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-m FILE --trust-pickle`` is honoured as for a registry model: loaded once, running
    its code, then read from its safetensors copy."""
    path = tmp_path / "ckpt.pth"
    _pickle_with_hyper_parameters(path)
    with pytest.raises(UnsafePickleError, match=r"argparse\.Namespace.*run again with"):
        open_family(str(path))
    family = open_family(str(path), trust_pickle=True)
    torch.testing.assert_close(run(family.load(2)), reference(SD), rtol=0, atol=0)

    real_load = torch.load

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("weights_only", True):
            raise AssertionError("the pickle's code was run again")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", no_unpickling)
    for trusting in (True, False):  # kept as safetensors: the flag is not needed again
        desc = resolve_model(str(path), trust_pickle=trusting)
        torch.testing.assert_close(run(desc), reference(SD), rtol=0, atol=0)


def test_eval_and_bench_advise_only_a_command_that_takes_the_option(
    tmp_path: Path, home: Path, weights_bytes: bytes, no_network: None
) -> None:
    """``eval`` and ``bench`` take neither ``--trust-pickle`` nor ``--allow-unverified``,
    yet their refusals said "run again with --trust-pickle" (or "--allow-unverified
    here"), which they answer with 'No such option'.  They name the command that takes it
    and keeps what it converts or pins for them; ``upscale``, which takes both, is still
    told to run again."""
    from PIL import Image
    from typer.testing import CliRunner

    from pocketsr_cli.cli import app

    data = _pickle_with_hyper_parameters(tmp_path / "src" / "ckpt.pth")
    write_manifest(home / "models", "pick", data, file="ckpt.pth", params=params_of(SD))
    (home / "models" / "ckpt.pth").write_bytes(data)
    loose = tmp_path / "loose.pth"
    loose.write_bytes(data)
    unpublished_spec(home, weights_bytes, ("https://example.invalid/tiny.safetensors",))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(photos / "a.png")

    def refusal(*args: str) -> str:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 3, result.output
        return " ".join(result.stderr.split())

    for command in (["eval", str(photos), "--crop", "32"], ["bench", "--size", "16x16"]):
        pick = refusal(*command, "-m", "pick")
        assert "run `pocketsr models download pick --trust-pickle`: it is then" in pick
        file = refusal(*command, "-m", str(loose))
        assert f"run `pocketsr upscale IMAGE -m {loose} --trust-pickle` once" in file
        tiny = refusal(*command, "-m", "tiny")
        assert "`pocketsr models download tiny --allow-unverified` fetches it" in tiny
        for message in (pick, file, tiny):
            assert "run again" not in message and " here)" not in message
    upscale = ["upscale", str(photos), "-o", str(tmp_path / "out")]
    assert "run again with --trust-pickle" in refusal(*upscale, "-m", "pick")
    assert "(or --allow-unverified here)" in refusal(*upscale, "-m", "tiny")


def test_a_file_named_like_a_model_does_not_take_over_its_name(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lanczos").write_text("junk")
    assert resolve_model("lanczos").name == "lanczos"
    assert open_family("lanczos").name == "lanczos"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "an empty model name"),
        ("  ", "an empty model name"),
        ("https://x.org/4x.pth", "is a URL"),
        ("file:///tmp/4x.pth", "give the path itself, model='/tmp/4x.pth'$"),
        ("file://localhost/tmp/my%20w.pth", "give the path itself, model='/tmp/my w.pth'$"),
    ],
)
def test_an_empty_or_url_model_reference_is_refused(home: Path, ref: str, message: str) -> None:
    for resolve in (resolve_model, open_family):
        with pytest.raises(ModelError, match=message):
            resolve(ref)


def test_converted_copies_keep_tensors_that_were_shared(tmp_path: Path, home: Path) -> None:
    shared = torch.arange(6.0)
    path = tmp_path / "tied.pth"
    torch.save({"a": shared, "b": shared, "view": shared[2:4], "ns": argparse.Namespace()}, path)
    copy = trust.convert_pickle("tied", path, "0" * 64)
    state = trust.read_converted(copy)
    assert set(state) == {"a", "b", "view"}
    torch.testing.assert_close(state["b"], shared)
    torch.testing.assert_close(state["view"], shared[2:4])
    assert trust.converted_copy("tied", "tied.pth", "0" * 64) == copy
    assert trust.converted_copy("tied", "tied.pth", "1" * 64) is None  # another file


def test_a_family_that_needs_an_extra_says_so_before_any_download(
    home: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if not installed
    with pytest.raises(ModelError, match=r'pip install "pocketsr\[diffusion\]"'):
        resolve_model("adcsr-x4", offline=True)
    with pytest.raises(ModelError, match=r'pip install "pocketsr\[diffusion\]"'):
        open_family("adcsr-x4").load(4)
    assert find_spec("adcsr-x4").meta.params == 456_073_683  # the registry reads it fine


def test_adcsr_offline_without_weights_names_the_fetch_command(
    home: Path, no_network: None
) -> None:
    pytest.importorskip("diffusers")
    with pytest.raises(ModelError) as info:
        resolve_model("adcsr-x4", offline=True)
    assert "pocketsr models download adcsr-x4 --allow-unverified" in str(info.value)
