"""Tests for the training data side: kernels, degradations, split, patches, dataset.

Everything runs on tiny generated images and a fake two-conv "teacher", but for the tests
that regenerate the first patches of the stored runs the shipped ×2 model was trained on
(``data/patches_x2web64_s9``/``_s10``, skipped when ``data/`` does not hold them) and the
slow tests, which touch the real Real-ESRGAN teacher (skipped when ``data/teacher`` has not
been fetched).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pocketsr_cli.atomicfile import temp_path_for
from pocketsr_cli.train import make_patches as make_patches_cli
from pocketsr_cli.train import teacher as teacher_module
from pocketsr_cli.train.dataset import PatchDataset, dihedral
from pocketsr_cli.train.degradations import (
    bicubic_downscale,
    crop_to_multiple,
    degrade,
    degrade_eval,
    gaussian_blur,
    to_float,
)
from pocketsr_cli.train.kernels import (
    KERNEL_TYPES,
    BlurSpec,
    bessel_j1,
    gaussian_kernel,
    plateau_kernel,
    random_blur_kernel,
    sinc_kernel,
)
from pocketsr_cli.train.patches import (
    ManifestMismatchError,
    PatchSpec,
    fit_long_side,
    gradient_energy,
    make_patches,
    photo_weights,
    read_photo,
    sample_patch,
    shard_name,
)
from pocketsr_cli.train.split import (
    DEBIAN_PHOTOS,
    KNOWN_PHOTOS,
    SKIMAGE_PHOTOS,
    VALIDATION,
    fetch_list_names,
    split_photos,
)
from pocketsr_cli.train.teacher import Teacher

REPO = Path(__file__).resolve().parents[1]
SHARED_FETCH_LIST = REPO.parent / "shared" / "data" / "train_photos.txt"
TINY = PatchSpec(scale=4, lr_size=8, margin=2, seed=7)  # 48-px HR context, 12-px LR context


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """A uint8 RGB test photo with edges and texture at several scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / (3 + seed % 5)) * np.cos(yy / 4.0)
    img = base[..., None] + 0.1 * rng.standard_normal((h, w, 3)).astype(np.float32)
    img[: h // 2, : w // 3] *= 0.4  # a hard edge
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def rgb_hr(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return to_float(textured(h, w, seed))


class FakeTeacher(torch.nn.Module):
    """Two seeded convolutions and a pixel shuffle: a cheap ×4 network."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 48, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.pixel_shuffle(self.b(torch.relu(self.a(x))), 4))


def nearest_x4(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=4, mode="nearest")


def write_photos(folder: Path, names: list[str], h: int = 96, w: int = 128) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        cv2.imwrite(str(path), textured(h, w, i)[..., ::-1])
        paths.append(path)
    return paths


def load_shards(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("shard_*.npz")):
        with np.load(path) as data:
            out[path.name] = {k: data[k] for k in data.files}
    return out


# ---------------------------------------------------------------- kernels


def test_bessel_j1_known_values() -> None:
    got = bessel_j1([0.0, 1.0, 5.0, 20.0])
    want = [0.0, 0.44005058574493355, -0.3275791375914652, 0.06683312417584993]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize(
    "kernel",
    [
        gaussian_kernel(21, 3.0, 1.0, 0.7),
        gaussian_kernel(9, 1.5, 0.5, -2.0, beta=0.6),
        plateau_kernel(15, 2.0, 2.0, 0.0, beta=1.5),
        sinc_kernel(13, math.pi / 4),
    ],
)
def test_kernels_normalised_and_point_symmetric(kernel: np.ndarray) -> None:
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)


def test_anisotropic_gaussian_is_elongated_along_theta() -> None:
    k = gaussian_kernel(21, 4.0, 0.5, theta=0.0)
    assert k[10, :].sum() > 5 * k[:, 10].sum()  # spread along x, thin along y
    k90 = gaussian_kernel(21, 4.0, 0.5, theta=math.pi / 2)
    np.testing.assert_allclose(k90, k.T, atol=1e-12)


def test_random_kernels_cover_every_type() -> None:
    rng = np.random.default_rng(0)
    spec = BlurSpec(type_probs=(1 / 6,) * 6, sinc_prob=0.2)
    sizes = set()
    for _ in range(200):
        k = random_blur_kernel(rng, spec)
        assert k.sum() == pytest.approx(1.0)
        sizes.add(k.shape[0])
    assert sizes <= set(spec.sizes) and len(sizes) > 4
    assert len(KERNEL_TYPES) == 6


# ---------------------------------------------------------------- degradations


@pytest.mark.parametrize("scale", [4, 2])
def test_degrade_shape_dtype_range(scale: int) -> None:
    hr = rgb_hr()
    for i in range(20):
        lr = degrade(hr, scale, np.random.default_rng([3, i]))
        assert lr.shape == (64 // scale, 96 // scale, 3) and lr.dtype == np.float32
        assert lr.min() >= 0.0 and lr.max() <= 1.0
        np.testing.assert_array_equal(lr * 255, np.rint(lr * 255))  # 8-bit levels


def test_degrade_is_deterministic_per_seed() -> None:
    hr = rgb_hr()
    a = degrade(hr, 4, np.random.default_rng(11))
    b = degrade(hr, 4, np.random.default_rng(11))
    c = degrade(hr, 4, np.random.default_rng(12))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    u8 = degrade((hr * 255).round().astype(np.uint8), 4, np.random.default_rng(11))
    assert u8.tobytes() == a.tobytes()  # uint8 input is the same image


def test_degrade_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        degrade(rgb_hr(62, 96), 4, np.random.default_rng(0))
    with pytest.raises(ValueError):
        degrade(np.zeros((64, 64), np.float32), 4, np.random.default_rng(0))


def test_bicubic_downscale_matches_pil_inside() -> None:
    hr = rgb_hr(64, 96)
    for factor in (2, 4):
        ours = bicubic_downscale(hr, factor)
        size = (96 // factor, 64 // factor)
        pil = np.stack(
            [
                np.asarray(Image.fromarray(hr[..., c]).resize(size, Image.Resampling.BICUBIC))
                for c in range(3)
            ],
            axis=-1,
        )
        np.testing.assert_allclose(ours[3:-3, 3:-3], pil[3:-3, 3:-3], atol=1e-5)


def test_bicubic_downscale_keeps_constants() -> None:
    flat = np.full((32, 48, 3), 0.3, np.float32)
    np.testing.assert_allclose(bicubic_downscale(flat, 4), 0.3, atol=1e-6)


def test_eval_bicubic_exact_and_seed_free() -> None:
    hr = textured(64, 96, 1)
    lr = degrade_eval(hr, "bicubic", seed=0)
    assert lr.shape == (16, 24, 3) and lr.dtype == np.uint8
    want = np.rint(np.clip(bicubic_downscale(hr, 4), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(lr, want)
    np.testing.assert_array_equal(degrade_eval(hr, "bicubic", seed=5), lr)
    assert degrade_eval(hr, "bicubic", scale=2).shape == (32, 48, 3)


def test_eval_real_deterministic_and_close_to_blurred_bicubic() -> None:
    hr = textured(128, 128, 2)
    a = degrade_eval(hr, "real", seed=0)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert a.tobytes() == degrade_eval(hr, "real", seed=0).tobytes()
    assert a.tobytes() != degrade_eval(hr, "real", seed=1).tobytes()
    clean = np.clip(bicubic_downscale(gaussian_blur(to_float(hr), 1.2), 4), 0, 1) * 255
    err = a.astype(np.float64) - clean
    assert abs(err.mean()) < 1.5
    assert 1.5 < err.std() < 8  # noise σ 3 plus JPEG q70 error


def test_eval_rejects_unknown_kind_and_odd_sizes() -> None:
    with pytest.raises(ValueError):
        degrade_eval(textured(64, 64, 0), "gauss")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        degrade_eval(textured(63, 64, 0), "bicubic")
    assert crop_to_multiple(textured(63, 66, 0), 4).shape == (60, 64, 3)


# ---------------------------------------------------------------- split


def test_validation_split_is_fixed_and_mixed() -> None:
    assert sorted(VALIDATION) == [
        "FallenLeaf.jpg",
        "GreenMeadow.jpg",
        "LadyBird.jpg",
        "skimage_chelsea.png",
        "skimage_coffee.png",
    ]
    assert VALIDATION <= KNOWN_PHOTOS and len(KNOWN_PHOTOS) == 24
    assert VALIDATION & set(DEBIAN_PHOTOS) and VALIDATION & set(SKIMAGE_PHOTOS)
    pair = {"skimage_motorcycle_left.png", "skimage_motorcycle_right.png"}
    assert not pair & VALIDATION  # the stereo pair stays on one side


def test_split_photos_disjoint_and_stable(tmp_path: Path) -> None:
    for name in [*sorted(KNOWN_PHOTOS), "notes.txt", "extra.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    split = split_photos(tmp_path)
    train = {p.name for p in split.train}
    held = {p.name for p in split.validation}
    assert held == VALIDATION and train == KNOWN_PHOTOS - VALIDATION
    assert {p.name for p in split.ignored} == {"notes.txt", "extra.jpg"}
    assert split == split_photos(tmp_path)


def test_split_accepts_photos_named_by_a_fetch_list(tmp_path: Path) -> None:
    fetch_list = tmp_path / "train_photos.txt"
    fetch_list.write_text(
        "# comment\n"
        "plasma-workspace-wallpapers\tusr/share/wallpapers/NewOne/contents/images/1.jpg\n"
        "mate-backgrounds\tusr/share/backgrounds/mate/nature/Leaf.jpg\n"
    )
    assert fetch_list_names(fetch_list) == {"NewOne.jpg", "Leaf.jpg"}
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("NewOne.jpg", "Other.jpg", "LadyBird.jpg"):
        (photos / name).write_bytes(b"x")
    split = split_photos(photos, fetch_list)
    assert [p.name for p in split.train] == ["NewOne.jpg"]
    assert [p.name for p in split.validation] == ["LadyBird.jpg"]
    assert [p.name for p in split.ignored] == ["Other.jpg"]


@pytest.mark.skipif(not SHARED_FETCH_LIST.is_file(), reason="shared fetch list not present")
def test_known_debian_photos_match_the_shared_fetch_list() -> None:
    assert fetch_list_names(SHARED_FETCH_LIST) == set(DEBIAN_PHOTOS)


def test_extra_training_photos_stay_out_of_validation_test_and_reserved_packages() -> None:
    """SPEC reserves the rest of mate-backgrounds and plasma-workspace-wallpapers for eval."""
    extra = REPO / "scripts" / "extra_train_photos.txt"
    names = fetch_list_names(extra)
    test_names = fetch_list_names(REPO / "scripts" / "test_photos.txt")
    val_names = fetch_list_names(REPO / "scripts" / "extra_val_photos.txt")
    assert len(names) == 10 and len(val_names) == 5
    assert not names & (VALIDATION | test_names | KNOWN_PHOTOS | val_names)
    assert not val_names & (VALIDATION | test_names | KNOWN_PHOTOS)
    lists = (extra, REPO / "scripts" / "extra_val_photos.txt")
    rows = [ln for f in lists for ln in f.read_text().splitlines() if ln and ln[0] != "#"]
    packages = {row.split("\t")[0] for row in rows}
    assert not packages & {"mate-backgrounds", "plasma-workspace-wallpapers"}


# ---------------------------------------------------------------- patches


def test_gradient_energy_flat_vs_textured() -> None:
    assert gradient_energy(np.full((32, 32, 3), 128, np.uint8)) == 0.0
    assert gradient_energy(textured(32, 32, 0)) > 0.02


def test_flat_crops_are_rejected() -> None:
    flat = np.full((96, 96, 3), 90, np.uint8)
    photos = [flat, textured(96, 96, 1)]
    spec = PatchSpec(scale=4, lr_size=8, margin=2, flat_keep_prob=0.0)
    weights = photo_weights(photos, spec)
    assert [sample_patch(photos, weights, i, spec).photo for i in range(12)] == [1] * 12


def test_sample_crop_matches_its_box_at_native_scale() -> None:
    photos = [textured(80, 120, 3)]
    spec = PatchSpec(scale=4, lr_size=8, margin=2, hr_rescale=(1.0, 1.0))
    s = sample_patch(photos, photo_weights(photos, spec), 5, spec)
    top, left, side = s.box
    assert side == spec.context_hr
    np.testing.assert_array_equal(s.hr_context, photos[0][top : top + side, left : left + side])
    assert s.lr_context.shape == (12, 12, 3) and s.lr_context.dtype == np.uint8


def run_tiny(out: Path, photos: list[Path], **kw: object) -> None:
    args: dict[str, object] = {
        "teacher": FakeTeacher(),
        "teacher_identity": {"name": "fake"},
        "count": 10,
        "spec": TINY,
        "shard_size": 4,
        "batch_size": 3,
    }
    args.update(kw)
    make_patches(photos, out, **args)  # type: ignore[arg-type]


def test_make_patches_writes_shards_and_manifest(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg", "skimage_rocket.jpg"])
    run_tiny(tmp_path / "out", photos)
    shards = load_shards(tmp_path / "out")
    assert list(shards) == [shard_name(k) for k in range(3)]
    last = shards[shard_name(2)]
    assert last["hr"].shape == (2, 32, 32, 3) and last["lr"].shape == (2, 8, 8, 3)
    assert last["teacher"].shape == (2, 32, 32, 3) and last["teacher"].dtype == np.uint8
    np.testing.assert_array_equal(last["index"], [8, 9])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["count"] == 10 and manifest["seed"] == 7 and manifest["scale"] == 4
    assert [p["name"] for p in manifest["photos"]] == ["Aqua.jpg", "skimage_rocket.jpg"]
    assert manifest["teacher"] == {"name": "fake"}
    assert manifest["degradation"]["jpeg1"] == [30, 95]


def test_mild_patches_are_lighter_recorded_and_deterministic(tmp_path: Path) -> None:
    from pocketsr_cli.train.degradations import MildSpec

    photos = write_photos(tmp_path / "photos", ["Aqua.jpg", "skimage_rocket.jpg"])
    run_tiny(tmp_path / "hard", photos)
    run_tiny(tmp_path / "mild", photos, config=MildSpec())
    run_tiny(tmp_path / "again", photos, config=MildSpec())
    hard, mild, again = (load_shards(tmp_path / d) for d in ("hard", "mild", "again"))
    manifest = json.loads((tmp_path / "mild" / "manifest.json").read_text())
    assert manifest["degradation"]["kind"] == "mild"
    assert manifest["degradation"]["jpeg_quality"] == [60, 95]
    for name in mild:  # same crops (same seed), another degradation, reproducible
        np.testing.assert_array_equal(mild[name]["hr"], hard[name]["hr"])
        np.testing.assert_array_equal(mild[name]["lr"], again[name]["lr"])
        assert not np.array_equal(mild[name]["lr"], hard[name]["lr"])
    with pytest.raises(ManifestMismatchError):
        run_tiny(tmp_path / "mild", photos)  # a second-order run cannot resume a mild one


@pytest.mark.parametrize("scale", [4, 2])
def test_teacher_output_is_centre_cropped_in_register(tmp_path: Path, scale: int) -> None:
    """With a nearest-neighbour "teacher" the stored target is exactly the stored LR,
    upscaled: the margin is cut at the same place in LR and teacher output."""
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg"])
    spec = PatchSpec(scale=scale, lr_size=8, margin=2, seed=1)
    run_tiny(tmp_path / "out", photos, teacher=nearest_x4, spec=spec, count=4)
    shard = load_shards(tmp_path / "out")[shard_name(0)]
    lr = torch.from_numpy(shard["lr"]).permute(0, 3, 1, 2).float()
    want = F.interpolate(lr, scale_factor=scale, mode="nearest").permute(0, 2, 3, 1)
    np.testing.assert_array_equal(shard["teacher"], want.to(torch.uint8).numpy())
    assert shard["hr"].shape == (4, 8 * scale, 8 * scale, 3)


def test_interrupted_run_resumes_to_identical_shards(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg", "Kite.jpg"])
    run_tiny(tmp_path / "whole", photos)

    done = 0

    def interrupt(n: int) -> None:
        nonlocal done
        done += n
        if done >= 6:  # inside shard 1, after shard 0 was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path / "resumed", photos, progress=interrupt)
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == [
        "manifest.json",
        shard_name(0),
    ]
    killed = temp_path_for(tmp_path / "resumed" / shard_name(1))  # killed mid-write
    killed.write_bytes(b"half")
    seen: list[int] = []
    run_tiny(tmp_path / "resumed", photos, progress=seen.append)
    assert sum(seen) == 10
    whole, resumed = load_shards(tmp_path / "whole"), load_shards(tmp_path / "resumed")
    assert list(whole) == list(resumed)
    for name in whole:
        for key in whole[name]:
            np.testing.assert_array_equal(whole[name][key], resumed[name][key])
    assert not killed.exists()


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg"])
    run_tiny(tmp_path / "out", photos, count=4)
    with pytest.raises(ManifestMismatchError, match="seed"):
        run_tiny(tmp_path / "out", photos, count=4, spec=PatchSpec(lr_size=8, margin=2, seed=8))
    run_tiny(tmp_path / "out", photos, count=6)  # growing the run is fine
    assert len(load_shards(tmp_path / "out")) == 2


def test_fit_long_side_downscales_only_larger_photos() -> None:
    img = textured(60, 150, 2)
    assert fit_long_side(img, None) is img and fit_long_side(img, 150) is img
    small = fit_long_side(img, 50)
    assert small.shape == (20, 50, 3) and small.dtype == np.uint8
    assert abs(float(small.mean()) - float(img.mean())) < 2  # area averaging keeps the level


def test_long_side_is_recorded_and_old_runs_resume_without_it(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg"])
    size = max(read_photo(photos[0]).shape[:2])
    run_tiny(tmp_path / "fitted", photos, count=4, long_side=size - 8)
    manifest = json.loads((tmp_path / "fitted" / "manifest.json").read_text())
    assert manifest["long_side"] == size - 8
    assert max(manifest["photos"][0]["height"], manifest["photos"][0]["width"]) == size - 8
    run_tiny(tmp_path / "plain", photos, count=4)  # made without the option...
    assert "long_side" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())
    run_tiny(tmp_path / "plain", photos, count=6)  # ...resumes without it
    with pytest.raises(ManifestMismatchError, match="long_side"):
        run_tiny(tmp_path / "plain", photos, count=6, long_side=size - 8)


def test_cli_uses_only_training_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, ["Aqua.jpg", "LadyBird.jpg", "stranger.png"])

    def fake_load(folder: Path) -> Teacher:
        return Teacher(module=FakeTeacher(), scale=4, identity={"name": "fake"})

    monkeypatch.setattr(teacher_module, "load_teacher", fake_load)
    argv = ["--photos", str(photos), "--out", str(tmp_path / "out"), "--teacher", "x"]
    argv += ["--count", "3", "--lr-size", "8", "--margin", "2", "--shard-size", "2"]
    assert make_patches_cli.main(argv) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [p["name"] for p in manifest["photos"]] == ["Aqua.jpg"]
    assert len(load_shards(tmp_path / "out")) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--count", "0"], "--count must be at least 1, got 0"),
        (["--batch", "0"], "--batch must be at least 1, got 0"),
        (["--shard-size", "0"], "--shard-size must be at least 1, got 0"),
        (["--lr-size", "0"], "--lr-size must be at least 1, got 0"),
        (["--margin", "-3"], "--margin must be at least 0, got -3"),
        (["--seed", "-1"], "--seed must be at least 0, got -1"),
        (["--threads", "-2"], "--threads must be at least 0, got -2"),
        (["--long-side", "0"], "--long-side must be at least 1, got 0"),
        (["--out", "{tmp}/a-file"], "--out {tmp}/a-file is a file, not a patch folder"),
        (["--photos", "{tmp}/a-file"], "--photos {tmp}/a-file is a file; give the folder"),
        (["--fetch-list", "{tmp}/none.txt"], "--fetch-list {tmp}/none.txt: no such file"),
    ],
)
def test_cli_refuses_options_that_cannot_work_in_a_line_before_any_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    """A number out of range or an --out that is a file is said in one line before the
    teacher is loaded, with nothing written (--lr-size 0 and --margin -3 used to write a
    run of empty patches; --seed -1 a manifest and numpy's message; --threads -2 a
    traceback)."""
    photos = tmp_path / "photos"
    write_photos(photos, ["Aqua.jpg"])
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setattr(teacher_module, "load_teacher", lambda folder: pytest.fail("loaded"))
    argv = ["--photos", str(photos), "--out", str(tmp_path / "out"), "--teacher", "x"]
    argv += ["--count", "3", "--lr-size", "8", "--margin", "2"]
    argv += [a.format(tmp=tmp_path) for a in extra]
    before = sorted(tmp_path.rglob("*"))
    assert make_patches_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(tmp=tmp_path)}") and err.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_patch_spec_refuses_an_empty_patch_and_a_negative_margin_or_seed() -> None:
    for bad in ({"lr_size": 0}, {"margin": -1}, {"seed": -1}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be at least"):
            PatchSpec(**bad)


# ---------------------------------------------------------------- dataset


def test_dihedral_gives_eight_distinct_transforms() -> None:
    img = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1)
    outs = {dihedral(img, k).tobytes() + bytes(dihedral(img, k).shape) for k in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(dihedral(img, 0), img)


def test_dataset_augments_hr_lr_teacher_alike(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg", "Kite.jpg"])
    run_tiny(tmp_path / "out", photos)
    ds = PatchDataset(tmp_path / "out")
    assert len(ds) == 10 and ds.complete
    torch.manual_seed(0)
    used = set()
    for i in range(len(ds)):
        for _ in range(3):
            item = ds[i]
            raw = ds.raw(i)
            assert item["hr"].shape == (3, 32, 32) and item["lr"].shape == (3, 8, 8)
            assert item["teacher"].dtype == torch.float32 and float(item["hr"].max()) <= 1.0
            as_u8 = {
                k: (v * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
                for k, v in item.items()
            }
            ks = [k for k in range(8) if np.array_equal(dihedral(raw["hr"], k), as_u8["hr"])]
            assert ks, "hr is not a dihedral transform of the stored patch"
            k = ks[0]
            np.testing.assert_array_equal(dihedral(raw["lr"], k), as_u8["lr"])
            np.testing.assert_array_equal(dihedral(raw["teacher"], k), as_u8["teacher"])
            used.add(k)
    assert len(used) >= 6
    plain = PatchDataset(tmp_path / "out", augment=False)[4]
    np.testing.assert_array_equal(
        (plain["lr"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), ds.raw(4)["lr"]
    )


def test_dataset_on_a_partial_run(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg"])
    run_tiny(tmp_path / "out", photos)
    (tmp_path / "out" / shard_name(1)).unlink()
    ds = PatchDataset(tmp_path / "out")
    assert len(ds) == 6 and not ds.complete
    with pytest.raises(FileNotFoundError):
        PatchDataset(tmp_path / "out", allow_partial=False)


def test_dataset_limit_reads_only_the_shards_it_needs(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg"])
    run_tiny(tmp_path / "out", photos)  # 10 patches in shards of 4
    full = PatchDataset(tmp_path / "out", augment=False)
    (tmp_path / "out" / shard_name(2)).unlink()  # past the first 6: never read
    ds = PatchDataset(tmp_path / "out", allow_partial=False, limit=6)
    assert len(ds) == 6 and ds.complete
    for i in range(6):
        np.testing.assert_array_equal(ds.raw(i)["hr"], full.raw(i)["hr"])


# ---------------------------------------------------------------- real teacher


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "data" / "teacher" / "REALESRGAN_X4PLUS_UP4X.bin").is_file(),
    reason="teacher not fetched (python3 scripts/fetch_teacher.py data/teacher)",
)
def test_real_teacher_patches_look_like_the_hr(tmp_path: Path) -> None:
    teacher = teacher_module.load_teacher(REPO / "data" / "teacher")
    assert teacher.scale == 4 and len(teacher.identity["bin_sha256"]) == 64
    photos = write_photos(tmp_path / "photos", ["Aqua.jpg"], 160, 160)
    spec = PatchSpec(scale=4, lr_size=16, margin=8, seed=0)
    make_patches(photos, tmp_path / "out", teacher.module, teacher.identity, 2, spec)
    shard = load_shards(tmp_path / "out")[shard_name(0)]
    err = np.abs(shard["teacher"].astype(float) - shard["hr"].astype(float)).mean()
    assert err < 40  # a restoration of the HR, not noise or a shifted crop


def test_derived_key_is_computed_once_and_augmented_with_hr(tmp_path: Path) -> None:
    from pocketsr_cli.train.losses import usm_sharpen

    photos = write_photos(tmp_path / "photos", ["Aqua.jpg", "Kite.jpg"])
    run_tiny(tmp_path / "out", photos)
    ds = PatchDataset(tmp_path / "out")
    ds.derive("hr_usm", "hr", usm_sharpen, chunk=3)
    torch.manual_seed(1)
    for i in range(len(ds)):
        item, raw = ds[i], ds.raw(i)
        hr = (item["hr"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        usm = (item["hr_usm"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        k = next(k for k in range(8) if np.array_equal(dihedral(raw["hr"], k), hr))
        np.testing.assert_array_equal(dihedral(raw["hr_usm"], k), usm)
    # the stored copy is usm_sharpen of the stored hr, to uint8 rounding
    x = torch.from_numpy(ds.raw(0)["hr"]).permute(2, 0, 1)[None].float() / 255
    expected = (usm_sharpen(x)[0].permute(1, 2, 0) * 255).round().numpy()
    assert np.abs(ds.raw(0)["hr_usm"].astype(float) - expected).max() <= 1


def test_web_kind_is_a_heavier_mild_range() -> None:
    from pocketsr_cli.train.degradations import MILD_SPECS, degrade_mild

    web, mild = MILD_SPECS["web"], MILD_SPECS["mild"]
    assert web.blur_sigma[0] > mild.blur_sigma[0] and web.noise_sigma[0] > 0
    assert web.jpeg_quality is not None and mild.jpeg_quality is not None
    assert web.jpeg_quality[1] < mild.jpeg_quality[1]
    rng = np.random.default_rng(0)
    hr = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    clean = degrade_mild(hr, 4, np.random.default_rng(1), MILD_SPECS["clean"]).astype(float)

    def spread(spec_name: str) -> float:
        lrs = [
            degrade_mild(hr, 4, np.random.default_rng(s), MILD_SPECS[spec_name]) for s in range(8)
        ]
        return float(np.mean([np.abs(lr.astype(float) - clean).mean() for lr in lrs]))

    assert spread("web") > spread("mild") > 0


# ---------------------------------------------------------------- patch i stays patch i
#
# The shipped ×2 model was trained on data/patches_x2web64_s9 and _s10 (models/
# pocketsr-compact-x2.md); regenerating a patch of those runs must give the same bytes, so a
# change to what patch i is (its photo, crop, rescale or degradation draws) breaks these.

# (height, width) of the training photos of those runs, in manifest order
X2WEB64_PHOTO_SIZES = [(1600, 2560), (1200, 1920), (1600, 2560), (1600, 2560), (1600, 2560)]
X2WEB64_PHOTO_SIZES += [(1203, 1600), (1600, 2560), (1600, 2560), (1600, 2560), (1200, 1920)]
X2WEB64_PHOTO_SIZES += [(1280, 1920), (1600, 2560), (1600, 2560), (512, 512), (872, 1000)]
X2WEB64_PHOTO_SIZES += [(500, 741), (500, 741), (427, 640), (1600, 2560)]


@pytest.mark.parametrize(
    ("seed", "index", "photo", "box", "blur", "quality"),
    [  # photo and box as stored in the runs' shard_00000.npz (patches whose first crop was kept)
        (9, 0, 14, (71, 453, 249), 1.5552874912, 78),
        (9, 1, 13, (68, 261, 233), 1.0936332375, 64),
        (9, 2, 9, (723, 1462, 256), 1.4951272267, 64),
        (9, 6, 11, (723, 700, 280), 1.7897081880, 51),
        (10, 0, 18, (1058, 1902, 265), 0.8642103354, 74),
        (10, 3, 9, (800, 122, 209), 1.4976397820, 50),
        (10, 8, 13, (308, 134, 178), 0.8635807368, 66),
    ],
)
def test_x2web64_patch_draws_are_pinned(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    index: int,
    photo: int,
    box: tuple[int, int, int],
    blur: float,
    quality: int,
) -> None:
    """Patch ``index`` of the ``--scale 2 --lr-size 64 --degradation web`` runs: which photo,
    where, at what crop side, and the web degradation's blur σ and JPEG quality.  Only the
    photos' sizes enter these draws, so blank photos of those sizes stand in for them, and
    ``flat_threshold = 0`` stands for a textured first crop (no keep-or-redraw draw)."""
    import pocketsr_cli.evaluation.degrade as core_degrade
    import pocketsr_cli.train.degradations as train_degrade
    from pocketsr_cli.train.degradations import MILD_SPECS

    drawn: dict[str, float] = {}

    def blur_spy(img: np.ndarray, sigma: float) -> np.ndarray:
        drawn["blur"] = sigma
        return gaussian_blur(img, sigma)

    real_jpeg = core_degrade.jpeg_roundtrip

    def jpeg_spy(img: np.ndarray, q: int) -> np.ndarray:
        drawn["quality"] = q
        return real_jpeg(img, q)

    monkeypatch.setattr(train_degrade, "gaussian_blur", blur_spy)
    monkeypatch.setattr(core_degrade, "jpeg_roundtrip", jpeg_spy)
    photos = [np.zeros((h, w, 3), np.uint8) for h, w in X2WEB64_PHOTO_SIZES]
    spec = PatchSpec(scale=2, lr_size=64, margin=8, seed=seed, flat_threshold=0.0)
    s = sample_patch(photos, photo_weights(photos, spec), index, spec, MILD_SPECS["web"])
    assert (s.photo, s.box) == (photo, box)
    assert s.hr_context.shape == (160, 160, 3) and s.lr_context.shape == (80, 80, 3)
    assert drawn == {"blur": pytest.approx(blur, abs=1e-9), "quality": quality}


def test_crop_side_rounds_half_to_even_as_the_stored_runs_did() -> None:
    """The crop side is ``round(context_hr / f)``, Python's half-to-even rounding, with which
    every stored patch run was cut; the output sizes' half-up rule
    (``sizing.scaled_length``) must not reach it, or patch i of those runs moves."""
    f = 48 / 52.5  # context_hr / f is exactly 52.5
    spec = PatchSpec(scale=4, lr_size=8, margin=2, hr_rescale=(f, f))
    photos = [textured(96, 96, 0)]
    assert spec.context_hr / f == 52.5
    assert sample_patch(photos, photo_weights(photos, spec), 0, spec).box[2] == 52


X2WEB64_RUNS = [REPO / "data" / f"patches_x2web64_s{seed}" for seed in (9, 10)]


def _x2web64_stored_and_photos() -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The two runs' manifests and their photos, read from ``data/photos`` (skips the test
    when the run folders or photos are not there)."""
    from pocketsr_cli.weights.cache import sha256_file

    manifests = []
    for run in X2WEB64_RUNS:
        if not (run / "manifest.json").is_file() or not (run / shard_name(0)).is_file():
            pytest.skip(f"{run} is not there")
        manifests.append(json.loads((run / "manifest.json").read_text()))
    assert manifests[0]["photos"] == manifests[1]["photos"]
    paths = [REPO / "data" / "photos" / p["name"] for p in manifests[0]["photos"]]
    if not all(p.is_file() for p in paths):
        pytest.skip("data/photos does not hold the runs' photos")
    for path, entry in zip(paths, manifests[0]["photos"], strict=True):
        assert sha256_file(path) == entry["sha256"], f"{path} is not the photo the run used"
    return manifests, [read_photo(p) for p in paths]


def _x2web64_spec(manifest: dict[str, Any]) -> PatchSpec:
    patch = dict(manifest["patch"])
    return PatchSpec(**{**patch, "hr_rescale": tuple(patch["hr_rescale"])})


def test_stored_x2web64_patches_regenerate_byte_for_byte() -> None:
    """The first patches of the runs the shipped ×2 model was trained on come out of
    today's code as stored (photo, box, HR crop and degraded LR; the teacher's part is the
    slow test below), with the ``web`` degradation the card's command names."""
    from pocketsr_cli.train.degradations import MILD_SPECS
    from pocketsr_cli.train.patches import degradation_record

    manifests, photos = _x2web64_stored_and_photos()
    assert [p.shape[:2] for p in photos] == X2WEB64_PHOTO_SIZES
    for run, manifest in zip(X2WEB64_RUNS, manifests, strict=True):
        assert manifest["degradation"] == json.loads(
            json.dumps(degradation_record(MILD_SPECS["web"]))
        )
        spec = _x2web64_spec(manifest)
        weights = photo_weights(photos, spec)
        with np.load(run / shard_name(0)) as stored:
            for i in range(8):
                s = sample_patch(photos, weights, i, spec, MILD_SPECS["web"])
                m_hr, m_lr = spec.margin * spec.scale, spec.margin
                hr = s.hr_context[m_hr : m_hr + spec.hr_size, m_hr : m_hr + spec.hr_size]
                lr = s.lr_context[m_lr : m_lr + spec.lr_size, m_lr : m_lr + spec.lr_size]
                assert (s.photo, s.box) == (stored["photo"][i], tuple(stored["box"][i]))
                np.testing.assert_array_equal(hr, stored["hr"][i])
                np.testing.assert_array_equal(lr, stored["lr"][i])


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.skipif(
    not (REPO / "data" / "teacher" / "REALESRGAN_X4PLUS_UP4X.bin").is_file(),
    reason="teacher not fetched (python3 scripts/fetch_teacher.py data/teacher)",
)
def test_stored_x2web64_teacher_targets_regenerate_byte_for_byte() -> None:
    """The teacher's ×2 targets of the first batch of four (``make_patches --batch 4``, one
    torch thread as the card's ``--threads 1``) come out as stored, on this machine."""
    from pocketsr_cli.train.degradations import MILD_SPECS
    from pocketsr_cli.train.patches import run_teacher

    manifests, photos = _x2web64_stored_and_photos()
    teacher = teacher_module.load_teacher(REPO / "data" / "teacher")
    assert teacher.identity == manifests[0]["teacher"]
    spec = _x2web64_spec(manifests[0])
    weights = photo_weights(photos, spec)
    batch = [sample_patch(photos, weights, i, spec, MILD_SPECS["web"]) for i in range(4)]
    out = run_teacher(teacher.module, np.stack([s.lr_context for s in batch]), spec)
    with np.load(X2WEB64_RUNS[0] / shard_name(0)) as stored:
        np.testing.assert_array_equal(out, stored["teacher"][:4])
