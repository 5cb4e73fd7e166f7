#!/usr/bin/env bash
# Create .venv and install pocketsr into it (editable). Usage:
#   bash scripts/install.sh              # the tool
#   bash scripts/install.sh --diffusion  # the tool plus the diffusion extra (AdcSR models)
#   bash scripts/install.sh --dev        # the tool plus test and lint tools (diffusers included)
#   VENV=/tmp/v bash scripts/install.sh   # another virtualenv (created if missing)
# torch is installed first, pinned, so that pip never pulls a multi-GB CUDA build by itself
# (override with TORCH_SPEC, e.g. TORCH_SPEC="torch --index-url ..." for a CUDA machine).
#
# spandrel goes in last, with --no-deps. Its metadata requires torchvision, which the tool
# does not need (pocketsr_cli/weights/community.py) and which PyPI has no build of that
# matches a CPU torch. Its other requirements (torch, numpy, safetensors, einops,
# typing_extensions) are pocketsr's own dependencies, so they are in place before it.
# Last, because pip re-checks the requirements of every installed package that depends on
# one it installs: with spandrel already there, installing numpy for pocketsr would print
# "ERROR: ... spandrel 0.4.2 requires torchvision, which is not installed". A --no-deps
# install runs no such check, so a fresh install prints no ERROR line.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=()
for arg in "$@"; do
    case "$arg" in
        --dev) extras+=(dev) ;;
        --diffusion) extras+=(diffusion) ;;
        *) echo "unknown option $arg (expected --dev or --diffusion)" >&2; exit 2 ;;
    esac
done
extra=""
if [ "${#extras[@]}" -gt 0 ]; then extra="[$(IFS=,; echo "${extras[*]}")]"; fi
venv="${VENV:-.venv}"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
"$py" -m pip install -q -e ".${extra}"
"$py" -m pip install -q --no-deps "spandrel==0.4.2"
echo "installed: $("$py" -c 'import pocketsr_cli, torch; print("pocketsr", pocketsr_cli.__version__, "torch", torch.__version__)')"
