#!/usr/bin/env bash
# Copy the test photographs named in scripts/test_photos.txt into DEST (default data/test),
# named as ../shared/data/fetch_train_photos.sh names photos (<Wallpaper>.jpg, <file>).
# Usage: bash scripts/fetch_test_photos.sh [DEST]    (needs apt-get download and dpkg, no root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-data/test}
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkgs=$(grep -v '^#' "$here/test_photos.txt" | cut -f1 | sort -u)
(cd "$work" && apt-get download $pkgs >/dev/null)
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
n=0
while IFS=$'\t' read -r pkg path; do
  case "$pkg" in ''|'#'*) continue;; esac
  name=$(echo "$path" | sed -E 's#.*/wallpapers/([^/]+)/.*#\1.jpg#; s#.*/nature/##')
  cp -L "$work/root/$path" "$dest/$name"; n=$((n+1))
done < "$here/test_photos.txt"
echo "$n test photos in $dest"
