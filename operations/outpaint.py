"""Outpaint: paint the new canvas area (the app: the transparent border the extend tool made; the
CLI: --left/--right/--top/--bottom pixels)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.ops.outpaint import MAX_EXTEND, OUTPAINT_FILLS, OutpaintRequest
from canvas.geometry import Rect

from .spec import CommonSettings, NothingToDo, OperationSpec, replace, setting


def _side(name: str):
    return setting(getattr(OutpaintRequest, name), f"Extend {name}", minimum=0, maximum=MAX_EXTEND, app=False,
                   help=f"pixels to add on the {name}")


@dataclass(frozen=True)
class OutpaintSettings:
    strength: float = setting(OutpaintRequest.strength, "Strength", minimum=0.01, maximum=1.0, step=0.05,
                              recommended=True, help="how much to repaint the new area, 0-1",
                              cli_help="how much to repaint the new area, 0-1 (default: the model's recommendation, "
                                       "else 1)")
    overlap: int = setting(OutpaintRequest.overlap, "Overlap", minimum=0, maximum=512, group="Mask",
                           help="band of the old image blended into the new, pixels")
    fill: str = setting(OutpaintRequest.fill, "Fill", choices=OUTPAINT_FILLS, widget="choice", group="Mask",
                        recommended=True, help="what the new area starts as",
                        cli_help="what the new area starts as (default: the model's recommendation, else blur)")
    restore_detail: bool = setting(
        OutpaintRequest.restore_detail, "Detail from the surroundings", group="Mask", cli="--no-detail", negate=True,
        help="For models that ask for it (the embedded one): give the new area the fine grain of similar-coloured "
             "surroundings. Other models ignore it.",
        cli_help="do not give the new area the surroundings' fine detail (only models that ask for it, like the "
                 "embedded one, get it)")
    # The app takes the sides from the document (the transparent border around the content).
    left: int = _side("left")
    right: int = _side("right")
    top: int = _side("top")
    bottom: int = _side("bottom")


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


def from_image(image, mask, origin, common: CommonSettings, settings: OutpaintSettings) -> OutpaintRequest:
    return OutpaintRequest(image=image, origin=origin, **SPEC.request_kwargs(common, settings))


def from_document(doc, common: CommonSettings, settings: OutpaintSettings) -> OutpaintRequest:
    flat = doc.flatten()  # composited once: the content box and the request's pixels both come from it
    found = transparent_border(doc, flat)
    if found is None:
        raise NothingToDo("Nothing is visible to extend: show a layer or paint something first.")
    if not any(found[1].values()):
        raise NothingToDo("There is no new canvas area to fill: extend the canvas first (X, then drag an edge; "
                          "or Edit ▸ Extend canvas).")
    content, sides = found
    overlap = min(settings.overlap, content.w // 2, content.h // 2)
    b = doc.bounds
    image = flat[content.y - b.y:content.bottom - b.y, content.x - b.x:content.right - b.x]
    settings = replace(settings, **sides, overlap=overlap)
    return from_image(image, None, (content.x, content.y), common, settings)


SPEC = OperationSpec(
    name="outpaint", label="Outpaint (new canvas area)", noun="Outpaint", order=1,
    request=OutpaintRequest, settings=OutpaintSettings, from_document=from_document, from_image=from_image,
    summary="extend the canvas and paint the new area",
)
