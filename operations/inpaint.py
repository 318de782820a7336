"""Inpaint: repaint the selection (the app) or the white of a mask image (the CLI)."""
from __future__ import annotations

from dataclasses import dataclass

from backend.ops.inpaint import InpaintRequest, crop_margin
from backend.region import FILL_MODES

from .spec import CommonSettings, NothingToDo, OperationSpec, opaque_content, setting


@dataclass(frozen=True)
class InpaintSettings:
    strength: float = setting(InpaintRequest.strength, "Strength", minimum=0.01, maximum=1.0, step=0.05,
                              recommended=True,
                              help="how much to repaint, 0-1: 1 repaints freely, lower keeps more of what is there",
                              cli_help="how much to repaint, 0-1 (default: the model's recommendation, else 1)")
    grow: int = setting(InpaintRequest.grow, "Grow", minimum=-256, maximum=256, group="Mask",
                        help="grow (negative: shrink) the mask, pixels")
    feather: int = setting(InpaintRequest.feather, "Feather", minimum=0, maximum=256, group="Mask",
                           help="soften the mask edge, pixels")
    padding: int = setting(InpaintRequest.padding, "Padding", minimum=0, maximum=4096, group="Mask",
                           help="context around the mask, pixels")
    fill: str = setting(InpaintRequest.fill, "Fill", choices=FILL_MODES, widget="choice", recommended=True,
                        group="Mask", help="what the masked area starts as",
                        cli_help="what the masked area starts as (default: the model's recommendation, else original)")
    restore_detail: bool = setting(
        InpaintRequest.restore_detail, "Detail from the surroundings", group="Mask", cli="--no-detail", negate=True,
        help="For models that ask for it (the embedded one): give the repainted area the fine grain of "
             "similar-coloured surroundings, which the model's small autoencoder cannot draw. Other models ignore it.",
        cli_help="do not give the repainted area the surroundings' fine detail (only models that ask for it, like the "
                 "embedded one, get it)")


def from_image(image, mask, origin, common: CommonSettings, settings: InpaintSettings) -> InpaintRequest:
    """The request for ``image`` (a whole document, flattened) and ``mask``: only the mask's
    surroundings are copied."""
    return InpaintRequest.from_document(image, mask, origin=origin, **SPEC.request_kwargs(common, settings))


def from_document(doc, common: CommonSettings, settings: InpaintSettings) -> InpaintRequest:
    box = doc.selection.bbox()
    box = box.intersect(doc.bounds) if box is not None else None
    if doc.selection.is_empty or box is None or box.empty:
        raise NothingToDo("Select or paint a mask over the area to repaint first (M: mask brush, R: rectangle).")
    margin = crop_margin(settings.grow, settings.feather, settings.padding, settings.fill, (box.w, box.h))
    region = box.expand(margin, margin, margin, margin).intersect(doc.bounds)
    pixels = doc.flatten(region)
    if not opaque_content(pixels):
        raise NothingToDo("Nothing is visible around the selection: show a layer or paint something first "
                          "(inpaint repaints what is there).")
    return from_image(pixels, doc.selection.read(region), (region.x, region.y), common, settings)


SPEC = OperationSpec(
    name="inpaint", label="Inpaint (selection)", noun="Inpaint", order=0,
    request=InpaintRequest, settings=InpaintSettings, from_document=from_document, from_image=from_image,
    summary="repaint the masked part of an image", needs_mask=True,
)
