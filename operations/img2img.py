"""Variations (img2img): the selection's box, or the whole image, re-imagined at a strength."""
from __future__ import annotations

from dataclasses import dataclass

from backend.ops.img2img import Img2ImgRequest

from .spec import CommonSettings, NothingToDo, OperationSpec, opaque_content, setting


@dataclass(frozen=True)
class Img2ImgSettings:
    strength: float = setting(Img2ImgRequest.strength, "Strength", minimum=0.01, maximum=1.0, step=0.05,
                              help="how much to change, 0-1: lower keeps more of the composition")


def from_image(image, mask, origin, common: CommonSettings, settings: Img2ImgSettings) -> Img2ImgRequest:
    return Img2ImgRequest(image=image, origin=origin, **SPEC.request_kwargs(common, settings))


def from_document(doc, common: CommonSettings, settings: Img2ImgSettings) -> Img2ImgRequest:
    box = doc.selection.bbox() if not doc.selection.is_empty else None
    box = box.intersect(doc.bounds) if box is not None else None
    region = box if box is not None and not box.empty else doc.bounds
    pixels = doc.flatten(region)
    if not opaque_content(pixels):
        raise NothingToDo("Nothing is visible to vary: show a layer or paint something first.")
    return from_image(pixels, None, (region.x, region.y), common, settings)


SPEC = OperationSpec(
    name="img2img", label="Variations (img2img)", noun="Variation", order=2,
    request=Img2ImgRequest, settings=Img2ImgSettings, from_document=from_document, from_image=from_image,
    summary="variations of a whole image",
)
