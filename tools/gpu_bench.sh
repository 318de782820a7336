#!/usr/bin/env bash
# The unattended GPU session of issue 19: every figure of bench/bench_gpu.py --full, printed.
#
#   bash tools/prepare_gpu_bench_carry.sh      # here, before: the wheels the GPU machine lacks -> .carry/wheels
#   OUT=/some/dir bash tools/gpu_bench.sh      # there: SD 1.5 inpaint 512² (all sections), then SDXL 1024²,
#                                              # then the live-painting figure (bench_live.py --full)
#
# From the device tool: run(command="OUT=$OUT bash tools/gpu_bench.sh", carry=[".carry"], timeout_s=600).
# Each part has its own time cap (SD15_S, SDXL_S seconds) so that one call fits 10 minutes; the output
# is also written to $OUT/bench_gpu.txt. Copy the figures into README ("bench_gpu on <GPU>: …").
set -u
T0=$(date +%s)
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/bench-gpu-out}
mkdir -p "$OUT"
SD15_S=${SD15_S:-330}
SDXL_S=${SDXL_S:-180}
LIVE_S=${LIVE_S:-75}
exec > >(tee "$OUT/bench_gpu.txt") 2>&1

echo "== nvidia-smi"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "(no nvidia-smi)"
echo "== $($PY --version 2>&1)"
NEEDS="import diffusers, transformers, accelerate, platformdirs, safetensors, PIL"
if ! $PY -c "$NEEDS" 2>/dev/null; then
  SITE=/tmp/site
  WHEELS=${WHEELS:-.carry/wheels}
  export PYTHONPATH="$SITE"
  $PY tools/gpu_deps.py --wheels "$WHEELS" --target "$SITE" || { echo "FATAL: diffusers does not import"; exit 3; }
  $PY -c "$NEEDS" || { echo "FATAL: a dependency is missing: run tools/prepare_gpu_bench_carry.sh first"; exit 3; }
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export LATENT_STUDIO_CACHE=${LATENT_STUDIO_CACHE:-/tmp/latent-studio-cache}
echo "== start-up took $(( $(date +%s) - T0 )) s"

echo "== SD 1.5 inpaint, 512², 20 steps (cap ${SD15_S} s)"
timeout "$SD15_S" $PY -u bench/bench_gpu.py --full --models sd15 --cache /tmp/bench-models || echo "(SD 1.5 part ended: exit $?)"
echo "== SDXL, 1024², 20 steps, no first-job section (cap ${SDXL_S} s)"
timeout "$SDXL_S" $PY -u bench/bench_gpu.py --full --models sdxl --only unet,engine,memory --cache /tmp/bench-models \
  || echo "(SDXL part ended: exit $?)"
echo "== live painting (issue 16): SD 1.5 size, 512² region, LCM, 4 UNet steps (cap ${LIVE_S} s)"
timeout "$LIVE_S" $PY -u bench/bench_live.py --full --strokes 10 --burst 0 || echo "(live part ended: exit $?)"
echo "== done after $(( $(date +%s) - T0 )) s"
