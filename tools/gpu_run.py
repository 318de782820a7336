"""Launcher for backend.training.gpu that does not run backend/__init__.py.

The GPU machine has only torch, numpy, pillow, safetensors and the carried diffusers; the
backend package's __init__ may import more (the engine), so the training subpackage is loaded
under a bare `backend` namespace instead.
"""
import sys
import types
from pathlib import Path

root = Path(__file__).resolve().parents[1]
pkg = types.ModuleType("backend")
pkg.__path__ = [str(root / "backend")]
sys.modules.setdefault("backend", pkg)
sys.path.insert(1, str(root))

from backend.training.gpu import main  # noqa: E402

sys.exit(main())
