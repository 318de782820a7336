"""The plugin's only Qt import: Krita's own binding, PyQt5 (Krita 5) or PyQt6 (Krita 6). Never PySide6:
two Qt runtimes in one process crash.

Everything Qt-specific the plugin needs goes through here: the modules, ``Signal``, and
:class:`Poster`, which hands a call from any thread to the GUI thread.
"""
from __future__ import annotations

try:
    from PyQt5 import QtCore, QtGui, QtWidgets  # Krita 5
    from PyQt5.QtCore import pyqtSignal as Signal
    QT_API = "PyQt5"
except ImportError:  # Krita 6
    from PyQt6 import QtCore, QtGui, QtWidgets
    from PyQt6.QtCore import pyqtSignal as Signal
    QT_API = "PyQt6"

Qt = QtCore.Qt


def enum(scope, name: str):
    """``Qt.AlignLeft`` in PyQt5 and ``Qt.AlignmentFlag.AlignLeft`` in PyQt6: ``enum(Qt, "AlignmentFlag.AlignLeft")``."""
    group, _, member = name.rpartition(".")
    try:
        return getattr(getattr(scope, group), member) if group else getattr(scope, member)
    except AttributeError:
        return getattr(scope, member)


def exec_(obj, *args):
    """``exec_()`` (PyQt5) or ``exec()`` (PyQt6)."""
    run = getattr(obj, "exec", None) or getattr(obj, "exec_")
    return run(*args)


class Poster(QtCore.QObject):
    """``post(func, arg)`` from any thread runs ``func(arg)`` on the thread this object lives in (make it
    on the GUI thread): the engine's events are handed over this way before they touch a document."""

    _posted = Signal(object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._posted.connect(self._run, enum(Qt, "ConnectionType.QueuedConnection"))

    def post(self, func, arg) -> None:
        self._posted.emit(func, arg)

    def _run(self, func, arg) -> None:
        func(arg)


def rgba_qimage(rgba) -> "QtGui.QImage":
    """A QImage (its own copy) of an (h, w, 4) uint8 RGBA array, for thumbnails."""
    h, w = rgba.shape[:2]
    data = rgba.tobytes()
    image = QtGui.QImage(data, w, h, 4 * w, enum(QtGui.QImage, "Format.Format_RGBA8888"))
    return image.copy()
