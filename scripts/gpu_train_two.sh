#!/usr/bin/env bash
# Two runs of scripts/gpu_train.sh side by side on one GPU (the compact student leaves an
# H200 mostly idle), each packed into one tar under $OUT so that both come back within the
# device machine's 8 files:
#
#   P   stage P's terms (models/pocketsr-compact-x4.md) from the bundled x4 model, on patches
#       made on the fly from every training photo: the lever the card names (the student
#       draws the teacher's band on the photos it saw, 0.83 of it on unseen ones)
#   R   the recipe as documented, from animevideov3
#
#   python3 scripts/gpu_bundle.py --photos data/photos --teacher data/teacher --out data/gpu
#   OUT=$OUT MINUTES=4 bash scripts/gpu_train_two.sh      # device run, carry ["data/gpu"]
#
# Results: $OUT/P.tar and $OUT/R.tar (each gpu_train.sh's $OUT: x4 and x2 weights,
# eval.jsonl, run/ but its last.pt), $OUT/P.last.pt and $OUT/R.last.pt (to resume),
# $OUT/P.exports.tar and $OUT/R.exports.tar (every evaluation's weights), $OUT/P.log and
# $OUT/R.log: 8 files.  Knobs: MINUTES (4), WORKERS (7 per run),
# RUNS ("P R"), and those of gpu_train.sh, which both runs share.
# tests/test_gpu_recipe.py runs this at toy size on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu2}
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MINUTES=${MINUTES:-4} WORKERS=${WORKERS:-7}
P_FLAGS="--w-perceptual 0.02 --texture-quantile 0.6 --lr-d 0.002 --disc-highpass 2 \
--disc-lowpass 0.7 --disc-gain 8 --band-gain 1.1"
run() { # run NAME VAR=VALUE...: one gpu_train.sh in the background, its output in $OUT/NAME.log
  local name=$1
  shift
  env "$@" OUT="$work/$name" bash scripts/gpu_train.sh >"$OUT/$name.log" 2>&1 &
}
for name in ${RUNS:-P R}; do
  case $name in
    P) run P INIT=models/pocketsr-compact-x4.safetensors LR=0.0001 W_BAND=50 \
      W_BAND_CORR=0.1 W_HF_EXCESS=20 W_GAN=0.05 DEGRADATIONS=web SEED=1 \
      EXTRA="$P_FLAGS ${EXTRA:-}" ;;
    R) run R SEED=0 ;;
    *) echo "unknown run $name" >&2 ;;
  esac
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
for dir in "$work"/*/; do # last.pt and exports apart: a file may hold 16 MiB
  [ -d "$dir" ] || continue
  name=$(basename "$dir")
  [ -f "$dir/run/last.pt" ] && mv "$dir/run/last.pt" "$OUT/$name.last.pt"
  [ -f "$dir/exports.tar" ] && mv "$dir/exports.tar" "$OUT/$name.exports.tar"
  tar -cf "$OUT/$name.tar" -C "$dir" .
done
tail -n 3 "$OUT"/*.log
exit $status
