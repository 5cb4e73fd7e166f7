"""The compact student's starting points: the ncnn init, the exact deepening and the exact
×4 -> ×2 fold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from pocketsr_cli.train import compact
from pocketsr_cli.weights.community import import_spandrel


def _compact(scale: int, feat: int = 8, convs: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cls = import_spandrel().architectures.Compact.Compact
    return cls(num_in_ch=3, num_out_ch=3, num_feat=feat, num_conv=convs, upscale=scale).eval()


def test_fold_to_x2_is_the_x4_output_area_downscaled() -> None:
    x4 = _compact(4)
    with torch.no_grad():  # make the head's sub-pixels differ a lot, so a wrong fold shows
        x4.body[-1].weight.mul_(5)
        x4.body[-1].bias.uniform_(-0.5, 0.5)
    x2 = _compact(2, seed=1)
    x2.load_state_dict(compact.fold_to_x2(x4.state_dict()))
    x = torch.rand(2, 3, 13, 10)
    with torch.no_grad():
        expected = F.avg_pool2d(x4(x), 2)
        assert not torch.allclose(expected, F.interpolate(x, scale_factor=2.0))
        torch.testing.assert_close(x2(x), expected, rtol=0, atol=1e-5)


def test_fold_refuses_what_is_not_a_compact_x4() -> None:
    with pytest.raises(ValueError, match="not colours"):
        compact.fold_to_x2(_compact(2).state_dict())
    with pytest.raises(ValueError, match="SRVGG"):
        compact.fold_to_x2({"conv_first.weight": torch.zeros(4, 3, 3, 3)})


def test_cli_folds_a_file(tmp_path: Path) -> None:
    from pocketsr_cli.train.export import write_weights

    write_weights(_compact(4).state_dict(), tmp_path / "x4.safetensors")
    compact.main(["x2", str(tmp_path / "x4.safetensors"), str(tmp_path / "x2.safetensors")])
    state = load_file(str(tmp_path / "x2.safetensors"))
    assert state[f"body.{compact.last_conv_index(state)}.weight"].shape[0] == 3 * 4


def test_deepen_doubles_the_body_and_keeps_the_output() -> None:
    shallow = _compact(4, convs=3)
    with torch.no_grad():  # PReLU slopes away from the default, so a dropped slope shows
        for layer in shallow.body:
            if isinstance(layer, torch.nn.PReLU):
                layer.weight.uniform_(-0.5, 0.5)
    deep = _compact(4, convs=6, seed=1)
    deep.load_state_dict(compact.deepen(shallow.state_dict()))
    x = torch.rand(2, 3, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(deep(x), shallow(x), rtol=0, atol=1e-6)
    # the new layers are trainable: a gradient reaches every inserted convolution
    deep(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deep.parameters())


def test_deepen_refuses_what_is_not_compact_with_prelu() -> None:
    with pytest.raises(ValueError, match="SRVGG"):
        compact.deepen({"conv_first.weight": torch.zeros(4, 3, 3, 3)})
    state = _compact(4).state_dict()
    state["body.1.weight"] = torch.ones(1)  # a single shared slope, not one per channel
    with pytest.raises(ValueError, match="PReLU"):
        compact.deepen(state)


def test_cli_deepens_a_file(tmp_path: Path) -> None:
    from pocketsr_cli.train.export import write_weights

    write_weights(_compact(4, convs=2).state_dict(), tmp_path / "a.safetensors")
    compact.main(["deepen", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")])
    state = load_file(str(tmp_path / "b.safetensors"))
    assert compact.last_conv_index(state) == 2 * 4 + 2  # conv_first, act, 4 pairs, head


def test_init_from_the_animevideov3_files(teacher_dir: Path, tmp_path: Path) -> None:
    from pocketsr_cli.weights.load import descriptor_from_state_dict

    compact.main(["init", str(teacher_dir), str(tmp_path / "init.safetensors")])
    desc = descriptor_from_state_dict(load_file(str(tmp_path / "init.safetensors")), "init")
    assert (desc.family, desc.scale, desc.params) == ("spandrel:Compact", 4, 621424)


def test_init_refuses_non_finite_weights(tmp_path: Path) -> None:
    """The converter reads NaN and infinite values as stored (the loader refuses them);
    the init, which builds no network through the loader, refuses them itself."""
    import numpy as np
    from test_ncnn import save, srvgg_state, write_srvgg

    from pocketsr_cli.errors import ModelError

    _, bin_ = save(tmp_path, write_srvgg(srvgg_state(8, 1, 4), 1, 4, fp16=False), compact.INIT_STEM)
    data = bytearray(bin_.read_bytes())
    data[4:8] = np.array([np.nan], dtype="<f4").tobytes()  # after the first conv's tag
    bin_.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"'body\.0\.weight' holds NaN or infinite"):
        compact.init_from_ncnn(tmp_path)


def test_init_without_the_files_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch_teacher"):
        compact.init_from_ncnn(tmp_path)
