"""Headless subcommands: one per operation spec (inpaint, img2img, outpaint, upscale, txt2img), and models.

Every flag comes from the operation's spec: its common and own settings (help, type, choices,
default), plus the run options below. A setting's value is, first to last: the flag given on the
command line, the value recorded in ``--settings-from RESULT``, the model's recommendation (where
the spec allows one), the spec's default.

The error contract (:mod:`cli.contract`): what can be checked before the job is, in this order, and
a failure is one line on stderr, exit 2, nothing written: the arguments as parsed (numbers in their
spec's range), then without reading any file the output path, the previews folder, the device's
name and the prompts' encoding, then the input files' declared sizes, the files themselves, the
request (every field, the mask after grow), the model (its folder, config and weights:
``engine.check``), and last, when a device is named, that it exists (this imports torch). Notes are
held back until then, so a refusal is the only line. A job that fails while running exits 1 with
one line naming the log file that holds the details.
"""
from __future__ import annotations

import argparse
import dataclasses
import queue
import sys
from pathlib import Path

from backend.errors import BackendError
from operations import SPECS
from operations.spec import CommonSettings, OperationSpec

from .contract import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, USER_ERRORS, check_new_folder, check_out,
                       check_out_names, print_path)
from .contract import fail as _fail
from . import steering


def register(sub, engine_factory=None) -> None:
    for spec in SPECS.values():
        p = sub.add_parser(spec.name, help=spec.summary, description=spec.description or None)
        _run_options(p, spec)
        g = p.add_argument_group("settings (left out: from --settings-from, else the model's recommendation, "
                                 "else the default shown)")
        for f in dataclasses.fields(CommonSettings):
            _add_setting(g, f, spec)
        for f in dataclasses.fields(spec.settings):
            _add_setting(g, f, spec)
        steering.add_arguments(p)
        p.set_defaults(func=_command(spec, engine_factory))

    p = sub.add_parser("models", help="list the models found")
    _engine_options(p)
    p.set_defaults(func=_models)


def _engine_options(group) -> None:
    group.add_argument("--engine", metavar="URL", default=None,
                       help="run on a Latent Studio server (`main.py serve`) at URL instead of this computer")
    group.add_argument("--token-file", default=None,
                       help="the server's token (default: $LATENT_STUDIO_TOKEN); whitespace is ignored")


def _factory(args, engine_factory):
    """The engine factory of this run: given (tests), a server's (--engine URL), or this computer's."""
    if engine_factory is not None:
        return engine_factory
    if getattr(args, "engine", None):
        from remote.client import remote_engine_factory, token_from

        return remote_engine_factory(args.engine, token_from(args.token_file))
    from backend.engine import engine_factory as make_factory

    return make_factory(device=getattr(args, "device", None),
                        fast_path=False if getattr(args, "no_fast_path", False) else None)


def _run_options(p, spec: OperationSpec) -> None:
    g = p.add_argument_group("input and output")
    if spec.needs_image:
        g.add_argument("--image", required=True, help="input image: PNG, JPEG, WebP or .ora")
    else:
        g.add_argument("--image", help="an image (PNG, JPEG, WebP or .ora) to work at the size of, instead of a new "
                                       "one")
    if spec.needs_mask:
        g.add_argument("--mask", required=True, help="image the size of the input; white (or alpha) = repaint")
    elif spec.takes_mask:
        g.add_argument("--mask", help="with --image: image the size of the input; white (or alpha) = the region, its "
                                      "grey the result's alpha")
    g.add_argument("--out", required=True, help="output .png (or .ora); with --count N, OUT-0.png … OUT-(N-1).png")
    g.add_argument("--settings-from", metavar="RESULT",
                   help=f"take every setting recorded in RESULT (a PNG or .ora that `{spec.name}` wrote); "
                        "flags given as well win")
    g.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    g.add_argument("--no-fast-path", action="store_true",
                   help="load the model as diffusers does, without channels_last, fused attention or torch.compile "
                        "(also $LATENT_STUDIO_FAST_PATH=0)")
    _engine_options(g)
    g.add_argument("--allow-pickle", action="store_true",
                   help="allow .ckpt/.pt/.bin model files (read with weights_only=True)")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no notes")
    if not spec.scales_document:
        g.add_argument("--save-previews", metavar="DIR",
                       help="write each step's preview as DIR/step-NNN.png: the input at the output's size with "
                            "that step's preview in place (DIR is created if missing)")


def _flag(f: dataclasses.Field, spec: OperationSpec) -> tuple[str, str]:
    m = f.metadata
    renamed = spec.cli_names.get(f.name)
    if isinstance(renamed, tuple):
        return renamed
    flag = renamed or m.get("cli") or "--" + f.name.replace("_", "-")
    return flag, m.get("cli_help") or m.get("help", "")


def _add_setting(group, f: dataclasses.Field, spec: OperationSpec) -> None:
    """A flag whose value is None when left out (so --settings-from and recommendations can tell)."""
    flag, help_text = _flag(f, spec)
    m = f.metadata
    default = f.default
    if isinstance(default, bool):
        group.add_argument(flag, dest=f.name, action="store_const", const=not m.get("negate"), default=None,
                           help=help_text)
        return
    if m.get("recommended"):
        shown = ""
    elif isinstance(default, str):
        shown = f" (default: {m['default_text'] if 'default_text' in m else default})" if default or \
            m.get("default_text") else ""
    else:
        shown = f" (default: {default:g})"
    kwargs = dict(dest=f.name, default=None, help=(help_text + shown).strip(), metavar=flag[2:].upper())
    if isinstance(default, (int, float)):
        kwargs["type"] = _number(type(default), m.get("minimum"), m.get("maximum"))
    if m.get("choices"):
        kwargs["choices"] = list(m["choices"])
        kwargs["metavar"] = "{" + ",".join(map(str, m["choices"])) + "}"
    group.add_argument(flag, **kwargs)


def _number(kind: type, low, high):
    """An argparse type: a number of ``kind`` within the setting's range (NaN is in no range), so a value
    that cannot work is refused while the arguments are parsed, before anything is read."""
    noun = "a whole number" if kind is int else "a number"

    def show(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if (low is not None and not value >= low) or (high is not None and not value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {noun} from {show(low)} to {show(high)}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _note(args, text: str, always: bool = False) -> None:
    """A note for the user (left out with --quiet unless ``always``): held back while the command is
    still checking its input (see :func:`_command`), so a refusal is the only line on stderr."""
    if args.quiet and not always:
        return
    held = getattr(args, "held_notes", None)
    if held is not None:
        held.append(text)
    else:
        print(f"note: {text}", file=sys.stderr)


def _say_held_notes(args) -> None:
    held, args.held_notes = getattr(args, "held_notes", None) or [], None
    for text in dict.fromkeys(held):
        print(f"note: {text}", file=sys.stderr)


def check_args(args) -> None:
    """What the arguments say that can be checked before anything is read or imported: the output path
    (a writable folder, not a folder itself), the previews folder, the device's name, the prompts'
    encoding. Raises BackendError with one sentence."""
    from backend.devices import device_name
    from backend.requests import check_text

    check_out(args.out)
    if getattr(args, "save_previews", None):
        check_new_folder(args.save_previews, "--save-previews")
    device_name(args.device)
    check_text("--prompt", args.prompt or "")
    check_text("--negative", args.negative_prompt or "")


def _check_device(args) -> None:
    """A device that was named (--device or $LATENT_STUDIO_DEVICE) exists: torch is imported for it, as
    the job would import it next."""
    from backend.devices import device_name, pick_device

    if device_name(args.device):
        pick_device(args.device)


def _command(spec: OperationSpec, engine_factory):
    def command(args) -> int:
        args.held_notes = []
        try:
            check_args(args)
        except BackendError as exc:
            return _fail(str(exc))
        events: queue.Queue = queue.Queue()
        try:  # a server that cannot be reached or refuses the token says so here
            engine = _factory(args, engine_factory)(events.put)
        except BackendError as exc:
            return _fail(str(exc))
        try:
            try:
                request, document = _build(spec, args, engine)
                engine.check(request)
                check_out_names(_outputs(Path(args.out), request.count))
                if not getattr(args, "engine", None):  # a server's device is the server's business
                    _check_device(args)
            except USER_ERRORS as exc:
                return _fail(str(exc))
            _say_held_notes(args)
            return _run(args, spec, request, document, engine, events)
        finally:
            engine.shutdown(wait=True)

    return command


def _outputs(out: Path, count: int) -> list[Path]:
    from .imagefiles import numbered

    if out.suffix.lower() == ".ora":
        return [out]
    return [numbered(out, i, count) for i in range(count)]


def settings_for(spec: OperationSpec, args, engine) -> tuple[CommonSettings, object]:
    """The common and own settings of this run: flags, then --settings-from, then the model's
    recommendation, then the defaults."""
    from operations.recipe import read_recipe

    common, own = CommonSettings(), spec.settings()
    if args.settings_from:
        from .imagefiles import read_parameters

        recipe = read_recipe(read_parameters(args.settings_from), source=Path(args.settings_from).name)
        if recipe.spec is not spec:
            raise BackendError(
                f"{Path(args.settings_from).name} was made by {recipe.spec.name}, not {spec.name}: run "
                f"`main.py {recipe.spec.name} --settings-from {args.settings_from}` instead.")
        common, own = recipe.apply(common, own)
        recorded = set(recipe.common) | set(recipe.settings)
        args.recorded_steering = recipe.steering
    else:
        recorded = set()
    given = lambda f: getattr(args, f.name, None) is not None  # noqa: E731
    common = dataclasses.replace(common, **{f.name: getattr(args, f.name)
                                            for f in dataclasses.fields(CommonSettings) if given(f)})
    own = dataclasses.replace(own, **{f.name: getattr(args, f.name) for f in dataclasses.fields(own) if given(f)})
    open_for_model = [f for f in dataclasses.fields(own)
                      if f.metadata.get("recommended") and not given(f) and f.name not in recorded]
    if open_for_model:
        info = engine.model_info(common.model)
        generic = {f.name: f.default for f in open_for_model}
        taken = {}
        for operation, name, value in info.recommended:
            if operation == spec.name and name in generic:
                own = dataclasses.replace(own, **{name: value})
                if value != generic[name]:
                    taken[name] = value
        if taken:
            flags = " ".join(f"{_flag(f, spec)[0]} {taken[f.name]:g}" if isinstance(taken[f.name], float)
                             else f"{_flag(f, spec)[0]} {taken[f.name]}"
                             for f in open_for_model if f.name in taken)
            _note(args, f"{info.name} recommends {flags} for {spec.name} (give them to choose otherwise).")
    return common, own


def _build(spec: OperationSpec, args, engine):
    """(request, the input document) for this run; raises BackendError with one sentence."""
    from .imagefiles import check_sizes, flatten, read_document, read_mask

    mask_file = getattr(args, "mask", None)
    if args.image is None:  # a spec that needs no image: a new one, sized by the settings
        if mask_file:
            raise BackendError("--mask needs --image: the mask marks a region of that image.")
        common, own = settings_for(spec, args, engine)
        request = spec.from_image(None, None, (0, 0), common, own)
        from canvas.document import Document

        doc = Document(request.image.shape[1], request.image.shape[0])
    else:
        given = [_flag(f, spec)[0] for f in dataclasses.fields(spec.settings)
                 if f.name in spec.new_image and getattr(args, f.name, None) is not None]
        if given:
            raise BackendError(f"{' and '.join(given)} size a new image, but with --image the result takes that "
                               "image's size: leave them out.")
        size = check_sizes(args.image, mask_file)  # before anything is decoded
        common, own = settings_for(spec, args, engine)
        doc = read_document(args.image)
        image = flatten(doc, args.image)
        mask = read_mask(mask_file, size) if mask_file else None
        b = doc.bounds
        request = spec.from_image(image, mask, (b.x, b.y), common, own)
    request = steering.steer(request, args, doc, getattr(args, "recorded_steering", None))
    if args.allow_pickle:
        request = request.replace(allow_pickle=True)
    if request.prompt and spec.uses_model(own):
        info = engine.model_info(request.model)
        if info.ignores_prompt:  # said even with --quiet: the prompt given does nothing
            _note(args, f"{info.name} was trained without captions and ignores the prompt.", always=True)
    return request, doc


def _run(args, spec: OperationSpec, request, doc, engine, events: queue.Queue) -> int:
    """Runs one job to the end, drawing a progress bar; writes the outputs only on success."""
    from backend.events import Cancelled, Failed, Preview, Progress, Result, Started

    from canvas.errors import DocumentError

    bar = None
    previews = PreviewWriter(Path(args.save_previews), doc, request) if getattr(args, "save_previews", None) else None
    try:
        try:
            engine.submit(request)
        except BackendError as exc:  # a server refusing the request (its limits, its models)
            return _fail(str(exc))
        while True:
            event = events.get()
            if isinstance(event, Preview) and previews is not None:
                previews.write(event)
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
                try:
                    return _write(args, spec, request, doc, event)
                except (DocumentError, OSError, MemoryError) as exc:  # the disk filled up, the folder went away…
                    import traceback

                    message = str(exc) if isinstance(exc, DocumentError) else (
                        f"The result could not be written ({type(exc).__name__}: {exc}).")
                    return _fail(message, EXIT_FAILED, traceback.format_exc())
            elif isinstance(event, Failed):
                if bar is not None:
                    bar.close()
                return _fail(event.message, EXIT_FAILED, event.details or event.message)
            elif isinstance(event, Cancelled):
                if bar is not None:
                    bar.close()
                return _fail("The job was cancelled; nothing was written.", EXIT_FAILED)
    except KeyboardInterrupt:
        engine.cancel_all()
        return _fail("interrupted; nothing was written.", EXIT_INTERRUPTED)


class PreviewWriter:
    """``--save-previews DIR``: each preview as ``DIR/step-NNN.png``, the input at the output's size
    (the document and, for an outpaint, the new area around it) with that step's preview in place."""

    def __init__(self, folder: Path, doc, request):
        import numpy as np

        from canvas.geometry import Rect

        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        b = doc.bounds
        frame = Rect(b.x, b.y, b.w, b.h)
        if hasattr(request, "result_rect"):
            frame = frame.union(Rect(*request.result_rect))
        self.frame = frame
        self.base = np.zeros((frame.h, frame.w, 4), np.uint8)
        self.base[b.y - frame.y: b.y - frame.y + b.h, b.x - frame.x: b.x - frame.x + b.w] = doc.flatten()

    def write(self, event) -> None:
        import numpy as np
        from PIL import Image

        from .imagefiles import write_png

        x, y, w, h = event.rect
        image = event.image
        if image.shape[:2] != (h, w):
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        out = self.base.copy()
        x0, y0 = x - self.frame.x, y - self.frame.y
        region = out[y0:y0 + h, x0:x0 + w]
        a = image[..., 3:4].astype(np.float32) / 255.0
        region[..., :3] = np.round(region[..., :3] * (1 - a) + image[..., :3] * a).astype(np.uint8)
        region[..., 3] = np.maximum(region[..., 3], image[..., 3])
        write_png(out, self.folder / f"step-{event.step:03d}.png")


def _write(args, spec: OperationSpec, request, doc, result) -> int:
    import numpy as np

    from canvas.parameters import format_parameters

    from .imagefiles import numbered, write_png

    out = Path(args.out)
    if out.suffix.lower() == ".ora":
        return _write_ora(args, spec, request, doc, result)
    for note in dict.fromkeys(n for item in result.images for n in item.notes):
        _note(args, note)
    document = doc.flatten()
    bx, by = doc.bounds.x, doc.bounds.y
    for i, item in enumerate(result.images):
        path = numbered(out, i, len(result.images))
        if spec.scales_document:  # the result is the whole image, scaled
            write_png(item.image, path, format_parameters(item.parameters))
            print_path(path)
            continue
        if spec.makes_layer:  # the document with the result laid over it, as the app applies it
            laid = doc.copy()
            spec.apply_result(laid, request, item, request.prompt)
            write_png(laid.flatten(), path, format_parameters(item.parameters))
            print_path(path)
            continue
        # The output covers the union of the document and the result, which may reach past it
        # (outpaint) or be a scaled copy (upscale).
        x, y, w, h = item.rect
        x, y = x - bx, y - by
        dh, dw = document.shape[:2]
        ux, uy = min(0, x), min(0, y)
        uw, uh = max(dw, x + w) - ux, max(dh, y + h) - uy
        if (ux, uy, uw, uh) == (0, 0, dw, dh):
            full = np.array(document, copy=True)
        else:
            full = np.zeros((uh, uw, 4), np.uint8)
            full[-uy: dh - uy, -ux: dw - ux] = document
        full[y - uy: y - uy + h, x - ux: x - ux + w] = item.image
        write_png(full, path, format_parameters(item.parameters))
        print_path(path)
    return 0


def _write_ora(args, spec: OperationSpec, request, doc, result) -> int:
    """The input document plus one layer per result (an upscale scales the document first)."""
    from canvas.ora import save_ora

    for note in dict.fromkeys(n for item in result.images for n in item.notes):
        _note(args, note)
    for item in result.images:
        spec.apply_result(doc, request, item, request.prompt)
    save_ora(doc, args.out)
    print_path(args.out)
    return 0


def _models(args) -> int:
    from backend.models import list_models
    from backend.paths import models_dir

    if args.engine:
        try:
            engine = _factory(args, None)(lambda event: None)
            try:
                found = engine.list_models()
            finally:
                engine.shutdown()
        except BackendError as exc:
            return _fail(str(exc))
        if not found:
            print(f"The server at {args.engine} has no models.")
        for name, kind, _ in found:
            print(f"{name}  {kind}")
        return 0
    found = list_models()
    if not found:
        print("No models found. Put diffusers folders or .safetensors files in the model folder:")
        print(f"  {models_dir()}")
        return 0
    width = max(len(name) for name, _, _ in found)
    for name, kind, where in found:
        print(f"{name:<{width}}  {kind:<12}  {where}")
    return 0
