#!/usr/bin/env bash
# One-shot GPU training of the embedded model (autoencoder, then inpainting UNet).
#
#   OUT=/some/dir bash tools/gpu_train.sh [VAE_MINUTES=3] [UNET_MINUTES=4]
#
# Runs from the repository root; needs .carry/ (tools/prepare_gpu_carry.sh makes it): the prepared
# photos in .carry/data and the diffusers wheel (+ fallback dependencies) in .carry/wheels. No
# network. Results (7 files, each < 16 MB) go to $OUT; then, back home:
#   .venv/bin/python tools/package_gpu_result.py DIR
# Env: TOTAL_MINUTES (wall-clock cap, default 8.2, start-up included), GPU_TRAIN_ARGS (extra
# arguments for backend.training.gpu, e.g. "--vae-batch 8 --unet-batch 4 --bank 64" for a CPU try).
# Fine-tune the shipped model instead of training from scratch (VAE_MIN then fine-tunes the decoder
# alone, kept only if the held-out PSNR rises; 0 skips it):
#   OUT=DIR GPU_TRAIN_ARGS="--init-from resources/models/latent-studio-mini" bash tools/gpu_train.sh 1.5 6
set -u
T0=$(date +%s)
VAE_MIN=${1:-3}
UNET_MIN=${2:-4}
TOTAL_MINUTES=${TOTAL_MINUTES:-8.2}
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
PY=${PYTHON:-python3}

echo "== nvidia-smi"
nvidia-smi 2>&1 || echo "(nvidia-smi not available: the run falls back to CPU)"
echo "== $($PY --version 2>&1); budget: VAE ${VAE_MIN} min, UNet ${UNET_MIN} min, wall cap ${TOTAL_MINUTES} min"

SITE=/tmp/site
WHEELS=${WHEELS:-.carry/wheels}
if ! $PY -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/diffusers-*.whl 2>&1; then
  echo "(pip install of the wheel failed; unpacking it instead)"
fi
export PYTHONPATH="$SITE"
$PY tools/gpu_deps.py --wheels "$WHEELS" --target "$SITE" || { echo "FATAL: diffusers does not import"; exit 3; }
export PYTHONPATH="$SITE:$PWD"

DEADLINE=$($PY -c "print($T0 + $TOTAL_MINUTES * 60)")
echo "== training (start-up took $(( $(date +%s) - T0 )) s)"
# shellcheck disable=SC2086
$PY -u tools/gpu_run.py --data .carry/data --out "$OUT" \
  --vae-minutes "$VAE_MIN" --unet-minutes "$UNET_MIN" --deadline "$DEADLINE" ${GPU_TRAIN_ARGS:-}
RC=$?
echo "== exit $RC after $(( $(date +%s) - T0 )) s; files in \$OUT:"
ls -la "$OUT"
exit $RC
