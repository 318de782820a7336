"""A small stand-in for Krita's ``krita`` Python module: the parts of Document, Node and Selection the
plugin calls, over numpy arrays (8-bit pixels handed out as BGRA bytes, like Krita's). ``Document.journal``
lists the steps Krita puts on its undo stack, as seen in Krita 5.1.5 (tools/krita_docker_shot.py): adding or
removing a node in the document and scaling the image; ``setPixelData`` and ``setName`` are not undo steps."""
from __future__ import annotations

import itertools
import uuid

import numpy as np

_ids = itertools.count(1)


def _bgra(rgba: np.ndarray) -> bytes:
    return np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).tobytes()


class Selection:
    def __init__(self, w: int = 0, h: int = 0):
        self.mask = np.zeros((h, w), np.uint8)

    def select(self, x, y, w, h, value=255):
        self.mask[y:y + h, x:x + w] = value

    def _box(self):
        ys, xs = np.nonzero(self.mask)
        if ys.size == 0:
            return 0, 0, 0, 0
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)

    def x(self): return self._box()[0]
    def y(self): return self._box()[1]
    def width(self): return self._box()[2]
    def height(self): return self._box()[3]

    def pixelData(self, x, y, w, h):
        out = np.zeros((h, w), np.uint8)
        H, W = self.mask.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self.mask[y0:y1, x0:x1]
        return out.tobytes()


class Node:
    def __init__(self, doc, name, kind="paintlayer", model="RGBA", depth="U8"):
        self._doc, self._name, self._type = doc, name, kind
        self._model, self._depth = model, depth
        self.pixels = np.zeros((doc.h, doc.w, 4), np.uint8)
        self.children: list[Node] = []
        self.parent: Node | None = None
        self._uid = uuid.UUID(int=next(_ids))
        self._visible = True

    def name(self): return self._name
    def type(self): return self._type
    def colorModel(self): return self._model
    def colorDepth(self): return self._depth
    def visible(self): return self._visible
    def uniqueId(self): return self._uid
    def childNodes(self): return list(self.children)

    def _attached(self) -> bool:
        node = self
        while node.parent is not None:
            node = node.parent
        return node is self._doc.root

    def pixelData(self, x, y, w, h):
        out = np.zeros((h, w, 4), np.uint8)
        H, W = self.pixels.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        out[y0 - y:y1 - y, x0 - x:x1 - x] = self.pixels[y0:y1, x0:x1]
        return _bgra(out)

    def setPixelData(self, data, x, y, w, h):
        bgra = np.frombuffer(bytes(data), np.uint8).reshape(h, w, 4)
        H, W = self.pixels.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        self.pixels[y0:y1, x0:x1] = bgra[y0 - y:y1 - y, x0 - x:x1 - x][..., [2, 1, 0, 3]]
        return True

    def setName(self, name):
        self._name = name

    def addChildNode(self, child, above):
        index = len(self.children) if above is None else self.children.index(above) + 1
        self.children.insert(index, child)
        child.parent = self
        if self._attached():
            self._doc.journal.append(("add", child._name))
            self._doc._active = child  # as Krita does: the new layer becomes the active one
        return True

    def remove(self):
        if self.parent is None:
            return False
        attached = self._attached()
        self.parent.children.remove(self)
        self.parent = None
        if attached:
            self._doc.journal.append(("remove", self._name))
        return True

    def _scale(self, w, h):
        from PIL import Image

        self.pixels = np.asarray(Image.fromarray(self.pixels, "RGBA").resize((w, h), Image.BICUBIC)).copy()
        for child in self.children:
            child._scale(w, h)


class Document:
    """``Document(rgba)``: one paint layer "Background" holding ``rgba``."""

    def __init__(self, rgba: np.ndarray | None = None, w: int = 64, h: int = 48, model="RGBA", depth="U8"):
        if rgba is not None:
            h, w = rgba.shape[:2]
        self.w, self.h = w, h
        self._model, self._depth = model, depth
        self.journal: list = []
        self.root = Node(self, "root", "grouplayer")
        self.refreshes = 0
        self.annotations: dict = {}
        self._selection: Selection | None = None
        background = Node(self, "Background", model=model, depth=depth)
        if rgba is not None:
            background.pixels[:] = rgba
        self.root.children.append(background)
        background.parent = self.root
        self._active = background

    def width(self): return self.w
    def height(self): return self.h
    def xRes(self): return 72.0
    def yRes(self): return 72.0
    def colorModel(self): return self._model
    def colorDepth(self): return self._depth
    def rootNode(self): return self.root
    def activeNode(self): return self._active
    def setActiveNode(self, node): self._active = node
    def refreshProjection(self): self.refreshes += 1
    def waitForDone(self): pass

    def selection(self):
        return self._selection

    def setSelection(self, selection):
        self._selection = selection

    def select(self, x, y, w, h):
        sel = Selection(self.w, self.h)
        sel.select(x, y, w, h)
        self._selection = sel
        return sel

    def createNode(self, name, kind):
        return Node(self, name, kind, self._model, self._depth)

    def layers(self) -> list[Node]:
        return list(self.root.children)

    def projection(self) -> np.ndarray:
        """Visible layers, bottom first, alpha over (straight alpha), as (h, w, 4) uint8."""
        out = np.zeros((self.h, self.w, 4), np.float64)
        for node in self.root.children:
            if not node._visible:
                continue
            top = node.pixels.astype(np.float64)
            a = top[..., 3:] / 255.0
            b = out[..., 3:] / 255.0
            alpha = a + b * (1 - a)
            colour = np.where(alpha > 0, (top[..., :3] * a + out[..., :3] * b * (1 - a)) / np.maximum(alpha, 1e-9), 0)
            out = np.concatenate([colour, alpha * 255.0], axis=-1)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def pixelData(self, x, y, w, h):
        full = self.projection()
        out = np.zeros((h, w, 4), np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, self.w), min(y + h, self.h)
        out[y0 - y:y1 - y, x0 - x:x1 - x] = full[y0:y1, x0:x1]
        return _bgra(out)

    def scaleImage(self, w, h, xres, yres, strategy):
        self.w, self.h = w, h
        self.root._scale(w, h)
        self.journal.append(("scale", f"{w}x{h}"))
        return True

    def setAnnotation(self, key, description, data):
        self.annotations[key] = (description, bytes(data))

    def annotation(self, key):
        return self.annotations.get(key, (None, b""))[1]


class Krita:
    _instance = None

    def __init__(self):
        self.documents: list[Document] = []
        self.active: Document | None = None

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def activeDocument(self):
        return self.active
