"""Training PCSR (train/pcsr.py): both phases on generated photos, resume, export round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _runs import press_ctrl_c
from safetensors.torch import load_file

from pocketsr_cli.archs.pcsr import FAMILY, PCSR, Routing
from pocketsr_cli.manifest import parse_manifest
from pocketsr_cli.registry import detect_family
from pocketsr_cli.train import pcsr
from pocketsr_cli.train.pcsr import PcsrTrainConfig, PcsrTrainer
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

TOY = "fsrcnn,channels=8,shrink=4,maps=1,heavy=[12,12],light=[4],classifier=[]"
TRAIN_NAMES = ["Aqua.jpg", "Blinds.jpg", "Kite.jpg"]
VAL_NAMES = ["FallenLeaf.jpg"]  # a validation photo: never cropped for training


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / (3 + seed)) * np.cos(yy / 4.0)
    img = base[..., None] + 0.08 * rng.standard_normal((h, w, 3)).astype(np.float32)
    img[: h // 2, : w // 3] *= 0.4
    return np.clip(img * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(TRAIN_NAMES + VAL_NAMES + ["not_a_training_photo.jpg"]):
        cv2.imwrite(str(folder / name), _photo(72, 88, i)[..., ::-1])
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(photos: Path, out: Path, **changes: object) -> PcsrTrainConfig:
    base = PcsrTrainConfig(
        out=str(out),
        photos=str(photos),
        preset=TOY,
        lr_size=8,
        batch=2,
        queries=40,
        steps=4,
        seed=3,
        ckpt_every=2,
        log_every=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _phase1(photos: Path, tmp: Path) -> Path:
    trainer = PcsrTrainer(_config(photos, tmp / "p1"))
    trainer.run()
    dest = tmp / "p1.safetensors"
    trainer.export(dest)
    return dest


def test_training_reads_only_the_training_split(photos: Path, tmp_path: Path) -> None:
    trainer = PcsrTrainer(_config(photos, tmp_path / "run"))
    assert sorted(trainer.train_photos) == sorted(TRAIN_NAMES)
    batch = trainer.batch(0)
    assert batch["lr"].shape == (2, 3, 8, 8) and batch["hr"].shape == (2, 3, 32, 32)
    assert float(batch["lr"].min()) >= 0.0 and float(batch["hr"].max()) <= 1.0


def test_training_path_is_the_inference_path(photos: Path, tmp_path: Path) -> None:
    """Phase 1's differentiable prediction at every pixel is what ``forward`` computes
    all-heavy, and phase 2's soft mix with a one-hot classifier is the hard routing."""
    model = pcsr.build_pcsr(TOY).eval()
    lr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    q = pcsr.query_set(2, 8, 8, 0, None, torch.device("cpu"))
    from pocketsr_cli.archs.pcsr.grid import bilinear

    pred = q.gather(bilinear(lr, q.rows, q.cols)) + pcsr.run_sampler(
        model.heavy_sampler, pcsr.features(model, lr), q
    )
    model.routing = pcsr.ALL_HEAVY
    with torch.no_grad():
        expected = model(lr)
    assert model.last_stats.heavy_fraction == 1.0
    torch.testing.assert_close(pred, q.gather(expected), rtol=1e-5, atol=1e-6)

    # a classifier that is sure everywhere: the soft mix equals the routed network
    pcsr.route_all_heavy(model)
    model.routing = Routing(refine=False)
    with torch.no_grad():
        terms = pcsr.phase2_loss(model, lr, expected, q, PcsrTrainConfig(out=""))
    assert float(terms["l1"]) < 1e-6
    assert float(terms["p_heavy"]) == pytest.approx(1.0)
    assert float(terms["balance"]) == pytest.approx(1.0)  # all heavy, half asked for


def test_query_set_samples_distinct_pixels_per_patch() -> None:
    g = torch.Generator().manual_seed(1)
    q = pcsr.query_set(3, 4, 5, 7, g, torch.device("cpu"))
    assert q.index.shape == (21,)
    per_patch = q.index.view(3, 7)
    for n in range(3):
        assert len(set(per_patch[n].tolist())) == 7
        assert all(n * 320 <= int(i) < (n + 1) * 320 for i in per_patch[n])
    image = torch.arange(3 * 1 * 16 * 20, dtype=torch.float32).view(3, 1, 16, 20)
    assert q.gather(image)[:, 0].long().tolist() == q.index.tolist()


def test_both_phases_and_the_export_round_trip(photos: Path, tmp_path: Path) -> None:
    p1 = _phase1(photos, tmp_path)
    state1 = load_file(str(p1))
    assert detect_family(state1) is not None and detect_family(state1).name == "pcsr"
    model1 = descriptor_from_state_dict(state1, "p1").module
    assert isinstance(model1, PCSR)
    with torch.no_grad():
        model1(torch.rand(1, 3, 10, 12))
    assert model1.last_stats.heavy_fraction == 1.0  # phase 1 exports route all heavy

    config = _config(photos, tmp_path / "p2", phase=2, init=str(p1), queries=0)
    trainer = PcsrTrainer(config)
    light_before = {k: v.clone() for k, v in trainer.model.light_sampler.state_dict().items()}
    log: list[dict[str, object]] = []
    trainer.on_log = log.append
    trainer.run()
    assert {"l1", "balance", "p_heavy", "total"} <= set(log[-1])
    final = trainer.model.state_dict()
    for key, value in state1.items():  # the phase-1 parts stay frozen
        if key.startswith(("encoder.", "heavy_sampler.")):
            torch.testing.assert_close(final[key], value, rtol=0, atol=0)
    changed = [
        not torch.equal(v, light_before[k])
        for k, v in trainer.model.light_sampler.state_dict().items()
    ]
    assert any(changed)

    dest = tmp_path / "toy-x4.safetensors"
    info = trainer.export(dest)
    manifest = tmp_path / "toy-x4.toml"
    manifest.write_text(
        pcsr.manifest_text("toy-x4", trainer.ema, dest, info, "toy", "a toy"), encoding="utf-8"
    )
    spec = parse_manifest(manifest)
    assert (spec.family, spec.scale, spec.meta.params) == ("pcsr", 4, info["params"])
    assert spec.weights is not None and spec.weights.size == dest.stat().st_size
    loaded = read_state_dict(dest)
    from_manifest = FAMILY.instantiate("toy-x4", spec.build, spec.scale, loaded)
    from_file = descriptor_from_state_dict(loaded, "toy-x4")
    assert from_file.params == from_manifest.params == info["params"]
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        ref = trainer.ema.eval()(x)
        assert ref.shape == (1, 3, 36, 44)
        torch.testing.assert_close(from_manifest.module(x), ref)
        torch.testing.assert_close(from_file.module(x), ref)


def test_phase1_can_continue_from_its_weights(photos: Path, tmp_path: Path) -> None:
    p1 = _phase1(photos, tmp_path)
    state = load_file(str(p1))
    more = PcsrTrainer(_config(photos, tmp_path / "more", init=str(p1), seed=4))
    start = more.model.state_dict()
    for key, value in state.items():
        if key.startswith(("encoder.", "heavy_sampler.")):
            torch.testing.assert_close(start[key], value, rtol=0, atol=0)
    more.run()
    assert not torch.equal(
        more.model.state_dict()["encoder.head_conv.0.weight"], state["encoder.head_conv.0.weight"]
    )


def test_phase2_needs_phase1_weights_of_the_same_shape(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--init"):
        PcsrTrainer(_config(photos, tmp_path / "a", phase=2))
    p1 = _phase1(photos, tmp_path)
    other = TOY.replace("channels=8", "channels=6")
    with pytest.raises(ValueError, match="does not fit"):
        PcsrTrainer(_config(photos, tmp_path / "b", phase=2, init=str(p1), preset=other))


def test_resume_replays_an_uninterrupted_run(photos: Path, tmp_path: Path) -> None:
    whole = PcsrTrainer(_config(photos, tmp_path / "whole"))
    whole.run()

    first = PcsrTrainer(_config(photos, tmp_path / "cut"))
    first.finished = lambda: first.step >= 2  # type: ignore[method-assign]  # cut off
    first.run()
    again = PcsrTrainer(_config(photos, tmp_path / "cut"))
    assert again.resume() and again.step == 2
    again.run()
    assert again.step == 4
    for key, value in whole.ema.state_dict().items():
        torch.testing.assert_close(again.ema.state_dict()[key], value, rtol=0, atol=0)
    lines = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_ctrl_c_saves_a_checkpoint_at_the_step_and_the_resume_replays(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pocketsr_cli.train import loop

    whole = PcsrTrainer(_config(photos, tmp_path / "whole", ckpt_every=100))
    whole.run()
    cut = PcsrTrainer(_config(photos, tmp_path / "cut", ckpt_every=100))
    real = cut.train_step

    def train_step(batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if cut.step == 2:  # Ctrl-C in step 3: the handler in force runs, as for a signal
            press_ctrl_c()
        return real(batch)

    cut.train_step = train_step  # type: ignore[method-assign]
    with pytest.raises(loop.Interrupted) as caught:
        cut.run()
    assert caught.value.saved == 3
    again = PcsrTrainer(_config(photos, tmp_path / "cut", ckpt_every=100))
    assert again.resume() and again.step == 3
    again.run()
    for key, value in whole.ema.state_dict().items():
        torch.testing.assert_close(again.ema.state_dict()[key], value, rtol=0, atol=0)


def test_a_resume_with_options_that_change_the_training_is_refused(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    first = PcsrTrainer(_config(photos, out))
    first.finished = lambda: first.step >= 2  # type: ignore[method-assign]  # cut off
    first.run()
    recorded = (out / "config.json").read_text()
    other = PcsrTrainer(_config(photos, out, seed=4, queries=20))
    with pytest.raises(ValueError, match=r"--queries 20 \(the run's: 40\); --seed 4"):
        other.resume()
    assert other.step == 0 and (out / "config.json").read_text() == recorded
    argv = ["--out", str(out), "--photos", str(photos), "--preset", TOY, "--lr-size", "8"]
    argv += ["--batch", "2", "--queries", "40", "--steps", "4", "--seed", "3"]
    assert pcsr.main([*argv, "--ckpt-every", "2", "--lr", "0.01"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume") and "--lr 0.01 (the run's: 0.001)" in err
    # how the session runs may change (checkpoints, logs)
    again = PcsrTrainer(_config(photos, out, ckpt_every=1, log_every=2))
    assert again.resume() and again.step == 2


def test_a_negative_seed_is_refused_in_a_line(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["--out", str(out), "--photos", str(photos), "--preset", TOY, "--lr-size", "8"]
    assert pcsr.main([*argv, "--batch", "2", "--steps", "2", "--seed", "-1"]) == 1
    assert capsys.readouterr().err == "error: --seed must be at least 0, got -1\n"
    assert not out.exists()


def test_evaluation_scores_all_heavy_and_k0(photos: Path, tmp_path: Path) -> None:
    val = tmp_path / "val"
    val.mkdir()
    cv2.imwrite(str(val / "v.png"), _photo(64, 64, 9)[..., ::-1])
    p1 = _phase1(photos, tmp_path)
    config = _config(photos, tmp_path / "p2", phase=2, init=str(p1), val=str(val), val_crop=32)
    trainer = PcsrTrainer(config)
    entry = trainer.evaluate()
    assert set(entry["all_heavy"]) == {"real", "bicubic"}
    assert set(entry["k0"]) == {"real", "bicubic"}
    assert 0.0 <= entry["k0_heavy_fraction"] <= 1.0
    assert Path(entry["export"]).is_file()
    assert trainer.ema.routing == Routing()  # restored after scoring


def test_cli_parses_into_the_config(tmp_path: Path) -> None:
    config, extra = pcsr.parse_args(
        ["--out", str(tmp_path), "--phase", "2", "--init", "p1.safetensors", "--queries", "9"]
    )
    assert (config.phase, config.init, config.queries, config.threads) == (
        2,
        "p1.safetensors",
        9,
        None,
    )
    assert extra.export is None and extra.name == "pcsr-x4"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--photos", "missing"], "photo folder not found"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--log-every", "0"], "--log-every must be at least 1"),
        (["--manifest", "m.toml"], "--manifest needs --export"),
        (["--export", "."], "error: --export . is a folder; name the .safetensors file\n"),
    ],
)
def test_cli_refuses_bad_options_in_a_line_and_writes_nothing(
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "run"
    assert pcsr.main(["--out", str(out), "--photos", str(photos), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()
