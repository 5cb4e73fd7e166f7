"""``pocketsr models ...`` through Typer's runner, with POCKETSR_HOME in a temp folder.

Downloads use the loopback server of ``tests/_http.py``; ncnn files are written by the
test-side writer of ``test_ncnn.py``.  The slow test imports the real Real-ESRGAN x4plus
ncnn files (fetched from PyPI) and checks them against spandrel's RRDBNet.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _http import Behaviour, Loopback, refuse_network, serve
from _zoo import compact_state, params_of, save_safetensors, sha256, use_bundled, use_home
from _zoo import write_manifest as _write_manifest
from PIL import Image
from rich.console import Console
from safetensors.torch import load_file
from test_ncnn import (
    esrgan_state,
    photo_like,
    run_ncnn,
    save,
    srvgg_state,
    write_esrgan,
    write_srvgg,
)
from typer.testing import CliRunner

from pocketsr_cli.atomicfile import temp_path_for
from pocketsr_cli.cli import _ui, app
from pocketsr_cli.errors import ModelError
from pocketsr_cli.manifest import parse_manifest
from pocketsr_cli.weights import verify
from pocketsr_cli.weights.cache import user_models_dir, weights_path
from pocketsr_cli.weights.community import import_spandrel
from pocketsr_cli.weights.ncnn import convert, parse_param, read_weights
from pocketsr_cli.weights.resolve import DEFAULT_MODEL, resolve_model

REPO = Path(__file__).resolve().parents[1]
BLOB = random.Random(7).randbytes(64 * 1024)  # `models download` never opens the file
SD = compact_state(scale=2, seed=3)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_home(tmp_path, monkeypatch)


@pytest.fixture
def server() -> Iterator[Loopback]:
    with serve({"/blob.bin": BLOB}) as state:
        yield state


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def json_lines(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def remote_blob(server: Loopback, *paths: str) -> None:
    """A user-folder manifest ``blob`` whose weights are downloaded from ``paths``."""
    urls = tuple(server.url(p) for p in paths)
    _write_manifest(user_models_dir(), "blob", BLOB, file="blob.bin", urls=urls)


def spandrel_output(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    model = import_spandrel().ModelLoader().load_from_state_dict(dict(sd)).model.eval()
    with torch.no_grad():
        return model(x)


# --- list / info ------------------------------------------------------------------------------


def test_list_json_shows_where_each_model_is(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_network(monkeypatch)
    result = invoke("models", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json_lines(result)}
    assert rows["lanczos"]["where"] == "bundled"
    x4plus = rows["realesrgan-x4plus"]
    assert (x4plus["where"], x4plus["params"], x4plus["size"]) == ("remote", 16697987, 67040989)
    assert x4plus["license"] == "BSD-3-Clause"

    cached = weights_path("realesrgan-x4plus", "RealESRGAN_x4plus.pth")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cut off: not the size the manifest gives")
    rows = {r["name"]: r for r in json_lines(invoke("models", "list", "--json"))}
    assert rows["realesrgan-x4plus"]["where"] == "damaged"  # not usable: fetched again
    cached.write_bytes(b"\0" * 67040989)  # the right size (the digest is checked on use)
    rows = {r["name"]: r for r in json_lines(invoke("models", "list", "--json"))}
    assert rows["realesrgan-x4plus"]["where"] == "cached"


def test_list_table_and_skipped_manifest(home: Path) -> None:
    user_models_dir().mkdir(parents=True)
    (user_models_dir() / "broken.toml").write_text("name = [\n")
    result = invoke("models", "list")
    assert result.exit_code == 0
    # The table is the report (stdout); the skipped manifest is a warning (stderr).
    assert "realesrgan-x4plus" in result.stdout and "16.7M" in result.stdout
    assert "skipped" in result.stderr and "broken.toml" in result.stderr
    assert "broken.toml" not in result.stdout and "16.7M" not in result.stderr


def test_list_marks_the_default_model(home: Path) -> None:
    rows = json_lines(invoke("models", "list", "--json"))
    assert [row["name"] for row in rows if row["default"]] == [DEFAULT_MODEL]
    assert all(row["default"] is False for row in rows if row["name"] != DEFAULT_MODEL)
    table = invoke("models", "list").stdout.splitlines()
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in table if "│" in line]
    assert [row[1] for row in cells if row[0] == "*"] == [DEFAULT_MODEL]
    assert table[-1].startswith("* the default model")
    assert json_lines(invoke("models", "info", DEFAULT_MODEL, "--json"))[0]["default"] is True


@pytest.mark.parametrize(
    ("name", "files"), [("lanczos", 0), ("realesrgan-x4plus", 1), ("adcsr-x4", 2)]
)
def test_info_json_gives_weights_as_a_list_whatever_the_model(
    home: Path, name: str, files: int
) -> None:
    """One shape for ``weights``: a list of one object per file; it was null for a model
    without weights and a bare object for a model with one file."""
    (info,) = json_lines(invoke("models", "info", name, "--json"))
    assert isinstance(info["weights"], list) and len(info["weights"]) == files
    keys = {"file", "sha256", "pinned_sha256", "size", "urls", "path"}
    assert all(entry.keys() == keys for entry in info["weights"])


def test_list_stays_light(home: Path) -> None:
    # `models list` must not pay for torch or spandrel: it only reads manifests.
    code = (
        "import sys; from typer.testing import CliRunner; from pocketsr_cli.cli import app; "
        "r = CliRunner().invoke(app, ['models', 'list', '--json']); "
        "print(r.exit_code, 'torch' in sys.modules, 'spandrel' in sys.modules)"
    )
    env = {**os.environ, "POCKETSR_HOME": str(home), "POCKETSR_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False", "False"], out.stderr


def test_info(home: Path) -> None:
    result = invoke("models", "info", "realesrgan-x4plus", "--json")
    assert result.exit_code == 0
    (info,) = json_lines(result)
    (weights,) = info["weights"]
    assert weights["sha256"].startswith("4fa0d389")
    assert weights["urls"][0].startswith("https://github.com/xinntao/")
    assert weights["path"] is None
    assert info["hints"]["default_tile"] == 256 and info["build"]["num_blocks"] == 23
    human = invoke("models", "info", "lanczos")
    assert "family" in human.stdout and "resize" in human.stdout and human.stderr == ""
    unknown = invoke("models", "info", "nope")
    assert unknown.exit_code == 3 and "unknown model 'nope'" in unknown.stderr
    family = invoke("models", "info", "pocketsr-compact")  # what -m takes, with -s
    assert family.exit_code == 3
    assert (
        "pocketsr-compact names a family of models (pocketsr-compact-x2, pocketsr-compact-x4"
        in (" ".join(family.stderr.split()))
    )


def test_info_table_shows_absent_values_as_list_does_and_flags_as_yes_or_no(home: Path) -> None:
    """The table of ``models info`` printed Python's None, False and [] where ``models
    list`` prints ``-``."""
    human = invoke("models", "info", "realesrgan-x4plus")
    assert human.exit_code == 0
    rows = dict(line.split(None, 1) for line in human.stdout.splitlines())
    assert rows["weights.path"] == "-" and rows["hints.mean_anchor"] == "-"
    assert rows["default"] == "no" and rows["hints.fp16"] == "yes"
    assert rows["weights.urls"].startswith("https://github.com/xinntao/")
    lanczos = invoke("models", "info", "lanczos").stdout
    assert not {"None", "False", "True", "[]"} & set(lanczos.split())


def test_info_shows_the_overlap_runs_derive_for_a_manifest_that_states_none(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model imported before its architecture's overlap was measured has none in its
    manifest: ``models info`` showed ``hints.overlap -`` while runs took 40 (x4plus's
    blocks) from the loaded weights.  It shows that 40, derived from the file's header
    (no tensor read), or from ``[build]`` for a pocketsr family, marked so."""
    from test_resolve import esrgan

    folder = user_models_dir()
    data = save_safetensors(folder / "old.safetensors", esrgan(23))
    _write_manifest(folder, "old", data, family="spandrel:ESRGAN", scale=4)
    build = {"num_feat": 4, "num_conv": 32}  # a compact export: derived from its depth
    _write_manifest(folder, "deep", None, family="compact", build=build)

    def no_tensors(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the weights' tensors were read")

    monkeypatch.setattr("safetensors.torch.load_file", no_tensors)
    rows = dict(line.split(None, 1) for line in invoke("models", "info", "old").stdout.splitlines())
    assert rows["hints.overlap"] == (
        "40 (measured for its architecture, read from its weights; its manifest states none)"
    )
    (info,) = json_lines(invoke("models", "info", "old", "--json"))
    assert (info["overlap"], info["overlap_from"], info["hints"]["overlap"]) == (
        40,
        "weights",
        None,
    )
    assert info["overlap_derived"] is False
    (info,) = json_lines(invoke("models", "info", "deep", "--json"))
    assert (info["overlap"], info["overlap_from"], info["overlap_derived"]) == (31, "build", True)
    rows = dict(
        line.split(None, 1) for line in invoke("models", "info", "deep").stdout.splitlines()
    )
    assert rows["hints.overlap"] == (
        "31 (estimated from its [build], not measured; its manifest states none)"
    )
    (info,) = json_lines(invoke("models", "info", "realesrgan-x4plus", "--json"))
    assert (info["overlap"], info["overlap_from"], info["hints"]["overlap"]) == (40, "manifest", 40)
    assert info["overlap_derived"] is False
    (folder / "old.safetensors").unlink()  # not on this machine: not known without it
    (info,) = json_lines(invoke("models", "info", "old", "--json"))
    assert (info["overlap"], info["overlap_from"], info["overlap_derived"]) == (None, None, None)


def test_info_marks_a_derived_overlap_an_estimate(home: Path) -> None:
    """realesr-general-x4v3's 31 is derived from SRVGG-16's measured 16, not measured: its
    ``models info`` showed a bare 31, as for a measured one; it says it is an estimate
    (the seam warning words it the same), and measured ones stay bare."""
    text = invoke("models", "info", "realesr-general-x4v3").stdout
    rows = dict(line.split(None, 1) for line in text.splitlines())
    assert rows["hints.overlap"] == "31 (estimated, not measured)"
    assert "hints.overlap_derived" not in rows  # folded into hints.overlap
    (info,) = json_lines(invoke("models", "info", "realesr-general-x4v3", "--json"))
    assert (info["overlap"], info["overlap_from"], info["overlap_derived"]) == (
        31,
        "manifest",
        True,
    )
    assert info["hints"]["overlap_derived"] is True
    rows = dict(
        line.split(None, 1) for line in invoke("models", "info", "pcsr-x4").stdout.splitlines()
    )
    assert rows["hints.overlap"] == "8"


# --- download / verify / remove ---------------------------------------------------------------


def test_download_then_already_cached(home: Path, server: Loopback) -> None:
    remote_blob(server, "/missing.bin", "/blob.bin")  # 404 on the first mirror
    result = invoke("models", "download", "blob", "lanczos")
    assert result.exit_code == 0, result.output
    assert "blob: downloaded, 65.5 kB" in result.stderr
    assert "lanczos: nothing to download" in result.stderr
    assert weights_path("blob", "blob.bin").read_bytes() == BLOB
    again = invoke("models", "download", "blob")
    assert again.exit_code == 0 and "blob: already cached" in again.stderr
    assert [h.status for h in server.hits] == [404, 200]


def test_download_failures_exit_3(home: Path, server: Loopback) -> None:
    server.behaviours["/blob.bin"] = Behaviour(body=bytes(reversed(BLOB)))
    remote_blob(server, "/blob.bin")
    result = invoke("models", "download", "blob", "nope")
    assert result.exit_code == 3
    assert "checksum mismatch" in result.stderr and "unknown model 'nope'" in result.stderr
    assert "2 of 2 downloads failed" in result.stderr
    assert not weights_path("blob", "blob.bin").parent.exists()  # nothing left to resume


def test_a_download_of_one_model_that_fails_says_so_in_one_line(home: Path) -> None:
    """``models download NAME`` of one model followed its error with a tally of one, '1 of
    1 downloads failed: NAME', a second line that said nothing new; the tally is for
    several names, one of which may fail while the others are fetched."""
    result = invoke("models", "download", "nope")
    assert result.exit_code == 3
    assert result.stderr.startswith("error (model): unknown model 'nope'"), result.stderr
    assert result.stderr.count("\n") == 1 and "downloads failed" not in result.stderr


def test_download_offline_says_what_to_run(
    home: Path, server: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote_blob(server, "/blob.bin")
    monkeypatch.setenv("POCKETSR_OFFLINE", "1")
    result = invoke("models", "download", "blob")
    assert result.exit_code == 3
    assert "offline mode is on; run `pocketsr models download blob` while online" in " ".join(
        result.stderr.split()
    )
    assert server.hits == []


@pytest.mark.parametrize("value", ["on", "y"])
def test_download_is_offline_for_every_yes_upscale_takes(
    home: Path, server: Loopback, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """upscale --offline (then its environment variable read by Typer) took on and y as
    yes, while models download went online for them."""
    remote_blob(server, "/blob.bin")
    monkeypatch.setenv("POCKETSR_OFFLINE", value)
    result = invoke("models", "download", "blob")
    assert result.exit_code == 3 and "offline mode is on" in result.stderr
    assert server.hits == []
    monkeypatch.setenv("POCKETSR_OFFLINE", "maybe")
    result = invoke("models", "download", "blob")
    assert result.exit_code == 2 and server.hits == []
    assert "error (usage): POCKETSR_OFFLINE='maybe' is neither yes nor no" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_download_another_process_made_is_said_to_be_its(
    home: Path, server: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download that waited for another process's transfer of the same file moved no
    byte itself: it says who downloaded the file, not "downloaded"."""
    import threading

    from filelock import FileLock

    remote_blob(server, "/blob.bin")
    dest = weights_path("blob", "blob.bin")
    dest.parent.mkdir(parents=True)
    locked, waited = threading.Event(), threading.Event()

    def other_process() -> None:  # a thread stands for it: filelock's locks are per thread
        with FileLock(str(dest) + ".lock"):
            locked.set()
            waited.wait(10)
            dest.write_bytes(BLOB)

    real_waiting = _ui.DownloadBar.waiting

    def waiting(self: _ui.DownloadBar, message: str) -> None:
        real_waiting(self, message)
        waited.set()

    monkeypatch.setattr(_ui.DownloadBar, "waiting", waiting)
    other = threading.Thread(target=other_process)
    other.start()
    assert locked.wait(10)
    result = invoke("models", "download", "blob")
    other.join(10)
    assert result.exit_code == 0, result.output
    assert "waiting for another pocketsr process downloading blob.bin" in result.stderr
    assert f"blob: downloaded by another pocketsr process, 65.5 kB  {dest}" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["upscale", "missing.png", "-m", "bicubic"],
        ["eval", "missing", "-m", "bicubic"],
        ["bench", "-m", "bicubic", "--format", "png"],  # --format without --folder
        ["models", "import", "missing.safetensors", "--name", "w"],
    ],
)
def test_every_command_refuses_an_offline_value_that_says_neither_in_its_own_words(
    home: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """The commands with --offline said it in Typer's words ("Invalid value for
    '--offline' (env var: ...): Input should be a valid boolean"), models download and the
    API in pocketsr's: one reader now, one message, before any work."""
    monkeypatch.setenv("POCKETSR_OFFLINE", "maybe")
    result = invoke(*command)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error (usage): POCKETSR_OFFLINE='maybe' is neither yes nor no: set it to 1 (offline) or 0"
    )
    # --offline says it all: the variable is not read (the next usage error is the one).
    result = invoke(*command, "--offline")
    assert result.exit_code == 2 and "POCKETSR_OFFLINE" not in result.stderr


@pytest.mark.parametrize("value", ["on", "Y"])
def test_upscale_is_offline_for_every_yes_the_downloader_takes(
    home: Path, server: Loopback, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    """upscale reads POCKETSR_OFFLINE through the downloader's reader (weights.cache)."""
    remote_blob(server, "/blob.bin")
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    monkeypatch.setenv("POCKETSR_OFFLINE", value)
    result = invoke("upscale", str(image), "-m", "blob", "-o", str(tmp_path / "out"))
    assert result.exit_code == 3 and "offline mode is on" in result.stderr
    assert server.hits == []


def test_two_processes_download_once(home: Path, server: Loopback) -> None:
    server.behaviours["/blob.bin"] = Behaviour(chunk_delay=0.025)  # ~1.6 s transfer
    remote_blob(server, "/blob.bin")
    env = {**os.environ, "POCKETSR_HOME": str(home), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pocketsr_cli", "models", "download", "blob"]
    started = time.monotonic()
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()
    said = sorted(err.decode().splitlines()[-1].split(",")[0] for _, err in outputs)
    assert said == ["blob: downloaded", "blob: downloaded by another pocketsr process"]
    assert len(server.hits) == 1 and server.bytes_served() == len(BLOB)
    # Both were launched well before the one transfer ended: the second waited on the lock.
    assert server.hits[0].finished - started > 1.0
    assert weights_path("blob", "blob.bin").read_bytes() == BLOB


HF_NO_ROOM = (
    "Not enough free disk space to download the file. The expected file size is: 0.07 MB. "
    "The target location /hf/hub/blobs only has 0.01 MB free disk space."
)


def test_download_says_huggingface_hubs_disk_space_warning_once_as_a_warning_line(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub warns (``warnings.warn``, twice: its temporary file's folder and its
    blob's) when its cache's disk looks too small: that reached the user as Python prints
    a warning (file, line number, the source line); it is one warning line."""
    blob = tmp_path / "hf" / "blob.bin"
    blob.parent.mkdir()
    blob.write_bytes(BLOB)
    module = types.ModuleType("huggingface_hub")
    origin = "/venv/lib/python3.11/site-packages/huggingface_hub/file_download.py"

    def hf_hub_download(**kwargs: Any) -> str:
        for _ in range(2):
            warnings.warn_explicit(HF_NO_ROOM, UserWarning, origin, 773)
        return str(blob)

    module.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    _write_manifest(user_models_dir(), "blob", BLOB, file="blob.bin", urls=("hf://o/r/blob.bin",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Python's once-per-place filter hides nothing here
        result = invoke("models", "download", "blob", "--quiet")
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught] == []  # none left to Python to print
    said = " ".join(result.stderr.split())
    assert said == f"warning: huggingface_hub: {HF_NO_ROOM}"  # once, and kept under --quiet
    assert weights_path("blob", "blob.bin").read_bytes() == BLOB


def test_verify_rehashes_what_the_memo_trusts(home: Path, server: Loopback) -> None:
    remote_blob(server, "/blob.bin")
    assert invoke("models", "download", "blob").exit_code == 0
    ok = invoke("models", "verify", "--json")
    assert ok.exit_code == 0
    statuses = {r["name"]: r["status"] for r in json_lines(ok)}
    assert statuses["blob"] == "ok"  # bundled weights are verified too, and must be ok
    assert set(statuses.values()) == {"ok"}

    # Same size, same mtime, different bytes: the resolver's memo cannot see it ...
    cached = weights_path("blob", "blob.bin")
    stat = cached.stat()
    cached.write_bytes(bytes(reversed(BLOB)))
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    spec_sha = sha256(BLOB)
    assert verify.file_matches(cached, spec_sha) is True
    # ... but `models verify` always re-hashes.
    bad = invoke("models", "verify", "blob")
    assert bad.exit_code == 3
    assert "blob: damaged" in bad.stdout and "models download NAME" in bad.stderr
    assert "--force` replaces an imported model" not in bad.stderr  # a download: no import
    assert verify.file_matches(cached, spec_sha) is False  # and the memo forgot it


@pytest.mark.parametrize("origin", ["user", "bundled"])
def test_verify_advises_only_what_replaces_a_damaged_file_of_the_models_own(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str
) -> None:
    """A file beside its manifest that is damaged is no download: the advice said to
    download it again and to import it, whatever the model; it gives what replaces it,
    an import for an imported model, a reinstall for a bundled one."""
    folder = user_models_dir() if origin == "user" else use_bundled(tmp_path, monkeypatch)
    data = save_safetensors(tmp_path / "w.safetensors", SD)
    _write_manifest(folder, "own", data)
    (folder / "own.safetensors").write_bytes(bytes(reversed(data)))
    bad = invoke("models", "verify", "own")
    assert bad.exit_code == 3 and "own: damaged" in bad.stdout
    advice = " ".join(bad.stderr.split())
    assert "`pocketsr models download NAME`" not in advice
    assert ("--force` replaces an imported model" in advice) == (origin == "user")
    assert ("reinstalling pocketsr restores" in advice) == (origin == "bundled")


def test_verify_named_model_not_downloaded(home: Path, server: Loopback) -> None:
    remote_blob(server, "/blob.bin")
    result = invoke("models", "verify", "blob", "lanczos")
    assert result.exit_code == 3
    assert "blob: not downloaded" in result.stdout and "lanczos: no weights" in result.stdout
    # said as what it is: nothing on disk to verify, not a failed check of damaged weights
    assert "not downloaded, so not verified: blob" in result.stderr
    assert "failed verification" not in result.stderr
    assert "`pocketsr models download blob`" in result.stderr
    assert invoke("models", "verify").exit_code == 0  # nothing on disk: nothing wrong


def test_a_name_given_twice_is_acted_on_once(home: Path, server: Loopback) -> None:
    remote_blob(server, "/blob.bin")
    result = invoke("models", "download", "blob", "blob", "nope", "nope")
    assert result.exit_code == 3 and "1 of 2 downloads failed: nope" in result.stderr
    assert result.stderr.count("unknown model 'nope'") == 1
    assert [h.status for h in server.hits] == [200]
    result = invoke("models", "verify", "blob", "lanczos", "blob", "--json")
    assert result.exit_code == 0
    assert [r["name"] for r in json_lines(result)] == ["blob", "lanczos"]


def test_verify_checks_every_model_past_a_manifest_it_cannot_read(
    tmp_path: Path, home: Path
) -> None:
    imported(tmp_path, "mine")
    (user_models_dir() / "stray.toml").write_text('name = "stray"\nfamily =\n', encoding="utf-8")
    result = invoke("models", "verify")
    assert result.exit_code == 3
    assert "mine: ok" in result.stdout  # the others are verified all the same
    assert "stray.toml" in result.stderr and "skipped" in result.stderr


def unpublished_blob(home: Path, server: Loopback) -> bytes:
    """A user-folder manifest ``blob`` whose publisher gives no SHA-256 (nor size) for its
    weights (SD as ``blob.safetensors``, whose bytes are returned), fetched from ``server``."""
    data = save_safetensors(home / "src" / "blob.safetensors", SD)
    url = server.url("/blob.safetensors")
    _write_manifest(user_models_dir(), "blob", data, file="blob.safetensors", urls=(url,))
    manifest = user_models_dir() / "blob.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith(("sha256", "size"))),
        encoding="utf-8",
    )
    return data


def pinned_cut_short(data: bytes) -> Path:
    """``blob``'s cached file as a download cut short at 1000 bytes and pinned as it was
    (before pins were checked for readability): its pin matches, yet it reads as no
    weights file.  Its path."""
    from pocketsr_cli.weights import trust

    cached = weights_path("blob", "blob.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data[:1000])
    trust.pin("blob", "blob.safetensors", sha256(data[:1000]))
    return cached


def test_download_does_not_call_a_pinned_file_that_cannot_be_read_cached(
    home: Path, server: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached file with its pinned digest that verify reports unreadable is no model:
    a download says so and what to run where it may not fetch it anew (it said "already
    cached"), and with --allow-unverified deletes it and its pin and fetches it, as it
    fetches a missing one."""
    from pocketsr_cli.weights import trust

    data = unpublished_blob(home, server)
    server.files["/blob.safetensors"] = data
    cached = pinned_cut_short(data)

    result = invoke("models", "download", "blob")
    assert result.exit_code == 3, result.output
    message = " ".join(result.stderr.split())
    assert f"blob: {cached} has the digest pinned for it on first use, but is no whole " in message
    assert "run again with --allow-unverified to delete it and its pin and fetch it anew" in message
    monkeypatch.setenv("POCKETSR_OFFLINE", "1")
    result = invoke("models", "download", "blob", "--allow-unverified")
    assert result.exit_code == 3 and "run again while online" in " ".join(result.stderr.split())
    assert cached.read_bytes() == data[:1000] and server.hits == []  # nothing touched
    monkeypatch.delenv("POCKETSR_OFFLINE")

    result = invoke("models", "download", "blob", "--allow-unverified")
    assert result.exit_code == 0, result.output
    assert f"blob: downloaded, {_ui.human_bytes(len(data))}  {cached}" in result.stderr
    assert cached.read_bytes() == data and trust.pinned("blob", "blob.safetensors") == sha256(data)
    assert invoke("models", "verify", "blob").exit_code == 0


def test_download_says_a_pinned_file_of_the_user_folder_that_cannot_be_read_is_unreadable(
    home: Path, server: Loopback
) -> None:
    """A weights file beside its user-folder manifest with its pinned digest that verify
    reports unreadable is no model either: a download says so and how to replace it (it
    said "imported (user model folder)"), and never fetches over it or deletes it, even
    with --allow-unverified (it is the user's own); verify gives the same advice."""
    from pocketsr_cli.weights import trust

    data = unpublished_blob(home, server)
    server.files["/blob.safetensors"] = data
    own = user_models_dir() / "blob.safetensors"
    own.write_bytes(data[:1000])
    trust.pin("blob", "blob.safetensors", sha256(data[:1000]))

    fix = "import it again with `pocketsr models import ... --name blob --force`"
    for extra in ([], ["--allow-unverified"]):
        result = invoke("models", "download", "blob", *extra)
        assert result.exit_code == 3, result.output
        message = " ".join(result.stderr.split())
        assert f"blob: {own} has the digest pinned for it on first use, but is no whole " in (
            message
        )
        assert f"it is not a download, so it cannot be fetched anew: {fix}" in message
        assert "imported (user model folder)" not in message
    assert own.read_bytes() == data[:1000] and server.hits == []  # nothing touched
    assert not weights_path("blob", "blob.safetensors").exists()

    result = invoke("models", "verify", "blob")
    assert result.exit_code == 3 and "blob: unreadable: " in result.stdout
    advice = " ".join(result.stderr.split())
    assert "`pocketsr models import ... --force` replaces an imported model" in advice
    assert "--allow-unverified` deletes an unreadable file" not in advice  # it would not
    assert "`pocketsr models download NAME`" not in advice  # nor would a download


def test_verify_advises_a_command_that_pins_a_file_without_a_checksum(
    home: Path, server: Loopback
) -> None:
    """A file on disk whose publisher gives no SHA-256 and which was never pinned: the
    advice is a download that pins it (a plain one refuses to)."""
    data = unpublished_blob(home, server)  # pinned only if whole
    cached = weights_path("blob", "blob.safetensors")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    result = invoke("models", "verify", "blob")
    assert result.exit_code == 3 and "blob: not pinned" in result.stdout
    advice = " ".join(result.stderr.split())
    command = "pocketsr models download blob --allow-unverified"
    assert f"`{command}`" in advice and "`pocketsr models download NAME`" not in advice
    assert invoke(*command.split()[1:]).exit_code == 0  # the advice works
    assert invoke("models", "verify", "blob").exit_code == 0
    assert server.hits == []  # the file on disk was pinned, not fetched


def test_verify_finds_a_pinned_file_that_cannot_be_read(home: Path, server: Loopback) -> None:
    """A file with the digest pinned on first use, yet no weights file (a download cut short,
    pinned before pins were checked for readability): its pin matches, so verify said
    "ok" while every load failed.  It is unreadable, and the advice gets rid of it."""
    from pocketsr_cli.weights import trust

    data = unpublished_blob(home, server)
    server.behaviours["/blob.safetensors"] = Behaviour(body=data)
    cached = pinned_cut_short(data)
    result = invoke("models", "verify", "blob")
    assert result.exit_code == 3, result.output
    assert result.stdout.startswith(
        "blob: unreadable: cannot read weights blob.safetensors: not a safetensors file, or a "
        "damaged one ("
    )
    advice = " ".join(result.stderr.split())
    download = "pocketsr models download blob --allow-unverified"
    assert (
        f"failed verification: blob; `{download}` deletes an unreadable file and its pin and "
        "fetches it anew"
    ) in advice
    assert "`pocketsr models download NAME` fetches a damaged" not in advice  # it would not
    line, failure = json_lines(invoke("models", "verify", "blob", "--json"))
    assert failure["type"] == "error" and failure["exit_code"] == 3
    assert line["status"] == "unreadable" and line["error"].startswith("cannot read weights")
    # The advice works: the file and its pin go, and the whole file is fetched and pinned.
    assert invoke(*download.split()[1:]).exit_code == 0
    assert invoke("models", "verify", "blob").exit_code == 0
    assert cached.read_bytes() == data and trust.pinned("blob", "blob.safetensors") == sha256(data)


HOLD_LOCK = """
import sys, time
from filelock import FileLock
with FileLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_quiet_leaves_only_errors_and_warnings(
    tmp_path: Path, home: Path, server: Loopback
) -> None:
    """-q on download, verify, remove, import and import-ncnn, as on upscale, eval and
    bench: no progress or lines of what was done; errors, warnings and (verify) the
    files that fail stay, and --json is unchanged."""
    remote_blob(server, "/blob.bin")
    fetched = invoke("models", "download", "blob", "lanczos", "-q")
    assert (fetched.exit_code, fetched.stdout, fetched.stderr) == (0, "", "")
    assert weights_path("blob", "blob.bin").read_bytes() == BLOB
    failed = invoke("models", "download", "blob", "nope", "--quiet")
    assert failed.exit_code == 3 and "already cached" not in failed.stderr
    assert "unknown model 'nope'" in failed.stderr and "1 of 2 downloads failed" in failed.stderr

    ok = invoke("models", "verify", "-q")
    assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "", "")
    assert json_lines(invoke("models", "verify", "blob", "-q", "--json")) == [
        {"type": "verification", "name": "blob", "status": "ok",
         "path": str(weights_path("blob", "blob.bin")), "error": None}
    ]  # fmt: skip
    weights_path("blob", "blob.bin").write_bytes(bytes(reversed(BLOB)))
    user_models_dir().joinpath("broken.toml").write_text("name = [\n")
    bad = invoke("models", "verify", "-q")
    assert bad.exit_code == 3
    assert bad.stdout.startswith("blob: damaged") and len(bad.stdout.splitlines()) == 1
    assert "skipped" in bad.stderr and "broken.toml" in bad.stderr  # the warning stays
    assert "failed verification: blob" in bad.stderr
    user_models_dir().joinpath("broken.toml").unlink()

    removed = invoke("models", "remove", "blob", "-q")
    assert (removed.exit_code, removed.stdout, removed.stderr) == (0, "", "")
    assert not weights_path("blob", "blob.bin").exists()

    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    imported = invoke("models", "import", str(source), "--name", "mine", "-q")
    assert (imported.exit_code, imported.stdout, imported.stderr) == (0, "", "")
    as_json = invoke("models", "import", str(source), "--name", "two", "-q", "--json")
    assert as_json.exit_code == 0 and json_lines(as_json)[0]["name"] == "two"
    param, bin_ = save(
        tmp_path, write_srvgg(srvgg_state(nf=8, num_conv=2, scale=4), 2, 4, fp16=True)
    )
    ncnn = invoke("models", "import-ncnn", str(param), str(bin_), "--name", "n", "-q")
    assert (ncnn.exit_code, ncnn.stdout, ncnn.stderr) == (0, "", "")
    assert {"mine.toml", "two.toml", "n.toml"} <= {p.name for p in user_models_dir().iterdir()}


def test_upscale_quiet_says_nothing_of_the_model_it_downloads(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download an upscale starts was said (its bar, a busy mirror's wait) under -q."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((12, 16, 3), 128, np.uint8)).save("in.png")
    data = save_safetensors(tmp_path / "w.safetensors", SD)
    busy = Behaviour(status=503, status_requests=1, headers={"Retry-After": "1"})
    with serve({"/a.safetensors": data, "/b.safetensors": data}) as server:
        server.behaviours.update({"/a.safetensors": busy, "/b.safetensors": busy})
        for name in ("a", "b"):
            urls = (server.url(f"/{name}.safetensors"),)
            _write_manifest(user_models_dir(), name, data, urls=urls)
        said = invoke("upscale", "in.png", "-m", "a", "-o", "out")
        quiet = invoke("upscale", "in.png", "-m", "b", "-o", "quiet", "-q")
    assert said.exit_code == 0 and "trying it again in 1 s" in said.stderr
    assert quiet.exit_code == 0, quiet.output
    assert (quiet.stdout, quiet.stderr) == ("", "")


def test_remove_downloaded_weights(
    tmp_path: Path, home: Path, server: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = use_bundled(tmp_path, monkeypatch)
    urls = (server.url("/blob.bin"),)
    _write_manifest(bundled, "blob", BLOB, file="blob.bin", urls=urls)
    nothing = invoke("models", "remove", "blob")
    assert nothing.exit_code == 0 and "blob: nothing to remove" in nothing.stderr
    assert invoke("models", "download", "blob").exit_code == 0
    # While another process downloads it (holds its lock), nothing is removed under it.
    lock = weights_path("blob", "blob.bin").with_name("blob.bin.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        busy = invoke("models", "remove", "blob")
        assert busy.exit_code == 1 and "being downloaded by another pocketsr process" in (
            " ".join(busy.stderr.split())
        )
        assert weights_path("blob", "blob.bin").is_file()
    finally:
        holder.kill()
        holder.wait()
    result = invoke("models", "remove", "blob")
    assert result.exit_code == 0 and "removed" in result.stderr
    assert not weights_path("blob", "blob.bin").parent.exists()
    assert (bundled / "blob.toml").exists()  # the manifest stays: it can be fetched again
    shipped = invoke("models", "remove", "lanczos")
    assert shipped.exit_code == 2 and "ships with pocketsr" in shipped.stderr
    assert invoke("models", "remove", "nope").exit_code == 3


def test_remove_user_model(tmp_path: Path, home: Path, server: Loopback) -> None:
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    assert invoke("models", "import", str(source), "--name", "mine").exit_code == 0
    remote_blob(server, "/blob.bin")  # a hand-written user manifest with a download
    assert invoke("models", "download", "blob").exit_code == 0
    assert invoke("models", "remove", "mine").exit_code == 0
    blob = invoke("models", "remove", "blob")
    assert blob.exit_code == 0 and "its manifest, written by hand, stays" in blob.stderr
    # The imported model is gone whole; the hand-written manifest is the user's: it stays,
    # only its download goes.
    assert sorted(p.name for p in user_models_dir().iterdir()) == sorted(
        ["blob.toml", verify.MEMO_NAME]
    )
    assert not weights_path("blob", "blob.bin").parent.exists()
    assert invoke("models", "info", "mine").exit_code == 3
    assert invoke("models", "info", "blob").exit_code == 0


def test_remove_deletes_a_manifest_that_cannot_be_read_by_its_stem(
    tmp_path: Path, home: Path
) -> None:
    """It defines no model, so no name finds it: ``models list`` says how to remove it, and
    ``models remove STEM`` does; an import's damaged manifest takes its weights along."""
    folder = user_models_dir()
    folder.mkdir(parents=True)
    (folder / "typo.toml").write_text('name = "typo"\nfamily = \n', encoding="utf-8")
    listed = invoke("models", "list")
    assert listed.exit_code == 0
    assert "`pocketsr models remove typo` removes it" in " ".join(listed.stderr.split())
    result = invoke("models", "remove", "typo")
    assert result.exit_code == 0, result.output
    assert f"removed {folder / 'typo.toml'}" in " ".join(result.stderr.split())
    assert not (folder / "typo.toml").exists()
    assert invoke("models", "remove", "typo").exit_code == 3  # nothing left of that name

    imported(tmp_path, "mine")
    text = (folder / "mine.toml").read_text(encoding="utf-8")
    (folder / "mine.toml").write_text(text.replace("scale = 2", "scale = two"), encoding="utf-8")
    damaged = invoke("models", "remove", "mine")
    assert damaged.exit_code == 0, damaged.output
    assert sorted(p.name for p in folder.iterdir() if p.name[0] != ".") == []
    # A manifest that can be read is a model's, removed by the model's name only.
    (folder / "other.toml").write_text(text.replace('"mine"', '"zzz"'), encoding="utf-8")
    assert invoke("models", "remove", "other").exit_code == 3
    assert (folder / "other.toml").exists()


def test_a_manifest_that_cannot_be_read_under_a_models_name_is_not_said_removable(
    home: Path,
) -> None:
    """``models remove STEM`` removes the model called STEM when there is one (a bundled
    model's download, say), not the unreadable manifest ``STEM.toml``: ``models list``
    must not advise it then (it advised it, and the command left the manifest)."""
    folder = user_models_dir()
    folder.mkdir(parents=True)
    bad = folder / "realesrgan-x4plus.toml"
    bad.write_text('name = "realesrgan-x4plus"\nfamily = \n', encoding="utf-8")
    listed = invoke("models", "list")
    assert listed.exit_code == 0
    warning = " ".join(listed.stderr.split())
    assert f"bad model manifest {bad}" in warning
    assert "models remove" not in warning
    invoke("models", "remove", "realesrgan-x4plus")  # the bundled model's (no download)
    assert bad.exists()


def test_a_hand_written_variant_of_another_factor_cannot_be_read(
    tmp_path: Path, home: Path
) -> None:
    """Imports refuse ``foo-x4`` for a ×2 network, but a manifest written by hand was read:
    ``-m foo -s 4`` ran its ×2 network as the family's ×4.  It is reported as a manifest
    that cannot be read, with the reason, and ``models remove STEM`` deletes it."""
    imported(tmp_path, "foo-x2")
    folder = user_models_dir()
    text = (folder / "foo-x2.toml").read_text(encoding="utf-8")
    hand = text.replace('"foo-x2"', '"foo-x4"').splitlines()[1:]  # not the import's line
    (folder / "mine.toml").write_text("\n".join(hand) + "\n", encoding="utf-8")
    listed = invoke("models", "list")
    assert listed.exit_code == 0
    warning = " ".join(listed.stderr.split())
    assert f"bad model manifest {folder / 'mine.toml'}: name 'foo-x4' names a ×4 model, " in (
        warning
    )
    assert "but scale is 2: name it foo-x2, or make scale 4" in warning
    assert "`pocketsr models remove mine` removes it" in warning
    assert "foo-x4" not in listed.stdout and "foo-x2" in listed.stdout
    assert invoke("models", "info", "foo-x4").exit_code == 3
    removed = invoke("models", "remove", "mine")
    assert removed.exit_code == 0, removed.output
    assert not (folder / "mine.toml").exists()
    assert (folder / "foo-x2.safetensors").exists()  # written by hand: it goes alone


def imported(tmp_path: Path, name: str) -> None:
    """SD saved as a safetensors file and imported as ``name``."""
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    assert invoke("models", "import", str(source), "--name", name).exit_code == 0


def refuse_unlink(monkeypatch: pytest.MonkeyPatch, *refused: Path) -> None:
    """Deleting any of ``refused`` fails as on a read-only folder (the tests run as root,
    whom chmod does not stop)."""
    unlink = Path.unlink

    def guarded(self: Path, missing_ok: bool = False) -> None:
        if self in refused:
            raise PermissionError(13, "Permission denied", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", guarded)


def test_remove_that_cannot_delete_fails_with_1_and_leaves_no_half_model(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model was found, so a file the disk keeps is a failure (1), not an unresolvable
    model (3); the manifest goes first, so the registry never lists a model whose weights
    are gone (``missing``)."""
    imported(tmp_path, "mine")
    folder = user_models_dir()
    with monkeypatch.context() as m:  # a read-only folder: nothing goes
        refuse_unlink(m, folder / "mine.toml", folder / "mine.safetensors")
        result = invoke("models", "remove", "mine")
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert f"cannot remove {folder / 'mine.toml'}: Permission denied; mine was not removed" in (
        message
    )
    assert "removed /" not in message
    assert (folder / "mine.safetensors").is_file()
    listed = {r["name"]: r for r in json_lines(invoke("models", "list", "--json"))}
    assert listed["mine"]["where"] == "user"  # whole, as it was

    with monkeypatch.context() as m:  # only the weights are kept: the model is gone all the same
        refuse_unlink(m, folder / "mine.safetensors")
        result = invoke("models", "remove", "mine")
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert f"removed {folder / 'mine.toml'}" in message
    assert f"cannot remove {folder / 'mine.safetensors'}" in message
    assert "mine itself is removed" in message
    assert "mine" not in {r["name"] for r in json_lines(invoke("models", "list", "--json"))}
    # The stray weights are not a model's: an import of the name takes their place.
    imported(tmp_path, "mine")
    assert invoke("models", "remove", "mine").exit_code == 0
    assert not (folder / "mine.safetensors").exists()


def test_import_force_that_cannot_delete_the_old_weights_imports_and_says_so(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new manifest is in place when the old weights are deleted: a file the disk keeps
    then is a warning (0) that says the model is imported and what to do, not
    "error (remove): cannot remove ..." (1).  The model stays on the spare name, never
    moved onto the file that was kept, which is named as no model's."""
    imported(tmp_path, "mine")
    folder = user_models_dir()
    old = folder / "mine.safetensors"
    old_bytes = old.read_bytes()
    new_sd = compact_state(scale=2, seed=11)
    save_safetensors(tmp_path / "new.safetensors", new_sd)
    args = ("models", "import", str(tmp_path / "new.safetensors"), "-n", "mine", "--force")
    with monkeypatch.context() as m:
        refuse_unlink(m, old)
        result = invoke(*args)
    assert result.exit_code == 0, result.output
    message = " ".join(result.stderr.split())
    assert "imported mine: spandrel:Compact ×2" in message and "error" not in message
    assert (
        f"mine is imported, but the weights it replaced could not be deleted: {old} "
        "(Permission denied); no model uses that file now: delete it by hand"
    ) in message
    spec = parse_manifest(folder / "mine.toml", "user")
    assert spec.weights is not None and spec.weights.file == "mine~.safetensors"
    stored = load_file(folder / spec.weights.file)
    assert all(torch.equal(stored[k], new_sd[k]) for k in new_sd)
    assert old.read_bytes() == old_bytes  # the file reported is the old one, untouched
    assert invoke("models", "verify", "mine").exit_code == 0

    spare = folder / "mine~.safetensors"  # now the model's: the next import replaces it
    with monkeypatch.context() as m:
        refuse_unlink(m, spare)
        result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    (record,) = json_lines(result)
    assert record["name"] == "mine"
    assert record["not_removed"] == [{"path": str(spare), "error": "Permission denied"}]
    spec = parse_manifest(folder / "mine.toml", "user")
    assert spec.weights is not None and spec.weights.file == "mine.safetensors"

    result = invoke(*args, "--json")  # once the disk lets it go, all is tidy again
    assert result.exit_code == 0 and json_lines(result)[0]["not_removed"] == []
    assert sorted(p.name for p in folder.iterdir() if p.name[0] != ".") == [
        "mine.safetensors",
        "mine.toml",
    ]


def test_removing_a_copy_of_an_imported_manifest_keeps_the_weights_they_share(
    tmp_path: Path, home: Path
) -> None:
    imported(tmp_path, "mine-x2")
    original = user_models_dir() / "mine-x2.toml"
    copy = original.read_text(encoding="utf-8").replace('name = "mine-x2"', 'name = "mine-b-x2"')
    (user_models_dir() / "mine-b-x2.toml").write_text(copy, encoding="utf-8")
    assert invoke("models", "remove", "mine-b-x2").exit_code == 0
    assert (user_models_dir() / "mine-x2.safetensors").is_file()  # mine-x2 still needs it
    assert resolve_model("mine-x2").name == "mine-x2"


def test_removing_a_model_keeps_the_weights_a_second_manifest_of_its_name_names(
    tmp_path: Path, home: Path
) -> None:
    """A hand-written manifest defining the same name (after it by file name, so shadowed)
    is a manifest all the same: the file it names stays."""
    imported(tmp_path, "m")
    text = (user_models_dir() / "m.toml").read_text(encoding="utf-8")
    (user_models_dir() / "z.toml").write_text(text.split("\n", 1)[1], encoding="utf-8")
    assert invoke("models", "remove", "m").exit_code == 0
    assert not (user_models_dir() / "m.toml").exists()
    assert (user_models_dir() / "m.safetensors").is_file()  # z.toml names it
    assert resolve_model("m").scale == 2


def test_an_imported_model_whose_weights_were_deleted_is_missing(
    tmp_path: Path, home: Path
) -> None:
    """Not "remote" (it has no URL) nor "not downloaded", and a plain verify fails on it."""
    imported(tmp_path, "gone")
    (user_models_dir() / "gone.safetensors").unlink()
    rows = {row["name"]: row for row in json_lines(invoke("models", "list", "--json"))}
    assert rows["gone"]["where"] == "missing"
    for args in (("models", "verify"), ("models", "verify", "gone")):
        result = invoke(*args)
        assert result.exit_code == 3, args
        assert "gone: missing (no URL to fetch it from)" in result.stdout
    assert invoke("models", "remove", "gone").exit_code == 0


# --- import -----------------------------------------------------------------------------------


def test_import_pth_then_upscale_resolves_it(tmp_path: Path, home: Path) -> None:
    source = tmp_path / "4x_thing.pth"
    torch.save({"params_ema": SD}, source)
    result = invoke(
        "models", "import", str(source), "--name", "thing", "--license", "CC0-1.0", "--json"
    )
    assert result.exit_code == 0, result.output
    (row,) = json_lines(result)
    assert (row["family"], row["scale"], row["where"]) == ("spandrel:Compact", 2, "user")
    assert row["params"] == params_of(SD)

    spec = parse_manifest(user_models_dir() / "thing.toml", "user")
    stored = user_models_dir() / "thing.safetensors"
    assert spec.weights is not None and spec.weights.sha256 == sha256(stored.read_bytes())
    assert spec.meta.license == "CC0-1.0" and str(source) in spec.meta.source
    assert set(load_file(stored)) == set(SD)

    x = photo_like(9)
    desc = resolve_model("thing")
    with torch.no_grad():
        torch.testing.assert_close(desc.module(x), spandrel_output(SD, x), rtol=0, atol=0)
    source.unlink()  # the import does not depend on the original file
    assert resolve_model("thing").scale == 2


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_imported_weights_get_the_mode_the_umask_gives(
    tmp_path: Path, home: Path, umask: int
) -> None:
    """Not the 0600 safetensors gives the file it makes: the user's other files follow the
    umask, and so does the weights file, like its manifest beside it."""
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    old = os.umask(umask)
    try:
        assert invoke("models", "import", str(source), "--name", "mine").exit_code == 0
    finally:
        os.umask(old)
    for name in ("mine.safetensors", "mine.toml"):
        assert (user_models_dir() / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert resolve_model("mine").scale == 2  # and it is whole


def test_import_refusals(tmp_path: Path, home: Path) -> None:
    source = tmp_path / "m.safetensors"
    data = save_safetensors(source, SD)
    assert invoke("models", "import", str(source), "--name", "lanczos").exit_code == 2
    # A bundled family's name: it would take over -m pocketsr-compact from the family.
    family = invoke("models", "import", str(source), "--name", "pocketsr-compact")
    assert family.exit_code == 2 and "pocketsr-compact-x2, pocketsr-compact-x4" in family.stderr
    assert invoke("models", "import", str(source), "--name", "a/b").exit_code == 2
    wrong = invoke("models", "import", str(source), "--name", "m", "--sha256", "0" * 64)
    assert wrong.exit_code == 3 and "nothing was imported" in wrong.stderr
    assert not user_models_dir().exists()

    ok = invoke("models", "import", str(source), "--name", "m", "--sha256", sha256(data))
    assert ok.exit_code == 0, ok.output
    taken = invoke("models", "import", str(source), "--name", "m")
    assert taken.exit_code == 2 and "--force" in taken.stderr
    assert invoke("models", "import", str(source), "--name", "m", "--force").exit_code == 0

    odd = tmp_path / "odd.safetensors"
    save_safetensors(odd, {"encoder.weight": torch.zeros(2, 2)})
    unknown = invoke("models", "import", str(odd), "--name", "odd")
    assert unknown.exit_code == 3 and "unknown model architecture" in unknown.stderr
    # What the command line got wrong is a usage error (2), before anything is read.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args, says in [
        ((str(tmp_path / "absent.pth"),), "absent.pth: not found"),
        ((str(tmp_path),), "a folder, not a file"),
        ((os.devnull,), f"{os.devnull}: not a regular file"),
        ((str(fifo),), "fifo: not a regular file"),
        (("",), "an empty FILE|URL"),
        (("ftp://host/w.pth", "--sha256", "0" * 64), "unsupported URL scheme 'ftp'"),
        (("http://example.com/w.pth", "--sha256", "0" * 64), "refusing insecure URL"),
        (("http://example.com/w.pth",), "refusing insecure URL"),
        ((str(source), "--sha256", "nothex"), "invalid --sha256 nothex: a SHA-256 digest is 64"),
        (("https://example.com/w.pth", "--sha256", "0" * 63), "a SHA-256 digest is 64 hex"),
    ]:
        bad = invoke("models", "import", *args, "--name", "x")
        assert bad.exit_code == 2 and says in bad.stderr, (args, bad.stderr)
    absent = invoke("models", "import-ncnn", "no.param", "no.bin", "--name", "x")
    assert absent.exit_code == 2 and "no.param: not found" in absent.stderr
    device = invoke("models", "import-ncnn", os.devnull, "no.bin", "--name", "x")
    assert device.exit_code == 2 and "not a regular file" in device.stderr
    assert sorted(p.name for p in user_models_dir().iterdir() if p.name[0] != ".") == [
        "m.safetensors",
        "m.toml",
    ]


def _empty_ncnn_files(folder: Path) -> tuple[Path, Path]:
    """An empty ``x.param`` and ``x.bin`` in ``folder``: for checks made before reading."""
    param, bin_path = folder / "x.param", folder / "x.bin"
    param.write_bytes(b"")
    bin_path.write_bytes(b"")
    return param, bin_path


def test_import_refuses_a_description_or_licence_that_is_not_one_line(
    tmp_path: Path, home: Path
) -> None:
    """The help says --description is one line, and a licence is shown in a table cell of
    ``models list``: a line break in either, or an empty licence, was stored as given."""
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    param, bin_path = _empty_ncnn_files(tmp_path)
    for option, says in [
        ("--description=two\nlines", "--description must be one line"),
        ("--description=ends\r\n", "--description must be one line"),
        ("--description=para\u2029graph", "--description must be one line"),
        ("--license=MIT\nApache-2.0", "--license must be one line"),
        ("--license=", "an empty --license"),
        ("--license=  ", "an empty --license"),
    ]:
        for command in (("import", str(source)), ("import-ncnn", str(param), str(bin_path))):
            result = invoke("models", *command, "--name", "x", option)
            assert result.exit_code == 2 and says in result.stderr, (option, result.stderr)
    assert not user_models_dir().exists()
    ok = invoke(
        "models", "import", str(source), "-n", "x", "--license", "MIT", "--description", "a b"
    )
    assert ok.exit_code == 0, ok.output


def test_import_of_an_image_says_it_is_an_image(tmp_path: Path, home: Path) -> None:
    """``models import photo.jpg`` (an input given to the wrong command) said 'not a
    PyTorch checkpoint'; it gets the image hint ``-m photo.jpg`` gets (load.image_hint),
    told by its bytes whatever its name, before its bytes are read as weights."""
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), (90, 120, 30)).save(photo)
    disguised = tmp_path / "scan.pth"
    disguised.write_bytes(photo.read_bytes())
    for path in (photo, disguised):
        result = invoke("models", "import", str(path), "--name", "foo")
        message = " ".join(result.stderr.split())
        assert result.exit_code == 3, result.output
        assert f"{path} is an image (JPEG), not a model: an import takes a weights file" in message
        assert f"given after the command (pocketsr upscale {path})" in message
        assert "checkpoint" not in message and "Traceback" not in result.output
    assert not user_models_dir().exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_with_non_finite_values_are_refused(tmp_path: Path, home: Path, bad: float) -> None:
    """A checkpoint holding NaN (saved after training diverged) was imported, and each
    image it then drew was black (NaN becomes 0) yet reported ``ok``, exit 0; the ncnn
    reader refused such weights already.  Refused on import and with ``-m FILE`` alike,
    naming the tensor."""
    broken = dict(SD)
    key = sorted(broken)[0]
    broken[key] = broken[key].clone()
    broken[key].view(-1)[0] = bad
    source = tmp_path / "diverged.safetensors"
    save_safetensors(source, broken)
    result = invoke("models", "import", str(source), "--name", "diverged")
    assert result.exit_code == 3, result.output
    assert f"tensor {key!r} holds NaN or infinite values" in result.stderr
    assert not user_models_dir().exists()
    with pytest.raises(ModelError, match="NaN or infinite"):
        resolve_model(str(source))


def test_import_refuses_a_variant_name_of_another_factor(tmp_path: Path, home: Path) -> None:
    """``foo-x4`` is the ×4 member of the family foo: a ×2 network under that name (or as
    a bundled family's ``pocketsr-compact-x3``) would join it at a factor it lacks."""
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)  # ×2
    for name, says in [
        ("foo-x4", "name it foo-x2"),
        ("pocketsr-compact-x3", "pocketsr-compact-x2 is a bundled model"),
    ]:
        result = invoke("models", "import", str(source), "--name", name)
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert f"'{name}' names a ×{name[-1]} model" in message and says in message, message
    assert not user_models_dir().exists()
    assert invoke("models", "import", str(source), "--name", "foo-x2").exit_code == 0


def test_import_into_a_models_folder_that_is_a_file_is_a_usage_error(
    tmp_path: Path, home: Path
) -> None:
    """An unusable destination, as ``upscale -o FILE`` is (exit 2), said before anything is
    read, not 'cannot store' once the weights were read (exit 3)."""
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    folder = user_models_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder")
    for args in (
        ("models", "import", str(source), "--name", "m"),
        ("models", "import-ncnn", str(source), str(source), "--name", "m"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        message = " ".join(result.stderr.split())
        assert f"cannot store models in {folder}: {folder} is a file, not a folder" in message
    assert folder.read_text() == "not a folder"


class _Killed(BaseException):
    """Stands for kill -9: no ``except Exception`` stops it."""


def test_import_force_keeps_a_whole_model_wherever_it_is_killed(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At every rename an import --force makes, the model of that name is the old one or
    the new one, whole: its manifest names a file with the digest it records."""
    old_sd, new_sd = compact_state(scale=2, seed=1), compact_state(scale=2, seed=2)
    save_safetensors(tmp_path / "old.safetensors", old_sd)
    save_safetensors(tmp_path / "new.safetensors", new_sd)
    args = ("models", "import", str(tmp_path / "new.safetensors"), "-n", "m", "--force")
    real_replace = os.replace
    renames: list[Path] = []
    kill_at = 0

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name != verify.MEMO_NAME:
            renames.append(Path(dst))
            if len(renames) == kill_at:
                raise _Killed
        real_replace(src, dst)

    for kill_at in range(1, 10):
        shutil.rmtree(user_models_dir(), ignore_errors=True)
        first = invoke("models", "import", str(tmp_path / "old.safetensors"), "-n", "m")
        assert first.exit_code == 0
        renames.clear()
        monkeypatch.setattr(os, "replace", replace)
        try:
            finished = invoke(*args).exit_code == 0
        except _Killed:
            finished = False
        monkeypatch.setattr(os, "replace", real_replace)
        assert invoke("models", "verify", "m").exit_code == 0, kill_at
        spec = parse_manifest(user_models_dir() / "m.toml", "user")
        assert spec.weights is not None
        stored = load_file(user_models_dir() / spec.weights.file)
        assert any(all(torch.equal(stored[k], sd[k]) for k in sd) for sd in (old_sd, new_sd))
        # The next import goes through and leaves the folder as a first import would.
        assert invoke(*args).exit_code == 0
        names = sorted(p.name for p in user_models_dir().iterdir() if p.name[0] != ".")
        assert names == ["m.safetensors", "m.toml"], kill_at
        assert invoke("models", "verify", "m").exit_code == 0
        if finished:  # it got past every rename: each one has been tried
            break
    else:
        raise AssertionError("import --force never finished")


def case_twins(tmp_path: Path) -> Path:
    """Imported models ``foo`` and ``Foo`` (two networks), as an older version made them
    before it refused the second name, or as a user's hand makes them; the folder."""
    imported(tmp_path, "foo")
    imported(tmp_path, "bar")
    folder = user_models_dir()
    text = (folder / "bar.toml").read_text(encoding="utf-8")
    (folder / "Foo.toml").write_text(
        text.replace('"bar"', '"Foo"').replace("bar.safetensors", "Foo.safetensors"),
        encoding="utf-8",
    )
    (folder / "bar.safetensors").rename(folder / "Foo.safetensors")
    (folder / "bar.toml").unlink()
    return folder


def test_models_differing_only_in_case_are_reported_and_removed_apart(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """models list warns of them (doctor too: test_doctor); removing one never removes
    the other's files; where the disk ignores case and their downloads are one folder,
    nothing there is removed (whose is which cannot be told)."""
    from pocketsr_cli import fscase

    folder = case_twins(tmp_path)
    listed = invoke("models", "list", "--json")
    assert listed.exit_code == 0
    assert {"foo", "Foo"} <= {r["name"] for r in json_lines(listed)}
    warning = " ".join(listed.stderr.split())
    assert f"models 'Foo' ({folder / 'Foo.toml'}) and 'foo' ({folder / 'foo.toml'})" in warning
    assert "differ only in case" in warning and "`pocketsr models remove foo`" in warning

    downloads = weights_path("foo", "foo.safetensors").parent  # weights/Foo/ too, there
    downloads.mkdir(parents=True)
    (downloads / ".pinned.json").write_text("{}")  # Foo's pins? foo's? cannot be told
    monkeypatch.setattr(fscase, "case_blind", lambda folder: True)
    refused = invoke("models", "remove", "foo")
    assert refused.exit_code == 1, refused.output
    assert "are also those of 'Foo' on this disk" in " ".join(refused.stderr.split())
    assert (downloads / ".pinned.json").exists() and (folder / "foo.toml").exists()

    monkeypatch.setattr(fscase, "case_blind", lambda folder: False)
    assert invoke("models", "remove", "foo").exit_code == 0
    assert sorted(p.name for p in folder.iterdir() if p.name[0] != ".") == [
        "Foo.safetensors",
        "Foo.toml",
    ]
    assert invoke("models", "info", "Foo").exit_code == 0
    assert "differ only in case" not in invoke("models", "list").stderr


@pytest.mark.parametrize("blind", [False, True])
def test_import_refuses_a_name_differing_only_in_case_from_a_model(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    """On the disks of macOS and Windows ``Q4`` and ``q4`` are one name: a model and
    another of its name in another case would share their files (the user's, or a bundled
    model's downloads), so the name is refused on every disk, --force or not, naming the
    model it clashes with; by either import command, before anything is read."""
    from pocketsr_cli import fscase

    imported(tmp_path, "Foo")
    monkeypatch.setattr(fscase, "case_blind", lambda folder: blind)
    source = tmp_path / "new.safetensors"
    save_safetensors(source, compact_state(scale=2, seed=4))
    param, bin_path = _empty_ncnn_files(tmp_path)
    for name, says in [
        ("foo", "has a model 'Foo', which differs from 'foo' only in case"),
        ("FOO", "import as 'Foo' with --force"),
        ("LANCZOS", "bundled model 'lanczos'"),
        ("Pocketsr-Compact", "bundled name 'pocketsr-compact'"),
    ]:
        for args in (
            ("import", str(source)),
            ("import", str(source), "--force"),
            ("import-ncnn", str(param), str(bin_path)),
        ):
            result = invoke("models", *args, "--name", name)
            assert result.exit_code == 2 and says in result.stderr, (name, args, result.stderr)
    folder = user_models_dir()
    assert sorted(p.name for p in folder.iterdir() if p.name[0] != ".") == [
        "Foo.safetensors",
        "Foo.toml",
    ]
    assert invoke("models", "import", str(source), "-n", "Foo", "--force").exit_code == 0


def _waiting_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for a flock (Linux: its blocked entry in /proc/locks)."""
    try:
        locks = Path("/proc/locks").read_text()
    except OSError:
        pytest.skip("no /proc/locks here")
    return any("->" in line and f" {pid} " in line for line in locks.splitlines())


def test_models_remove_waits_for_an_import_half_way(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `models remove` run while `import --force` is between its renames takes the
    model away after it, whole, not half of it."""
    imported(tmp_path, "m")
    source = tmp_path / "new.safetensors"
    save_safetensors(source, compact_state(scale=2, seed=2))
    env = {**os.environ, "POCKETSR_HOME": str(home), "PYTHONPATH": str(REPO)}
    real_replace = os.replace
    remover: list[subprocess.Popen[bytes]] = []

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        if Path(dst).suffix == ".safetensors" and not remover:  # the new weights, placed
            command = [sys.executable, "-m", "pocketsr_cli", "models", "remove", "m"]
            remover.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE))
            deadline = time.monotonic() + 60
            while remover[0].poll() is None and not _waiting_on_a_lock(remover[0].pid):
                assert time.monotonic() < deadline
                time.sleep(0.05)

    monkeypatch.setattr(os, "replace", replace)
    result = invoke("models", "import", str(source), "--name", "m", "--force")
    monkeypatch.setattr(os, "replace", real_replace)
    assert result.exit_code == 0, result.output
    assert remover[0].wait(timeout=60) == 0
    # Removed after the import: nothing of m is left, not a manifest naming a lost file.
    assert not [p.name for p in user_models_dir().iterdir() if p.name[0] != "."]


def test_import_removes_what_a_killed_import_left(tmp_path: Path, home: Path) -> None:
    imported(tmp_path, "m")
    left = [temp_path_for(user_models_dir() / n) for n in ("m.safetensors", "m.toml")]
    for path in left:  # as a kill -9 leaves them, their writer gone, a while ago
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - 3600,) * 2)
    source = tmp_path / "n.safetensors"
    save_safetensors(source, SD)
    assert invoke("models", "import", str(source), "--name", "n").exit_code == 0
    assert not any(path.exists() for path in left)


def test_import_refuses_a_name_another_manifest_defines(tmp_path: Path, home: Path) -> None:
    """A hand-written manifest of another file name that defines the name would go on
    shadowing (or be shadowed by) the import: refused, even with --force."""
    _write_manifest(user_models_dir(), "mine", BLOB, file="blob.bin")
    (user_models_dir() / "mine.toml").rename(user_models_dir() / "hand.toml")
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    for force in ((), ("--force",)):
        result = invoke("models", "import", str(source), "--name", "mine", *force)
        assert result.exit_code == 2 and "hand.toml defines a model 'mine'" in result.stderr
    assert sorted(p.name for p in user_models_dir().iterdir()) == ["hand.toml"]
    assert invoke("models", "import", str(source), "--name", "other").exit_code == 0


def test_an_import_keeps_every_hint_its_descriptor_states(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the model read from the file states, the manifest records, so that the model
    resolved by name is that model: its border margin and mean anchoring too."""
    import dataclasses

    from pocketsr_cli.descriptor import SizeRequirements, Tiling
    from pocketsr_cli.manifest import Hints
    from pocketsr_cli.weights import store

    read = store.descriptor_from_state_dict

    def stating_everything(state: Any, name: str) -> Any:
        size = SizeRequirements(minimum=8, multiple_of=4, margin=2)
        return dataclasses.replace(
            read(state, name),
            size=size,
            tiling=Tiling.INTERNAL,
            supports_half=False,
            cpu_bf16=True,
            default_tile=128,
            mean_anchor=4.0,
            chroma_guard="clamp",
        )

    monkeypatch.setattr(store, "descriptor_from_state_dict", stating_everything)
    source = tmp_path / "m.safetensors"
    save_safetensors(source, SD)
    assert invoke("models", "import", str(source), "--name", "stated").exit_code == 0
    hints = parse_manifest(user_models_dir() / "stated.toml", "user").hints
    assert hints == Hints(
        tiling=False,
        multiple_of=4,
        minimum=8,
        fp16=False,
        bf16=True,
        cpu_bf16=True,
        default_tile=128,
        mean_anchor=4.0,
        margin=2,
        chroma_guard="clamp",
        overlap=6,  # derived for its 1-convolution SRVGG body: twice its reach
        overlap_derived=True,
    )
    desc = resolve_model("stated")
    assert (desc.size.margin, desc.mean_anchor, desc.default_tile) == (2, 4.0, 128)
    assert desc.chroma_guard == "clamp"
    assert (desc.seamless_overlap, desc.overlap_derived) == (6, True)


def test_the_bundled_weights_imported_under_another_name_are_the_plain_network(
    home: Path,
) -> None:
    """The border margin and mean anchoring of pocketsr-compact-x4 are its manifest's:
    its weights file carries no metadata, so a copy imported is the network alone, as
    with -m FILE."""
    from safetensors import safe_open

    bundled = REPO / "models" / "pocketsr-compact-x4.safetensors"
    with safe_open(str(bundled), "pt") as f:
        assert not f.metadata()
    assert invoke("models", "import", str(bundled), "--name", "copy-x4").exit_code == 0
    hints = parse_manifest(user_models_dir() / "copy-x4.toml", "user").hints
    assert (hints.margin, hints.mean_anchor, hints.chroma_guard) == (0, None, None)
    assert (hints.cpu_bf16, hints.default_tile) == (False, None)


def test_an_import_reads_each_manifest_once_before_and_once_under_the_lock(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import --force replacing a model among others: each user manifest is parsed
    twice (the early refusal of a taken name, before the weights are read; then under the
    folder's lock, one reading for every decision), the replaced one once (under the
    lock), each bundled one once; not once per question asked of the folder."""
    from collections import Counter

    from pocketsr_cli import manifest

    for name in ("a", "b", "c", "m"):
        imported(tmp_path, name)
    source = tmp_path / "n.safetensors"
    save_safetensors(source, compact_state(scale=2, seed=4))
    parsed: Counter[Path] = Counter()
    real = manifest.parse_manifest

    def counting(path: Path, origin: Any = "bundled") -> Any:
        parsed[path] += 1
        return real(path, origin)

    monkeypatch.setattr(manifest, "parse_manifest", counting)
    assert invoke("models", "import", str(source), "-n", "m", "--force").exit_code == 0
    folder = user_models_dir()
    assert {p.name: n for p, n in parsed.items() if p.parent == folder} == {
        "a.toml": 2,
        "b.toml": 2,
        "c.toml": 2,
        "m.toml": 1,
    }
    assert {n for p, n in parsed.items() if p.parent != folder} == {1}


def test_import_url(tmp_path: Path, home: Path) -> None:
    data = save_safetensors(tmp_path / "w.safetensors", SD)
    with serve({"/w.safetensors": data, "/notes.txt": b"hi"}) as server:
        url = server.url("/w.safetensors")
        no_hash = invoke("models", "import", url, "--name", "web")
        assert no_hash.exit_code == 2 and "--sha256 is required" in no_hash.stderr
        wrong = invoke("models", "import", url, "--name", "web", "--sha256", "1" * 64)
        assert wrong.exit_code == 3 and "checksum mismatch" in wrong.stderr
        assert not (user_models_dir() / "web.toml").exists()
        download = weights_path("_import-web", "w.safetensors").parent
        assert not download.exists()  # no lock file, no folder: nothing to resume
        missing = server.url("/gone.safetensors")
        gone = invoke("models", "import", missing, "--name", "web", "--sha256", sha256(data))
        assert gone.exit_code == 3 and "HTTP 404" in gone.stderr
        assert not weights_path("_import-web", "gone.safetensors").parent.exists()
        not_weights = invoke(
            "models", "import", server.url("/notes.txt"), "--name", "n", "--sha256", sha256(b"hi")
        )
        assert not_weights.exit_code == 2
        ok = invoke("models", "import", url, "--name", "web", "--sha256", sha256(data))
        assert ok.exit_code == 0, ok.output
        assert [h.status for h in server.hits] == [200, 404, 200]
    assert parse_manifest(user_models_dir() / "web.toml", "user").meta.source == url
    assert not weights_path("_import-web", "w.safetensors").parent.exists()  # download tidied


@pytest.mark.parametrize("how", ["--offline", "POCKETSR_OFFLINE"])
def test_import_url_offline_says_so_in_the_users_terms(
    home: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Offline, a URL cannot be imported: said of the URL, not of the cache folder the
    download would go through (``weights/_import-NAME``), which the user never named."""
    refuse_network(monkeypatch)
    url = "https://example.com/w.safetensors"
    args = ["models", "import", url, "--name", "web", "--sha256", "0" * 64]
    if how == "--offline":
        args.append(how)
    else:
        monkeypatch.setenv(how, "1")
    result = invoke(*args)
    assert result.exit_code == 3
    assert result.stderr == (
        f"error (model): cannot import {url} while offline mode is on: a URL is imported by "
        "downloading it; run again while online, or import the file from disk\n"
    )
    assert not weights_path("_import-web", "w.safetensors").parent.exists()
    assert not (user_models_dir() / "web.toml").exists()


def test_import_url_refuses_a_url_the_downloader_would_refuse_as_a_usage_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core says it, before the name is checked or anything fetched (the command line
    had its own copy of the check; the core said the same URL as a model error, 3)."""
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.weights.store import ImportRequest, import_url

    refuse_network(monkeypatch)
    request = ImportRequest(name="lanczos")  # a bundled name: refused later, if reached
    for url, says in [
        ("http://example.com/w.pth", "refusing insecure URL"),
        ("ftp://example.com/w.pth", "unsupported URL scheme 'ftp'"),
        ("hf://owner", "malformed hf:// URL"),
    ]:
        with pytest.raises(UsageError, match=says):
            import_url(request, url, sha256="0" * 64)
    with pytest.raises(UsageError, match="sha256 is required"):
        import_url(request, "https://example.com/w.pth", sha256=None)
    # A digest of the wrong form is the caller's mistake (2), said before anything is
    # fetched; it reached the downloader, which said it as a model error (3).
    with pytest.raises(UsageError, match="invalid sha256='nothex': a SHA-256 digest is 64"):
        import_url(request, "https://example.com/w.pth", sha256="nothex")


def test_import_url_tidies_only_under_the_download_lock(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second import of the same name, at the same moment, is fetching into
    ``_import-NAME/`` when the first has its file: the first waits for that download's
    lock before it reads and removes its own, and leaves the other's partial download
    (and its lock file) there for it to resume."""
    import threading

    from filelock import FileLock

    from pocketsr_cli.weights import download, store

    data = save_safetensors(tmp_path / "w.safetensors", SD)
    dest = weights_path("_import-web", "w.safetensors")
    part = dest.with_name("w.safetensors.incomplete")
    holding, done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other_import() -> None:  # holds the lock while it "downloads", then is cut off
        with FileLock(str(dest) + ".lock"):
            part.write_bytes(data[:100])
            holding.set()
            time.sleep(0.5)
            seen.append(dest.exists())  # the first import's file is still there
        done.set()

    fetch = download.download_file

    def then_the_other_starts(*args: Any, **kwargs: Any) -> Path:
        got = fetch(*args, **kwargs)
        if not holding.is_set():
            threading.Thread(target=other_import).start()
            assert holding.wait(10)
        return got

    monkeypatch.setattr(download, "download_file", then_the_other_starts)
    monkeypatch.setattr(store, "download_file", then_the_other_starts, raising=False)
    with serve({"/w.safetensors": data}) as server:
        url = server.url("/w.safetensors")
        ok = invoke("models", "import", url, "--name", "web", "--sha256", sha256(data))
    assert ok.exit_code == 0, ok.output
    assert done.is_set() and seen == [True]
    assert part.read_bytes() == data[:100]  # the other's partial download, for it to resume
    assert Path(str(dest) + ".lock").exists() and not dest.exists()
    assert parse_manifest(user_models_dir() / "web.toml", "user").meta.source == url


# --- import-ncnn ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["esrgan", "srvgg"])
def test_import_ncnn_stores_the_converted_weights_exactly(
    tmp_path: Path, home: Path, kind: str
) -> None:
    if kind == "esrgan":
        sd = esrgan_state(nf=8, gc=32, nb=1, num_up=2)
        param, bin_ = save(tmp_path, write_esrgan(sd, nb=1, num_up=2, fp16=True))
    else:
        sd = srvgg_state(nf=8, num_conv=2, scale=4)
        param, bin_ = save(tmp_path, write_srvgg(sd, num_conv=2, scale=4, fp16=True))
    result = invoke("models", "import-ncnn", str(param), str(bin_), "--name", "n", "--json")
    assert result.exit_code == 0, result.output
    converted, _ = convert(param, bin_)
    stored = load_file(str(user_models_dir() / "n.safetensors"))
    assert set(stored) == set(converted)
    for key, tensor in converted.items():
        assert torch.equal(stored[key].float(), tensor), key
    # fp16 conv weights stay fp16 on disk (half the size, no value lost)
    assert {t.dtype for t in stored.values() if t.dim() == 4} == {torch.float16}

    x = photo_like(8)
    desc = resolve_model("n")
    assert desc.family == ("spandrel:ESRGAN" if kind == "esrgan" else "spandrel:Compact")
    with torch.no_grad():
        torch.testing.assert_close(desc.module(x), spandrel_output(converted, x), rtol=0, atol=0)


def test_an_ncnn_import_of_x4plus_records_the_overlap_measured_for_it(
    tmp_path: Path, home: Path
) -> None:
    """Real-ESRGAN x4plus converted from ncnn (RRDBNet, 23 blocks) was imported without an
    overlap and ran with 16, 11 levels off at seams; its manifest now states the 40
    measured for the architecture (``models info``), and a network not measured
    (realesr-general-x4v3's 32 convolutions) the 31 derived from SRVGG-16's 16."""
    sd = esrgan_state(nf=4, gc=32, nb=23, num_up=2)
    param, bin_ = save(tmp_path, write_esrgan(sd, nb=23, num_up=2, fp16=True), "x4plus")
    assert invoke("models", "import-ncnn", str(param), str(bin_), "--name", "t").exit_code == 0
    sd = srvgg_state(nf=4, num_conv=32, scale=4)
    param, bin_ = save(tmp_path, write_srvgg(sd, num_conv=32, scale=4, fp16=True), "general")
    assert invoke("models", "import-ncnn", str(param), str(bin_), "--name", "g").exit_code == 0
    (info,) = json_lines(invoke("models", "info", "t", "--json"))
    assert info["hints"]["overlap"] == 40
    (info,) = json_lines(invoke("models", "info", "g", "--json"))
    assert info["hints"]["overlap"] == 31


def test_an_import_of_a_trained_pcsr_export_records_the_overlap_its_network_states(
    home: Path,
) -> None:
    """pocketsr's own families stated no overlap, so an import of a trained export (here
    the bundled pcsr-x4's weights) wrote a manifest without one and ran with 16, as if
    unmeasured; it now writes the 8 measured for pcsr's FSRCNN configuration."""
    from pocketsr_cli.manifest import bundled_dir

    source = bundled_dir() / "pcsr-x4.safetensors"
    assert invoke("models", "import", str(source), "--name", "mine").exit_code == 0
    (info,) = json_lines(invoke("models", "info", "mine", "--json"))
    assert info["hints"]["overlap"] == 8


def test_import_ncnn_scans_the_weights_for_nan_once(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN and infinite values were looked for by the .bin reader, then again by the
    loader every source of weights goes through: each weight of a large model was scanned
    twice.  The loader's check, the one every path has, is left; it still refuses them,
    naming the tensor, and nothing is stored."""
    sd = esrgan_state(nf=8, gc=32, nb=1, num_up=2)
    param, bin_ = save(tmp_path, write_esrgan(sd, nb=1, num_up=2, fp16=False))
    scanned: list[int] = []
    real_np, real_torch = np.isfinite, torch.isfinite

    def np_isfinite(x: Any, *args: Any, **kwargs: Any) -> Any:
        scanned.append(int(np.size(x)))
        return real_np(x, *args, **kwargs)

    def torch_isfinite(x: torch.Tensor) -> torch.Tensor:
        scanned.append(x.numel())
        return real_torch(x)

    monkeypatch.setattr(np, "isfinite", np_isfinite)
    monkeypatch.setattr(torch, "isfinite", torch_isfinite)
    result = invoke("models", "import-ncnn", str(param), str(bin_), "--name", "n")
    assert result.exit_code == 0, result.output
    assert sum(scanned) == sum(t.numel() for t in sd.values())  # each weight once
    data = bytearray(bin_.read_bytes())
    data[4:8] = np.array([np.nan], dtype="<f4").tobytes()  # after conv_first's fp32 tag
    bin_.write_bytes(bytes(data))
    result = invoke("models", "import-ncnn", str(param), str(bin_), "--name", "bad")
    assert result.exit_code == 3, result.output
    assert "bad: tensor 'conv_first.weight' holds NaN or infinite values" in result.stderr
    assert not (user_models_dir() / "bad.toml").exists()
    assert not (user_models_dir() / "bad.safetensors").exists()


def test_import_ncnn_refusals(tmp_path: Path, home: Path) -> None:
    growth = save(tmp_path, write_esrgan(esrgan_state(8, 4, 1, 1), 1, 1, fp16=False), "g")
    result = invoke("models", "import-ncnn", *map(str, growth), "--name", "g")
    assert result.exit_code == 3 and "4 growth channels" in result.stderr

    tail = "0=3 1=5.000000e-01 2=5.000000e-01"
    resized = save(tmp_path, write_srvgg(srvgg_state(8, 1, 4), 1, 4, False, tail=tail), "r")
    result = invoke("models", "import-ncnn", *map(str, resized), "--name", "r")
    assert result.exit_code == 3 and "--outscale 2" in " ".join(result.stderr.split())

    param = tmp_path / "d.param"
    param.write_text(
        "7767517\n3 3\nInput in 0 1 data\n"
        "Convolution c 1 1 data y 0=4 1=3 4=1 5=1 6=108\n"
        "Deconvolution d 1 1 y z 0=3 1=4 3=2 5=1 6=192\n"
    )
    (tmp_path / "d.bin").write_bytes(b"")
    result = invoke("models", "import-ncnn", str(param), str(tmp_path / "d.bin"), "--name", "d")
    assert result.exit_code == 3 and "Deconvolution (1)" in result.stderr
    assert not user_models_dir().exists()


# --- progress bar -----------------------------------------------------------------------------


@pytest.mark.parametrize(("terminal", "quiet"), [(True, False), (False, False), (True, True)])
def test_download_bar(terminal: bool, quiet: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")  # rich draws nothing on a "dumb" terminal
    out = io.StringIO()
    # What make_console gives on a TTY, or in a pipe (force_terminal stands in for isatty).
    console = Console(file=out, width=100, force_terminal=terminal, soft_wrap=True)
    with _ui.DownloadBar(console, "blob", quiet=quiet) as bar:
        bar.waiting("waiting for another pocketsr process")
        for done in (0, 32_000, 65_536):
            bar(done, 65_536)
            if bar.progress is not None:
                bar.progress.refresh()
    text = out.getvalue()
    assert ("blob" in text and "65.5 kB" in text) is (terminal and not quiet)
    assert ("waiting" in text) is not quiet  # --quiet: not even that
    assert _ui.human_bytes(67_040_989) == "67.0 MB" and _ui.human_bytes(512) == "512 B"


def test_the_download_speed_falls_during_a_stall_and_then_says_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The speed is measured up to the moment shown: when the bytes stop it falls, then
    says the stall, and the time left is unknown meanwhile; rich's own speed stays that
    of the moment the bytes stopped."""
    monkeypatch.setenv("TERM", "xterm-256color")
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, soft_wrap=True)
    now = [100.0]
    with _ui.DownloadBar(console, "blob", clock=lambda: now[0]) as bar:

        def shown() -> str:
            assert bar.progress is not None
            out.seek(0)
            out.truncate()
            bar.progress.refresh()
            return out.getvalue().rsplit("blob", 1)[-1]

        bar(0, 1_000_000)
        assert "?" in shown()
        for done in (50_000, 100_000, 150_000, 200_000):  # 100 kB/s for 2 s
            now[0] += 0.5
            bar(done, 1_000_000)
        line = shown()
        assert "100.0 kB/s" in line and "0:00:08" in line, line
        now[0] += 2  # nothing comes
        line = shown()
        assert "50.0 kB/s" in line and "0:00:16" in line, line
        now[0] += 1.5
        line = shown()
        assert "stalled 3 s" in line and "-:--:--" in line, line
        now[0] += 10
        assert "stalled 13 s" in shown()
        now[0] += 1
        bar(300_000, 1_000_000)  # bytes again
        now[0] += 1
        line = shown()
        assert "kB/s" in line and "stalled" not in line, line


# --- -m NAME|PATH in every command ------------------------------------------------------------

LONG = "x" * 300  # past NAME_MAX (255 bytes): stat raises ENAMETOOLONG


def model_commands(tmp_path: Path, ref: str) -> list[list[str]]:
    """Every command that takes a model reference, given ``ref``, each ready to run."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (90, 120, 30)).save(photos / "a.png")
    out = str(tmp_path / "out")
    return [
        ["upscale", str(photos / "a.png"), "-o", out, "-m", ref],
        ["eval", str(photos), "-m", ref],
        ["bench", "-m", ref, "--size", "32x24", "--repeat", "1"],
    ]


def test_a_model_reference_that_cannot_even_be_looked_at_is_one_line_exit_3(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-m`` with a name too long for a file name, or a file under a folder that may not
    be entered: stat'ing it to see whether it is a file raised (Python 3.11-3.13), which
    ended upscale, eval, bench, ``models remove`` and ``models import`` in a traceback
    called a bug (exit 1); ``models info`` said 'unknown model' (exit 3).  A name is an
    unknown model, a path a model file that cannot be read (exit 3), an import's source
    a usage error (exit 2), each in one line, nothing written."""
    from _runs import unenterable

    locked = tmp_path / "locked"
    locked.mkdir()
    for ref, said in [
        (LONG, f"unknown model {LONG!r}"),
        (f"{LONG}.safetensors", "in it has 312 bytes, more than its file system allows"),
        (f"{LONG}/w.pth", "the name 'xxxxxxxxxx…xxxxxxxxxx' in it has 300 bytes"),
        (f"{LONG}.png", "is the name of an image (PNG), not a model"),
        (str(locked / "w.pth"), f"cannot read model file {locked / 'w.pth'}: {locked} may"),
    ]:
        for args in model_commands(tmp_path, ref):
            with monkeypatch.context() as patched:
                unenterable(locked, patched)
                result = invoke(*args)
            assert result.exit_code == 3, (args[0], ref[-20:], result.output)
            assert result.stderr.startswith("error (model): "), result.stderr
            assert said in result.stderr and result.stderr.count("\n") == 1, result.stderr
            assert not (tmp_path / "out").exists()
    for args in (["info", LONG], ["verify", LONG], ["remove", LONG], ["download", LONG]):
        result = invoke("models", *args)
        assert result.exit_code == 3, result.output
        assert result.stderr.startswith(f"error (model): unknown model {LONG!r}"), result.stderr
    user_models_dir().mkdir(parents=True)  # remove looks for a broken manifest there too
    result = invoke("models", "remove", LONG)
    assert result.exit_code == 3 and "unknown model" in result.stderr, result.output
    for args in (
        ["import", f"{LONG}.safetensors", "--name", "foo"],
        ["import-ncnn", f"{LONG}.param", f"{LONG}.bin", "--name", "foo"],
    ):
        result = invoke("models", *args)
        assert result.exit_code == 2, result.output
        assert "more than its file system allows" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert list(user_models_dir().iterdir()) == []


def test_a_weights_file_that_may_not_be_read_says_so_not_that_it_is_damaged(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weights file without read permission (root ignores chmod: the readers are made to
    answer as they do then) was 'not a safetensors file, or a damaged one (Permission
    denied ...)', blaming a file that may be whole; it says only that it cannot be read."""
    import safetensors.torch

    real_load_file, real_load = safetensors.torch.load_file, torch.load

    def load_file(path: str, *args: Any, **kwargs: Any) -> Any:
        if "locked" in str(path):  # what safetensors raises: its text, no errno
            raise PermissionError("Permission denied (os error 13)")
        return real_load_file(path, *args, **kwargs)

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        if "locked" in str(path):  # what open() raises inside torch.load
            raise PermissionError(13, "Permission denied", str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "load_file", load_file)
    monkeypatch.setattr(torch, "load", load)
    for name, said in [
        ("locked.safetensors", "Permission denied (os error 13)"),
        ("locked.pth", "Permission denied"),
    ]:
        path = tmp_path / name
        save_safetensors(path, SD)
        expected = f"error (model): cannot read weights {name}: {said}\n"
        for args in [
            *model_commands(tmp_path, str(path)),
            ["models", "import", str(path), "--name", "foo"],
        ]:
            result = invoke(*args)
            assert result.exit_code == 3, result.output
            assert result.stderr == expected, result.stderr
            assert not (tmp_path / "out").exists() and not user_models_dir().exists()


def test_an_onnx_or_ncnn_file_given_as_weights_says_what_it_is_and_what_to_do(
    tmp_path: Path, home: Path
) -> None:
    """``-m model.onnx``, ``-m x4.param`` (an ncnn graph), ``-m x4.bin`` beside it said
    only 'not a PyTorch checkpoint or safetensors file'; an ncnn model is imported from
    its two files (``models import-ncnn``), and ONNX is not run at all.  A ``.bin`` with no
    ``.param`` beside it may be a ``pytorch_model.bin``: nothing is guessed for it."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch")  # a protobuf's first bytes
    param, weights = tmp_path / "x4.param", tmp_path / "x4.bin"
    param.write_text("7767517\n1 1\nInput data 0 1 data\n")
    weights.write_bytes(b"\x47\x6b\x30\x01" + bytes(16))
    ncnn = f"`pocketsr models import-ncnn {param} {weights} --name NAME`, then use -m NAME"
    for path, said in [
        (onnx, "it is an ONNX model, which pocketsr does not run"),
        (param, f"it is an ncnn model's graph: import the two files once, {ncnn}"),
        (weights, f"it is an ncnn model's weights: import the two files once, {ncnn}"),
    ]:
        for args in [
            *model_commands(tmp_path, str(path)),
            ["models", "import", str(path), "--name", "foo"],
        ]:
            result = invoke(*args)
            message = " ".join(result.stderr.split())
            assert result.exit_code == 3, result.output
            assert message.startswith(f"error (model): cannot read weights {path.name}: not a")
            assert said in message, message
            assert result.stderr.count("\n") == 1
            assert not (tmp_path / "out").exists() and not user_models_dir().exists()
    param.unlink()
    result = invoke(*model_commands(tmp_path, str(weights))[0])
    assert result.exit_code == 3 and "ncnn" not in result.stderr, result.stderr


def test_a_url_that_could_not_be_fetched_says_why_wherever_it_is_given(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-m htps://...`` and ``-m hf://owner`` were told to import the URL, which import
    then refused; now each says what is wrong with it (a scheme typo with the one meant,
    the form of an hf:// URL), as ``models import`` does."""
    refuse_network(monkeypatch)
    digest = "0" * 64
    for url, said in [
        ("htps://example.com/w.pth", "unsupported URL scheme 'htps': did you mean https://?"),
        ("hff://owner/repo/w.pth", "unsupported URL scheme 'hff': did you mean hf://?"),
        ("hf://owner", "malformed hf:// URL (its form: hf://OWNER/REPO[@REVISION]/PATH/IN/REPO)"),
    ]:
        for args in model_commands(tmp_path, url):
            result = invoke(*args)
            assert result.exit_code == 3, result.output
            assert result.stderr.startswith(f"error (model): {url} is a URL, and one pocketsr ")
            assert f"cannot fetch: {said}" in result.stderr and "import" not in result.stderr
            assert result.stderr.count("\n") == 1
        result = invoke("models", "import", url, "--name", "foo", "--sha256", digest)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error (usage): {url}: {said}"), result.stderr
    assert not (tmp_path / "out").exists() and not user_models_dir().exists()


# --- the acceptance test: Real-ESRGAN x4plus from PyPI ----------------------------------------


@pytest.mark.slow
def test_real_x4plus_import_ncnn_and_upscale(
    teacher_dir: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    param = teacher_dir / "REALESRGAN_X4PLUS_UP4X.param"
    bin_ = teacher_dir / "REALESRGAN_X4PLUS_UP4X.bin"
    start = time.perf_counter()
    result = invoke("models", "import-ncnn", str(param), str(bin_), "--name", "x4plus-ncnn")
    import_s = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    stored = user_models_dir() / "x4plus-ncnn.safetensors"

    converted, info = convert(param, bin_)
    assert info["params"] == 16_697_987
    reference = import_spandrel().ModelLoader().load_from_state_dict(dict(converted))
    assert reference.architecture.id == "ESRGAN"
    desc = resolve_model("x4plus-ncnn", offline=True)
    assert (desc.family, desc.scale, desc.params) == ("spandrel:ESRGAN", 4, 16_697_987)
    x = photo_like(32)
    graph = parse_param(param.read_text())
    with torch.no_grad():
        want = reference.model.eval()(x)
        got = desc.module(x)
        # Independent of the converter's key mapping: ncnn's own layer semantics.
        ncnn = run_ncnn(graph, read_weights(graph, bin_.read_bytes()), x)
    diff = (got - want).abs().max().item()
    diff_ncnn = (got - ncnn).abs().max().item()
    assert diff <= 1 / 255 and diff_ncnn <= 1 / 255

    monkeypatch.setenv("POCKETSR_OFFLINE", "1")
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    pixels = (photo_like(24, seed=3)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(image)
    start = time.perf_counter()
    up = invoke("upscale", str(image), "-m", "x4plus-ncnn", "-o", str(tmp_path / "out"))
    upscale_s = time.perf_counter() - start
    assert up.exit_code == 0, up.output
    with Image.open(tmp_path / "out" / "photo.png") as out:
        written = np.asarray(out.convert("RGB")).astype(np.int16)
    assert written.shape == (96, 96, 3)
    with torch.no_grad():
        direct = desc.module(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)
    expected = (direct[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
    level_diff = int(np.abs(written - expected).max())
    assert level_diff <= 1  # the CLI ran this very model (rounding aside)
    print(
        f"x4plus import-ncnn {import_s:.1f} s, stored {stored.stat().st_size / 1e6:.1f} MB, "
        f"max |resolved - spandrel| {diff:.2e}, max |resolved - ncnn graph| {diff_ncnn:.2e}, "
        f"upscale 24x24 -> 96x96 {upscale_s:.1f} s (max {level_diff} level from the model)"
    )


@pytest.mark.parametrize("command", ["info", "download", "verify", "remove"])
@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_model_name_is_a_one_line_usage_error(home: Path, command: str, name: str) -> None:
    result = invoke("models", command, name)
    # A usage error (2), not an unknown model (3), and one line, not Click's usage box.
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error (usage): an empty model name: name a model ('pocketsr models list')\n"
    )


def test_models_info_of_a_weights_file_describes_it(home: Path, tmp_path: Path) -> None:
    """A weights file given to ``models info`` (as ``-m`` takes one: a weights suffix or a
    '/') is loaded as ``-m`` loads it and described: architecture, factor, parameters,
    size, SHA-256, the precisions it is stored in, and the hints ``models import`` records
    for it.  It was refused as a usage error (exit 2) saying that info takes names."""
    sd = compact_state(scale=2, seed=5)
    sd = {k: v.half() if k.endswith(".weight") else v for k, v in sd.items()}
    path = tmp_path / "w2.pth"
    torch.save(sd, path)
    data = path.read_bytes()

    result = invoke("models", "info", str(path), "--json")
    assert result.exit_code == 0, result.output
    (info,) = json_lines(result)
    assert info["type"] == "model" and info["name"] == "w2.pth"
    assert (info["path"], info["family"], info["scale"]) == (str(path), "spandrel:Compact", 2)
    assert (info["params"], info["size"]) == (params_of(sd), len(data))
    assert info["sha256"] == sha256(data)
    assert info["stored_as"] == ["fp16", "fp32"]
    assert info["overlap"] == info["hints"]["overlap"] and info["overlap_from"] == "weights"
    # What an import of the same file records, and describes by its name.
    assert invoke("models", "import", str(path), "--name", "w2").exit_code == 0
    (named,) = json_lines(invoke("models", "info", "w2", "--json"))
    assert info["hints"] == named["hints"]
    assert (info["family"], info["scale"], info["params"]) == (
        named["family"],
        named["scale"],
        named["params"],
    )

    text = invoke("models", "info", str(path))
    assert text.exit_code == 0 and text.stderr == ""
    rows = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert rows["family"] == "spandrel:Compact" and rows["stored_as"] == "fp16, fp32"
    assert rows["sha256"] == sha256(data) and rows["hints.fp16"] in ("yes", "no")
    assert "manifest" not in rows["hints.overlap"]  # a file has none to state it


@pytest.mark.parametrize("given", ["./w2.safetensors", "w2.pth", "weights/w2"])
def test_models_info_of_a_missing_weights_file_says_it_is_not_found(home: Path, given: str) -> None:
    result = invoke("models", "info", given)
    # As -m says it (exit 3), not an unknown model's name.
    assert result.exit_code == 3, result.output
    assert result.stderr == f"error (model): model file not found: {Path(given)}\n"
    assert invoke("models", "info", "nope").exit_code == 3  # a name no model has, as before


def test_models_info_of_an_image_says_what_info_takes_without_naming_m(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models info photo.jpg`` has no -m, yet was told '-m takes a model name or a
    weights file'; it is told what a model is given as, in no option it lacks, while
    ``upscale -m photo.jpg`` still names -m."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
    result = invoke("models", "info", "photo.jpg")
    assert result.exit_code == 3, result.output
    assert " ".join(result.stderr.split()) == (
        "error (model): photo.jpg is an image (JPEG), not a model: a model is given by its "
        "name or as a weights file (.safetensors, .pth, .pt, .ckpt); an image to upscale is "
        "an input, given after the command (pocketsr upscale photo.jpg)"
    )
    result = invoke("upscale", "photo.jpg", "-m", "photo.jpg", "--dry-run")
    assert result.exit_code == 3, result.output
    assert "not a model: -m takes a model name or a weights file" in result.stderr


def test_models_commands_given_an_image_say_it_is_one_as_upscale_m_does(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models info nope.png`` (no such file), ``models download photo.jpg`` and ``models
    verify photo.jpg`` (and ``models remove``) said 'unknown model ...; available: ...'
    where ``upscale -m`` says the name is an image's; they say it too, in no option they
    lack, with the exit code they had (3)."""
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
    takes = "a model is given by its name or as a weights file (.safetensors, .pth, .pt, .ckpt)"
    cases = [
        (["info", "nope.png"], "nope.png is the name of an image (PNG)"),
        (["download", "photo.jpg"], "photo.jpg is an image (JPEG)"),
        (["verify", "photo.jpg"], "photo.jpg is an image (JPEG)"),
        (["remove", "photo.jpg"], "photo.jpg is an image (JPEG)"),
    ]
    for args, said in cases:
        result = invoke("models", *args)
        assert result.exit_code == 3, (args, result.output)
        assert " ".join(result.stderr.split()) == (
            f"error (model): {said}, not a model: {takes}; an image to upscale is an input, "
            f"given after the command (pocketsr upscale {args[1]})"
        ), result.stderr
    both = invoke("models", "download", "photo.jpg", "lanczos")  # one failure of two
    assert both.exit_code == 3, both.output
    assert "photo.jpg is an image (JPEG), not a model" in both.stderr
    assert "unknown model" not in both.stderr and "1 of 2 downloads failed" in both.stderr
    assert "unknown model 'nope'" in invoke("models", "info", "nope").stderr  # as before
