#!/usr/bin/env bash
# The wheels tools/gpu_bench.sh needs on a GPU machine that has only torch, numpy and pillow:
# the versions of this checkout's .venv, downloaded (no dependencies resolved) into .carry/wheels.
#   bash tools/prepare_gpu_bench_carry.sh [PYTHON_VERSION e.g. 3.11]
set -eu
PY=${PYTHON:-.venv/bin/python}
WHEELS=.carry/wheels
mkdir -p "$WHEELS"
PKGS=$($PY - <<'PYEOF'
import importlib.metadata as m
names = ["diffusers", "transformers", "accelerate", "tokenizers", "huggingface_hub", "safetensors", "platformdirs",
         "regex", "filelock", "packaging", "pyyaml", "tqdm", "requests", "typing_extensions", "fsspec", "hf_xet",
         "importlib_metadata", "zipp", "psutil"]
out = []
for n in names:
    try:
        out.append(f"{n}=={m.version(n)}")
    except m.PackageNotFoundError:
        pass
print(" ".join(out))
PYEOF
)
ARGS=()
if [ "${1:-}" != "" ]; then ARGS=(--python-version "$1" --only-binary=:all:); fi
# shellcheck disable=SC2086
$PY -m pip download --no-deps -d "$WHEELS" "${ARGS[@]}" $PKGS
du -sh "$WHEELS"
