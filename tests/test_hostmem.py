"""hostmem: glibc keeps large freed blocks for reuse; free memory counts what it keeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pocketsr_cli import hostmem, memory

GLIBC = hostmem._glibc() is not None

# A fresh process, so that the setting (process-wide) is measured from a clean start: a
# 64 MB allocation after a 96 MB one was freed reuses its pages once freed memory is kept,
# which shows as no new page faults (ru_minflt) for it; without the setting glibc maps and
# faults it in again.  (Smaller, because an aligned request needs some slack beyond its
# size: a block of exactly the freed size may not fit the freed block.)  Above the mmap
# threshold (MMAP_THRESHOLD, 136 MiB) blocks are mapped and given back either way.
_FAULTS = textwrap.dedent(
    """
    import os, resource, sys
    import torch
    from pocketsr_cli import hostmem
    applied = hostmem.retain_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(int(sys.argv[1]) << 18)  # MB, written, freed
    before = faults()
    torch.ones(int(sys.argv[2]) << 18)
    print(applied, faults() - before)
    """
)


def _fresh_process(script: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The words ``script`` prints, run in a fresh Python (the setting is process-wide);
    by default without :data:`hostmem.ENV`, so freed memory is kept."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != hostmem.ENV}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()


def _second_allocation_faults(
    env: dict[str, str], first_mb: int = 96, second_mb: int = 64
) -> tuple[bool, int]:
    out = _fresh_process(_FAULTS, str(first_mb), str(second_mb), env=env)
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc only (elsewhere retain_freed_memory is a no-op)")
def test_freed_memory_is_reused_without_page_faults_and_the_env_turns_it_off() -> None:
    env = {k: v for k, v in os.environ.items() if k != hostmem.ENV}
    applied, faults = _second_allocation_faults(env)
    assert applied and faults < 1000  # 64 MB is 16,384 pages of 4 KB
    applied, faults = _second_allocation_faults({**env, hostmem.ENV: "0"})
    assert not applied and faults > 15_000


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_blocks_over_the_mmap_threshold_are_given_back_not_kept() -> None:
    """A big image's output-sized blocks are not kept: in the heap they fragmented it and
    a 12 MP photo at x4 peaked at 2.9 GB instead of 1.9 GB."""
    env = {k: v for k, v in os.environ.items() if k != hostmem.ENV}
    applied, faults = _second_allocation_faults(env, 300, 200)
    assert applied and faults > 45_000  # 200 MB is 51,200 pages, faulted in afresh


def test_a_4k_upscales_feature_maps_are_kept_with_the_models_border_margin() -> None:
    """The bundled x4 model's widest feature map for a 960x540 -> 3840x2160 upscale in fp32
    (its widest convolution's channels over the input framed in its border margin) is
    below the threshold, so it is reused from the kept heap, not mapped and faulted in
    afresh by every layer of every image.  With 128 MB it was 40 KB over (the 2-pixel
    margin: 964 x 544 x 64 x 4 bytes): 3.8-4.0 s per 4K output in fp32 against 3.3."""
    from pocketsr_cli.weights.resolve import resolve_model

    model = resolve_model("pocketsr-compact-x4")
    convs = [m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert model.size.margin > 0 and convs
    channels = max(conv.out_channels for conv in convs)
    feature_map = channels * model.size.framed(540) * model.size.framed(960) * 4
    assert feature_map < hostmem.MMAP_THRESHOLD


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_retained_bytes_are_counted_as_free_for_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 1000)
    monkeypatch.setattr(hostmem, "retained_bytes", lambda: 234)
    assert memory.free_bytes(torch.device("cpu")) == 1234
    monkeypatch.setattr(memory, "host_available_bytes", lambda: None)
    assert memory.free_bytes(torch.device("cpu")) is None


def test_a_c_library_other_than_glibc_leaves_malloc_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hostmem, "_applied", False)
    monkeypatch.setattr(hostmem, "_glibc", lambda: None)
    assert hostmem.retain_freed_memory() is False
    assert hostmem.retained_bytes() == 0


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_retained_bytes_is_a_byte_count() -> None:
    assert hostmem.retained_bytes() >= 0


_PEAK = textwrap.dedent(
    """
    import numpy as np
    from pocketsr_cli import hostmem
    from pocketsr_cli.evaluation.peakmem import PeakMemory
    print(hostmem.retain_freed_memory())
    block = np.ones(100_000_000 // 8); del block  # kept for reuse, still resident
    with PeakMemory() as empty:
        pass
    with PeakMemory() as big:
        block = np.ones(60_000_000 // 8)  # reuses it: RSS does not move
    print(big.host_peak_bytes - empty.host_peak_bytes)
    """
)


@pytest.mark.skipif(not GLIBC or not hasattr(os, "sysconf"), reason="glibc and statm only")
def test_peak_memory_charges_a_block_with_what_it_uses_not_what_was_kept() -> None:
    out = _fresh_process(_PEAK)
    assert out[0] == "True" and int(out[1]) >= 45_000_000


_GIVE_BACK = textwrap.dedent(
    """
    import os
    import torch
    from pocketsr_cli import hostmem
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    hostmem.retain_freed_memory()
    block = torch.ones(96 << 18); del block  # 96 MB, written, freed, kept
    kept = rss()
    given = hostmem.give_back_freed()
    print(given, kept - rss())
    """
)


@pytest.mark.skipif(not GLIBC or not os.path.exists("/proc/self/statm"), reason="glibc, Linux")
def test_give_back_freed_returns_the_kept_memory_to_the_kernel() -> None:
    out = _fresh_process(_GIVE_BACK)
    assert out[0] == "True"
    assert int(out[1]) > 80_000_000  # of the 96 MB kept


def test_give_back_freed_does_nothing_unless_memory_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hostmem, "_applied", False)
    assert hostmem.give_back_freed() is False


_API = textwrap.dedent(
    """
    from pocketsr_cli import Upscaler, hostmem
    before = hostmem.is_retaining()
    Upscaler("bicubic", device="cpu")
    print(before, hostmem.is_retaining())
    """
)


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_opening_an_api_upscaler_keeps_freed_memory_as_the_cli_does() -> None:
    """Without it a library user's 4K upscale on the CPU ran 1.5x slower than the CLI's
    (7.9-8.2 s against 5.3 s for the default model in fp32: scripts/api_speed.py)."""
    env = {k: v for k, v in os.environ.items() if k != hostmem.ENV}
    assert _fresh_process(_API) == ["False", "True"]
    assert _fresh_process(_API, env={**env, hostmem.ENV: "0"}) == ["False", "False"]


@pytest.mark.parametrize("value", ["off", "no", " FALSE ", "0"])
def test_any_no_word_turns_it_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """POCKETSR_OFFLINE's no words; only 0 was read, and ``off`` kept freed memory."""
    monkeypatch.setattr(hostmem, "_applied", False)
    monkeypatch.setenv(hostmem.ENV, value)
    assert hostmem.retain_freed_memory() is False


def test_a_value_that_is_neither_yes_nor_no_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """By the API (where it is read, when an Upscaler is opened) and at the start of every
    command, as a usage error naming the variable (with --json, its error object too); it
    was silently read as a yes."""
    from typer.testing import CliRunner

    from pocketsr_cli import Upscaler
    from pocketsr_cli.cli import app
    from pocketsr_cli.errors import UsageError

    monkeypatch.setenv(hostmem.ENV, "maybe")
    said = "POCKETSR_KEEP_FREED_MEMORY='maybe' is neither yes nor no"
    with pytest.raises(UsageError, match=f"^{said}"):
        hostmem.retain_freed_memory()
    with pytest.raises(UsageError, match=f"^{said}"):
        Upscaler("bicubic", device="cpu")
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 2 and result.stderr.startswith(f"error (usage): {said}")
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["type"] == "error" and record["kind"] == "usage"
