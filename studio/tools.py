"""Tools: what a press-drag-release on the canvas does, in document coordinates.

Each tool gets the view (for repaints and the document) and the pointer's
document position and pressure. Painting tools feed the canvas brush engine;
selection tools build a :class:`canvas.selection.Selection`; every change is
one undo step in the document's history.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen, QPolygonF

from canvas.brush import BrushSettings
from canvas.errors import DocumentError
from canvas.geometry import Rect
from canvas.selection import Selection


class ToolHost:
    """What tools may use: the brush settings and colour, the active layer, the message bar."""

    def __init__(self, tool_options, layers, show_message):
        self._options = tool_options
        self._layers = layers
        self.show_message = show_message

    def brush_settings(self) -> dict:
        return self._options.brush()

    def color(self):
        return self._options.color()

    def set_color(self, rgb) -> None:
        self._options.set_color(rgb)

    def active_layer(self):
        return self._layers.active_layer()


class Tool:
    name = "tool"
    label = "Tool"
    shortcut = ""

    def __init__(self, host: ToolHost):
        self.host = host

    def press(self, view, x, y, pressure, modifiers) -> None: ...
    def move(self, view, x, y, pressure, modifiers) -> None: ...
    def release(self, view, x, y, modifiers) -> None: ...
    def hover(self, view, x, y) -> None: ...
    def paint_overlay(self, painter, view) -> None: ...


class BrushTool(Tool):
    """Paints with the current colour; ``eraser`` erases; ``target`` "selection" paints the inpaint mask."""

    def __init__(self, host, name, label, shortcut, eraser=False, target="pixels"):
        super().__init__(host)
        self.name, self.label, self.shortcut = name, label, shortcut
        self.eraser = eraser
        self.target = target
        self.stroke = None
        self._cursor = None

    def press(self, view, x, y, pressure, modifiers) -> None:
        doc = view.doc
        brush = BrushSettings(**{**self.host.brush_settings(), "eraser": self.eraser})
        layer = None if self.target == "selection" else self.host.active_layer()
        if layer is None and self.target != "selection":
            self.host.show_message("There is no layer to paint on: add a layer first.")
            return
        try:
            self.stroke = doc.begin_stroke(brush, layer, self.host.color(), target=self.target)
        except DocumentError as exc:
            self.host.show_message(str(exc))
            return
        self.stroke.stroke_to(x, y, pressure)

    def move(self, view, x, y, pressure, modifiers) -> None:
        if self.stroke is not None:
            self.stroke.stroke_to(x, y, pressure)
        self.hover(view, x, y)

    def release(self, view, x, y, modifiers) -> None:
        if self.stroke is not None:
            view.doc.end_stroke()
            self.stroke = None

    def hover(self, view, x, y) -> None:
        old = self._cursor
        self._cursor = (x, y)
        r = self.host.brush_settings()["size"] * view.zoom / 2 + 3
        for c in (old, self._cursor):
            if c is not None:
                w = view.to_widget(*c)
                view.update(QRectF(w.x() - r, w.y() - r, 2 * r, 2 * r).toAlignedRect())

    def paint_overlay(self, painter, view) -> None:
        if self._cursor is None:
            return
        r = self.host.brush_settings()["size"] * view.zoom / 2
        painter.setPen(QPen(QColor(255, 255, 255, 180), 1))
        painter.setBrush(Qt.NoBrush)
        painter.drawEllipse(view.to_widget(*self._cursor), r, r)


def _mode(modifiers) -> str:
    if modifiers & Qt.ShiftModifier and modifiers & Qt.AltModifier:
        return "intersect"
    if modifiers & Qt.ShiftModifier:
        return "add"
    if modifiers & Qt.AltModifier:
        return "subtract"
    return "replace"


class ShapeSelectTool(Tool):
    """Rectangle or ellipse selection; Shift adds, Alt subtracts, both intersect."""

    def __init__(self, host, name, label, shortcut, ellipse=False):
        super().__init__(host)
        self.name, self.label, self.shortcut = name, label, shortcut
        self.ellipse = ellipse
        self.start = None
        self.end = None

    def _rect(self) -> Rect:
        (x0, y0), (x1, y1) = self.start, self.end
        left, top = round(min(x0, x1)), round(min(y0, y1))
        return Rect(left, top, max(1, round(max(x0, x1)) - left), max(1, round(max(y0, y1)) - top))

    def press(self, view, x, y, pressure, modifiers) -> None:
        self.start = self.end = (x, y)

    def move(self, view, x, y, pressure, modifiers) -> None:
        if self.start is None:
            return
        old = self._rect()
        self.end = (x, y)
        view.update(view.widget_rect(old.union(self._rect())).adjusted(-3, -3, 3, 3))

    def release(self, view, x, y, modifiers) -> None:
        if self.start is None:
            return
        self.end = (x, y)
        rect = self._rect()
        self.start = None
        if rect.w < 2 and rect.h < 2:
            view.doc.clear_selection()
        else:
            shape = Selection.ellipse(rect) if self.ellipse else Selection.rectangle(rect)
            view.doc.select(shape, _mode(modifiers))
        view.update()

    def paint_overlay(self, painter, view) -> None:
        if self.start is None:
            return
        painter.setPen(QPen(QColor(255, 255, 255), 1, Qt.DashLine))
        painter.setBrush(Qt.NoBrush)
        r = view.widget_rect(self._rect())
        painter.drawEllipse(r) if self.ellipse else painter.drawRect(r)


class LassoTool(Tool):
    name, label, shortcut = "lasso", "Lasso selection", "L"

    def __init__(self, host):
        super().__init__(host)
        self.points: list[tuple[float, float]] = []

    def press(self, view, x, y, pressure, modifiers) -> None:
        self.points = [(x, y)]

    def move(self, view, x, y, pressure, modifiers) -> None:
        if self.points:
            self.points.append((x, y))
            view.update()

    def release(self, view, x, y, modifiers) -> None:
        points, self.points = self.points + [(x, y)], []
        if len(points) >= 3:
            view.doc.select(Selection.polygon(points), _mode(modifiers))
        view.update()

    def paint_overlay(self, painter, view) -> None:
        if len(self.points) > 1:
            painter.setPen(QPen(QColor(255, 255, 255), 1, Qt.DashLine))
            painter.drawPolyline(QPolygonF([view.to_widget(x, y) for x, y in self.points]))


class MoveLayerTool(Tool):
    """Drags the active layer; the move is one undo step."""

    name, label, shortcut = "move", "Move layer", "V"

    def __init__(self, host):
        super().__init__(host)
        self.start = None
        self.offset = QPointF()

    def press(self, view, x, y, pressure, modifiers) -> None:
        self.start = (x, y)

    def move(self, view, x, y, pressure, modifiers) -> None:
        if self.start is not None:
            self.offset = QPointF(x - self.start[0], y - self.start[1])
            view.update()

    def release(self, view, x, y, modifiers) -> None:
        if self.start is None:
            return
        dx, dy = round(x - self.start[0]), round(y - self.start[1])
        self.start, self.offset = None, QPointF()
        layer = self.host.active_layer()
        if layer is not None and (dx or dy):
            try:
                view.doc.translate_layer(layer, dx, dy)
            except DocumentError as exc:
                self.host.show_message(str(exc))
        view.update()

    def paint_overlay(self, painter, view) -> None:
        layer = self.host.active_layer()
        b = layer.bbox() if layer is not None else None
        if self.start is None or b is None:
            return
        painter.setPen(QPen(QColor(0, 160, 255), 1, Qt.DashLine))
        painter.drawRect(view.widget_rect((b.x + self.offset.x(), b.y + self.offset.y(), b.w, b.h)))


class ColorPickerTool(Tool):
    name, label, shortcut = "picker", "Colour picker", "P"

    def press(self, view, x, y, pressure, modifiers) -> None:
        self._pick(view, x, y)

    def move(self, view, x, y, pressure, modifiers) -> None:
        self._pick(view, x, y)

    def _pick(self, view, x, y) -> None:
        ix, iy = int(x // 1), int(y // 1)
        if Rect(ix, iy, 1, 1).intersect(view.doc.bounds).empty:
            return
        r, g, b, a = view.doc.render(Rect(ix, iy, 1, 1))[0, 0]
        if a:
            self.host.set_color((int(r), int(g), int(b)))


class ExtendTool(Tool):
    """Drag a canvas edge outwards to grow the document (for outpainting)."""

    name, label, shortcut = "extend", "Extend canvas", "X"
    GRAB = 24  # widget pixels

    def __init__(self, host):
        super().__init__(host)
        self.edge = None
        self.amount = 0

    def press(self, view, x, y, pressure, modifiers) -> None:
        b = view.doc.bounds
        grab = self.GRAB / view.zoom
        distances = {"left": abs(x - b.x), "right": abs(x - b.right), "top": abs(y - b.y), "bottom": abs(y - b.bottom)}
        edge = min(distances, key=distances.get)
        self.edge = edge if distances[edge] <= grab else None
        self.amount = 0

    def move(self, view, x, y, pressure, modifiers) -> None:
        if self.edge is None:
            return
        b = view.doc.bounds
        amount = {"left": b.x - x, "right": x - b.right, "top": b.y - y, "bottom": y - b.bottom}[self.edge]
        self.amount = max(0, int(round(amount / 8)) * 8)
        view.update()

    def release(self, view, x, y, modifiers) -> None:
        if self.edge is not None and self.amount > 0:
            view.doc.grow(**{self.edge: self.amount})
        self.edge, self.amount = None, 0
        view.update()

    def preview_rect(self, doc) -> Rect | None:
        if self.edge is None or not self.amount:
            return None
        b = doc.bounds
        a = self.amount
        return {"left": b.expand(a, 0, 0, 0), "right": b.expand(0, 0, a, 0),
                "top": b.expand(0, a, 0, 0), "bottom": b.expand(0, 0, 0, a)}[self.edge]

    def paint_overlay(self, painter, view) -> None:
        r = self.preview_rect(view.doc)
        if r is not None:
            painter.setPen(QPen(QColor(0, 200, 120), 2, Qt.DashLine))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(view.widget_rect(r))


def make_tools(host) -> dict[str, Tool]:
    tools = [
        BrushTool(host, "brush", "Brush", "B"),
        BrushTool(host, "eraser", "Eraser", "E", eraser=True),
        BrushTool(host, "mask", "Mask brush", "M", target="selection"),
        BrushTool(host, "mask_eraser", "Mask eraser", "Shift+M", eraser=True, target="selection"),
        ShapeSelectTool(host, "rect_select", "Rectangle selection", "R"),
        ShapeSelectTool(host, "ellipse_select", "Ellipse selection", "Shift+R", ellipse=True),
        LassoTool(host),
        MoveLayerTool(host),
        ColorPickerTool(host),
        ExtendTool(host),
    ]
    return {t.name: t for t in tools}
