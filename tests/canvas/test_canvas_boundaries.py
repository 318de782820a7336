"""canvas/ never imports Qt or torch (it is reused by the CLI and tested without a screen)."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import canvas


def test_canvas_imports_no_qt_and_no_torch():
    modules = [f"canvas.{m.name}" for m in pkgutil.iter_modules(canvas.__path__)]
    assert "canvas.document" in modules and "canvas.ora" in modules
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'PyQt5', 'PyQt6', 'PySide2', 'torch', 'studio', 'backend'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=canvas.__path__[0] + "/..")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"canvas pulled in: {out.stdout}"
