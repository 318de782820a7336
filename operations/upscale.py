"""Upscale: the whole image by a pretrained upscaler (the bundled Real-ESRGAN by default), optionally
refined tile by tile by img2img ("SD upscale"); applying it scales the document."""
from __future__ import annotations

from dataclasses import dataclass

from backend.errors import BackendError
from backend.ops.upscale import UpscaleRequest
from backend.upscale.esrgan import BUNDLED, resolve_upscaler
from canvas.parameters import format_parameters

from .spec import CommonSettings, NothingToDo, OperationSpec, opaque_content, setting


@dataclass(frozen=True)
class UpscaleSettings:
    upscaler: str = setting(UpscaleRequest.upscaler, "Upscaler", widget="upscaler", cli="--model",
                            default_text="the bundled Real-ESRGAN x4plus",
                            help="the bundled Real-ESRGAN, lanczos, or an upscaler file (.safetensors/.pth)",
                            cli_help="the upscaler: an ESRGAN/Real-ESRGAN/SwinIR/HAT file (.safetensors or .pth), an "
                                     "SD x4 upscaler or LDM super-resolution folder, or `lanczos`")
    scale: int = setting(UpscaleRequest.scale, "Scale", minimum=2, maximum=8,
                         help="2, 4, … (a divisor of the model's own factor)")
    tile: int = setting(UpscaleRequest.tile, "Tile size", minimum=0, maximum=4096, step=64, special="Auto",
                        help="tile side in pixels; 0 = chosen from free memory")
    refine_strength: float = setting(0.0, "Refine strength", minimum=0.0, maximum=1.0, step=0.05,
                                     help="above 0: refine every tile by img2img at this strength (\"SD upscale\")")
    noise_level: int = setting(UpscaleRequest.noise_level, "Noise level", minimum=0, maximum=350, app=False,
                               help="noise level of the SD x4 upscaler")


def to_request(settings: UpscaleSettings) -> dict:
    refine = settings.refine_strength > 0
    return dict(upscaler=settings.upscaler, scale=settings.scale, tile=settings.tile,
                noise_level=settings.noise_level, refine=refine,
                strength=settings.refine_strength if refine else UpscaleRequest.strength)


def from_recorded(recorded: dict) -> dict:
    out = {k: recorded[k] for k in ("scale", "tile", "noise_level") if k in recorded}
    if "upscaler" in recorded:
        name = recorded["upscaler"]
        out["upscaler"] = "" if name.lower() == BUNDLED.lower() else ("lanczos" if name.lower() == "lanczos" else name)
    out["refine_strength"] = float(recorded.get("strength", 0.0)) if "model" in recorded else 0.0
    return out


def varies(settings: UpscaleSettings) -> bool:
    """Whether seeds change the result: a refine, or a diffusion upscaler."""
    if settings.refine_strength > 0:
        return True
    try:
        return resolve_upscaler(settings.upscaler).is_diffusion
    except BackendError:  # the job says what is wrong with it
        return False


def apply(doc, request, result, name: str):
    """Scales the document and puts the upscaled image on top (one step); a further result of the
    same job, on the already scaled document, becomes one more layer."""
    x, y, w, h = result.rect
    params = format_parameters(result.parameters)
    if (doc.bounds.w, doc.bounds.h) == (w, h):
        return doc.add_generated_layer(result.image, x, y, name, params)
    return doc.scale(request.scale, result.image, (x, y), name, params)


def from_image(image, mask, origin, common: CommonSettings, settings: UpscaleSettings) -> UpscaleRequest:
    return UpscaleRequest(image=image, origin=origin, **SPEC.request_kwargs(common, settings))


def from_document(doc, common: CommonSettings, settings: UpscaleSettings) -> UpscaleRequest:
    pixels = doc.flatten()
    if not opaque_content(pixels):
        raise NothingToDo("Nothing is visible to upscale: show a layer or paint something first.")
    b = doc.bounds
    return from_image(pixels, None, (b.x, b.y), common, settings)


SPEC = OperationSpec(
    name="upscale", label="Upscale", noun="Upscale", order=3,
    request=UpscaleRequest, settings=UpscaleSettings, from_document=from_document, from_image=from_image,
    summary="upscale an image (bundled Real-ESRGAN by default)",
    description="--model is the upscaler: an ESRGAN/Real-ESRGAN/SwinIR/HAT file (.safetensors or .pth), an SD x4 "
                "upscaler or LDM super-resolution folder, `lanczos`, or nothing for the bundled Real-ESRGAN x4plus "
                "(offline).",
    cli_names={"model": ("--refine-model", "the SD-family model for --refine-strength")},
    varies=varies, to_request=to_request, from_recorded=from_recorded, apply=apply, scales_document=True,
    uses_model=lambda settings: settings.refine_strength > 0,
)
