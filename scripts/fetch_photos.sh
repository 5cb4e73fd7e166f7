#!/usr/bin/env bash
# Copy the photographs a list names (Debian package <TAB> path inside the package, the format
# of ../shared/data/train_photos.txt) into DEST, named as ../shared/data/fetch_train_photos.sh
# names photos: <Wallpaper>.jpg for .../wallpapers/<Wallpaper>/..., else the file's own name.
# Usage: bash scripts/fetch_photos.sh LIST DEST    (needs apt-get download and dpkg, no root)
set -euo pipefail
list=${1:?usage: fetch_photos.sh LIST DEST}
dest=${2:?usage: fetch_photos.sh LIST DEST}
list=$(cd "$(dirname "$list")" && pwd)/$(basename "$list")
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkgs=$(grep -v '^#' "$list" | cut -f1 | sort -u)
(cd "$work" && apt-get download $pkgs >/dev/null)
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
n=0
while IFS=$'\t' read -r pkg path; do
  case "$pkg" in ''|'#'*) continue;; esac
  name=$(echo "$path" | sed -E 's#.*/wallpapers/([^/]+)/.*#\1.jpg#; s#.*/##')
  cp -L "$work/root/$path" "$dest/$name"; n=$((n+1))
done < "$list"
echo "$n photos in $dest"
