#!/usr/bin/env bash
# Copy the test photographs named in scripts/test_photos.txt into DEST (default data/test).
# Usage: bash scripts/fetch_test_photos.sh [DEST]    (needs apt-get download and dpkg, no root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/fetch_photos.sh" "$here/test_photos.txt" "${1:-data/test}"
