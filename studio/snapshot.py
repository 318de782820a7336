"""Building backend requests from the document: copies of just the pixels a job needs.

Runs on the GUI thread; the request it returns is a frozen snapshot the
worker can use while the painter keeps editing.
"""
from __future__ import annotations

import random

import numpy as np

from backend.requests import Img2ImgRequest, InpaintRequest, OutpaintRequest, UpscaleRequest
from canvas.geometry import Rect


class NothingToDo(Exception):
    """The document gives the operation nothing to work on; the text says what to do."""


def common_fields(values: dict) -> dict:
    seed = random.randrange(0, 2**31 - 1) if values.get("random_seed") else int(values["seed"])
    return dict(
        model=values["model"], prompt=values["prompt"], negative_prompt=values["negative_prompt"], seed=seed,
        steps=int(values["steps"]), guidance=float(values["guidance"]), count=int(values["count"]),
        sampler=values["sampler"],
    )


def selection_box(doc) -> Rect | None:
    if doc.selection.is_empty:
        return None
    box = doc.selection.bbox()
    box = box.intersect(doc.bounds) if box is not None else None
    return None if box is None or box.empty else box


def inpaint_request(doc, values: dict) -> InpaintRequest:
    box = selection_box(doc)
    if box is None:
        raise NothingToDo("Select or paint a mask over the area to repaint first (M: mask brush, R: rectangle).")
    margin = max(0, values["grow"]) + values["feather"] + values["padding"]
    region = box.expand(margin, margin, margin, margin).intersect(doc.bounds)
    return InpaintRequest(
        image=doc.flatten(region), mask=doc.selection.read(region), origin=(region.x, region.y),
        grow=values["grow"], feather=values["feather"], padding=values["padding"], fill=values["fill"],
        strength=float(values["strength"]), restore_detail=bool(values.get("restore_detail", True)),
        **common_fields(values),
    )


def img2img_request(doc, values: dict) -> Img2ImgRequest:
    region = selection_box(doc) or doc.bounds
    return Img2ImgRequest(image=doc.flatten(region), origin=(region.x, region.y),
                          strength=float(values["strength"]), **common_fields(values))


def transparent_border(doc, flat: np.ndarray) -> tuple[Rect, dict] | None:
    """The opaque content's box and how far the document extends past it on each side
    (``flat``: the document flattened, as the caller also takes its pixels from it)."""
    alpha = flat[..., 3]
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha[rows[0]:rows[-1] + 1].max(axis=0) > 0)
    b = doc.bounds
    content = Rect(b.x + int(cols[0]), b.y + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    sides = dict(left=content.x - b.x, top=content.y - b.y, right=b.right - content.right,
                 bottom=b.bottom - content.bottom)
    return content, sides


def outpaint_request(doc, values: dict) -> OutpaintRequest:
    flat = doc.flatten()  # composited once: the content box and the request's pixels both come from it
    found = transparent_border(doc, flat)
    if found is None or not any(found[1].values()):
        raise NothingToDo("There is no new canvas area to fill: extend the canvas first (X, then drag an edge; "
                          "or Edit ▸ Extend canvas).")
    content, sides = found
    overlap = min(int(values["overlap"]), content.w // 2, content.h // 2)
    b = doc.bounds
    image = flat[content.y - b.y:content.bottom - b.y, content.x - b.x:content.right - b.x].copy()
    return OutpaintRequest(image=image, origin=(content.x, content.y), overlap=overlap,
                           fill=values["fill"], strength=float(values["strength"]), **sides,
                           restore_detail=bool(values.get("restore_detail", True)),
                           **common_fields(values))


def upscale_request(doc, values: dict) -> UpscaleRequest:
    b = doc.bounds
    refine = float(values["refine_strength"]) > 0
    return UpscaleRequest(image=doc.flatten(), origin=(b.x, b.y), upscaler=values["upscaler"],
                          scale=int(values["upscale_scale"]), tile=int(values["upscale_tile"]), refine=refine,
                          strength=float(values["refine_strength"]) if refine else 0.3, **common_fields(values))


BUILDERS = {"inpaint": inpaint_request, "img2img": img2img_request, "outpaint": outpaint_request,
            "upscale": upscale_request}


def build_request(doc, values: dict):
    try:
        builder = BUILDERS[values["operation"]]
    except KeyError:
        raise NothingToDo(f"The operation {values['operation']!r} is not available.") from None
    return builder(doc, values)
