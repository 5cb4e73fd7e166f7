#!/usr/bin/env bash
# Issue 12, "the GPU path proven": pocketsr's whole GPU path checked in one run of under
# 6 minutes on one CUDA GPU, every result written under $OUT.
#
# Once, on the development machine (network): the wheels the GPU image lacks, 3.9 MiB:
#   .venv/bin/python scripts/gpu_check_bundle.py          # -> data/gpucheck (git-ignored)
# Then the device tool's run, exactly:
#   command:   OUT=$OUT bash scripts/gpu_check.sh
#   carry:     ["data/gpucheck"]
#   timeout_s: 420                 (BUDGET_S 330 + start-up and slack; leaves a rerun's time)
# What travels: the tracked tree (8.1 MiB, the bundled models included) + data/gpucheck
# (3.9 MiB): about 12 MiB of the 64 allowed.
#
# Steps, in order, each time-boxed (`timeout`) within the overall budget BUDGET_S; a step
# that fails or times out is recorded and the rest still run:
#   env                 versions (torch, CUDA, cuDNN, carried packages), GPU name and memory
#   cli                 `pocketsr models list --json`; if the CLI cannot run on the image,
#                       scripts/gpu_check.py's stand-in runs the later commands instead
#   bench_bundled_fp16  `pocketsr bench --json --precision fp16 --repeat 5` of every bundled model
#   folder_photos       32 synthetic 960x540 JPEGs
#   folder_bench        `pocketsr bench --folder DIR --format jpg --precision fp16 --json`
#   folder_bench_nokeep the same with POCKETSR_KEEP_FREED_MEMORY=0 (freed memory given back)
#   folder_gil_sim      scripts/folder_gil_sim.py on the folder: the host side's cost alone
#   folder_upscale      `pocketsr upscale DIR -o OUT --format jpg --precision fp16 --json`,
#                       wall clock (process start, model load and CUDA set-up included)
#   startup             a fresh process's start-up phase by phase (imports, CUDA context,
#                       model load, the first three images): scripts/gpu_check.py startup
#   opencv_floor        scripts/opencv_floor.py on the same folder (decode+resize+encode)
#   pytest_gpu          `pytest -m gpu` over the test suite (tests/test_gpu.py, test_tiling)
#   bench_bundled_fp32  as above, fp32
#   arch_weights        random-weight realesr-general-x4v3 (SRVGG) and x4plus (RRDB) files
#   bench_arch_fp16/32  `pocketsr bench -m FILE` of those two
#   forward             networks alone: fp32/fp16/bf16 x NCHW/channels-last, half-precision
#                       PSNR against fp32; a 4K result's transfer to the host, planar
#                       against laid out on the device first (and pinned); with COMPILE=1
#                       Upscaler(compile=True) and its warm-up
# Results ($OUT, 6 files): gpu_check.json (summary: versions, GPU, each check's status and
# seconds, the key figures: default model ms per 4K output in fp16, 4K images/s end to end
# with JPEG output), log.txt (every step's command and stderr), pytest.txt, bench.jsonl,
# folder.jsonl, forward.jsonl (each line tagged with its "step").
#
# With the results: fill README's performance table from gpu_check.json's "figures" and
# "bench" (name the GPU as env.gpu.name gives it, and the torch/CUDA versions), put the
# channels-last and compile findings (forward.jsonl) into the issue; to keep the files,
# copy them from the tool's files_at folder into runs/ (git-ignored), never into git.
#
# Knobs (environment): DEVICE (cuda), SIZE (full; small: the toy sizes), BUDGET_S (330),
# COMPILE (1; 0 with SIZE=small), WHEELS (1: unpack the carried wheels; 0 with DEVICE=cpu),
# PYTHON (python3), OUT (runs/gpucheck).
# CPU toy mode, so that this cannot rot (tests/test_gpu_check.py runs it; ~40 s on 2 cores):
#   DEVICE=cpu SIZE=small PYTHON=.venv/bin/python bash scripts/gpu_check.sh
set -uo pipefail # no -e: a failed step is recorded and the next one runs
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpucheck}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-full}
BUDGET_S=${BUDGET_S:-330}
PY=${PYTHON:-python3}
if [ "$SIZE" = small ]; then
  BENCH_SIZE=64x36 REPEAT=1 PHOTOS=4 PHOTO_SIZE=96x54 FOLDER_REPEAT=1 COMPILE=${COMPILE:-0}
  PYTEST_PATHS=(tests/test_gpu.py tests/test_tiling.py)
else
  # 32 photos, best of 2 passes: at 20-30 images/s a pass of 16 was under a second, and
  # the pipeline's fill and drain (the first decode, the last encode) weighed on it.
  BENCH_SIZE=960x540 REPEAT=5 PHOTOS=32 PHOTO_SIZE=960x540 FOLDER_REPEAT=2 COMPILE=${COMPILE:-1}
  PYTEST_PATHS=(tests)
fi
if [ "$DEVICE" = cpu ]; then
  WHEELS=${WHEELS:-0}
  export POCKETSR_GPU_TESTS_DEVICE=cpu # tests/test_gpu.py runs on the CPU at toy size
else
  WHEELS=${WHEELS:-1}
fi

mkdir -p "$OUT"
for f in gpu_check.json log.txt pytest.txt bench.jsonl folder.jsonl forward.jsonl; do
  rm -f "$OUT/$f"
done
log=$OUT/log.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
deadline=$((started + BUDGET_S - 15)) # the last 15 s are the summary's

# The image installs nothing: carried pure-Python wheels (and pydantic-core for its
# CPython) are unpacked beside the run, as scripts/gpu_train.sh does; a distribution
# already unpacked from an earlier folder is not unpacked again.
declare -A unpacked=()
unpack() {
  local whl name
  for whl in "$1"/*.whl; do
    [ -f "$whl" ] || continue
    name=$(basename "$whl")
    name=${name%%-*}
    [ -n "${unpacked[$name]:-}" ] && continue
    unpacked[$name]=$whl
    "$PY" -m zipfile -e "$whl" "$work/site" || echo "cannot unpack $whl" >>"$log"
  done
}
if [ "$WHEELS" = 1 ]; then
  [ -d data/gpucheck/wheels ] ||
    echo "data/gpucheck missing: run scripts/gpu_check_bundle.py here and carry it" >>"$log"
  unpack data/gpucheck/wheels # spandrel, platformdirs, einops, typer>=0.29, pydantic
  unpack data/gpu/wheels      # scripts/gpu_bundle.py's, when carried too
  "$PY" -c 'import pytest' 2>/dev/null || unpack data/gpucheck/pytest
  echo "unpacked: ${!unpacked[*]}" >>"$log"
fi
export PYTHONPATH="$PWD:$work/site${PYTHONPATH:+:$PYTHONPATH}"
export POCKETSR_HOME=$work/home POCKETSR_OFFLINE=1 PYTHONUNBUFFERED=1

# record CHECK STATUS RC SECONDS LIMIT NOTE: one line of $work/steps.jsonl
record() {
  printf '{"check": "%s", "status": "%s", "rc": %s, "seconds": %s, "limit_s": %s, "note": "%s"}\n' \
    "$1" "$2" "${3:-null}" "$4" "$5" "$6" >>"$work/steps.jsonl"
}
# step CHECK LIMIT_S STDOUT COMMAND...: run COMMAND for at most LIMIT_S seconds (fewer when
# the budget is nearly spent), its stdout to STDOUT and its stderr to the log, and record
# the outcome; STEP_SECONDS holds its wall time.  True when COMMAND exited 0.
step() {
  local check=$1 limit=$2 dest=$3 left rc status t0 ms
  shift 3
  left=$((deadline - $(date +%s)))
  STEP_SECONDS=0
  if ((left < 5)); then
    record "$check" skipped null 0 0 "budget of ${BUDGET_S} s spent"
    echo "== $check: skipped, budget spent" >>"$log"
    return 1
  fi
  ((limit > left)) && limit=$left
  echo "== $check (limit ${limit} s): $*" >>"$log"
  t0=$(date +%s%N)
  timeout -k 5 "$limit" "$@" >"$dest" 2>>"$log"
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  STEP_SECONDS=$((ms / 1000)).$(printf %03d $((ms % 1000)))
  case $rc in
    0) status=pass ;;
    124 | 137) status=timeout ;;
    *) status=fail ;;
  esac
  record "$check" "$status" "$rc" "$STEP_SECONDS" "$limit" ""
  echo "== $check: $status (rc $rc, $STEP_SECONDS s)" >>"$log"
  [ "$rc" = 0 ]
}
# tag CHECK FILE: FILE's JSON lines with "step": CHECK first, on stdout
tag() {
  [ -f "$2" ] && sed "s/^{/{\"step\": \"$1\", /" "$2"
}

common=(--device "$DEVICE" --json --quiet --offline)
step env 60 "$work/env.json" "$PY" scripts/gpu_check.py env --device "$DEVICE"
cat "$work/env.json" >>"$log"

CLI=("$PY" -m pocketsr_cli)
if ! step cli 60 "$work/models.jsonl" "${CLI[@]}" models list --json; then
  echo "the CLI cannot run here: scripts/gpu_check.py cli stands in for it" >>"$log"
  CLI=("$PY" scripts/gpu_check.py cli)
  timeout 60 "${CLI[@]}" models list --json >"$work/models.jsonl" 2>>"$log"
fi
mapfile -t bundled < <("$PY" -c 'import json, sys
for line in sys.stdin:
    try:
        model = json.loads(line)
    except ValueError:
        continue
    if isinstance(model, dict) and model.get("where") == "bundled":
        print("-m"); print(model["name"])' <"$work/models.jsonl")

bench() { # bench CHECK LIMIT_S PRECISION MODEL-ARGS...
  local check=$1 limit=$2 precision=$3
  shift 3
  step "$check" "$limit" "$work/$check.jsonl" "${CLI[@]}" bench "$@" --size "$BENCH_SIZE" \
    --repeat "$REPEAT" --precision "$precision" "${common[@]}"
  tag "$check" "$work/$check.jsonl" >>"$OUT/bench.jsonl"
}
bench bench_bundled_fp16 90 fp16 "${bundled[@]}"

photos=$work/photos
step folder_photos 30 "$work/photos.json" "$PY" scripts/gpu_check.py photos "$photos" \
  --count "$PHOTOS" --size "$PHOTO_SIZE"
step folder_bench 90 "$work/folder_bench.jsonl" "${CLI[@]}" bench --folder "$photos" \
  --format jpg --precision fp16 --repeat "$FOLDER_REPEAT" "${common[@]}"
tag folder_bench "$work/folder_bench.jsonl" >>"$OUT/folder.jsonl"
# The same with freed host memory given back (hostmem.py off): what keeping it buys here.
step folder_bench_nokeep 90 "$work/folder_bench_nokeep.jsonl" env POCKETSR_KEEP_FREED_MEMORY=0 \
  "${CLI[@]}" bench --folder "$photos" --format jpg --precision fp16 --repeat "$FOLDER_REPEAT" \
  "${common[@]}"
tag folder_bench_nokeep "$work/folder_bench_nokeep.jsonl" >>"$OUT/folder.jsonl"
# The host side alone: a stand-in model stage (24 ms with the GIL released) among the real
# decoder and encoder threads; far above 24 ms means the CPU side holds the GPU back.
step folder_gil_sim 60 "$work/folder_gil_sim.json" "$PY" scripts/folder_gil_sim.py "$photos" \
  --json
tag folder_gil_sim "$work/folder_gil_sim.json" >>"$OUT/folder.jsonl"
step folder_upscale 90 "$work/folder_upscale.jsonl" "${CLI[@]}" upscale "$photos" \
  -o "$work/upscaled" --format jpg --precision fp16 "${common[@]}"
tag folder_upscale "$work/folder_upscale.jsonl" >>"$OUT/folder.jsonl"
printf '{"step": "folder_upscale_wall", "wall_seconds": %s, "photos": %s, "size": "%s"}\n' \
  "$STEP_SECONDS" "$PHOTOS" "$PHOTO_SIZE" >>"$OUT/folder.jsonl"
# Where the upscale command's start-up goes (11.4 s wall for 16 photos on the H200, 9.6 s
# of it before the first image was done): imports, CUDA context, model load, first images.
step startup 60 "$work/startup.json" "$PY" scripts/gpu_check.py startup --device "$DEVICE" \
  --size "$SIZE"
tag startup "$work/startup.json" >>"$OUT/folder.jsonl"
step opencv_floor 60 "$work/floor.json" "$PY" scripts/opencv_floor.py time "$photos" \
  --format jpg --scale 4
tag opencv_floor "$work/floor.json" >>"$OUT/folder.jsonl"

step pytest_gpu 150 "$OUT/pytest.txt" "$PY" -m pytest -m gpu -rA -p no:cacheprovider \
  --continue-on-collection-errors --junitxml "$work/pytest.xml" "${PYTEST_PATHS[@]}"

bench bench_bundled_fp32 90 fp32 "${bundled[@]}"

step arch_weights 60 "$work/archs.jsonl" "$PY" scripts/gpu_check.py archs "$work/archs" \
  --size "$SIZE"
tag arch_weights "$work/archs.jsonl" >>"$OUT/bench.jsonl"
archs=()
for f in "$work"/archs/*.safetensors; do [ -f "$f" ] && archs+=(-m "$f"); done
for precision in fp16 fp32; do
  if ((${#archs[@]})); then
    bench "bench_arch_$precision" 120 "$precision" "${archs[@]}"
  else # without -m, bench would time the default model under the wrong name
    record "bench_arch_$precision" skipped null 0 0 "no architecture files"
  fi
done

forward=(--device "$DEVICE" --size "$SIZE" --repeat "$REPEAT" --models)
for f in "$work"/archs/*.safetensors; do [ -f "$f" ] && forward+=("$f"); done
[ "$COMPILE" = 1 ] && forward+=(--compile)
step forward 150 "$work/forward.jsonl" "$PY" scripts/gpu_check.py forward "${forward[@]}"
tag forward "$work/forward.jsonl" >>"$OUT/forward.jsonl"

elapsed=$(($(date +%s) - started))
timeout 60 "$PY" scripts/gpu_check.py summarize --work "$work" --out "$OUT" --device "$DEVICE" \
  --size "$SIZE" --budget "$BUDGET_S" --elapsed "$elapsed" 2>>"$log" | tee -a "$log"
