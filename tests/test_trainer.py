"""Training losses, annealing and the resumable trainer (with a tiny stand-in student)."""

from __future__ import annotations

import errno
import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _runs import press_ctrl_c
from safetensors.torch import load_file
from torch import nn

from pocketsr_cli.train import anneal, loop, losses, trainer
from pocketsr_cli.train.patches import PatchSpec, make_patches
from pocketsr_cli.train.trainer import LossWeights, TrainConfig, Trainer


class TinyStudent(nn.Module):
    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base + F.pixel_shuffle(self.body(x), self.scale)


def nearest_teacher(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=4, mode="nearest")


def _patch_run(root: Path, scale: int) -> Path:
    """12 patches at ``scale`` from two blurred-noise photos, labelled by a nearest ×4."""
    photos = root / "photos"
    photos.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("Aqua.jpg", "skimage_rocket.jpg"):
        img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(photos / name), cv2.GaussianBlur(img, (5, 5), 1.0))
    spec = PatchSpec(scale=scale, lr_size=8, margin=2, seed=3)
    make_patches(
        sorted(photos.iterdir()), root / f"patches{scale}", nearest_teacher, {"name": "nearest"},
        count=12, spec=spec, shard_size=4, batch_size=4,
    )  # fmt: skip
    return root / f"patches{scale}"


@pytest.fixture(scope="module")
def patch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _patch_run(tmp_path_factory.mktemp("train"), 4)


@pytest.fixture(scope="module")
def patch_dir_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _patch_run(tmp_path_factory.mktemp("train2"), 2)


def config(patch_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "patches": str(patch_dir), "out": str(out), "steps": 6, "batch": 4, "gan_start": 2,
        "ckpt_every": 3, "log_every": 1, "weights": LossWeights(perceptual=0.0),
    }  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def tiny_student(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer, "build_student", lambda arch, scale: TinyStudent(scale))


def assert_resume_replays(make: Callable[[Path], TrainConfig], tmp_path: Path) -> None:
    """A run that crashes right after its step-3 checkpoint and is resumed ends with the
    weights of the uninterrupted run (``make(out)`` builds the config of both)."""
    whole = Trainer(make(tmp_path / "a"))
    whole.run()
    first = Trainer(make(tmp_path / "b"))
    save = first.save

    def save_then_die() -> None:
        save()
        raise KeyboardInterrupt

    first.save = save_then_die  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.run()
    second = Trainer(make(tmp_path / "b"))
    assert second.resume() and second.step == 3
    second.run()
    for key, value in whole.student.state_dict().items():
        assert torch.allclose(value, second.student.state_dict()[key], atol=1e-6), key


def test_resume_replays_an_uninterrupted_run(patch_dir: Path, tmp_path: Path) -> None:
    # batch 2: six batches an epoch, so the resumed run must skip into the middle of one
    assert_resume_replays(lambda out: config(patch_dir, out, batch=2), tmp_path)
    log = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert len(log) == 6 and '"d"' in log[-1] and '"gan"' in log[-1]  # GAN from step 2 on


def ctrl_c_in_step(run: Trainer, step: int, times: int = 1) -> None:
    """Ctrl-C pressed ``times`` while ``run``'s step ``step`` (from 1) runs."""
    real = run.train_step

    def train_step(batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if run.step == step - 1:
            for _ in range(times):
                press_ctrl_c()
        return real(batch)

    run.train_step = train_step  # type: ignore[method-assign]


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    for key, value in a.student.state_dict().items():
        assert torch.allclose(value, b.student.state_dict()[key], atol=1e-6), key


def test_ctrl_c_during_a_step_saves_a_checkpoint_at_its_end_and_the_resume_replays(
    patch_dir: Path, tmp_path: Path
) -> None:
    """No checkpoint is due before step 6, yet Ctrl-C in step 4 loses nothing: the step is
    finished, logged and saved, and the resumed run ends with the uninterrupted weights."""
    whole = Trainer(config(patch_dir, tmp_path / "a", ckpt_every=100, batch=2))
    whole.run()
    first = Trainer(config(patch_dir, tmp_path / "b", ckpt_every=100, batch=2))
    ctrl_c_in_step(first, 4)
    with pytest.raises(loop.Interrupted) as caught:
        first.run()
    assert (caught.value.saved, caught.value.again) == (4, False)
    assert str(caught.value).startswith("interrupted: saved a checkpoint at step 4")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3, 4]
    second = Trainer(config(patch_dir, tmp_path / "b", ckpt_every=100, batch=2))
    assert second.resume() and second.step == 4
    second.run()
    assert_same_weights(whole, second)


def test_ctrl_c_while_a_batch_loads_saves_the_last_step_with_its_random_state(
    patch_dir: Path, tmp_path: Path
) -> None:
    """Loading draws random numbers: the checkpoint saved on Ctrl-C then holds the random
    state as the last step left it, so the resumed run still replays."""
    whole = Trainer(config(patch_dir, tmp_path / "a", ckpt_every=100))
    whole.run()
    first = Trainer(config(patch_dir, tmp_path / "b", ckpt_every=100))
    real = first._batches

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for batch in real():
            if first.step == 3:
                torch.rand(7)  # loading had drawn from the random state
                press_ctrl_c()
            yield batch

    first._batches = batches  # type: ignore[method-assign]
    with pytest.raises(loop.Interrupted) as caught:
        first.run()
    assert caught.value.saved == 3
    second = Trainer(config(patch_dir, tmp_path / "b", ckpt_every=100))
    assert second.resume() and second.step == 3
    second.run()
    assert_same_weights(whole, second)


def test_a_second_ctrl_c_during_that_save_leaves_the_previous_checkpoint_whole(
    patch_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b"
    first = Trainer(config(patch_dir, out, ckpt_every=2))
    ctrl_c_in_step(first, 3)
    real_save = torch.save

    def save(state: dict, path: Path) -> None:
        if state["step"] == 3:  # the save on the way out: cut short half-written
            Path(path).write_bytes(b"half a checkpoint")
            press_ctrl_c()
        real_save(state, path)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(loop.Interrupted) as caught:
        first.run()
    assert (caught.value.saved, caught.value.last, caught.value.again) == (None, 2, True)
    assert str(caught.value).startswith("interrupted again before a checkpoint could be saved")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "last.pt", "log.jsonl"]
    monkeypatch.setattr(torch, "save", real_save)
    second = Trainer(config(patch_dir, out, ckpt_every=2))
    assert second.resume() and second.step == 2  # the step-2 checkpoint, whole


def test_a_second_ctrl_c_during_the_step_ends_it_at_once_without_a_checkpoint(
    patch_dir: Path, tmp_path: Path
) -> None:
    """A step that seems stuck can still be left; the models may then be half updated, so
    nothing is saved and the previous checkpoint stays."""
    out = tmp_path / "b"
    first = Trainer(config(patch_dir, out, ckpt_every=2))
    ctrl_c_in_step(first, 4, times=2)
    with pytest.raises(loop.Interrupted) as caught:
        first.run()
    assert (caught.value.saved, caught.value.last, caught.value.again) == (None, 2, True)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2


def test_run_command_saves_on_ctrl_c_and_exits_130_saying_how_to_resume(
    patch_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pocketsr_cli.train.run import main

    real = Trainer.train_step

    def train_step(self: Trainer, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.step == 2:
            press_ctrl_c()
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    out = tmp_path / "run"
    argv = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0"]
    assert main([*argv, "--steps", "6", "--batch", "4"]) == 130  # --ckpt-every 200
    err = capsys.readouterr().err
    assert f"interrupted: saved a checkpoint at step 3 ({out / 'last.pt'}); run the same" in err
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3


def test_stop_at_ends_where_a_longer_run_stood_and_resumes_into_it(
    patch_dir: Path, tmp_path: Path
) -> None:
    """``--stop-at 4`` of a 6-step run: the weights the 6-step run had after step 4 (its
    schedule is the 6-step one), and resuming without it ends where that run ends."""
    whole = Trainer(config(patch_dir, tmp_path / "a"))
    at_four: dict[str, torch.Tensor] = {}

    def keep(step: int, losses: dict[str, float]) -> None:
        if step == 4:
            at_four.update({k: v.clone() for k, v in whole.student.state_dict().items()})

    whole.run(on_step=keep)
    stopped = Trainer(config(patch_dir, tmp_path / "b", stop_at=4))
    stopped.run()
    assert stopped.step == 4 and at_four
    for key, value in stopped.student.state_dict().items():
        assert torch.allclose(value, at_four[key], atol=1e-6), key
    with pytest.raises(ValueError, match="--stop-at must be a step"):
        Trainer(config(patch_dir, tmp_path / "c", stop_at=-1))
    resumed = Trainer(config(patch_dir, tmp_path / "b"))
    assert resumed.resume() and resumed.step == 4
    resumed.run()
    for key, value in whole.student.state_dict().items():
        assert torch.allclose(value, resumed.student.state_dict()[key], atol=1e-6), key


def test_discriminator_sees_amplified_high_pass(patch_dir: Path, tmp_path: Path) -> None:
    t = Trainer(
        config(
            patch_dir, tmp_path / "hp", disc_highpass=1.5, disc_gain=8.0, disc_crop=16, gan_start=0
        )
    )
    flat = torch.full((2, 3, 32, 32), 0.6)
    assert t._disc_view(flat).abs().max() < 1e-5  # nothing above the blur: nothing to judge
    rgb = Trainer(config(patch_dir, tmp_path / "rgb", disc_crop=16))
    x = torch.rand(2, 3, 16, 16)  # as large as the crop, so only RandPad moves it
    torch.manual_seed(5)
    plain = rgb._disc_view(x)
    torch.manual_seed(5)
    assert torch.allclose(t._disc_view(x), 8.0 * losses.high_pass(plain, 1.5), atol=1e-5)
    record = t.train_step(next(t._batches()))
    assert np.isfinite(record["d"]) and np.isfinite(record["gan"])
    band = Trainer(config(patch_dir, tmp_path / "band", disc_highpass=1.5, disc_lowpass=0.7))
    checker = 0.05 * (torch.arange(16).view(1, 1, 1, 16) % 2).expand(2, 3, 16, 16)
    torch.manual_seed(5)
    seen = band._disc_view(checker)[..., 4:-4, 4:-4]  # RandPad's reflected rim aside
    assert seen.abs().max() < 0.25 * t._disc_view(checker)[..., 4:-4, 4:-4].abs().max() / 8


def test_aligned_discriminator_windows_sit_on_the_output_grid(
    patch_dir: Path, tmp_path: Path
) -> None:
    t = Trainer(config(patch_dir, tmp_path / "al", disc_aligned=True, disc_crop=8))
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).expand(1, 3, 32, 32)
    for _ in range(20):
        corner = int(t._disc_view(x)[0, 0, 0, 0])
        assert (corner // 32) % 4 == 0 and (corner % 32) % 4 == 0  # no RandPad, on the grid


def test_phase_discriminator_sees_a_mesh_as_constant_channels(
    patch_dir: Path, tmp_path: Path
) -> None:
    t = Trainer(config(patch_dir, tmp_path / "ph", disc_phases=True, disc_crop=16, gan_start=0))
    cell = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))  # one cell, tiled
    mesh = cell.repeat(2, 1, 8, 8)
    view = t._disc_view(mesh)
    assert view.shape == (2, 48, 4, 4)
    assert torch.allclose(view, view[..., :1, :1].expand_as(view))  # the same everywhere
    assert view[0, :, 0, 0].std() > 0.1  # and a difference between phases
    record = t.train_step(next(t._batches()))
    assert np.isfinite(record["d"]) and np.isfinite(record["gan"])


@pytest.mark.parametrize(
    ("scale", "crop", "such_as"), [(4, 9, "4 of at least 16, such as 16"),
     (4, 8, "4 of at least 16, such as 16"), (4, 26, "4 of at least 16, such as 24"),
     (2, 9, "2 of at least 8, such as 8")],
)  # fmt: skip
def test_a_disc_crop_the_phases_cannot_split_is_refused_before_training(
    patch_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scale: int,
    crop: int,
    such_as: str,
) -> None:
    """It failed inside the discriminator when it first ran (a traceback, mid-run)."""
    from pocketsr_cli.train.run import main

    out = tmp_path / "run"
    argv = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0"]
    argv += ["--steps", "2", "--batch", "4", "--gan-start", "0", "--disc-phases", "true"]
    argv += ["--scale", str(scale)]
    assert main([*argv, "--disc-crop", str(crop)]) == 1
    assert capsys.readouterr().err == (
        f"error: --disc-crop {crop} cannot be split into the ×{scale} phases --disc-phases "
        f"judges: give a multiple of {such_as}\n"
    )
    assert not out.exists()
    assert main([*argv, "--disc-crop", str(4 * scale)]) == 0  # the smallest that works


def test_a_disc_crop_the_phases_cannot_split_is_accepted_without_a_gan_loss(
    patch_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --w-gan 0 no discriminator judges anything, so its crop is not refused."""
    from pocketsr_cli.train.run import main

    argv = ["--patches", str(patch_dir), "--out", str(tmp_path / "run"), "--w-perceptual", "0"]
    argv += ["--steps", "2", "--batch", "4", "--gan-start", "0", "--disc-phases", "true"]
    assert main([*argv, "--w-gan", "0", "--disc-crop", "9"]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "last.pt").exists()


def test_export_and_x2_targets(patch_dir: Path, tmp_path: Path) -> None:
    t = Trainer(config(patch_dir, tmp_path / "x2", scale=2, steps=2))
    batch = next(t._batches())
    record = t.train_step(batch)
    assert np.isfinite(list(record.values())).all()
    info = t.export(tmp_path / "w.safetensors")
    state = load_file(str(tmp_path / "w.safetensors"))
    assert info["params"] == sum(v.numel() for v in state.values())
    assert len(info["sha256"]) == 64 and info["size"] == (tmp_path / "w.safetensors").stat().st_size
    out = t.ema(batch["lr"])
    assert out.shape[-1] == batch["lr"].shape[-1] * 2


def test_x2_patches_train_a_x2_student_on_their_own_targets(
    patch_dir_x2: Path, tmp_path: Path
) -> None:
    t = Trainer(config(patch_dir_x2, tmp_path / "x2", scale=2, steps=2, mild_fraction=0.5))
    assert t.patch_scale == 2 and t.resize_factor == 1
    batch = next(t._batches())
    assert batch["hr"].shape[-1] == batch["teacher"].shape[-1] == batch["lr"].shape[-1] * 2
    lr, _ = t._mix_mild(batch["hr"], batch["lr"], batch["hr"], batch["teacher"])
    assert lr.shape == batch["lr"].shape  # the mild inputs are degraded at ×2 too
    assert np.isfinite(list(t.train_step(batch).values())).all()
    assert t.ema(batch["lr"]).shape[-1] == batch["lr"].shape[-1] * 2


def test_patches_of_another_scale_are_refused(
    patch_dir: Path, patch_dir_x2: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="cannot learn from ×2 patches"):
        Trainer(config(patch_dir_x2, tmp_path / "a", scale=4))
    mixed = config(patch_dir, tmp_path / "b", scale=2)
    mixed.patches = f"{patch_dir},{patch_dir_x2}"
    with pytest.raises(ValueError, match="different scales"):
        Trainer(mixed)


def test_limit_beyond_available_patches_is_refused(patch_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only"):
        Trainer(config(patch_dir, tmp_path / "c", limit=1000))


def test_lattice_loss_sees_a_grid_and_not_a_photo() -> None:
    smooth = F.interpolate(torch.rand(1, 3, 8, 8), size=(64, 64), mode="bicubic")
    grid = smooth.clone()
    grid[..., ::8, :] += 0.1
    grid[..., :, ::8] += 0.1
    assert losses.lattice_loss(smooth, smooth) == 0
    assert losses.lattice_loss(grid, smooth) > 20 * losses.lattice_loss(
        smooth + 0.01 * torch.randn_like(smooth), smooth
    )


def assert_differentiable(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    out: torch.Tensor,
    target: torch.Tensor,
) -> None:
    x = out.clone().requires_grad_(True)
    loss(x, target).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_amplitude_loss_is_phase_blind() -> None:
    x = torch.rand(1, 3, 32, 32)
    shifted = torch.roll(x, shifts=(5, 3), dims=(-2, -1))
    assert losses.amplitude_loss(x, shifted) < 1e-5
    assert losses.l1(x, shifted) > 0.1
    assert losses.amplitude_loss(x, torch.zeros_like(x)) > 0.1


def test_gradient_magnitude_matches_the_sharpness_operator() -> None:
    import numpy as np

    y = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    g = losses.gradient_magnitude(y, eps=0.0)[0, 0].numpy()
    a = y[0, 0].numpy()
    expected = np.sqrt((a[:-1, 1:] - a[:-1, :-1]) ** 2 + (a[1:, :-1] - a[:-1, :-1]) ** 2)
    np.testing.assert_allclose(g, expected)


def test_gradient_loss_asks_for_texture_not_its_phase() -> None:
    texture = torch.rand(1, 3, 32, 32)
    flat = torch.full_like(texture, 0.5)
    mirrored = 1.0 - texture  # same edges, opposite signs: far in L1, equal in gradients
    assert losses.gradient_loss(mirrored, texture) < 1e-4
    assert losses.l1(mirrored, texture) > 0.2
    assert losses.gradient_loss(flat, texture) > 0.2
    assert_differentiable(losses.gradient_loss, flat + 0.01 * torch.rand_like(flat), texture)


def test_rand_pad_keeps_shape_and_shifts() -> None:
    x = torch.rand(2, 3, 24, 24)
    g = torch.Generator().manual_seed(1)
    y = losses.rand_pad(x, g)
    assert y.shape == x.shape


def test_high_pass_keeps_texture_and_drops_flat_and_smooth() -> None:
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    texture = 0.05 * torch.rand(1, 3, 32, 32)
    # a linear ramp survives a Gaussian blur unchanged away from the borders
    assert losses.high_pass(ramp, 1.5)[..., 8:-8, 8:-8].abs().max() < 1e-5
    assert losses.high_pass(torch.full((1, 3, 16, 16), 0.7), 1.5).abs().max() < 1e-6
    kept = losses.high_pass(texture + ramp, 1.5)[..., 8:-8, 8:-8]
    assert kept.std() > 0.5 * (texture - texture.mean()).std()


def test_annealing_blends_then_swaps() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    light = nn.Identity()
    (block,) = anneal.wrap(model, {"0": light})
    x = torch.rand(1, 3, 4, 4)
    heavy_out = block.heavy(x)
    assert anneal.set_progress(model, 0, 0, 10) == 1.0
    assert torch.allclose(block(x), heavy_out)
    assert anneal.set_progress(model, 5, 0, 10) == 0.5
    assert torch.allclose(block(x), 0.5 * heavy_out + 0.5 * x)
    assert anneal.set_progress(model, 10, 0, 10) == 0.0
    assert anneal.finalize(model) == 1 and model[0] is light


def test_pocketsr_dense_blocks_anneal_to_depthwise() -> None:
    from pocketsr_cli.archs.pocketsr import build
    from pocketsr_cli.archs.pocketsr.blocks import DWBlock, ResBlock

    model = build("tiny", 4)
    replacements = anneal.pocketsr_replacements(model)
    assert replacements and all(isinstance(m, DWBlock) for m in replacements.values())
    anneal.wrap(model, replacements)
    x = torch.rand(1, 3, 16, 16)
    anneal.set_progress(model, 10, 0, 10)
    assert model(x).shape == (1, 3, 64, 64)
    assert anneal.finalize(model) == len(replacements)
    assert not any(isinstance(m, ResBlock) for m in model.unet.modules())


def test_export_checkpoint_matches_the_trainers_export(patch_dir: Path, tmp_path: Path) -> None:
    from pocketsr_cli.train.export import export_checkpoint

    t = Trainer(config(patch_dir, tmp_path / "e", steps=3))
    t.run()
    direct = t.export(tmp_path / "direct.safetensors")
    info = export_checkpoint(tmp_path / "e", tmp_path / "ckpt.safetensors")
    assert info["step"] == 3 and info["sha256"] == direct["sha256"]


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_exported_weights_get_the_umasks_mode_and_save_files_bytes(
    tmp_path: Path, umask: int
) -> None:
    """Every training export (train.run --export, ema.safetensors, train.export, the
    train.compact conversions) goes through write_weights: the file follows the umask, as
    imported weights do, not safetensors' 0600, and its bytes stay save_file's, those the
    model cards record (a shipped file is an export copied into models/)."""
    from safetensors.torch import save

    from pocketsr_cli.train.export import write_weights

    state = {"body.0.weight": torch.randn(4, 3, 3, 3), "body.0.bias": torch.zeros(4)}
    dest = tmp_path / "w.safetensors"
    old = os.umask(umask)
    try:
        info = write_weights(state, dest)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask
    assert dest.read_bytes() == save(state) and info["size"] == dest.stat().st_size
    assert list(tmp_path.iterdir()) == [dest]  # no temporary file left beside it


def test_mild_mix_replaces_part_of_the_batch(patch_dir: Path, tmp_path: Path) -> None:
    t = Trainer(config(patch_dir, tmp_path / "m", mild_fraction=0.5))
    batch = next(t._batches())
    gt = batch["hr"]
    lr, teacher = t._mix_mild(batch["hr"], batch["lr"], gt, batch["teacher"])
    assert torch.equal(teacher[:2], gt[:2]) and torch.equal(teacher[2:], batch["teacher"][2:])
    assert not torch.equal(lr[:2], batch["lr"][:2]) and torch.equal(lr[2:], batch["lr"][2:])
    again = t._mix_mild(batch["hr"], batch["lr"], gt, batch["teacher"])[0]
    assert torch.equal(lr, again)  # seeded by (seed, step)


def test_clean_mix_is_the_plain_bicubic_downscale(patch_dir: Path, tmp_path: Path) -> None:
    from pocketsr_cli.evaluation.degrade import degrade_eval

    t = Trainer(config(patch_dir, tmp_path / "c", mild_fraction=0.5, mild_kind="clean"))
    batch = next(t._batches())
    lr, teacher = t._mix_mild(batch["hr"], batch["lr"], batch["hr"], batch["teacher"])
    for i in range(2):
        hr = (batch["hr"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        want = degrade_eval(hr, "bicubic", scale=4)  # what `pocketsr eval` feeds the model
        got = (lr[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(got, want)
        assert torch.equal(teacher[i], batch["hr"][i])
    with pytest.raises(ValueError, match="mild-kind"):
        Trainer(config(patch_dir, tmp_path / "x", mild_kind="heavy"))


def test_several_patch_folders_are_mixed_each_cut_to_limit(patch_dir: Path, tmp_path: Path) -> None:
    one = Trainer(config(patch_dir, tmp_path / "one", limit=4))
    two_cfg = config(patch_dir, tmp_path / "both", limit=4)
    two_cfg.patches = f"{patch_dir}, {patch_dir}"
    both = Trainer(two_cfg)
    assert len(one.data) == 4 and len(both.data) == 8
    raw = [both.data.datasets[k].raw(i)["lr"] for k in (0, 1) for i in range(4)]
    assert all(np.array_equal(raw[i], raw[i + 4]) for i in range(4))
    bad = config(patch_dir, tmp_path / "bad")
    bad.patches = " , "
    with pytest.raises(ValueError, match="no folder"):
        Trainer(bad)


def test_usm_sharpens_edges_and_leaves_flat_and_faint_areas() -> None:
    flat = torch.full((1, 3, 64, 64), 0.4)
    assert torch.allclose(losses.usm_sharpen(flat), flat, atol=1e-6)
    faint = flat + 0.01 * torch.rand_like(flat)  # under the 10/255 threshold everywhere
    assert torch.allclose(losses.usm_sharpen(faint), faint, atol=2e-3)
    edge = flat.clone()
    edge[..., 32:] = 0.8
    edge = losses.gaussian_blur(edge, 1.5, 4)
    sharp = losses.usm_sharpen(edge)
    assert float(sharp.min()) >= 0 and float(sharp.max()) <= 1
    energy = losses.gradient_magnitude(sharp, 0).mean() / losses.gradient_magnitude(edge, 0).mean()
    assert 1.2 < float(energy) < 1.6  # weight 0.5: at most 1.5x, soft mask at the border


def test_usm_with_sigma_and_no_threshold_is_plain_unsharp_masking() -> None:
    rng = np.random.default_rng(3)
    img = rng.random((40, 48, 3)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)  # keep it mostly in range after sharpening
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    got = losses.usm_sharpen(x, weight=1.5, threshold=0.0, sigma=1.5)[0].permute(1, 2, 0)
    # cv2 restatement: 2·ceil(3σ)+1 taps, reflect border (OpenCV's BORDER_REFLECT_101)
    blur = cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT_101)
    expected = np.clip(img + 1.5 * (img - blur), 0, 1)
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-5)
    with pytest.raises(ValueError, match="sigma"):
        losses.usm_sharpen(x, sigma=0.0)


def test_usm_target_options_reach_the_derived_target(patch_dir: Path, tmp_path: Path) -> None:
    weights = LossWeights(perceptual=0.0, l1_gt_usm=1.0)
    cfg = config(patch_dir, tmp_path / "s", weights=weights)
    cfg.usm_sigma, cfg.usm_amount, cfg.usm_threshold = 1.5, 2.0, 0.0
    t = Trainer(cfg)
    raw = t.data.raw(0)
    hr = torch.from_numpy(raw["hr"]).permute(2, 0, 1)[None].float() / 255
    want = losses.usm_sharpen(hr, weight=2.0, threshold=0.0, sigma=1.5)[0].permute(1, 2, 0)
    assert np.abs(raw["hr_usm"].astype(float) - (want * 255).numpy()).max() <= 0.5 + 1e-3
    default = Trainer(config(patch_dir, tmp_path / "d", weights=weights)).data.raw(0)
    assert not np.array_equal(default["hr_usm"], raw["hr_usm"])
    # a config.json written before these options existed resumes with Real-ESRGAN's USM
    old = asdict(cfg)
    for key in ("usm_sigma", "usm_amount", "usm_threshold"):
        old.pop(key)
    restored = TrainConfig.from_dict(old)
    assert (restored.usm_sigma, restored.usm_amount) == (None, 0.5)


def test_usm_target_term_is_trained(patch_dir: Path, tmp_path: Path) -> None:
    weights = LossWeights(perceptual=0.0, l1_gt_usm=1.0)
    t = Trainer(config(patch_dir, tmp_path / "u", weights=weights))
    batch = next(t._batches())
    assert batch["hr_usm"].shape == batch["hr"].shape
    assert not torch.equal(batch["hr_usm"], batch["hr"])
    assert t.train_step(batch)["l1_gt_usm"] > 0


def test_texture_loss_asks_for_gradient_energy_per_tile_not_its_place() -> None:
    torch.manual_seed(0)
    texture = torch.rand(1, 3, 32, 32)
    other = torch.rand(1, 3, 32, 32)  # a different texture of the same statistics
    flat = torch.full_like(texture, 0.5)
    assert losses.texture_loss(other, texture) < 0.2 * losses.texture_loss(flat, texture)
    assert losses.l1(other, texture) > 0.2
    # Energy is matched per tile: texture in the wrong half of the image is penalised.
    half = texture.clone()
    half[..., :, 16:] = 0.5
    moved = torch.flip(half, dims=(-1,))
    assert losses.texture_loss(moved, half) > 0.5 * losses.texture_loss(flat, half)
    assert losses.texture_loss(half, half) == 0
    assert_differentiable(losses.texture_loss, flat + 0.01 * torch.rand_like(flat), texture)


def test_texture_quantile_leans_towards_more_texture() -> None:
    torch.manual_seed(1)
    texture = torch.rand(1, 3, 32, 32)
    flat = torch.full_like(texture, 0.5)
    louder = 0.5 + 2 * (texture - 0.5)  # twice the gradients of the target
    for out in (flat, louder):  # the median loss is the plain L1 of the tile energies
        assert losses.texture_loss(out, texture, quantile=0.5) == pytest.approx(
            float(losses.texture_loss(out, texture)), rel=1e-6
        )
    # Every tile of ``louder`` has twice the gradient of ``texture``'s: with quantile 0.8,
    # half the target's texture costs 1.6× the L1 of the tile energies, twice as much 0.4×.
    gap = float(losses.texture_loss(texture, louder))
    deficit = losses.texture_loss(texture, louder, quantile=0.8)
    excess = losses.texture_loss(louder, texture, quantile=0.8)
    assert deficit == pytest.approx(1.6 * gap, rel=1e-3)
    assert excess == pytest.approx(0.4 * gap, rel=1e-3)
    with pytest.raises(ValueError, match="quantile"):
        losses.texture_loss(flat, texture, quantile=1.0)


@pytest.mark.parametrize("target", ["gt", "teacher"])
def test_texture_term_is_trained(patch_dir: Path, tmp_path: Path, target: str) -> None:
    weights = LossWeights(perceptual=0.0, texture=1.0)
    t = Trainer(config(patch_dir, tmp_path / "tx", weights=weights, texture_target=target))
    batch = next(t._batches())
    like = batch["teacher"] if target == "teacher" else batch["hr"]
    out = t.student(batch["lr"]).detach()  # the step below starts from these weights
    expected = losses.texture_loss(out, like, t.config.texture_window)
    assert t.train_step(batch)["texture"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("texture_target", "lr", "texture-target"), ("texture_window", 0, "texture-window")],
)
def test_bad_texture_options_are_refused(
    patch_dir: Path, tmp_path: Path, option: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(config(patch_dir, tmp_path / "bad", **{option: value}))


def test_phase_imbalance_sees_a_mesh_at_the_input_pitch() -> None:
    torch.manual_seed(2)
    small = torch.rand(1, 3, 16, 16)
    smooth = F.interpolate(small, scale_factor=4, mode="bicubic", align_corners=False)
    blocks = F.interpolate(small, scale_factor=4, mode="nearest")  # edges every 4 px only
    mesh = smooth + 0.5 * (blocks - smooth)
    texture = torch.rand(1, 3, 64, 64)  # fine detail, the same at every phase
    assert losses.phase_imbalance(blocks).mean() > 0.05
    assert losses.phase_imbalance(texture).mean() < 0.2 * losses.phase_imbalance(blocks).mean()
    assert losses.phase_imbalance(mesh).mean() > 3 * losses.phase_imbalance(smooth).mean()
    assert losses.mesh_loss(smooth, smooth) == 0
    assert losses.mesh_loss(mesh, smooth) > 0
    assert losses.mesh_loss(texture, texture) == 0
    # Period 2 (the ×2 student) looks at every other pixel instead.
    blocks2 = F.interpolate(small, scale_factor=2, mode="nearest")
    assert losses.phase_imbalance(blocks2, period=2).mean() > 0.05
    assert_differentiable(losses.mesh_loss, mesh, smooth)


def test_spectrum_ceiling_lets_texture_fill_the_envelope_but_not_exceed_it() -> None:
    torch.manual_seed(3)
    photo = F.interpolate(torch.rand(1, 3, 24, 24), size=96, mode="bicubic", align_corners=False)
    detail = photo + 0.05 * torch.randn_like(photo)  # the target: broad-band texture
    other = photo + 0.05 * torch.randn_like(photo)  # other texture, same envelope
    yy, xx = torch.meshgrid(torch.arange(96), torch.arange(96), indexing="ij")
    board = photo + 0.1 * (((xx + yy) % 2).float() - 0.5)  # all of it at the Nyquist corner
    assert losses.spectrum_excess_loss(detail, detail) == 0
    fair = losses.spectrum_excess_loss(other, detail)
    assert losses.spectrum_excess_loss(photo, detail) < 0.2 * fair  # less texture: ~no excess
    assert losses.spectrum_excess_loss(board, detail) > 3 * fair
    assert_differentiable(losses.spectrum_excess_loss, board, detail)


@pytest.mark.parametrize("term", ["mesh", "spectrum", "halo"])
def test_artefact_terms_are_trained(patch_dir: Path, tmp_path: Path, term: str) -> None:
    weights = LossWeights(perceptual=0.0, **{term: 1.0})
    t = Trainer(config(patch_dir, tmp_path / term, weights=weights))
    assert term in t.train_step(next(t._batches()))


def test_band_texture_loss_sees_visible_detail_and_not_grain() -> None:
    torch.manual_seed(2)
    detail = losses.gaussian_blur(torch.rand(1, 3, 64, 64), 1.0, 4)  # visible-band texture
    detail = 0.5 + (detail - detail.mean()) * 4
    other = losses.gaussian_blur(torch.rand(1, 3, 64, 64), 1.0, 4)  # same statistics elsewhere
    other = 0.5 + (other - other.mean()) * 4
    flat = torch.full_like(detail, 0.5)
    grain = flat + 0.05 * torch.randn_like(flat)  # pixel noise: above the band
    full = float(losses.band_texture_loss(flat, detail))
    assert float(losses.band_texture_loss(other, detail)) < 0.3 * full  # phase is free
    assert float(losses.band_texture_loss(grain, detail)) > 0.5 * full  # grain earns little
    grainy = other + 0.1 * torch.randn_like(other)  # the right detail under grain
    assert float(losses.hf_excess_loss(grainy, detail)) > 5 * float(
        losses.hf_excess_loss(other, detail)
    )
    assert float(losses.hf_excess_loss(flat, detail)) == 0  # too little costs nothing here
    assert_differentiable(losses.band_texture_loss, flat + 0.01 * torch.rand_like(flat), detail)
    assert_differentiable(losses.hf_excess_loss, grainy, detail)


def test_band_gain_asks_for_more_band_than_the_target_has() -> None:
    torch.manual_seed(3)
    detail = losses.gaussian_blur(torch.rand(1, 3, 64, 64), 1.0, 4)
    detail = 0.5 + (detail - detail.mean()) * 4
    mean = detail.mean()
    lifted = mean + 1.25 * (detail - mean)  # the same detail, a quarter stronger
    assert float(losses.band_texture_loss(detail, detail)) == 0
    assert float(losses.band_texture_loss(detail, detail, gain=1.25)) > 0  # short of it
    at_gain = float(losses.band_texture_loss(lifted, detail, gain=1.25))
    assert at_gain < 0.02 * float(losses.band_texture_loss(detail, detail, gain=1.25))
    with pytest.raises(ValueError, match="band-gain"):
        Trainer(TrainConfig(patches="unused", out="unused", band_gain=0.0))


def test_band_correlation_ignores_strength_and_rewards_placement() -> None:
    torch.manual_seed(4)
    detail = losses.gaussian_blur(torch.rand(2, 3, 64, 64), 1.0, 4)
    detail = 0.5 + (detail - detail.mean()) * 4
    other = losses.gaussian_blur(torch.rand(2, 3, 64, 64), 1.0, 4)
    other = 0.5 + (other - other.mean()) * 4
    faint = 0.5 + 0.3 * (detail - 0.5)  # the right detail, weaker
    assert float(losses.band_correlation_loss(detail, detail)) < 1e-5
    assert float(losses.band_correlation_loss(faint, detail)) < 1e-5  # strength is free
    assert float(losses.band_correlation_loss(other, detail)) > 0.8  # wrong places
    flat = torch.full_like(detail, 0.5)
    assert float(losses.band_correlation_loss(detail, flat)) == 0  # nothing to place
    assert_differentiable(losses.band_correlation_loss, faint, detail)


def test_halo_loss_charges_rims_at_strong_edges_and_not_texture_inside_the_range() -> None:
    xx = torch.arange(64).float().expand(1, 3, 64, 64)
    step = torch.where(xx < 32, 0.2, 0.8)  # a strong vertical edge: 0.2 | 0.8
    assert float(losses.halo_loss(step, step)) == 0
    rim = step.clone()
    rim[..., 32:34] = 0.95  # a bright rim beside the edge: 0.15 above the bright side
    rim[..., 30:32] = 0.1  # and a dark outline: 0.1 below the dark side
    # each 5-px window spans the edge over 4 columns; 2 of them over and 2 under
    assert abs(float(losses.halo_loss(rim, step)) - (2 * 0.15 + 2 * 0.1) / 4) < 1e-5
    inside = step.clone()
    inside[..., 32:34] = 0.6  # a softer edge stays within the range: free
    assert float(losses.halo_loss(inside, step)) == 0
    torch.manual_seed(6)
    flat = torch.full((1, 3, 64, 64), 0.5)
    grain = flat + 0.05 * torch.randn_like(flat)  # no strong edge: nothing is charged
    assert float(losses.halo_loss(grain, flat)) == 0
    gentle = flat + 0.1 * (xx / 63 - 0.5)  # a gentle ramp is no strong edge either
    assert float(losses.halo_loss(grain, gentle)) == 0
    assert_differentiable(losses.halo_loss, rim, step)


def test_band_edge_free_changes_the_band_term(patch_dir: Path, tmp_path: Path) -> None:
    weights = LossWeights(perceptual=0.0, band=1.0, halo=1.0)
    terms = []
    for free in (False, True):
        torch.manual_seed(0)
        t = Trainer(config(patch_dir, tmp_path / str(free), weights=weights, band_edge_free=free))
        terms.append(t.train_step(next(t._batches())))
    assert all("band" in r and "halo" in r for r in terms)
    assert terms[0]["band"] != terms[1]["band"]


def test_without_halo_takes_a_teachers_rims_off_and_leaves_the_rest() -> None:
    xx = torch.arange(64).float().expand(1, 3, 64, 64)
    step = torch.where(xx < 32, 0.2, 0.8)
    teacher = step.clone()
    teacher[..., 32:34] = 0.95  # a bright rim and a dark outline at the edge
    teacher[..., 30:32] = 0.1
    teacher[..., 50:52] = 0.85  # faint texture away from the edge: left as it is
    teacher[:, 0] += 0.02  # a colour cast: kept, as R, G and B move together
    cleaned = losses.without_halo(teacher, step)
    assert float(losses.halo_loss(cleaned, step)) < 1e-6
    assert float(losses.halo_loss(teacher, step)) > 0.05
    assert torch.equal(cleaned[..., 40:], teacher[..., 40:])
    assert torch.allclose(cleaned[:, 0] - cleaned[:, 1], teacher[:, 0] - teacher[:, 1])


def test_teacher_without_halo_changes_the_teacher_terms(patch_dir: Path, tmp_path: Path) -> None:
    weights = LossWeights(perceptual=0.0, l1_teacher=1.0)
    l1 = []
    for clean in (False, True):
        t = Trainer(
            config(patch_dir, tmp_path / str(clean), weights=weights, teacher_without_halo=clean)
        )
        l1.append(t.train_step(next(t._batches()))["l1_teacher"])
    assert l1[0] != l1[1]


def test_band_loss_can_leave_strong_edges_out() -> None:
    xx = torch.arange(64).float().expand(1, 3, 64, 64)
    step = torch.where(xx < 32, 0.2, 0.8)
    zone = losses.edge_zone(step)  # within 4 px of the edge: columns 28..35
    assert zone.shape == (1, 1, 64, 64)
    assert zone[0, 0, 0].nonzero().flatten().tolist() == list(range(28, 36))
    flat = torch.full_like(step, 0.5)
    full = float(losses.band_texture_loss(flat, step))
    assert full > 0  # the edge's band is asked for, and a flat output has none
    assert float(losses.band_texture_loss(flat, step, keep=1 - zone)) < 0.1 * full
    torch.manual_seed(7)
    texture = 0.5 + 0.1 * losses.gaussian_blur(torch.rand(1, 3, 64, 64), 1.0, 4)
    assert float(losses.edge_zone(texture).sum()) == 0  # faint texture is no strong edge


def test_low_pass_l1_leaves_the_band_free() -> None:
    torch.manual_seed(5)
    base = F.interpolate(torch.rand(1, 3, 16, 16), size=64, mode="bicubic", align_corners=False)
    texture = losses.gaussian_blur(torch.rand(1, 3, 64, 64), 0.8, 4) - 0.5
    moved = torch.roll(texture, shifts=(1, 2), dims=(-2, -1))
    target, out = base + texture, base + moved  # same shading, texture at another phase
    assert float(losses.low_pass_l1(out, target)) < 0.35 * float(losses.l1(out, target))
    shaded = target + 0.05  # wrong brightness: low-pass L1 sees all of it
    assert float(losses.low_pass_l1(shaded, target)) == pytest.approx(0.05, rel=1e-4)
    assert_differentiable(losses.low_pass_l1, out, target)


@pytest.mark.parametrize("term", ["band", "hf_excess", "band_corr", "l1_low_teacher"])
def test_band_terms_are_trained(patch_dir: Path, tmp_path: Path, term: str) -> None:
    weights = LossWeights(perceptual=0.0, **{term: 1.0})
    t = Trainer(config(patch_dir, tmp_path / term, weights=weights, texture_target="teacher"))
    assert term in t.train_step(next(t._batches()))


# ------------------------------------------------------------------ online data, budgets


@pytest.fixture()
def online_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two training photos and a nearest-neighbour stand-in for the ×4 teacher."""
    from pocketsr_cli.train import teacher

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for name in ("Aqua.jpg", "Kite.jpg", "LadyBird.jpg"):  # LadyBird: validation, never used
        img = (rng.random((120, 150, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(photos / name), cv2.GaussianBlur(img, (5, 5), 1.0))

    class Nearest(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nearest_teacher(x)

    stand_in = teacher.Teacher(module=Nearest(), scale=4, identity={"name": "nearest"})
    monkeypatch.setattr(teacher, "load_teacher", lambda folder, stem="": stand_in)
    return photos


def online_config(photos: Path, out: Path, **kw: object) -> TrainConfig:
    return config(
        Path(""), out, patches="", photos=str(photos), lr_size=8, margin=2,
        degradations="mild,clean", **kw,
    )  # fmt: skip


def test_online_run_resumes_on_the_same_patches(online_photos: Path, tmp_path: Path) -> None:
    probe = Trainer(online_config(online_photos, tmp_path / "probe", batch=2))
    batch = next(probe._batches())
    assert batch["lr"].shape == (2, 3, 8, 8) and batch["teacher"].shape == (2, 3, 32, 32)
    assert_resume_replays(lambda out: online_config(online_photos, out, batch=2), tmp_path)


def test_a_negative_seed_is_refused_before_the_teacher_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pocketsr_cli.train.run import main

    photos = tmp_path / "photos"
    photos.mkdir()
    out = tmp_path / "run"
    argv = ["--photos", str(photos), "--out", str(out), "--teacher", str(tmp_path / "none")]
    assert main([*argv, "--seed", "-1"]) == 1
    assert capsys.readouterr().err == "error: --seed must be at least 0, got -1\n"
    assert not out.exists()


def test_online_patches_alternate_degradations_and_match_a_cached_patch(tmp_path: Path) -> None:
    from pocketsr_cli.train.online import OnlinePatches
    from pocketsr_cli.train.patches import sample_patch

    photo = cv2.GaussianBlur((np.random.default_rng(2).random((90, 90, 3)) * 255), (5, 5), 1)
    path = tmp_path / "probe.png"
    cv2.imwrite(str(path), photo.astype(np.uint8))
    spec = PatchSpec(scale=4, lr_size=8, margin=2, seed=5)
    data = OnlinePatches([path], spec, ["mild", "clean"])
    assert data.configs[0] != data.configs[1]
    for i in (0, 1):
        cached = sample_patch(data.photos, data.weights, i, spec, data.configs[i])
        item = data[i]
        assert np.array_equal(item["lr_context"].permute(1, 2, 0).numpy(), cached.lr_context)
        m = spec.margin * spec.scale
        centre = cached.hr_context[m : m + spec.hr_size, m : m + spec.hr_size]
        assert np.array_equal(item["hr"].permute(1, 2, 0).numpy(), centre)


def test_time_budget_ends_the_run_and_evaluations_are_written(
    online_photos: Path, tmp_path: Path
) -> None:
    val = tmp_path / "val"
    val.mkdir()
    cv2.imwrite(str(val / "LadyBird.png"), (np.random.default_rng(3).random((64, 64, 3)) * 255))
    cfg = online_config(
        online_photos, tmp_path / "t", batch=2, steps=10**9, minutes=0.02, eval_every=0.2,
        val=str(val), val_crop=64, export_to=str(tmp_path / "ema.safetensors"),
    )  # fmt: skip
    t = Trainer(cfg)
    t.run()
    assert t.finished() and t.elapsed >= 1.2 and t.step < 10**9
    lines = (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["step"] == t.step and set(last) >= {"real", "bicubic", "sha256"}
    assert load_file(str(tmp_path / "ema.safetensors"))  # the EMA weights of the last evaluation


class Student8(TinyStudent):
    """The nano model's size rule: input sides in multiples of 8, else an error."""

    multiple_of = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"input sides must be multiples of 8, got {tuple(x.shape[-2:])}")
        return super().forward(x)


@pytest.mark.parametrize(
    ("crop", "photo", "message"),
    [
        (16, (64, 64), "--val-crop 16 is 4 input pixels a side at ×4, and the model takes "
         "sides in multiples of 8: give a multiple of 32, such as 32"),
        (100, (128, 128), "--val-crop 100 is 25 input pixels a side at ×4, and the model "
         "takes sides in multiples of 8: give a multiple of 32, such as 96"),
        (64, (64, 48), "--val photo LadyBird.png is smaller than --val-crop 64: its crop, "
         "64×48 px, is 16×12 input pixels at ×4, and the model takes sides in multiples of "
         "8; use larger photos or a smaller --val-crop"),
    ],
)  # fmt: skip
def test_a_val_crop_the_model_cannot_take_is_refused_before_training(
    patch_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    crop: int,
    photo: tuple[int, int],
    message: str,
) -> None:
    """It failed at the first evaluation, after the training time was spent."""
    from pocketsr_cli.train.run import main

    monkeypatch.setattr(trainer, "build_student", lambda arch, scale: Student8(scale))
    val = tmp_path / "val"
    val.mkdir()
    pixels = np.random.default_rng(3).random((photo[1], photo[0], 3)) * 255
    cv2.imwrite(str(val / "LadyBird.png"), pixels)
    out = tmp_path / "run"
    argv = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0"]
    argv += ["--steps", "2", "--batch", "4", "--eval-every", "60", "--val", str(val)]
    assert main([*argv, "--val-crop", str(crop)]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()
    assert main([*argv, "--val-crop", "32"]) == 0  # one that fits: scored at the end
    assert "real" in json.loads((out / "metrics.jsonl").read_text())


def test_learning_rate_follows_the_share_of_the_budget() -> None:
    assert trainer.lr_at_fraction(0.0, 1.0) == pytest.approx(1.0)
    assert trainer.lr_at_fraction(0.5, 1.0) == pytest.approx(0.55)
    assert trainer.lr_at_fraction(2.0, 1.0) == pytest.approx(0.1)
    assert trainer.lr_at_fraction(0.3, 1.0) == pytest.approx(trainer.lr_at(30, 100, 1.0))


def test_bad_sources_and_devices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--patches"):
        Trainer(TrainConfig(patches="", out=str(tmp_path / "x")))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            trainer._training_device("cuda")
    with pytest.raises(ValueError, match="unknown --device"):
        trainer._training_device("abacus")
    assert trainer._training_device("auto").type in ("cpu", "cuda")


def test_validation_scores_report_the_geometric_mean_of_detail() -> None:
    from pocketsr_cli.archs.resize import Resize
    from pocketsr_cli.evaluation.metrics import detail_scores
    from pocketsr_cli.train.validate import ValItem, score, upscale_array

    rng = np.random.default_rng(0)
    items = []
    for i, amount in enumerate((0.2, 1.0)):  # a flat-ish and a textured photo
        gt = np.clip(128 + amount * 60 * rng.standard_normal((64, 64, 3)), 0, 255).astype(np.uint8)
        lr = np.ascontiguousarray(gt[::4, ::4])
        items.append(ValItem(f"p{i}", "real", gt, lr))
    model = Resize("bicubic", 4)
    details = [
        detail_scores(upscale_array(model, it.lr, torch.device("cpu")), it.gt)[0] for it in items
    ]
    got = score(model, items, torch.device("cpu"))["real"]
    assert got["detail_geo"] == pytest.approx(float(np.sqrt(details[0] * details[1])), rel=1e-3)
    assert got["detail"] == pytest.approx(float(np.mean(details)), rel=1e-3)


# --- GenDR-Pix's masked Fourier term ---------------------------------------------------


class GridStamp(nn.Module):
    """A tiny restoration net: a 3×3 conv that starts as the identity, plus a learnt bias
    through a ×8 pixel shuffle, which stamps one 8×8 pattern on every block: the periodic
    artefact of a pixel-(un)shuffle generator (GenDR-Pix's), ``amp`` strong at the start."""

    def __init__(self, amp: float, seed: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, 1, 1] = torch.eye(3)
            self.conv.bias.zero_()
        pattern = torch.randn(1, 192, 1, 1, generator=torch.Generator().manual_seed(seed))
        self.stamp = nn.Parameter(amp * pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        return self.conv(x) + F.pixel_shuffle(self.stamp.expand(n, -1, h // 8, w // 8), 8)


def toy_photos(n: int, side: int, seed: int) -> torch.Tensor:
    small = torch.rand(n, 3, side // 2, side // 2, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(small, size=side, mode="bilinear", align_corners=False)


def train_toy(
    extra: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    *,
    amp: float,
    degrade: Callable[[torch.Tensor, int], torch.Tensor],
    weight: float = 1.0,
    steps: int = 40,
) -> tuple[float, float]:
    """Train :class:`GridStamp` with L1 (plus ``weight · extra``) by plain SGD (so the
    gradient, not a per-parameter normalisation, decides what moves); returns the lattice
    ratio and the L1 of its output on an unseen image."""
    from pocketsr_cli.evaluation.metrics import lattice_ratio

    torch.manual_seed(0)
    net = GridStamp(amp)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(steps):
        target = toy_photos(4, 64, 1000 + step)
        out = net(degrade(target, step))
        loss = losses.l1(out, target)
        if extra is not None:
            loss = loss + weight * extra(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    target = toy_photos(1, 128, 7)
    with torch.no_grad():
        out = net(degrade(target, 99))
    pixels = (out[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    return lattice_ratio(pixels), float(losses.l1(out, target))


def noisy(target: torch.Tensor, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    return target + 0.05 * torch.randn(target.shape, generator=g)


def blurred(target: torch.Tensor, step: int) -> torch.Tensor:
    return losses.gaussian_blur(target, 1.5, 4)


def test_masked_fourier_term_removes_a_periodic_8x8_artefact() -> None:
    """Denoising with an 8×8 pattern stamped on the output: 40 SGD steps of L1 leave a
    grid (the pattern costs L1 little: it is 1/64 of each block's pixels per value), L1
    plus the masked Fourier term clears it, at the same fidelity."""
    plain, plain_l1 = train_toy(None, amp=0.05, degrade=noisy)
    masked, masked_l1 = train_toy(losses.masked_fourier_loss, amp=0.05, degrade=noisy)
    assert plain > 4.0  # a visible grid (the metric flags > 2; photos sit at 1.1-1.5)
    assert masked < 1.5 and masked < plain / 3
    assert masked_l1 < plain_l1 * 1.15


def test_masked_fourier_term_leaves_a_smooth_output_without_a_grid() -> None:
    """Restoring a blurred input, the output stays smoother than the target: the excess
    rule adds no grid, where L1 on every lattice bin (the two-sided reading) grows one."""

    def two_sided(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = losses.nearest_lattice_mask(*out.shape[-2:])
        a, b = losses.amplitude_spectrum(out), losses.amplitude_spectrum(target)
        return (a - b).abs()[..., mask].mean()

    plain, _ = train_toy(None, amp=0.0, degrade=blurred, weight=0.3)
    excess, _ = train_toy(losses.masked_fourier_loss, amp=0.0, degrade=blurred, weight=0.3)
    both, _ = train_toy(two_sided, amp=0.0, degrade=blurred, weight=0.3)
    assert plain < 1.5 and excess < 3.0
    assert both > 10.0


def test_masked_fourier_loss_charges_grid_excess_at_any_size() -> None:
    torch.manual_seed(4)
    photo = F.interpolate(torch.rand(1, 3, 30, 22), size=(60, 44), mode="bilinear")
    stamp = 0.03 * torch.randn(1, 3, 8, 8)  # one 8×8 pattern on every block
    grid = photo + stamp.repeat(1, 1, 8, 6)[..., :60, :44]
    smooth = losses.gaussian_blur(photo, 1.5, 4)
    assert losses.masked_fourier_loss(photo, photo) == 0
    assert losses.masked_fourier_loss(smooth, photo) < 1e-3  # less amplitude: no charge
    grain = photo + 0.01 * torch.randn_like(photo)
    assert losses.masked_fourier_loss(grid, photo) > 10 * losses.masked_fourier_loss(grain, photo)
    assert_differentiable(losses.masked_fourier_loss, grid, photo)
    exact = losses.lattice_mask(64, 48)
    assert torch.equal(losses.nearest_lattice_mask(64, 48), exact)  # sizes of whole blocks
    assert losses.nearest_lattice_mask(60, 44).sum() == exact.sum()


def test_masked_fourier_weight_is_an_option_and_old_configs_still_load(
    patch_dir: Path, tmp_path: Path
) -> None:
    from pocketsr_cli.train.run import parse_args

    cfg, _ = parse_args(["--patches", str(patch_dir), "--out", "x", "--w-masked-fourier", "2"])
    assert cfg.weights.masked_fourier == 2.0
    assert parse_args(["--out", "x"])[0].weights.masked_fourier == 0.0  # off by default
    assert parse_args(["--out", "x", "--disc-aligned", "true"])[0].disc_aligned is True
    assert parse_args(["--out", "x", "--disc-aligned", "false"])[0].disc_aligned is False
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--disc-aligned", "maybe"])
    weights = LossWeights(perceptual=0.0, masked_fourier=1.0)
    t = Trainer(config(patch_dir, tmp_path / "mf", weights=weights))
    assert t.train_step(next(t._batches()))["masked_fourier"] >= 0
    # a config.json written before the term existed resumes with it off
    old = asdict(config(patch_dir, tmp_path / "old"))
    old["weights"].pop("masked_fourier")
    assert TrainConfig.from_dict(json.loads(json.dumps(old))).weights.masked_fourier == 0.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch", "0"], "--batch must be at least 1"),
        (["--log-every", "0"], "--log-every must be at least 1"),
        (["--ckpt-every", "0"], "--ckpt-every must be at least 1"),
        (["--batch", "100"], "less than one batch of 100"),
        (["--limit", "100"], "only 12 patches"),
        (["--init", "missing.safetensors"], "no such file"),
        (["--export", "."], "error: --export . is a folder; name the .safetensors file\n"),
        # numbers that crashed mid-run (a traceback, the run folder left behind), trained
        # backwards, or ended the run at once
        (["--threads", "-1"], "error: --threads must be at least 0, got -1\n"),
        (["--limit", "0"], "error: --limit must be at least 1, got 0\n"),
        (["--disc-crop", "0"], "error: --disc-crop must be at least 8, got 0\n"),
        (["--lr", "-1"], "error: --lr must be positive, got -1.0\n"),
        (["--minutes", "-1"], "error: --minutes must be at least 0, got -1.0\n"),
        (["--val-crop", "0"], "error: --val-crop must be at least 16, got 0\n"),
        (["--ema", "2"], "error: --ema must be between 0 and 1, got 2.0\n"),
        (["--mild-fraction", "2"], "error: --mild-fraction must be between 0 and 1, got 2.0\n"),
        (["--workers", "-1"], "error: --workers must be at least 0, got -1\n"),
        # torch took it; numpy's generators (--mild-fraction, --photos) did not, mid-run
        (
            ["--seed", "-1", "--batch", "4", "--steps", "2", "--mild-fraction", "0.5"],
            "error: --seed must be at least 0, got -1\n",
        ),
    ],
)
def test_run_command_refuses_bad_options_in_a_line_and_writes_nothing(
    patch_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    from pocketsr_cli.train.run import main

    out = tmp_path / "run"
    argv = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0", *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert "Traceback" not in err
    assert not out.exists()  # a refused run leaves no run folder behind


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("run", ["--out", "x", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
        ("run", ["--steps", "3"], "the following arguments are required: --out"),
        ("run", ["--out", "x", "--disc-aligned", "maybe"], "expected true or false, not 'maybe'"),
        ("make_patches", ["--photos", "p", "--out", "o", "--teacher", "t"], "required: --count"),
        ("export", ["run"], "the following arguments are required: dest"),
        ("pcsr", ["--out", "x", "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
        ("compact post", ["a"], "the following arguments are required: dest"),
    ],
)
def test_a_bad_training_command_line_is_two_lines_not_the_whole_usage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    argv: list[str],
    message: str,
) -> None:
    """argparse printed its usage above the error: about 60 lines for train.run."""
    import importlib

    monkeypatch.chdir(tmp_path)
    name, *command = module.split()
    main = importlib.import_module(f"pocketsr_cli.train.{name}").main
    with pytest.raises(SystemExit) as exit_:
        main([*command, *argv])
    assert exit_.value.code == 2
    prog = " ".join([f"python -m pocketsr_cli.train.{name}", *command])
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and message in err
    assert err.endswith(f"\nTry '{prog} --help' for the options.\n") and err.count("\n") == 2
    assert list(tmp_path.iterdir()) == []


def test_every_training_command_parses_with_the_short_error_parser() -> None:
    import pocketsr_cli.train

    folder = Path(pocketsr_cli.train.__file__).parent
    plain = [p.name for p in folder.glob("*.py") if "ArgumentParser(" in p.read_text()]
    assert plain == []  # each uses cmdline.CommandParser


def test_weights_that_cannot_be_written_are_refused_before_training(
    patch_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They failed after the training (--export) or at the first evaluation (--export-to)
    with ``[Errno 17] File exists: 'afile'``."""
    from pocketsr_cli.train.export import main as export_main
    from pocketsr_cli.train.run import main

    blocker = tmp_path / "afile"
    blocker.write_text("")
    dest = blocker / "w.safetensors"
    out = tmp_path / "run"
    argv = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0"]
    argv += ["--steps", "2", "--batch", "4", "--eval-every", "60"]
    for option in ("--export", "--export-to"):
        assert main([*argv, option, str(dest)]) == 1
        assert capsys.readouterr().err == (
            f"error: {option} {dest} cannot be written: {blocker} is a file, not a folder\n"
        )
        assert not out.exists()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pt").write_bytes(b"")
    assert export_main([str(tmp_path / "r"), str(dest)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {dest} cannot be written: {blocker} is a file, not a folder\n"


def test_run_command_refuses_to_resume_a_checkpoint_of_other_options(
    patch_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pocketsr_cli.train.run import main

    base = ["--patches", str(patch_dir), "--out", str(tmp_path / "run"), "--w-perceptual", "0"]
    assert main([*base, "--steps", "2", "--batch", "4"]) == 0
    capsys.readouterr()
    # the same folder resumed as a x2 student: refused before the checkpoint is loaded
    assert main([*base, "--steps", "4", "--batch", "4", "--scale", "2"]) == 1
    err = capsys.readouterr().err
    assert "--scale 2 (the run's: 4)" in err and "Traceback" not in err
    # a checkpoint whose options match but whose shapes do not fit (made elsewhere)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    state["student"] = {"body.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "run" / "last.pt")
    assert main([*base, "--steps", "2", "--batch", "4"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint of a run with other options" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: b"", lambda data: b"\x80\x02junk" * 99],
    ids=["truncated", "empty", "garbage"],
)
def test_a_damaged_checkpoint_is_refused_in_a_line_and_left_as_it_is(
    patch_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[bytes], bytes],
) -> None:
    """A ``last.pt`` cut short (a full disk, a copy stopped half-way) is named as such,
    not as a run with other options nor with torch's traceback; nothing is changed."""
    from pocketsr_cli.train.export import main as export_main
    from pocketsr_cli.train.run import main

    out = tmp_path / "run"
    base = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0", "--batch", "4"]
    assert main([*base, "--steps", "2"]) == 0
    capsys.readouterr()
    damaged = damage((out / "last.pt").read_bytes())
    (out / "last.pt").write_bytes(damaged)
    assert main([*base, "--steps", "4"]) == 1
    err = capsys.readouterr().err
    said = f"{out / 'last.pt'} is not a whole checkpoint (cut short or damaged?); put back a good"
    assert err.startswith(f"error: {said} copy, or remove it") and err.count("\n") == 1
    assert (out / "last.pt").read_bytes() == damaged
    assert export_main([str(out), str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err  # the path once, and no advice to start the run over
    assert err == (
        f"error: cannot export {out / 'last.pt'}: it is not a whole checkpoint (cut short or "
        "damaged?); put back a good copy of it\n"
    )


def test_a_checkpoint_without_the_trainers_parts_is_named_as_another_file(
    patch_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pocketsr_cli.train.run import main

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"step": 3}, out / "last.pt")
    base = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0", "--batch", "4"]
    assert main([*base, "--steps", "4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {out / 'last.pt'} is not a checkpoint of this trainer (it has no "
    )


def test_a_resume_with_options_that_change_the_training_is_refused_naming_them(
    patch_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's weights are those of its one recorded command: resumed with another batch,
    seed or loss weight it is refused (nothing trained, config.json and the checkpoint as
    they were); options that only say how the session runs may change."""
    from pocketsr_cli.train.run import main

    out = tmp_path / "run"
    base = ["--patches", str(patch_dir), "--out", str(out), "--w-perceptual", "0"]
    base += ["--steps", "4", "--batch", "4", "--ckpt-every", "2", "--threads", "1"]
    assert main([*base, "--stop-at", "2"]) == 0
    recorded = (out / "config.json").read_text()
    checkpoint = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert main([*base, "--batch", "2", "--seed", "5", "--w-gan", "0.5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume {out} with options other than")
    assert "--batch 2 (the run's: 4); --seed 5 (the run's: 0); --w-gan 0.5 (the run's: 0.01)" in err
    assert "another --out" in err and "Traceback" not in err
    assert (out / "config.json").read_text() == recorded
    assert (out / "last.pt").read_bytes() == checkpoint
    # without --stop-at, checkpointing and logging more often: resumed to its end
    assert main([*base, "--ckpt-every", "1", "--log-every", "1"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    # the command's help names the options a resume may change
    from pocketsr_cli.train import run

    assert run.__doc__ is not None
    for name in trainer.SESSION_OPTIONS - {"out"}:
        assert f"--{name.replace('_', '-')}" in run.__doc__, name


def test_an_option_a_checkpoint_predates_counts_as_its_default(tmp_path: Path) -> None:
    from pocketsr_cli.train import loop

    defaults = asdict(TrainConfig(patches="", out=""))
    now = asdict(TrainConfig(patches="p", out="o"))
    saved = json.loads(json.dumps(now))
    del saved["band_gain"], saved["weights"]["band"]  # written before they existed
    session = trainer.SESSION_OPTIONS
    loop.check_options({"config": saved}, now, defaults, session, run=tmp_path)
    loop.check_options({}, now, defaults, session, run=tmp_path)  # no config: not checked
    now["band_gain"], now["weights"]["band"] = 2.0, 1.0
    with pytest.raises(loop.OptionsChanged, match=r"--band-gain 2.0 \(the run's: 1.0\); --w-band"):
        loop.check_options(
            {"config": saved}, now, defaults, session, run=tmp_path, prefixes={"weights": "w"}
        )


def test_export_command_says_what_is_wrong_in_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli.train import export
    from pocketsr_cli.train.export import main

    assert main([str(tmp_path / "nothing"), str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no checkpoint") and "Traceback" not in err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path / "run"), str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot export") and not (tmp_path / "w.safetensors").exists()
    torch.save({"step": 3}, tmp_path / "run" / "last.pt")  # not a trainer's: no KeyError
    assert main([str(tmp_path / "run"), str(tmp_path / "w.safetensors")]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot export {tmp_path / 'run' / 'last.pt'}: it is not a checkpoint of a "
        "trainer (it has no ema)\n"
    )
    torch.save({"step": 3, "ema": {"w": torch.zeros(2)}}, tmp_path / "run" / "last.pt")

    def full_disk(state: object, dest: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export, "write_weights", full_disk)  # the destination's fault
    assert main([str(tmp_path / "run"), str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: cannot write {tmp_path / 'w.safetensors'}: No space left on device\n"
    assert main([str(tmp_path / "run"), str(tmp_path)]) == 1  # refused before last.pt is read
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path} is a folder; name the .safetensors file\n"
