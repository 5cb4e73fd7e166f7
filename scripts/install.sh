#!/usr/bin/env bash
# Create .venv and install pocketsr into it (editable). Usage:
#   bash scripts/install.sh          # the tool
#   bash scripts/install.sh --dev    # the tool plus test and lint tools
# torch is installed first, pinned, so that pip never pulls a multi-GB CUDA build by itself
# (override with TORCH_SPEC, e.g. TORCH_SPEC="torch --index-url ..." for a CUDA machine).
# spandrel goes in with --no-deps: its metadata asks for torchvision, which the tool does not
# need (see pocketsr_cli/weights/community.py).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
python3 -m venv .venv
py=.venv/bin/python
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
"$py" -m pip install -q --no-deps "spandrel==0.4.2"
"$py" -m pip install -q -e ".${extra}"
echo "installed: $("$py" -c 'import pocketsr_cli, torch; print("pocketsr", pocketsr_cli.__version__, "torch", torch.__version__)')"
