"""Text to image: a new layer the size of the canvas, or of the selection (whose coverage becomes
the layer's alpha). It needs nothing visible: an empty document is a canvas to fill. On the command
line, a new image of --width × --height, or the size of --image (or its --mask region)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from backend.ops.txt2img import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE, Txt2ImgRequest
from backend.errors import InvalidRequest

from .spec import CommonSettings, OperationSpec, setting


def _side(name: str):
    return setting(DEFAULT_SIZE, name.capitalize(), minimum=MIN_SIZE, maximum=MAX_SIZE, app=False,
                   help=f"{name} of the new image in pixels, without --image (it is generated at the model's native "
                        "area and scaled to this)")


@dataclass(frozen=True)
class Txt2ImgSettings:
    # The app takes the size from the canvas or the selection.
    width: int = _side("width")
    height: int = _side("height")


def to_request(settings: Txt2ImgSettings) -> dict:
    return {}  # the size is the image's: the settings' own, the document's or the selection's


def from_image(image, mask, origin, common: CommonSettings, settings: Txt2ImgSettings) -> Txt2ImgRequest:
    """The request for ``image``'s size (its ``mask`` region), or without an image for a new one of the
    settings' width × height."""
    if image is None:
        width, height = settings.width, settings.height
    else:
        height, width = image.shape[:2]
    return Txt2ImgRequest.covering(width, height, mask, origin=origin, **SPEC.request_kwargs(common, settings))


def from_document(doc, common: CommonSettings, settings: Txt2ImgSettings) -> Txt2ImgRequest:
    kwargs = SPEC.request_kwargs(common, settings)
    box = doc.selection.bbox() if not doc.selection.is_empty else None
    box = box.intersect(doc.bounds) if box is not None else None
    if box is not None and not box.empty:
        mask = doc.selection.read(box)
        if mask.any():
            return Txt2ImgRequest.covering(box.w, box.h, mask, origin=(box.x, box.y), **kwargs)
    b = doc.bounds
    return Txt2ImgRequest.covering(b.w, b.h, origin=(b.x, b.y), **kwargs)


_SIZE = re.compile(r"\s*(\d+)\s*x\s*(\d+)\s*$", re.IGNORECASE)


def from_parameters(params: dict) -> dict:
    """The width and height of the recorded ``Size``."""
    if "Size" not in params:
        return {}
    found = _SIZE.match(str(params["Size"]))
    if found is None:
        raise InvalidRequest(f"The parameters' `Size` is {params['Size']!r}, which is not WIDTHxHEIGHT.")
    return {"width": int(found.group(1)), "height": int(found.group(2))}


SPEC = OperationSpec(
    name="txt2img", label="Text to image", noun="Text to image", order=4,
    request=Txt2ImgRequest, settings=Txt2ImgSettings, from_document=from_document, from_image=from_image,
    summary="make a new image from the prompt",
    description="A new image of --width × --height (default 512×512), or with --image one the size of that image "
                "(of its --mask region, whose grey becomes the new pixels' alpha). Models that ignore prompts (the "
                "embedded one) cannot do it: give a Stable Diffusion 1.x, 2.x or SDXL model.",
    needs_image=False, takes_mask=True, new_image=("width", "height"), makes_layer=True,
    to_request=to_request, from_parameters=from_parameters,
)
