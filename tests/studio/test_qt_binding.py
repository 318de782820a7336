"""The Qt binding itself: a PySide6 release whose painter calls corrupt Python's reference counts
would crash the app after some thousands of paints (PySide6 6.12.0 with Python 3.11 did)."""
import sys

from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage, QPainter


def test_painter_calls_keep_none_alive(qapp):
    image = QImage(16, 16, QImage.Format_RGBA8888)
    image.fill(0)
    target = QImage(64, 64, QImage.Format_RGBA8888)
    painter = QPainter(target)
    try:
        before = sys.getrefcount(None)
        for _ in range(200):
            painter.drawImage(QRectF(0, 0, 8, 8), image)
            painter.drawImage(QPointF(1, 1), image)
        after = sys.getrefcount(None)
    finally:
        painter.end()
    assert after >= before - 20, f"None lost {before - after} references in 400 painter calls"
