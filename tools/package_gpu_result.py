"""Package the files of a GPU training run (tools/gpu_train.sh) as resources/models/latent-studio-mini.

    .venv/bin/python tools/package_gpu_result.py DIR [--dest FOLDER]
    .venv/bin/python main.py evaluate --write-card
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--dest", type=Path, default=None)
    args = ap.parse_args()
    from cli.training import main_package

    return main_package(args.dir, args.dest)


if __name__ == "__main__":
    sys.exit(main())
