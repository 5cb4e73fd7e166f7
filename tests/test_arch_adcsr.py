"""AdcSR: the network built from diffusers' blocks, the official files' key layout, and its
image-wide statistics under tiling.

Nothing here downloads the official weights: the checkpoints are written by
:func:`official_files` in exactly the official layout (a DataParallel ``state_dict`` with
``module.body.*`` keys and the U-Net's second ``body`` registration, and a Lightning
checkpoint whose ``state_dict`` holds the whole half VAE), from a reduced-width network
(:data:`SMALL`).  The full-size network is only counted, on the meta device.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _http import serve
from _zoo import use_home
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from typer.testing import CliRunner

pytest.importorskip("diffusers")

from pocketsr_cli.archs.adcsr import FAMILY, AdcSRConfig, build, detect, infer, merge
from pocketsr_cli.archs.adcsr.network import AdcSR, ImageStats, SharedGroupNorm
from pocketsr_cli.cli import app
from pocketsr_cli.descriptor import SizeRequirements
from pocketsr_cli.devices import Compute
from pocketsr_cli.errors import ModelError, UnsafePickleError
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.tiling import TilePolicy
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

REPO = Path(__file__).resolve().parents[1]
SMALL = AdcSRConfig(unet_widths=(64, 64, 64, 64), decoder_widths=(32, 32, 32, 32))
FULL_PARAMS = 456_073_683
SIZE = SizeRequirements(16, 16)

# The official U-Net registers its blocks a second time, in order, as ``body``.
_ALIASES = {
    **{f"down_blocks.{i}.": f"body.{i}." for i in range(4)},
    "mid_block.": "body.4.",
    **{f"up_blocks.{i}.": f"body.{5 + i}." for i in range(4)},
    "conv_norm_out.": "body.9.",
    "conv_out.": "body.11.",
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def small_network(seed: int = 0, calm: float | None = None) -> AdcSR:
    """A seeded :data:`SMALL` network.  ``calm`` scales the last layer of every residual
    branch (ResNet ``conv2``, attention and feed-forward outputs, ``proj_out``): random
    weights otherwise make a chaotic network whose every output depends on the whole
    window, which no trained model is."""
    torch.manual_seed(seed)
    net = build(SMALL).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name:  # not the trivial ones/zeros GroupNorm init
                p.add_(torch.randn_like(p) * 0.1)
            if calm is not None and any(
                k in name for k in ("conv2.", "to_out.0.", "ff.net.2.", "proj_out.")
            ):
                p.mul_(calm)
    return net


def official_files(net: AdcSR, folder: Path, *, needs_code: bool = False) -> tuple[Path, Path]:
    """``net`` saved as ``net_params_200.pkl`` and ``halfDecoder.ckpt``, the official way."""
    folder.mkdir(parents=True, exist_ok=True)
    own = net.state_dict()
    params: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, t in own.items():
        if key.startswith("body."):
            params[f"module.{key}"] = t
    for key, t in own.items():
        rest = key.removeprefix("body.1.")
        for name, alias in _ALIASES.items():
            if key.startswith("body.1.") and rest.startswith(name):
                params[f"module.body.1.{alias}{rest[len(name) :]}"] = t  # the very same tensor
    gen = torch.Generator().manual_seed(9)
    half: dict[str, torch.Tensor] = {}
    top = SMALL.decoder_widths[-1]
    half["decoder.conv_in.weight"] = torch.randn(top, 4, 3, 3, generator=gen)
    half["decoder.conv_in.bias"] = torch.randn(top, generator=gen)
    for key, t in own.items():
        if key.startswith("body.2."):  # the pretrained mid block, which training replaced
            half[f"decoder.mid_block.{key[7:]}"] = torch.randn(t.shape, generator=gen)
        elif key.startswith("decoder."):
            half[key] = t.clone()
    half["encoder.conv_in.weight"] = torch.randn(32, 3, 3, 3, generator=gen)
    half["quant_conv.weight"] = torch.randn(8, 8, 1, 1, generator=gen)
    half["post_quant_conv.weight"] = torch.randn(4, 4, 1, 1, generator=gen)
    ckpt: dict[str, Any] = {
        "epoch": 12,
        "global_step": 34000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": half,
    }
    if needs_code:  # a training checkpoint's hyper-parameters: a class weights_only refuses
        ckpt["hyper_parameters"] = argparse.Namespace(lr=4.5e-6, embed_dim=4)
    net_path, half_path = folder / "net_params_200.pkl", folder / "halfDecoder.ckpt"
    torch.save(params, net_path)
    torch.save(ckpt, half_path)
    return net_path, half_path


def photo(h: int, w: int, seed: int = 1) -> torch.Tensor:
    """A smooth image with some texture, ``(1, 3, h, w)`` in [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    noise = torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))
    rgb = torch.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy * xx, 0.6 - 0.3 * yy]) + 0.05 * noise
    return rgb.clamp(0, 1)[None]


@pytest.fixture(scope="module")
def net() -> AdcSR:
    return small_network()


@pytest.fixture(scope="module")
def calm_net() -> AdcSR:
    return small_network(seed=2, calm=0.1)


# --- the network -----------------------------------------------------------------------------


def test_full_size_is_456m_parameters_built_from_the_sd21_base_config() -> None:
    with torch.device("meta"):
        full = build({})  # the manifest's [build] defaults: SD2.1-base, the half decoder
    count = sum(p.numel() for p in full.parameters())
    assert count == FULL_PARAMS
    assert abs(count - 456e6) / 456e6 < 0.01
    parts = {
        prefix: sum(p.numel() for n, p in full.named_parameters() if n.startswith(prefix))
        for prefix in ("body.1.", "body.2.", "decoder.")
    }
    assert parts == {"body.1.": 443_695_696, "body.2.": 2_626_048, "decoder.": 9_751_939}

    unet = full.body[1]
    assert tuple(unet.conv_in.weight.shape) == (240, 12, 3, 3)
    assert tuple(unet.conv_out.weight.shape) == (256, 240, 3, 3)
    assert [b.resnets[0].conv1.out_channels for b in unet.down_blocks] == [240, 480, 960, 960]
    names = [n for n, _ in full.named_modules()]
    assert not any(n.endswith(("time_embedding", "time_emb_proj", "attn2")) for n in names)
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert (attn.heads, attn.to_q.out_features) == (5, 240)  # heads of 48 channels
    ff = unet.down_blocks[0].attentions[0].transformer_blocks[0].ff
    assert (ff.net[0].proj.out_features, ff.net[2].in_features) == (1920, 960)  # GEGLU
    norms = {n: m for n, m in full.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    assert all(isinstance(m, SharedGroupNorm) for m in norms.values())
    groups = {n: m.num_groups for n, m in norms.items()}
    assert groups["body.1.conv_norm_out"] == 24  # 240: the first of 32, 24, ... dividing it
    assert groups["body.1.down_blocks.1.resnets.1.norm1"] == 32  # 480
    assert groups["body.1.up_blocks.3.resnets.0.norm1"] == 24  # 720 = 480 + 240 (skip)
    assert groups["body.2.attentions.0.group_norm"] == 32  # the decoder's own


@pytest.mark.parametrize(
    "params",
    [
        {"unet_widths": [320, 640, 1280]},
        {"unet_widths": [300, 640, 1280, 1280]},
        {"decoder_widths": [64, 128, 256, 250]},
        {"channels": 3},
    ],
)
def test_bad_build_tables_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AdcSRConfig.from_params(params)


def test_only_x4(net: AdcSR) -> None:
    with pytest.raises(ValueError, match="x4"):
        build(SMALL, 2)


def test_describes_itself(net: AdcSR) -> None:
    desc = FAMILY.describe(net, "small", 4)
    assert desc.size == SizeRequirements(16, 16)
    assert (desc.max_tile, desc.supports_half, desc.image_stats is not None) == (128, True, True)


def test_sides_that_are_not_multiples_of_16_are_padded_and_cropped(net: AdcSR) -> None:
    with torch.no_grad():
        y = net(photo(20, 17))
    assert y.shape == (1, 3, 80, 68) and torch.isfinite(y).all()


# --- the official files ---------------------------------------------------------------------


def test_official_layout_round_trip(net: AdcSR, tmp_path: Path) -> None:
    net_path, half_path = official_files(net, tmp_path)
    parts = [read_state_dict(net_path), read_state_dict(half_path)]
    assert all(k.startswith("body.") for k in parts[0])  # DataParallel's module. is gone
    assert any(k.startswith("body.1.body.4.") for k in parts[0])  # the aliases are there
    merged = merge(parts)
    assert set(merged) == set(net.state_dict())  # aliases, conv_in, pretrained mid: gone
    assert infer(merged) == {**SMALL.to_params(), "scale": 4}
    desc = descriptor_from_state_dict(merged, "small")  # detected among every family
    assert desc.family == "adcsr" and desc.params == sum(p.numel() for p in net.parameters())
    x = photo(16, 16)
    with torch.no_grad():
        torch.testing.assert_close(desc.module(x), net(x), rtol=0, atol=0)
    # The mid block is the student's (net_params), not the pretrained one of halfDecoder.
    torch.testing.assert_close(
        desc.module.body[2].resnets[0].conv1.weight, net.body[2].resnets[0].conv1.weight
    )


def test_the_unet_file_alone_is_explained(net: AdcSR, tmp_path: Path) -> None:
    net_path, _ = official_files(net, tmp_path)
    alone = read_state_dict(net_path)
    assert detect(alone)
    with pytest.raises(ModelError, match=r"U-Net alone .*halfDecoder\.ckpt.*model='adcsr-x4'"):
        descriptor_from_state_dict(alone, "net_params_200.pkl")


def test_merge_wants_both_files(net: AdcSR, tmp_path: Path) -> None:
    net_path, _ = official_files(net, tmp_path)
    with pytest.raises(ValueError, match="two files"):
        merge([read_state_dict(net_path)])
    with pytest.raises(ValueError, match="no VAE decoder"):
        merge([read_state_dict(net_path), read_state_dict(net_path)])


def test_a_checkpoint_with_hyper_parameters_needs_code(net: AdcSR, tmp_path: Path) -> None:
    _, half_path = official_files(net, tmp_path, needs_code=True)
    with pytest.raises(UnsafePickleError, match=r"argparse\.Namespace"):
        read_state_dict(half_path)


# --- image-wide statistics under tiling ------------------------------------------------------


def _tiled(
    net: AdcSR, image: torch.Tensor, tile: int, overlap: int, fn: Callable[..., Any] | None = None
) -> torch.Tensor:
    policy = TilePolicy.for_side(tile, overlap)
    with torch.no_grad():
        return policy.upscale(
            image, fn or net, scale=4, device="cpu", size=SIZE, prepare=net.image_stats
        )


def test_untiled_with_statistics_is_the_official_result(net: AdcSR) -> None:
    x = photo(16, 32)
    with torch.no_grad():
        official = net(x)  # statistics of the tensor itself, as the official script does
        out = _tiled(net, x, 0, 8)
    torch.testing.assert_close(out, official, rtol=0, atol=1e-4)
    # The colour match: the output has the LR's per-channel mean and spread.
    torch.testing.assert_close(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), rtol=0, atol=1e-4)
    torch.testing.assert_close(out.std(dim=(2, 3)), x.std(dim=(2, 3)), rtol=1e-3, atol=1e-4)


def test_every_tile_gets_the_same_statistics_measured_once(net: AdcSR) -> None:
    x = photo(48, 40)
    measured: list[ImageStats] = []
    seen: list[ImageStats] = []

    def prepare(image: torch.Tensor) -> ImageStats:
        measured.append(net.image_stats(image))
        return measured[-1]

    def fn(tile: torch.Tensor, stats: ImageStats) -> torch.Tensor:
        seen.append(stats)
        return torch.nn.functional.interpolate(tile, scale_factor=4)  # the network is slow

    with torch.no_grad():
        TilePolicy.for_side(32, 8).upscale(x, fn, scale=4, device="cpu", size=SIZE, prepare=prepare)
    assert len(measured) == 1 and len(seen) > 1
    assert all(stats is measured[0] for stats in seen)
    groupnorms = sum(1 for m in net.modules() if isinstance(m, SharedGroupNorm))
    assert len(measured[0].norms) >= groupnorms  # every GroupNorm call recorded


@pytest.mark.slow
def test_tiled_matches_untiled(calm_net: AdcSR) -> None:
    x = photo(48, 40)
    whole = _tiled(calm_net, x, 0, 8)
    tiled = _tiled(calm_net, x, 32, 8)
    error = (whole - tiled).abs()
    psnr = -10 * torch.log10(error.square().mean())
    assert psnr > 30, psnr  # attention alone still sees only its tile
    assert error.max() < 0.3


@pytest.mark.slow
def test_shared_statistics_are_what_makes_tiles_agree(calm_net: AdcSR) -> None:
    """Tiles normalised and colour-matched each on their own drift much further."""
    x = photo(48, 40)
    whole = _tiled(calm_net, x, 0, 8)
    shared = _tiled(calm_net, x, 32, 8)
    alone = _tiled(calm_net, x, 32, 8, fn=lambda tile, _stats: calm_net(tile))
    assert (alone - whole).square().mean() > 4 * (shared - whole).square().mean()


def test_large_images_are_measured_on_a_downscaled_copy(
    net: AdcSR, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(net, "stats_side", 32)  # 128 in use; smaller here to stay fast
    x = photo(64, 40)
    sizes: list[tuple[int, ...]] = []
    generate = net.generate
    monkeypatch.setattr(net, "generate", lambda lr: sizes.append(lr.shape) or generate(lr))
    stats = net.image_stats(x)
    assert sizes == [(1, 3, 32, 20)]
    torch.testing.assert_close(stats.lr_mean, x.mean(dim=(2, 3), keepdim=True), atol=2e-3, rtol=0)
    assert torch.isfinite(stats.sr_std).all() and stats.norms


@pytest.mark.slow  # fp16 convolutions are slow on a CPU
def test_fp16_overflow_falls_back_to_fp32(net: AdcSR) -> None:
    overflowing = copy.deepcopy(net)
    with torch.no_grad():
        overflowing.decoder.conv_out.weight.mul_(1e6)  # beyond fp16's 65504, fine in fp32
    desc = FAMILY.describe(overflowing, "overflowing", 4)
    warnings: list[str] = []
    upscaler = Upscaler(
        desc, Compute(torch.device("cpu"), "fp16"), tile=0, on_warning=warnings.append
    )
    out = upscaler.upscale_tensor(photo(16, 16))
    assert torch.isfinite(out).all()
    assert warnings and "recomputing in fp32" in warnings[0]


# --- the official files through the registry: download, trust, upscale ------------------------


def _user_manifest(home: Path, name: str, urls: dict[str, str], params: int) -> Path:
    """The bundled adcsr-x4 manifest, renamed, at the reduced width, downloading ``urls``."""
    text = (REPO / "models" / "adcsr-x4.toml").read_text(encoding="utf-8")
    text = text.replace('name = "adcsr-x4"', f'name = "{name}"')
    text = text.replace("[320, 640, 1280, 1280]", str(list(SMALL.unet_widths)))
    text = text.replace("[64, 128, 256, 256]", str(list(SMALL.decoder_widths)))
    text = text.replace(f"params = {FULL_PARAMS}", f"params = {params}")
    for file, url in urls.items():
        start = text.index(f'file = "{file}"')
        begin, end = text.index("urls = [", start), text.index("]\n", start) + 1
        text = text[:begin] + f'urls = ["{url}"]' + text[end:]
    path = home / "models" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _download_small_model(net: AdcSR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Serve :func:`official_files` of ``net`` on loopback as ``adcsr-small-x4`` (a user copy
    of the bundled manifest), fetch them through ``models download``; its parameter count."""
    home = use_home(tmp_path, monkeypatch)
    net_path, half_path = official_files(net, tmp_path / "hf", needs_code=True)
    files = {f"/{p.name}": p.read_bytes() for p in (net_path, half_path)}
    params = sum(p.numel() for p in net.parameters())
    with serve(files) as server:
        urls = {path[1:]: server.url(path) for path in files}
        _user_manifest(home, "adcsr-small-x4", urls, params)

        refused = invoke("models", "download", "adcsr-small-x4")
        assert refused.exit_code == 3 and "--allow-unverified" in refused.stderr
        assert server.hits == []

        fetched = invoke(
            "models", "download", "adcsr-small-x4", "--allow-unverified", "--trust-pickle"
        )
        assert fetched.exit_code == 0, fetched.output
        assert "converted to safetensors" in fetched.stderr
        assert sorted(h.path for h in server.hits) == sorted(files)

    info = invoke("models", "info", "adcsr-small-x4", "--json")
    details = json.loads(info.stdout)
    assert details["params"] == params and details["license"] == "Apache-2.0"
    assert "Guaishou74851/AdcSR" in details["meta"]["source"]
    assert [w["pinned_sha256"] for w in details["weights"]] == [
        hashlib.sha256(data).hexdigest() for data in files.values()
    ]
    assert invoke("models", "verify", "adcsr-small-x4").exit_code == 0
    return params


def test_download_pin_and_convert_through_the_cli(
    net: AdcSR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _download_small_model(net, tmp_path, monkeypatch)


@pytest.mark.slow
def test_upscale_with_the_downloaded_official_files(
    net: AdcSR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _download_small_model(net, tmp_path, monkeypatch)
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    pixels = (photo(24, 40)[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    done = invoke("upscale", str(image), "-o", str(out), "-m", "adcsr-small-x4", "--offline")
    assert done.exit_code == 0, done.output
    with Image.open(out / "photo.png") as result:
        assert result.size == (160, 96)


def test_models_info_of_the_bundled_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_home(tmp_path, monkeypatch)
    shown = invoke("models", "info", "adcsr-x4")
    assert shown.exit_code == 0
    text = shown.stdout
    for fact in (
        "456073683",
        "Apache-2.0",
        "https://github.com/Guaishou74851/AdcSR",
        "huggingface.co/Guaishou74851/AdcSR/resolve/main/net_params_200.pkl",
        "huggingface.co/Guaishou74851/AdcSR/resolve/main/halfDecoder.ckpt",
        "--allow-unverified",
    ):
        assert fact in text, fact
    offline = invoke("upscale", str(REPO / "README.md"), "-m", "adcsr-x4", "--offline")
    assert offline.exit_code == 3
    assert "pocketsr models download adcsr-x4 --allow-unverified" in " ".join(
        offline.stderr.split()
    )


# --- loading costs the reading of the weights, no more --------------------------------------


class _WritesToMemory(TorchDispatchMode):
    """Records every in-place op (an initialiser's ``uniform_``, a load's ``copy_``) that
    touches a tensor with real memory."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__  # uniform_, not uniform_.default
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name.endswith("_") and name not in ("detach_",) and any(not t.is_meta for t in tensors):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def test_loading_weights_neither_initialises_nor_copies(net: AdcSR) -> None:
    state_dict = net.state_dict()
    with _WritesToMemory() as writes:
        desc = FAMILY.instantiate("adcsr-small", SMALL.to_params(), 4, state_dict)
    assert writes.ops == []
    tensors = desc.module.state_dict()
    assert all(tensors[k].data_ptr() == v.data_ptr() for k, v in state_dict.items())
    assert not any(t.is_meta for t in [*desc.module.parameters(), *desc.module.buffers()])
    # The same network as one built (initialised) and copied into, as before.
    with _WritesToMemory() as writes:
        copied = dataclasses.replace(FAMILY, build_empty=None).instantiate(
            "adcsr-small", SMALL.to_params(), 4, state_dict
        )
    assert "copy_" in writes.ops and any(op in writes.ops for op in ("uniform_", "normal_"))
    x = photo(32, 48)
    with torch.no_grad():
        assert torch.equal(desc.module(x), copied.module(x))


def test_loading_keeps_the_network_s_dtypes(net: AdcSR) -> None:
    half = {k: v.half() for k, v in net.state_dict().items()}
    desc = FAMILY.load(half, "adcsr-small")
    assert {p.dtype for p in desc.module.parameters()} == {torch.float32}


def test_loading_refuses_a_state_dict_that_leaves_tensors_unset(net: AdcSR) -> None:
    state_dict = net.state_dict()
    state_dict.pop("decoder.conv_out.bias")
    with pytest.raises(ModelError, match=r"decoder\.conv_out\.bias"):
        FAMILY.instantiate("adcsr-small", SMALL.to_params(), 4, state_dict)


def test_the_python_api_takes_the_trust_options_of_the_cli(
    net: AdcSR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``allow_unverified`` and ``trust_pickle`` are ``--allow-unverified`` and
    ``--trust-pickle``: refused without them, pinned and converted once with them."""
    import numpy as np

    import pocketsr_cli

    home = use_home(tmp_path, monkeypatch)
    net_path, half_path = official_files(net, tmp_path / "hf", needs_code=True)
    files = {f"/{p.name}": p.read_bytes() for p in (net_path, half_path)}
    with serve(files) as server:
        urls = {path[1:]: server.url(path) for path in files}
        _user_manifest(home, "adcsr-small-x4", urls, sum(p.numel() for p in net.parameters()))
        with pytest.raises(ModelError, match="allow-unverified"):
            pocketsr_cli.Upscaler("adcsr-small-x4", device="cpu")
        assert server.hits == []
        with pytest.raises(UnsafePickleError, match="trust_pickle=True"):
            pocketsr_cli.Upscaler("adcsr-small-x4", device="cpu", allow_unverified=True)
        pocketsr_cli.Upscaler(
            "adcsr-small-x4", device="cpu", allow_unverified=True, trust_pickle=True
        )
    # Pinned and converted: from now on the files load offline, without either option.
    up = pocketsr_cli.Upscaler("adcsr-small-x4", device="cpu", offline=True)
    assert up.upscale(np.zeros((16, 24, 3), np.uint8)).shape == (64, 96, 3)
