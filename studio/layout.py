"""The panels around the canvas, and the window's size and place on the screen.

The docks are laid out to fit a 1366×768 laptop screen: the generation panel scrolls, the
variations strip is one row of thumbnails with its buttons beside them, and the window opens
inside the screen's available area (a size saved on a bigger screen is shrunk to fit).
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QRect, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget

DEFAULT_SIZE = (1400, 900)
FRAME = (8, 40, 8, 8)  # left, top (title bar), right, bottom: room for the window manager's frame, px


def available_area(widget=None) -> QRect:
    """The screen's area not taken by task bars, where the window should open."""
    screen = widget.screen() if widget is not None and widget.screen() is not None else QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, *DEFAULT_SIZE)


def fit_geometry(saved: tuple, available: QRect, minimum=(0, 0), default=DEFAULT_SIZE) -> QRect:
    """The window's client geometry: the saved one (or the default size, centred), shrunk so that it
    and its frame fit the available area, and moved inside it."""
    left, top, right, bottom = FRAME
    max_w = max(available.width() - left - right, 1)
    max_h = max(available.height() - top - bottom, 1)
    w, h = (saved[2], saved[3]) if len(saved) == 4 else default
    w = min(max(w, minimum[0]), max_w)
    h = min(max(h, minimum[1]), max_h)
    if len(saved) == 4:
        x, y = saved[0], saved[1]
    else:
        x = available.x() + left + (max_w - w) // 2
        y = available.y() + top + (max_h - h) // 2
    x = min(max(x, available.x() + left), available.x() + available.width() - right - w)
    y = min(max(y, available.y() + top), available.y() + available.height() - bottom - h)
    return QRect(x, y, w, h)


class PanelsController(QObject):
    """Builds the docks of a main window and keeps its geometry in the settings."""

    def __init__(self, window, *, generation, layers, tool_options, history, queue, variations):
        super().__init__(window)
        self.window = window
        self.docks = {}
        self._dock("Generation", generation, Qt.RightDockWidgetArea)
        self._dock("Layers", layers, Qt.RightDockWidgetArea)
        self._dock("Tool options", tool_options, Qt.LeftDockWidgetArea)
        h = self._dock("History", history, Qt.LeftDockWidgetArea)
        window.tabifyDockWidget(h, self._dock("Queue", queue, Qt.LeftDockWidgetArea))
        h.raise_()
        self._dock("Variations", variations, Qt.BottomDockWidgetArea)
        self.arrange()

    def arrange(self) -> None:
        """The docks' first sizes: narrow side columns, most of the right one for the generation
        panel (the layers list scrolls). Called again once the window has its size on screen."""
        d, w = self.docks, self.window
        w.resizeDocks([d["Generation"], d["Tool options"]], [340, 190], Qt.Horizontal)
        height = max(w.height(), 600)
        w.resizeDocks([d["Generation"], d["Layers"]], [int(height * 0.68), int(height * 0.32)], Qt.Vertical)
        w.resizeDocks([d["Tool options"], d["History"]], [int(height * 0.45), int(height * 0.55)], Qt.Vertical)

    def _dock(self, title, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self.window)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.window.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    def place(self, saved, available: QRect | None = None) -> None:
        """Opens the window within the screen's available area (``saved``: WindowSettings)."""
        available = available if available is not None else available_area(self.window)
        hint = self.window.minimumSizeHint()
        self.window.setGeometry(fit_geometry(tuple(saved.geometry), available, (hint.width(), hint.height())))
        if saved.maximized:
            self.window.setWindowState(self.window.windowState() | Qt.WindowMaximized)

    def store(self, saved) -> None:
        maximized = bool(self.window.windowState() & Qt.WindowMaximized)
        saved.maximized = maximized
        if not maximized:
            g = self.window.geometry()
            saved.geometry = (g.x(), g.y(), g.width(), g.height())
