"""Headless subcommands: inpaint, img2img, outpaint, upscale, models. Same engine as the app.

Bad input prints one line on stderr and exits 2 with nothing written; a job
that fails while running exits 1.
"""
from __future__ import annotations

import argparse
import queue
import sys
from pathlib import Path

from .errors import BackendError
from .requests import FILL_MODES, OUTPAINT_FILLS
from .samplers import DEFAULT_SAMPLER, SAMPLERS

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def register(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--image", required=True, help="input image: PNG, JPEG, WebP or .ora")
    g.add_argument("--out", required=True, help="output .png (or .ora); with --count N, OUT-0.png … OUT-(N-1).png")
    g.add_argument("--model", default="", help="diffusers folder, .safetensors file, hub id or name from `models`")
    g.add_argument("--prompt", default="")
    g.add_argument("--negative", default="", help="negative prompt")
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--guidance", type=float, default=7.0, help="classifier-free guidance (CFG) scale")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--count", type=int, default=1, help="variations, with seeds seed … seed+count-1")
    g.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=list(SAMPLERS))
    g.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    g.add_argument("--allow-pickle", action="store_true",
                   help="allow .ckpt/.pt/.bin model files (read with weights_only=True)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("inpaint", parents=[common], help="repaint the masked part of an image")
    p.add_argument("--mask", required=True, help="image the size of the input; white (or alpha) = repaint")
    p.add_argument("--strength", type=float, default=None,
                   help="how much to repaint, 0-1 (default: the model's recommendation, else 1)")
    p.add_argument("--grow", type=int, default=8, help="grow (negative: shrink) the mask, pixels")
    p.add_argument("--feather", type=int, default=8, help="soften the mask edge, pixels")
    p.add_argument("--fill", default=None, choices=FILL_MODES,
                   help="what the masked area starts as (default: the model's recommendation, else original)")
    p.add_argument("--padding", type=int, default=48, help="context around the mask, pixels")
    _detail_flag(p)
    p.set_defaults(func=_inpaint)

    p = sub.add_parser("img2img", parents=[common], help="variations of a whole image")
    p.add_argument("--strength", type=float, default=0.6)
    p.set_defaults(func=_img2img)

    p = sub.add_parser("outpaint", parents=[common], help="extend the canvas and paint the new area")
    for side in ("left", "right", "top", "bottom"):
        p.add_argument(f"--{side}", type=int, default=0, help=f"pixels to add on the {side}")
    p.add_argument("--overlap", type=int, default=48, help="band of the old image blended into the new, pixels")
    p.add_argument("--fill", default="blur", choices=OUTPAINT_FILLS, help="what the new area starts as")
    p.add_argument("--strength", type=float, default=1.0)
    _detail_flag(p)
    p.set_defaults(func=_outpaint)

    p = sub.add_parser("upscale", parents=[common], help="upscale an image (bundled Real-ESRGAN by default)",
                       description="--model is the upscaler: an ESRGAN/Real-ESRGAN/SwinIR/HAT file (.safetensors "
                       "or .pth), an SD x4 upscaler or LDM super-resolution folder, `lanczos`, or nothing for "
                       "the bundled Real-ESRGAN x4plus (offline).")
    p.add_argument("--scale", type=int, default=4, help="2, 4, … (a divisor of the model's own factor)")
    p.add_argument("--tile", type=int, default=0, help="tile side in pixels (default: chosen from free memory)")
    p.add_argument("--refine-strength", type=float, default=0.0,
                   help="above 0: refine every tile by img2img at this strength (\"SD upscale\")")
    p.add_argument("--refine-model", default="", help="the SD-family model for --refine-strength (default: embedded)")
    p.add_argument("--noise-level", type=int, default=20, help="noise level of the SD x4 upscaler")
    p.set_defaults(func=_upscale)

    p = sub.add_parser("models", help="list the models found")
    p.set_defaults(func=_models)


def _detail_flag(p) -> None:
    p.add_argument("--no-detail", action="store_true",
                   help="do not give the new area the surroundings' fine detail (only models that ask for it, "
                        "like the embedded one, get it)")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _common(args) -> dict:
    fields = dict(
        model=args.model, prompt=args.prompt, negative_prompt=args.negative, seed=args.seed, steps=args.steps,
        guidance=args.guidance, count=args.count, sampler=args.sampler, allow_pickle=args.allow_pickle,
    )
    if hasattr(args, "strength"):
        fields["strength"] = args.strength
    if hasattr(args, "no_detail"):
        fields["restore_detail"] = not args.no_detail
    return fields


def _check_out(out: Path) -> None:
    from .imagefiles import ImageFileError

    if out.suffix.lower() not in (".png", ".ora"):
        raise ImageFileError(f"--out {out.name} must end in .png or .ora.")
    if not out.parent.is_dir():
        raise ImageFileError(f"The folder {out.parent} does not exist: create it or choose another --out.")


def _headless(build):
    """A subcommand: read --image, build the request with ``build(args, image)``, run it.

    Bad input (a file, a field, a model) is one line on stderr and exit 2, before any work starts.
    """

    def command(args) -> int:
        from .imagefiles import read_rgba

        try:
            _check_out(Path(args.out))
            image = read_rgba(args.image)
            request = build(args, image)
        except BackendError as exc:
            return _fail(str(exc))
        return _run(args, request, image)

    return command


def _inpaint_request(args, image):
    from .imagefiles import read_mask
    from .requests import InpaintRequest

    mask = read_mask(args.mask, (image.shape[1], image.shape[0]))
    _apply_inpaint_defaults(args)
    return InpaintRequest.from_document(
        image, mask, grow=args.grow, feather=args.feather, fill=args.fill, padding=args.padding, **_common(args)
    )


def _apply_inpaint_defaults(args) -> None:
    """Fills in --fill/--strength the user left out from what the model recommends (its
    latent_studio.json), else the generic defaults; says so when the model recommended them."""
    if args.fill is not None and args.strength is not None:
        return
    from .models import GENERIC_INPAINT_DEFAULTS, inpaint_defaults, read_info, resolve

    source = resolve(args.model)
    generic = dict(GENERIC_INPAINT_DEFAULTS)
    taken = []
    for name, value in inpaint_defaults(read_info(source)):
        if getattr(args, name) is None:
            setattr(args, name, value)
            if value != generic[name]:
                taken.append(f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}")
    if taken and not args.quiet:
        print(f"note: {source.name} recommends {' '.join(taken)} for inpainting (give them to choose otherwise).",
              file=sys.stderr)


def _img2img_request(args, image):
    from .requests import Img2ImgRequest

    return Img2ImgRequest(image=image, **_common(args))


def _outpaint_request(args, image):
    from .requests import OutpaintRequest

    return OutpaintRequest(image=image, left=args.left, right=args.right, top=args.top, bottom=args.bottom,
                           overlap=args.overlap, fill=args.fill, **_common(args))


def _upscale_request(args, image):
    from .requests import UpscaleRequest

    refine = args.refine_strength > 0
    common = dict(_common(args), model=args.refine_model,
                  strength=args.refine_strength if refine else UpscaleRequest.strength)
    return UpscaleRequest(image=image, upscaler=args.model, scale=args.scale, tile=args.tile,
                          noise_level=args.noise_level, refine=refine, **common)


_inpaint = _headless(_inpaint_request)
_img2img = _headless(_img2img_request)
_outpaint = _headless(_outpaint_request)
_upscale = _headless(_upscale_request)


def _preflight(request):
    """The checks before the engine starts: the model (and, for upscale, the upscaler, scale and memory)."""
    from .models import preflight
    from .requests import UpscaleRequest

    if isinstance(request, UpscaleRequest):
        from .upscale.preflight import preflight_upscale

        preflight_upscale(request)
        if not request.refine:
            return None
    return preflight(request.model, allow_pickle=request.allow_pickle)


def _run(args, request, document) -> int:
    """Runs one job to the end, drawing a progress bar; writes the outputs only on success."""
    from .engine import Engine
    from .events import Cancelled, Failed, Progress, Result, Started
    try:
        source = _preflight(request)
    except BackendError as exc:
        return _fail(str(exc))
    if source is not None and source.kind == "folder" and (source.path / "latent_studio.json").is_file() and request.prompt:
        import json

        if json.loads((source.path / "latent_studio.json").read_text()).get("ignores_prompt"):
            print(f"note: {source.name} was trained without captions and ignores the prompt.", file=sys.stderr)

    events: queue.Queue = queue.Queue()
    engine = Engine(events.put, device=args.device)
    bar = None
    try:
        engine.submit(request)
        while True:
            event = events.get()
            if isinstance(event, Started) and not args.quiet:
                from tqdm import tqdm

                bar = tqdm(total=event.total, unit="step", file=sys.stderr, leave=False)
            elif isinstance(event, Progress) and bar is not None:
                bar.n = event.step
                if event.stage:
                    bar.set_description(event.stage)
                bar.refresh()
            elif isinstance(event, Result):
                if bar is not None:
                    bar.close()
                return _write(args, request, document, event)
            elif isinstance(event, Failed):
                if bar is not None:
                    bar.close()
                return _fail(event.message, EXIT_FAILED)
            elif isinstance(event, Cancelled):
                if bar is not None:
                    bar.close()
                return _fail("the job was cancelled.", EXIT_FAILED)
    except KeyboardInterrupt:
        engine.cancel_all()
        return _fail("interrupted; nothing was written.", 130)
    finally:
        engine.shutdown(wait=True)


def _write(args, request, document, result) -> int:
    import numpy as np

    from .imagefiles import numbered, write_png
    from canvas.parameters import format_parameters

    out = Path(args.out)
    if out.suffix.lower() == ".ora":
        return _write_ora(args, request, result)
    for i, item in enumerate(result.images):
        # On the command line the document starts at (0, 0); a result may reach past it (outpaint) or
        # be a scaled copy (upscale): the output covers the union of the document and the result.
        x, y, w, h = item.rect
        dh, dw = document.shape[:2]
        ux, uy = min(0, x), min(0, y)
        uw, uh = max(dw, x + w) - ux, max(dh, y + h) - uy
        if (ux, uy, uw, uh) == (0, 0, dw, dh):
            full = np.array(document, copy=True)
        else:
            full = np.zeros((uh, uw, 4), np.uint8)
            full[-uy: dh - uy, -ux: dw - ux] = document
        full[y - uy: y - uy + h, x - ux: x - ux + w] = item.image
        write_png(full, numbered(out, i, len(result.images)), format_parameters(item.parameters))
        print(numbered(out, i, len(result.images)))
    return 0


def _write_ora(args, request, result) -> int:
    """The input document plus one layer per result (an upscale scales the document first)."""
    from canvas.errors import DocumentError
    from canvas.geometry import Rect
    from canvas.ora import save_ora
    from canvas.parameters import format_parameters, generated_layer_name

    from .imagefiles import read_document

    doc = read_document(args.image)
    bx, by = doc.bounds.x, doc.bounds.y  # requests on the command line start at (0, 0)
    name = generated_layer_name(args.command, args.prompt or "")
    try:
        for k, item in enumerate(result.images):
            x, y, w, h = item.rect
            params = format_parameters(item.parameters)
            if request.operation == "upscale":
                s = request.scale
                if k == 0:
                    doc.scale(s, item.image, (x + bx * s, y + by * s), name, params)
                else:
                    doc.add_generated_layer(item.image, x + bx * s, y + by * s, name, params)
                continue
            rect = Rect(x + bx, y + by, w, h)
            if not doc.bounds.contains(rect):
                doc.grow_to_include(rect)
            doc.add_generated_layer(item.image, rect.x, rect.y, name, params, mask=item.mask)
        save_ora(doc, args.out)
    except DocumentError as exc:
        return _fail(str(exc), EXIT_FAILED)
    print(args.out)
    return 0


def _models(args) -> int:
    from .models import list_models

    found = list_models()
    if not found:
        print("No models found. Put diffusers folders or .safetensors files in the model folder:")
        from .paths import models_dir

        print(f"  {models_dir()}")
        return 0
    width = max(len(name) for name, _, _ in found)
    for name, kind, where in found:
        print(f"{name:<{width}}  {kind:<12}  {where}")
    return 0
