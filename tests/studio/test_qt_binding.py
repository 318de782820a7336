"""The Qt binding itself: a PySide6 release whose painter calls corrupt Python's reference counts
would crash the app after some thousands of paints (PySide6 6.12.0 with Python 3.11 did: every
QPainter call dropped one reference to None)."""
import os
import subprocess
import sys

PROBE = r"""
import gc, sys
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QGuiApplication, QImage, QPainter
app = QGuiApplication([])
image = QImage(16, 16, QImage.Format_RGBA8888)
image.fill(0)
target = QImage(64, 64, QImage.Format_RGBA8888)
painter = QPainter(target)
gc.disable()
before = sys.getrefcount(None)
for _ in range(2500):
    painter.drawImage(QRectF(0, 0, 8, 8), image)
    painter.drawImage(QPointF(1, 1), image)
after = sys.getrefcount(None)
painter.end()
print(before - after)
"""


def test_painter_calls_keep_none_alive():
    # In a quiet process of its own: in the suite, objects freed by other threads move None's count too.
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lost = int(done.stdout.strip().splitlines()[-1])
    assert lost < 500, f"None lost {lost} references in 5000 painter calls: this PySide6 release would crash the app"
