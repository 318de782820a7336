"""Requests from a Krita document, through the same operation specs as the studio:

* inpaint: the selection is the mask (the specs' own path: its surroundings, flattened);
* outpaint: the transparent border left by extending the canvas (Image ▸ Resize Canvas);
* img2img: the active layer (inside the selection's box, when there is a selection);
* upscale: the whole image, flattened.

Bad input raises :class:`operations.NothingToDo` with one sentence for the docker; nothing is changed.
"""
from __future__ import annotations

from operations import SPECS, NothingToDo, OperationSpec

from .document import KritaDocument, colour_problem

LAYER_TYPES = ("paintlayer", "grouplayer", "filelayer", "clonelayer", "vectorlayer", "filllayer")


def build_request(kdoc: KritaDocument, operation: str, common, settings):
    """(spec, request) for ``operation`` on ``kdoc``; raises NothingToDo with one sentence."""
    spec = SPECS.get(operation)
    if spec is None:
        raise NothingToDo(f"The operation {operation!r} is not available: choose one of {', '.join(SPECS)}.")
    problem = kdoc.colour_problem()
    if problem:
        raise NothingToDo(problem)
    if operation == "img2img":
        return spec, _active_layer_request(kdoc, spec, common, settings)
    return spec, spec.build(kdoc, common, settings)


def _active_layer_request(kdoc: KritaDocument, spec: OperationSpec, common, settings):
    node = kdoc.active_layer()
    if node is None or node.type() not in LAYER_TYPES:
        raise NothingToDo("Pick a layer in the Layers docker first: variations are made of the active layer.")
    problem = colour_problem(node.colorModel(), node.colorDepth(), f"The layer {node.name()!r}")
    if problem:
        raise NothingToDo(problem)
    box = kdoc.selection.bbox()
    region = box.intersect(kdoc.bounds) if box is not None else kdoc.bounds
    pixels = kdoc.layer_pixels(node, region)
    if not pixels[..., 3].any():
        where = "inside the selection" if box is not None else "on it"
        raise NothingToDo(f"The layer {node.name()!r} is empty {where}: paint something or pick another layer.")
    return spec.from_image(pixels, None, (region.x, region.y), common, settings)
