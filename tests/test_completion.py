"""Shell completion of values: model names, devices, precisions, formats.

Through the protocol the shell scripts in ``completions/`` speak (``_POCKETSR_COMPLETE``
in a real subprocess, which also shows what completion imports), and through the shipped
bash script itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pocketsr_cli.cli._options import FORMATS
from pocketsr_cli.devices import likely_device_names
from pocketsr_cli.weights.cache import weights_path
from pocketsr_cli.weights.resolve import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "spandrel", "http.client", "ssl", "urllib.request")
# Runs the CLI as the console script does and reports on stderr which heavy modules the
# completion request imported (atexit: the completion path ends in sys.exit).
RUN_CLI = (
    "import atexit, sys\n"
    f"heavy = {HEAVY!r}\n"
    "atexit.register(lambda: print('imported:', *[m for m in heavy if m in sys.modules],"
    " file=sys.stderr))\n"
    "from pocketsr_cli._entry import main\n"
    "main()\n"
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private model folder (here and in the subprocess), no CUDA_VISIBLE_DEVICES."""
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return {**os.environ, "PYTHONPATH": str(REPO)}


def complete(
    env: dict[str, str], line: str, shell: str = "bash", cwd: Path | None = None
) -> list[str]:
    """What ``pocketsr`` answers when Tab is pressed at the end of ``line`` (in ``cwd``)."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    request = {**env, "_POCKETSR_COMPLETE": f"complete_{shell}"}
    if shell == "fish":  # what completions/pocketsr.fish asks for
        request["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    if shell == "bash":
        request.update(COMP_WORDS=" ".join(words), COMP_CWORD=str(len(words) - 1))
    else:
        request["_TYPER_COMPLETE_ARGS"] = line
    result = subprocess.run(
        [sys.executable, "-c", RUN_CLI],
        env=request,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "imported:", result.stderr  # nothing heavy
    return [line for line in result.stdout.splitlines() if line]


def test_model_option_completes_registry_names(env: dict[str, str]) -> None:
    got = complete(env, "pocketsr upscale -m pocketsr-")
    assert DEFAULT_MODEL in got and "pocketsr-nano-x2" in got
    assert all(name.startswith("pocketsr-") for name in got)
    everything = complete(env, "pocketsr upscale --model ")
    assert {"bicubic", "lanczos", "realesrgan-x4plus", DEFAULT_MODEL} <= set(everything)
    assert complete(env, "pocketsr bench -m lan") == ["lanczos"]
    assert complete(env, "pocketsr eval photos/ -m bic") == ["bicubic"]


def test_a_path_is_left_to_the_shell(env: dict[str, str]) -> None:
    # Nothing offered: bash's `complete -o default` then completes file names.
    assert complete(env, "pocketsr upscale -m ./") == []
    assert complete(env, "pocketsr upscale -m weights/") == []


def test_the_weights_files_here_are_offered_beside_the_model_names(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``models info`` takes a weights file (NAME|PATH) as -m does, yet Tab offered model
    names only, and a file only once no name matched (the shell's fallback): the weights
    files in the current folder are offered beside the names, to both; other files
    (photos), hidden ones and folders are not."""
    here = tmp_path / "here"
    here.mkdir()
    for name in ("4x_foo.pth", "realesr-mine.safetensors", "photo.jpg", ".hidden.pt"):
        (here / name).write_bytes(b"")
    (here / "sub.pth").mkdir()  # a folder, whatever its name
    for line in ("pocketsr models info ", "pocketsr upscale a.png -m "):
        got = complete(env, line, cwd=here)
        assert {"4x_foo.pth", "realesr-mine.safetensors", "bicubic", DEFAULT_MODEL} <= set(got)
        assert not {"photo.jpg", ".hidden.pt", "sub.pth"} & set(got), got
    assert complete(env, "pocketsr models info realesr", cwd=here) == [
        "realesr-general-x4v3",
        "realesr-mine.safetensors",
        "realesrgan-x4plus",
    ]
    described = "\n".join(complete(env, "pocketsr models info 4x", shell="zsh", cwd=here))
    assert '"4x_foo.pth":"weights file"' in described, described
    assert complete(env, "pocketsr models info ./", cwd=here) == []  # a path: the shell's


def test_device_precision_format_tile(env: dict[str, str]) -> None:
    devices = complete(env, "pocketsr upscale --device ")
    assert devices[:2] == ["auto", "cpu"] and devices == likely_device_names()
    assert complete(env, "pocketsr eval d --precision ") == ["auto", "fp32", "fp16", "bf16"]
    assert complete(env, "pocketsr upscale --format ") == list(FORMATS)
    assert complete(env, "pocketsr bench --format w") == ["webp"]
    assert complete(env, "pocketsr upscale --tile ") == ["auto", "0"]
    assert complete(env, "pocketsr upscale --ensemble ") == ["none", "pad", "flip8"]
    assert complete(env, "pocketsr eval d --ensemble f") == ["flip8"]


def test_models_commands_complete_the_names_they_accept(env: dict[str, str]) -> None:
    assert complete(env, "pocketsr models info realesr") == [
        "realesr-general-x4v3",
        "realesrgan-x4plus",
    ]
    download = complete(env, "pocketsr models download ")
    assert "realesrgan-x4plus" in download and "bicubic" not in download
    assert complete(env, "pocketsr models remove ") == []  # nothing downloaded or imported
    cached = weights_path("realesrgan-x4plus", "RealESRGAN_x4plus.pth")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"on disk")
    assert complete(env, "pocketsr models remove ") == ["realesrgan-x4plus"]
    # A model still "remote" with a partial download kept for a resume: remove deletes it.
    partial = weights_path("realesr-general-x4v3", "realesr-general-x4v3.pth.incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"the first bytes")
    assert complete(env, "pocketsr models remove ") == ["realesr-general-x4v3", "realesrgan-x4plus"]
    verify = complete(env, "pocketsr models verify ")
    assert "realesrgan-x4plus" in verify and DEFAULT_MODEL in verify
    assert "realesr-general-x4v3" not in verify  # not on this machine


def test_models_remove_completes_the_stems_of_manifests_that_cannot_be_read(
    env: dict[str, str],
) -> None:
    """``models remove STEM`` deletes a user manifest that cannot be read (it defines no
    model, so it has no name), but Tab did not offer its stem; a stem a model is named by
    is that model's, so it is offered once, as the model."""
    from pocketsr_cli.weights.cache import user_models_dir

    folder = user_models_dir()
    folder.mkdir(parents=True)
    (folder / "typo.toml").write_text('name = "typo"\nfamily = ', encoding="utf-8")
    (folder / "lanczos.toml").write_text("scale = [", encoding="utf-8")  # bundled's name
    assert complete(env, "pocketsr models remove ") == ["typo"]
    assert complete(env, "pocketsr models remove ty") == ["typo"]
    described = "\n".join(complete(env, "pocketsr models remove ", shell="zsh"))
    assert '"typo":"a manifest that cannot be read"' in described
    assert "typo" not in complete(env, "pocketsr models info ")  # it names no model


def test_zsh_gets_descriptions(env: dict[str, str]) -> None:
    out = "\n".join(complete(env, "pocketsr upscale -m pocketsr-compact", shell="zsh"))
    assert f'"{DEFAULT_MODEL}":"×4, bundled, default"' in out


def test_commands_still_complete(env: dict[str, str]) -> None:
    assert complete(env, "pocketsr mo") == ["models"]
    assert "import-ncnn" in complete(env, "pocketsr models ")


def test_the_shipped_bash_script(env: dict[str, str]) -> None:
    bash = shutil.which("bash")
    console_script = Path(sys.executable).with_name("pocketsr")
    if bash is None or not console_script.exists():
        pytest.skip("needs bash and the installed pocketsr console script")
    script = (
        f"source {REPO / 'completions' / 'pocketsr.bash'}\n"
        'COMP_LINE="pocketsr upscale --precision f"; COMP_POINT=${#COMP_LINE}\n'
        "_pocketsr_completion pocketsr\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    path = f"{console_script.parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [bash, "--norc", "-c", script],
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["fp32", "fp16"], result.stderr


def test_the_bash_script_completes_after_a_colon(tmp_path: Path, env: dict[str, str]) -> None:
    """bash splits ``cuda:1`` at the colon: the script must send pocketsr the whole word and
    hand bash only what follows the colon."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    fake = tmp_path / "pocketsr"  # stands in for the console script: GPUs cannot be faked
    fake.write_text(
        "#!/bin/sh\n"
        'printf "%s|%s\\n" "$COMP_WORDS" "$COMP_CWORD" > "$0.args"\n'
        "printf 'auto\\ncuda\\ncuda:0\\ncuda:1\\n'\n"
    )
    fake.chmod(0o755)
    script = (
        f"source {REPO / 'completions' / 'pocketsr.bash'}\n"
        'COMP_LINE="pocketsr upscale x --device cuda:"; COMP_POINT=${#COMP_LINE}\n'
        "_pocketsr_completion pocketsr\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        [bash, "--norc", "-c", script],
        env={**env, "PATH": f"{tmp_path}{os.pathsep}{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["0", "1"], result.stderr
    sent = (tmp_path / "pocketsr.args").read_text().strip()
    assert sent == "pocketsr upscale x --device cuda:|4"


# --- devices without torch ---------------------------------------------------------------


def gpus(root: Path, count: int) -> Path:
    for i in range(count):
        (root / f"0000:{i:02x}:00.0").mkdir(parents=True)
    return root


def cuda_names(root: Path) -> list[str]:
    names = likely_device_names(root)
    assert names[:2] == ["auto", "cpu"]
    return [name for name in names if name.startswith("cuda")]


def test_device_names_follow_the_driver_and_cuda_visible_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_names(tmp_path / "absent") == []
    root = gpus(tmp_path / "gpus", 3)
    assert cuda_names(root) == ["cuda", "cuda:0", "cuda:1", "cuda:2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert cuda_names(root) == ["cuda", "cuda:0", "cuda:1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,0")  # CUDA stops at the first invalid
    assert cuda_names(root) == ["cuda", "cuda:0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cuda_names(root) == []


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_option_descriptions_name_the_default_model(env: dict[str, str], shell: str) -> None:
    """zsh and fish show each option's help beside it: the default model by name, not the
    placeholder the help renderer fills in."""
    for command in ("upscale", "bench", "eval photos/"):
        out = "\n".join(complete(env, f"pocketsr {command} --mod", shell=shell))
        assert "--model" in out and DEFAULT_MODEL in out, out
        assert "@DEFAULT_MODEL@" not in out


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_command_descriptions_are_whole_first_sentences_as_in_help(
    env: dict[str, str], shell: str
) -> None:
    """Click cut them at 45 characters ("Show versions, devices (each GPU with its...");
    --help's command lists show the whole first sentence, and so do completions."""
    top = "\n".join(complete(env, "pocketsr ", shell=shell))
    models = "\n".join(complete(env, "pocketsr models ", shell=shell))
    assert "..." not in top + models, top + models
    assert "Show versions, devices (each GPU with its memory), the default model and " in top
    assert "ncnn model (Real-ESRGAN RRDBNet or SRVGG-compact; fp16 or fp32)." in models


def test_fish_gets_one_line_per_candidate(env: dict[str, str]) -> None:
    """fish takes every line of the answer for a candidate: a description wrapped to the
    terminal's width offered its pieces as options."""
    for line in ("pocketsr upscale -", "pocketsr models ", "pocketsr ", "pocketsr bench --"):
        got = complete(env, line, shell="fish")
        assert got and all("\t" in candidate for candidate in got), (line, got)


def _typer_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(
        prog_name="pocketsr", complete_var="_POCKETSR_COMPLETE", shell=shell
    ).strip()


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_shipped_script_is_what_typer_generates(shell: str) -> None:
    """completions/README.md: the zsh and fish scripts are Typer's, as generated; a Typer
    that changes how its scripts call pocketsr back leaves them stale (regenerate them)."""
    shipped = (REPO / "completions" / f"pocketsr.{shell}").read_text(encoding="utf-8")
    assert shipped.strip() == _typer_script(shell)


def test_the_shipped_bash_script_speaks_typers_protocol() -> None:
    """The bash script is Typer's with the words split differently (see the script): it
    still sets every variable Typer's sets and registers the same way."""
    shipped = (REPO / "completions" / "pocketsr.bash").read_text(encoding="utf-8")
    typer_script = _typer_script("bash")
    for name in re.findall(r"\b([A-Z_]+)=", typer_script):
        assert f"{name}=" in shipped, name
    assert typer_script.splitlines()[-1] in shipped.splitlines()
