"""The canvas view: the document drawn at any zoom, with overlays, feeding input to the tools.

Drawing is cached per *display tile* (256 widget pixels at the current zoom,
independent of panning): a document change invalidates only the display tiles
it touches and repaints only their area, so brush strokes on a large document
stay cheap. Overlays: the checkerboard under transparency, the selection (a
red tint when it is the inpaint mask, plus its outline), the generation
region's outline and live previews drawn above the layers at their rectangle.
"""
from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QWidget

from canvas.geometry import Rect

MAX_TILE = 256  # display tile side, in widget pixels (before the device pixel ratio)
TILE_DOC_AREA = 384  # zoomed out, a tile shrinks so that it covers at most about this many document pixels a side
PAINT_BUDGET_S = 0.020  # building display tiles past this in one paint waits for the next event-loop turn
ZOOM_STEPS = (0.03125, 0.0625, 0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)


def qimage_from_rgba(rgba: np.ndarray) -> QImage:
    """A QImage that owns a copy of straight-alpha RGBA pixels.

    The pixels are copied into memory the QImage allocated itself; wrapping a Python buffer
    (``QImage(array.data, …)``) can upset PySide's reference counting when done thousands of times.
    """
    h, w = rgba.shape[:2]
    image = QImage(w, h, QImage.Format_RGBA8888)
    if w and h:
        view = np.frombuffer(image.bits(), np.uint8).reshape(h, image.bytesPerLine())
        view[:, : w * 4] = np.ascontiguousarray(rgba).reshape(h, w * 4)
    return image


def _checker_pixmap() -> QPixmap:
    pm = QPixmap(16, 16)
    pm.fill(QColor(204, 204, 204))
    p = QPainter(pm)
    p.fillRect(0, 0, 8, 8, QColor(255, 255, 255))
    p.fillRect(8, 8, 8, 8, QColor(255, 255, 255))
    p.end()
    return pm


class CanvasView(QWidget):
    """Shows a :class:`canvas.Document`; tools receive document coordinates."""

    zoom_changed = Signal(float)
    cursor_moved = Signal(float, float)  # document coordinates
    stroke_ended = Signal()  # the tool's press-drag-release ended (live painting updates then)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.setAttribute(Qt.WA_TabletTracking)
        self.setAcceptDrops(True)
        self.doc = None
        self.zoom = 1.0
        self.pan = QPointF(20, 20)  # widget position of document point (0, 0)
        self.tool = None
        self.mask_tint = True  # draw the selection as a red inpaint-mask overlay
        self._tiles: dict = {}
        self._overlay_tiles: dict = {}
        self._previews: dict = {}  # key -> (QImage, Rect)
        self.region: Rect | None = None  # the generation region's outline
        self.live_region: Rect | None = None  # live painting's region (its own outline)
        self._checker = QBrush(_checker_pixmap())
        self._panning: QPointF | None = None
        self.space_held = False
        self._tablet_down = False
        self.paint_count = 0  # for tests and benchmarks
        self.pending = False  # display tiles still to build after the last paint

    # --- document ------------------------------------------------------------
    def set_document(self, doc) -> None:
        if self.doc is not None and self._on_doc_change in self.doc.listeners:
            self.doc.listeners.remove(self._on_doc_change)
        self.doc = doc
        doc.listeners.append(self._on_doc_change)
        self._tiles.clear()
        self._overlay_tiles.clear()
        self._previews.clear()
        self.region = None
        self.live_region = None
        self.fit()

    def _on_doc_change(self, kind: str, rect) -> None:
        if kind == "selection":
            self._invalidate(self._overlay_tiles, rect)
        elif kind == "bounds":
            self._tiles.clear()
            self._overlay_tiles.clear()
            self.update()
            return
        else:
            self._invalidate(self._tiles, rect)
        if rect is None:
            self.update()
        else:
            self.update(self.widget_rect(rect).adjusted(-2, -2, 2, 2))

    def _invalidate(self, cache: dict, rect) -> None:
        if rect is None:
            cache.clear()
            return
        tile = self.tile_px
        x0, y0 = math.floor(rect.x * self.zoom / tile), math.floor(rect.y * self.zoom / tile)
        x1 = math.floor((rect.x + rect.w) * self.zoom / tile)
        y1 = math.floor((rect.y + rect.h) * self.zoom / tile)
        for ty in range(y0, y1 + 1):
            for tx in range(x0, x1 + 1):
                cache.pop((tx, ty), None)

    # --- coordinates ---------------------------------------------------------
    def to_doc(self, pos) -> QPointF:
        return QPointF((pos.x() - self.pan.x()) / self.zoom, (pos.y() - self.pan.y()) / self.zoom)

    def to_widget(self, x: float, y: float) -> QPointF:
        return QPointF(x * self.zoom + self.pan.x(), y * self.zoom + self.pan.y())

    def widget_rect(self, rect) -> QRect:
        tl = self.to_widget(rect[0], rect[1])
        return QRectF(tl.x(), tl.y(), rect[2] * self.zoom, rect[3] * self.zoom).toAlignedRect()

    # --- zoom and pan --------------------------------------------------------
    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        zoom = min(max(zoom, ZOOM_STEPS[0]), ZOOM_STEPS[-1])
        if anchor is None:
            anchor = QPointF(self.width() / 2, self.height() / 2)
        doc_pt = self.to_doc(anchor)
        self.zoom = zoom
        self.pan = QPointF(anchor.x() - doc_pt.x() * zoom, anchor.y() - doc_pt.y() * zoom)
        self._tiles.clear()
        self._overlay_tiles.clear()
        self.zoom_changed.emit(zoom)
        self.update()

    def zoom_in(self, anchor=None) -> None:
        self.set_zoom(next((z for z in ZOOM_STEPS if z > self.zoom + 1e-9), ZOOM_STEPS[-1]), anchor)

    def zoom_out(self, anchor=None) -> None:
        self.set_zoom(next((z for z in reversed(ZOOM_STEPS) if z < self.zoom - 1e-9), ZOOM_STEPS[0]), anchor)

    def fit(self) -> None:
        if self.doc is None or self.width() < 10 or self.height() < 10:
            return
        b = self.doc.bounds
        zoom = min((self.width() - 40) / b.w, (self.height() - 40) / b.h)
        self.zoom = max(ZOOM_STEPS[0], min(zoom, 8.0))
        self.pan = QPointF((self.width() - b.w * self.zoom) / 2 - b.x * self.zoom,
                           (self.height() - b.h * self.zoom) / 2 - b.y * self.zoom)
        self._tiles.clear()
        self._overlay_tiles.clear()
        self.zoom_changed.emit(self.zoom)
        self.update()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def pan_by(self, dx: float, dy: float) -> None:
        self.pan += QPointF(dx, dy)
        self.update()

    # --- previews and outlines -----------------------------------------------
    def show_preview(self, key, rgba: np.ndarray, rect) -> None:
        old = self._previews.get(key)
        self._previews[key] = (qimage_from_rgba(rgba), rect if isinstance(rect, Rect) else tuple(rect))
        area = self.widget_rect(rect)
        if old is not None:
            area = area.united(self.widget_rect(old[1]))
        self.update(area.adjusted(-2, -2, 2, 2))

    def clear_preview(self, key=None) -> None:
        keys = list(self._previews) if key is None else [key]
        for k in keys:
            old = self._previews.pop(k, None)
            if old is not None:
                self.update(self.widget_rect(old[1]).adjusted(-2, -2, 2, 2))

    def clear_job_previews(self, job_id: int) -> None:
        """Removes every preview of a job (tiled jobs show one per tile)."""
        for key in [k for k in self._previews if isinstance(k, tuple) and k[:2] == ("job", job_id)]:
            self.clear_preview(key)

    @property
    def previews(self) -> dict:
        return dict(self._previews)

    def set_region(self, rect) -> None:
        old = self.region
        self.region = Rect(*rect) if rect is not None else None
        for r in (old, self.region):
            if r is not None:
                self.update(self.widget_rect(r).adjusted(-4, -4, 4, 4))

    def set_live_region(self, rect) -> None:
        old = self.live_region
        self.live_region = Rect(*rect) if rect is not None else None
        for r in (old, self.live_region):
            if r is not None:
                self.update(self.widget_rect(r).adjusted(-4, -4, 4, 4))

    # --- painting --------------------------------------------------------------
    def _display_tile(self, cache: dict, key, make) -> QImage | None:
        if key not in cache:
            cache[key] = make(key)
        return cache[key]

    def _tile_doc_rect(self, key) -> Rect | None:
        tx, ty = key
        tile = self.tile_px
        x0 = math.floor(tx * tile / self.zoom)
        y0 = math.floor(ty * tile / self.zoom)
        x1 = math.ceil((tx + 1) * tile / self.zoom)
        y1 = math.ceil((ty + 1) * tile / self.zoom)
        r = Rect(x0, y0, x1 - x0, y1 - y0).intersect(self.doc.bounds)
        return None if r.empty else r

    def _make_pixels(self, key):
        r = self._tile_doc_rect(key)
        if r is None:
            return None
        image = qimage_from_rgba(self.doc.render(r))
        return (self._scaled(image, r), r)

    def _make_overlay(self, key):
        r = self._tile_doc_rect(key)
        if r is None or self.doc.selection.is_empty:
            return None
        cov = self.doc.selection.read(r)
        if not cov.any():
            return None
        rgba = np.zeros(cov.shape + (4,), np.uint8)
        if self.mask_tint:
            rgba[..., 0] = 230
            rgba[..., 1] = 40
            rgba[..., 2] = 40
            rgba[..., 3] = (cov.astype(np.uint16) * 110 // 255).astype(np.uint8)
        inside = cov > 127
        edge = np.zeros_like(inside)
        edge[1:] |= inside[1:] != inside[:-1]
        edge[:, 1:] |= inside[:, 1:] != inside[:, :-1]
        rgba[edge] = (20, 20, 20, 255)
        return (self._scaled(qimage_from_rgba(rgba), r), r)

    def _scaled(self, image: QImage, r: Rect) -> QImage:
        """The tile at screen resolution: zoom × the device pixel ratio, so high-DPI screens stay sharp."""
        dpr = self.devicePixelRatioF()
        scale = self.zoom * dpr
        if scale != 1.0:
            w = max(1, round(r.w * scale))
            h = max(1, round(r.h * scale))
            mode = Qt.SmoothTransformation if scale < 1 else Qt.FastTransformation
            image = image.scaled(w, h, Qt.IgnoreAspectRatio, mode)
        image.setDevicePixelRatio(dpr)
        return image

    def paintEvent(self, event) -> None:
        self.paint_count += 1
        p = QPainter(self)
        try:
            self._paint(p, event.rect())
        finally:
            p.end()  # even after an error: a painter left active crashes Qt

    def _paint(self, p: QPainter, exposed) -> None:
        p.fillRect(exposed, QColor(64, 64, 68))
        if self.doc is None:
            return
        doc_area = self.widget_rect(self.doc.bounds)
        p.setBrushOrigin(doc_area.topLeft())
        p.fillRect(doc_area.intersected(exposed), self._checker)
        # Display tiles are in zoomed document space: tile (tx, ty) covers
        # [tx*tile, (tx+1)*tile) there, i.e. pan + that in the widget. Missing tiles are built until
        # the paint budget is spent; the rest show the checkerboard and come on the next turn, so a
        # zoomed-out view of a huge document fills in progressively instead of freezing the window.
        ox, oy = self.pan.x(), self.pan.y()
        tile = self.tile_px
        tx0 = math.floor((exposed.left() - ox) / tile)
        ty0 = math.floor((exposed.top() - oy) / tile)
        tx1 = math.floor((exposed.right() - ox) / tile)
        ty1 = math.floor((exposed.bottom() - oy) / tile)
        deadline = time.perf_counter() + PAINT_BUDGET_S
        pending = False
        for cache, make in ((self._tiles, self._make_pixels), (self._overlay_tiles, self._make_overlay)):
            for ty in range(ty0, ty1 + 1):
                for tx in range(tx0, tx1 + 1):
                    if (tx, ty) not in cache and time.perf_counter() > deadline:
                        pending = True
                        continue
                    entry = self._display_tile(cache, (tx, ty), make)
                    if entry is None:
                        continue
                    image, r = entry
                    # A tile's document rect is rounded outwards, so neighbours overlap by up to a pixel
                    # when zoomed: clip each to its own whole widget pixels, or a half-transparent overlay
                    # (the mask tint) is drawn twice along the seams.
                    x0, y0 = round(ox + tx * tile), round(oy + ty * tile)
                    p.setClipRect(QRect(x0, y0, round(ox + (tx + 1) * tile) - x0, round(oy + (ty + 1) * tile) - y0))
                    p.drawImage(QRectF(self.to_widget(r.x, r.y), QRectF(0, 0, r.w * self.zoom, r.h * self.zoom).size()),
                                image)
        p.setClipping(False)
        # Previews go above the mask tint: they show what applying the result would give.
        for image, (x, y, w, h) in self._previews.values():
            target = QRectF(self.to_widget(x, y), QRectF(0, 0, w * self.zoom, h * self.zoom).size())
            if target.intersects(QRectF(exposed)):
                p.drawImage(target, image)
        if self.live_region is not None:
            p.setPen(QPen(QColor(60, 200, 255), 2, Qt.DashDotLine))
            p.setBrush(Qt.NoBrush)
            p.drawRect(self.widget_rect(self.live_region))
        if self.region is not None:
            pen = QPen(QColor(255, 200, 0), 1.5, Qt.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            p.drawRect(self.widget_rect(self.region))
        p.setPen(QPen(QColor(30, 30, 30), 1))
        p.setBrush(Qt.NoBrush)
        p.drawRect(doc_area.adjusted(-1, -1, 0, 0))
        if self.tool is not None:
            self.tool.paint_overlay(p, self)
        self.pending = pending
        if pending:
            QTimer.singleShot(0, lambda area=QRect(exposed): self.update(area))

    @property
    def tile_px(self) -> int:
        """Display tile side in widget pixels: 256, smaller when zoomed far out (cheaper tiles)."""
        side = TILE_DOC_AREA * self.zoom
        return MAX_TILE if side >= MAX_TILE else max(32, 2 ** int(math.log2(max(side, 1))))

    def resizeEvent(self, event) -> None:
        if event.oldSize().width() <= 0 and self.doc is not None:
            self.fit()
        super().resizeEvent(event)

    # --- input -------------------------------------------------------------------
    def tabletEvent(self, event) -> None:
        """A pen: the same tool calls as the mouse, with the pen's pressure (size and opacity)."""
        if self.tool is None or self.doc is None or self._panning is not None or self.space_held:
            event.ignore()  # Qt then sends the matching mouse event (panning works as with a mouse)
            return
        pt = self.to_doc(event.position())
        pressure = float(event.pressure())
        kind = event.type()
        if kind == QEvent.TabletPress and event.button() == Qt.LeftButton:
            self._tablet_down = True
            self.tool.press(self, pt.x(), pt.y(), pressure, event.modifiers())
        elif kind == QEvent.TabletMove:
            self.cursor_moved.emit(pt.x(), pt.y())
            if self._tablet_down:
                self.tool.move(self, pt.x(), pt.y(), pressure, event.modifiers())
            else:
                self.tool.hover(self, pt.x(), pt.y())
        elif kind == QEvent.TabletRelease and self._tablet_down:
            self._tablet_down = False
            self.tool.release(self, pt.x(), pt.y(), event.modifiers())
            self.stroke_ended.emit()
        event.accept()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self.space_held):
            self._panning = event.position()
            self.setCursor(Qt.ClosedHandCursor)
            return
        if event.button() == Qt.LeftButton and self.tool is not None and self.doc is not None:
            pt = self.to_doc(event.position())
            self.tool.press(self, pt.x(), pt.y(), 1.0, event.modifiers())

    def mouseMoveEvent(self, event) -> None:
        if self._panning is not None:
            delta = event.position() - self._panning
            self._panning = event.position()
            self.pan_by(delta.x(), delta.y())
            return
        pt = self.to_doc(event.position())
        self.cursor_moved.emit(pt.x(), pt.y())
        if self.tool is not None and self.doc is not None:
            if event.buttons() & Qt.LeftButton:
                self.tool.move(self, pt.x(), pt.y(), 1.0, event.modifiers())
            else:
                self.tool.hover(self, pt.x(), pt.y())

    def mouseReleaseEvent(self, event) -> None:
        if self._panning is not None and event.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._panning = None
            self.unsetCursor()
            return
        if event.button() == Qt.LeftButton and self.tool is not None and self.doc is not None:
            pt = self.to_doc(event.position())
            self.tool.release(self, pt.x(), pt.y(), event.modifiers())
            self.stroke_ended.emit()

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120
        if steps > 0:
            self.zoom_in(event.position())
        elif steps < 0:
            self.zoom_out(event.position())

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self.space_held = True
            self.setCursor(Qt.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self.space_held = False
            self.unsetCursor()
            return
        super().keyReleaseEvent(event)
