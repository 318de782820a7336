"""Mouse gestures for the studio tests (pytest-qt)."""
from PySide6.QtCore import Qt


def drag(qtbot, view, points, button=Qt.LeftButton):
    """Press at the first document point, move through the others, release at the last."""
    pts = [view.to_widget(x, y).toPoint() for x, y in points]
    qtbot.mousePress(view, button, pos=pts[0])
    for p in pts[1:]:
        qtbot.mouseMove(view, pos=p)
    qtbot.mouseRelease(view, button, pos=pts[-1])
