"""What a job leaves in a Krita document: a temporary preview layer while it runs, and results as new
paint layers. Only Krita's Python API is called (on the document handed in), no Qt.

* :class:`PreviewLayer`: one paint layer on top, named :data:`PREVIEW_NAME`, rewritten at each preview and
  removed when the job ends without a result applied (cancel, failure, discard).
* :func:`apply_result`: the result as a paint layer named with its seed, holding the engine's image where
  the job changed pixels and transparent elsewhere (so the document outside the mask is unchanged). It
  *becomes* the preview layer (renamed, its pixels rewritten): Krita records adding a layer as an undo step
  but not writing its pixels or naming it, so a job that is applied is one step in Krita's history, "add
  layer", and one Undo takes the document back to before the job. Without a preview layer (an upscale,
  which scales the document first) it is a new layer, written before it joins the document: one step too.
  The full parameters (the A1111 text) are kept as a document annotation named after the layer's id (saved
  in .kra files), the seed and operation in the layer's name.
"""
from __future__ import annotations

from canvas.parameters import format_parameters, generated_layer_name

from .pixels import fit, layer_pixels, rgba_to_bgra

PREVIEW_NAME = "Latent Studio preview (removed when the job ends)"
ANNOTATION_PREFIX = "latent-studio/"


def layer_name(noun: str, prompt: str, seed: int) -> str:
    return f"{generated_layer_name(noun, prompt)} · seed {seed}"


class PreviewLayer:
    """The running job's preview in the canvas; ``remove()`` leaves the document as it was."""

    def __init__(self, doc):
        self.doc = doc
        self.node = None
        self.rect = None

    def show(self, rgba, rect) -> None:
        x, y, w, h = (int(v) for v in rect)
        pixels = rgba_to_bgra(fit(rgba, w, h))
        if self.node is not None and self.rect != (x, y, w, h):
            self._drop()
        if self.node is None:
            active = self.doc.activeNode()
            node = self.doc.createNode(PREVIEW_NAME, "paintlayer")
            node.setPixelData(pixels, x, y, w, h)
            self.doc.rootNode().addChildNode(node, None)
            if active is not None:  # Krita makes a new layer the active one: the painter keeps theirs
                self.doc.waitForDone()  # (once the layer is in: else the Layers docker selects it afterwards)
                self.doc.setActiveNode(active)
            self.node, self.rect = node, (x, y, w, h)
        else:
            self.node.setPixelData(pixels, x, y, w, h)
        self.doc.refreshProjection()

    def adopt(self):
        """The preview layer, handed over to become a result (this object forgets it); None when there is none."""
        node, self.node, self.rect = self.node, None, None
        return node

    def remove(self) -> None:
        if self.node is not None:
            self._drop()
            self.doc.refreshProjection()

    def _drop(self) -> None:
        try:
            self.node.remove()
        finally:
            self.node, self.rect = None, None


def remove_stale_previews(doc) -> int:
    """Removes preview layers a crash or a save mid-job left behind; returns how many."""
    stale = [n for n in doc.rootNode().childNodes() if n.name() == PREVIEW_NAME]
    for node in stale:
        node.remove()
    return len(stale)


def apply_result(doc, spec, request, image, prompt: str = "", preview: PreviewLayer | None = None):
    """Puts ``image`` (a :class:`backend.events.ResultImage`) into ``doc`` as a layer, in ``preview``'s layer
    when it has one; returns the node. An upscale first scales the document to the result's size."""
    x, y, w, h = (int(v) for v in image.rect)
    mask = image.mask
    if spec.scales_document:
        if preview is not None:
            preview.remove()
        if (doc.width(), doc.height()) != (w, h):
            doc.scaleImage(w, h, int(doc.xRes()), int(doc.yRes()), "Bicubic")
        mask = None
    name = layer_name(spec.noun, prompt, image.seed)
    pixels = rgba_to_bgra(layer_pixels(image.image, mask))
    old_rect = preview.rect if preview is not None else None
    node = preview.adopt() if preview is not None else None
    if node is not None:
        if old_rect is not None and old_rect != (x, y, w, h):
            ox, oy, ow, oh = old_rect
            node.setPixelData(bytes(4 * ow * oh), ox, oy, ow, oh)  # what the preview drew outside the result
        node.setName(name)
        node.setPixelData(pixels, x, y, w, h)
    else:
        node = doc.createNode(name, "paintlayer")
        node.setPixelData(pixels, x, y, w, h)
        doc.rootNode().addChildNode(node, None)
    text = format_parameters(image.parameters)
    doc.setAnnotation(ANNOTATION_PREFIX + _node_id(node), name, text.encode("utf-8"))
    doc.refreshProjection()
    return node


def parameters_of(doc, node) -> str:
    """The parameters text kept for a result layer ("" when it is not one)."""
    data = doc.annotation(ANNOTATION_PREFIX + _node_id(node))
    return bytes(data).decode("utf-8") if data else ""


def _node_id(node) -> str:
    uid = node.uniqueId()
    return uid.toString().strip("{}") if hasattr(uid, "toString") else str(uid).strip("{}")
