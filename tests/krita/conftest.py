"""The Krita plugin's tests run outside Krita against ``krita_mock`` (installed as ``krita``)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import krita_mock  # noqa: E402

sys.modules.setdefault("krita", krita_mock)
