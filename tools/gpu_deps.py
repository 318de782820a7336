"""Make `import diffusers` work on a machine without network, from wheels carried in .carry/wheels.

Stage 1: the diffusers wheel alone. Stage 2: each carried dependency whose top-level module is not
importable. Stage 3: every carried dependency (a too old huggingface_hub, say), shadowing the
machine's own copies for this run only (they go into the --target folder, first on PYTHONPATH).
Wheels are unpacked with zipfile: neither pip nor network needed. Exit 0 when diffusers imports.

    python3 tools/gpu_deps.py --wheels .carry/wheels --target /tmp/site
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

CHECK = "import diffusers; from diffusers import AutoencoderKL, UNet2DConditionModel, DDPMScheduler; print('diffusers', diffusers.__version__)"


def top_levels(wheel: Path) -> set[str]:
    names = set()
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            head = n.split("/")[0]
            if head.endswith((".dist-info", ".data")):
                continue
            names.add(head[:-3] if head.endswith(".py") else head.split(".")[0])
    return {n for n in names if n.isidentifier()}


def unpack(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    print(f"  unpacked {wheel.name}", flush=True)


def imports_ok(target: Path) -> bool:
    env_path = f"{target}"
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": env_path})
    print((proc.stdout or "").strip() or (proc.stderr or "").strip().splitlines()[-1:] or "", flush=True)
    return proc.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheels", type=Path, required=True)
    ap.add_argument("--target", type=Path, required=True)
    args = ap.parse_args()
    args.target.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.target))
    main_wheels = sorted(args.wheels.glob("diffusers-*.whl"))
    if not main_wheels:
        print(f"no diffusers wheel in {args.wheels}", file=sys.stderr)
        return 2
    if not (args.target / "diffusers").is_dir():
        unpack(main_wheels[-1], args.target)
    print("stage 1: diffusers alone", flush=True)
    if imports_ok(args.target):
        return 0
    extras = sorted((args.wheels / "extra").glob("*.whl"))
    print("stage 2: carried dependencies that are missing here", flush=True)
    for w in extras:
        if any(importlib.util.find_spec(m) is None for m in top_levels(w)):
            unpack(w, args.target)
    if imports_ok(args.target):
        return 0
    print("stage 3: every carried dependency", flush=True)
    for w in extras:
        unpack(w, args.target)
    return 0 if imports_ok(args.target) else 1


if __name__ == "__main__":
    sys.exit(main())
