#!/usr/bin/env bash
# The quality model's recipe on one CUDA GPU, end to end, inside 9 minutes of wall time:
# patches made on the fly from the bundled training photos and labelled by the Real-ESRGAN
# x4plus teacher in fp16 on the GPU, the compact student (animevideov3 init) trained
# against it, the EMA weights and validation scores written every minute (a run cut off
# at any point still leaves measured weights), the exact x2 fold, and a final eval.
#
#   python3 scripts/gpu_bundle.py --photos data/photos --teacher data/teacher --out data/gpu
#   bash scripts/gpu_train.sh                    # on the GPU machine (carry data/gpu)
#   SCALE=2 INIT=models/pocketsr-compact-x2.safetensors bash scripts/gpu_train.sh  # a x2 net
#
# Results under $OUT (8 files): pocketsr-compact-x4.safetensors and -x2, eval.jsonl,
# run/{config.json,log.jsonl,metrics.jsonl,last.pt} (last.pt resumes the run, also on a CPU),
# exports.tar (exports/step_N.safetensors: the EMA weights of every evaluation, 2.4 MB each,
# thinned evenly to six, the last kept, by scripts/thin_exports.py when there are more;
# metrics.jsonl scores each, so the selection rule can pick one).  With SCALE=2: the x2 file
# in place of the x4 one, and no fold.
# Knobs (environment): DEVICE (cuda), MINUTES (7), BATCH (48), LR_SIZE (64), WORKERS (12),
# EVAL_EVERY (60 s), VAL_CROP (512), LR (0.0002), W_GAN (0), SEED (0), BUNDLE (data/gpu),
# DEGRADATIONS (mild,web,clean), THREADS (torch's default), W_BAND (10), W_BAND_CORR (0.1),
# W_HF_EXCESS (5), INIT (a compact .safetensors to start from instead of animevideov3,
# e.g. the bundled models/pocketsr-compact-x4.safetensors), SCALE (4; 2 trains a x2 network
# from INIT, the teacher's x4 labels area-downscaled, and skips the fold), EXTRA (more
# trainer flags, after the ones above, so they override them).
# tests/test_gpu_recipe.py runs this at toy size on a CPU.
# The losses are those of the CPU stage that moved visible detail most on validation
# (models/pocketsr-compact-x4.md): L1 to the teacher only below the visible band, the band's
# energy per 16-px tile matched to the teacher's, its placement by correlation, grain capped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
BUNDLE=${BUNDLE:-data/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The GPU image installs nothing: the bundle's pure-Python wheels are unpacked beside the
# run (spandrel has namespace sub-packages, which Python cannot import from a zip).
for whl in "$BUNDLE"/wheels/*.whl; do [ -f "$whl" ] && "$PY" -m zipfile -e "$whl" "$work/site"; done
export PYTHONPATH="$PWD:$work/site${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
SCALE=${SCALE:-4}
if [ "$SCALE" != 4 ] && [ -z "${INIT:-}" ]; then
  echo "SCALE=$SCALE needs INIT: a compact x$SCALE file (models/pocketsr-compact-x2.safetensors)" >&2
  exit 2
fi
init=${INIT:-$work/init.safetensors}
[ -n "${INIT:-}" ] || "$PY" -m pocketsr_cli.train.compact init "$BUNDLE/teacher" "$init"
extra=()  # the extra training photos' list (scripts/extra_train_photos.txt), if bundled
[ -f "$BUNDLE/extra.txt" ] && extra=(--fetch-list "$BUNDLE/extra.txt")
start=$(date +%s)
"$PY" -m pocketsr_cli.train.run --photos "$BUNDLE/photos" --teacher "$BUNDLE/teacher" \
    --init "$init" --out "$OUT/run" --scale "$SCALE" --device "$DEVICE" \
    --minutes "${MINUTES:-7}" --steps 100000000 --batch "${BATCH:-48}" \
    --lr-size "${LR_SIZE:-64}" --workers "${WORKERS:-12}" --seed "${SEED:-0}" \
    --degradations "${DEGRADATIONS:-mild,web,clean}" --lr "${LR:-0.0002}" \
    --val "$BUNDLE/val" --val-crop "${VAL_CROP:-512}" --eval-every "${EVAL_EVERY:-60}" \
    --export-to "$OUT/pocketsr-compact-x$SCALE.safetensors" --keep-exports true \
    --log-every 50 --ckpt-every 1000000 \
    --w-l1-gt 0 --w-l1-teacher 0 --w-l1-low-teacher 1 --w-perceptual 0.1 --w-amplitude 0.5 \
    --w-lattice 1 --w-band "${W_BAND:-10}" --w-band-corr "${W_BAND_CORR:-0.1}" \
    --w-hf-excess "${W_HF_EXCESS:-5}" --texture-target teacher --texture-window 16 --ema 0.995 \
    --w-gan "${W_GAN:-0}" --gan-start 0 ${THREADS:+--threads "$THREADS"} \
    ${extra[@]+"${extra[@]}"} ${EXTRA:-}
echo "trained in $(( $(date +%s) - start )) s"
# every evaluation's EMA weights, in one file (the machine returns at most 8, each at most
# 16 MiB: thinned evenly, the last kept, when they do not all fit in 15 MiB)
if [ -d "$OUT/run/exports" ]; then
  "$PY" scripts/thin_exports.py "$OUT/run/exports" --max-bytes $((15 * 1024 * 1024))
  tar -cf "$OUT/exports.tar" -C "$OUT/run" exports && rm -r "$OUT/run/exports"
fi
if [ "$SCALE" = 4 ]; then
  "$PY" -m pocketsr_cli.train.compact x2 "$OUT/pocketsr-compact-x4.safetensors" \
      "$OUT/pocketsr-compact-x2.safetensors"
fi
for kind in real bicubic; do
  "$PY" -m pocketsr_cli eval "$BUNDLE/val" --degradation "$kind" -s "$SCALE" \
      -m "$OUT/pocketsr-compact-x$SCALE.safetensors" --device "$DEVICE" --json --quiet --offline
done > "$OUT/eval.jsonl"
tail -n 2 "$OUT/run/metrics.jsonl"
