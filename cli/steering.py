"""The steering flags every generating subcommand takes: LoRAs, embeddings, ControlNets, references.

    --lora PATH_OR_NAME[:WEIGHT]            repeatable; a name is looked up in the loras/ folder
    --embedding FILE_OR_NAME                repeatable; write its token (the file's name) in the prompt
    --control MODEL IMAGE [STRENGTH[:START:END]]
                                            repeatable; IMAGE `self` = the input image itself (tile, inpaint)
    --control-kind KIND                     repeatable, paired with the --control flags in order
    --reference IMAGE[:WEIGHT]  --ip-adapter MODEL  [--image-encoder FOLDER]  [--reference-mode MODE]

Control images cover the input document: one of another size is scaled to it (a note, not an error),
then cut to the part of the document the request works on. Values are checked by the request's own
steering values (one sentence naming the flag's file, exit 2). With ``--settings-from RESULT`` and no
such flag, the LoRAs, embeddings, controls (their images found again by the file name recorded) and
references recorded in RESULT are used.
"""
from __future__ import annotations

from pathlib import Path

from backend.errors import InvalidRequest
from backend.steering import CONTROL_KINDS, REFERENCE_MODES, Control, LoraRef, Reference, steering_dir

SELF = "self"  # --control MODEL self: the input image itself (a tile or inpaint control)


def add_arguments(parser) -> None:
    g = parser.add_argument_group(
        "steering (LoRAs, embeddings, ControlNets, reference images; left out: from --settings-from, else none)")
    g.add_argument("--lora", action="append", metavar="PATH_OR_NAME[:WEIGHT]",
                   help=f"a LoRA (.safetensors, a path or a name in {steering_dir('loras')}) and its weight from -2 "
                        "to 2 (default 1); repeatable")
    g.add_argument("--embedding", action="append", metavar="FILE_OR_NAME",
                   help=f"a textual-inversion embedding (.safetensors); write its token, the file's name, in the "
                        f"prompt; files in {steering_dir('embeddings')} load by their token alone; repeatable")
    g.add_argument("--control", action="append", nargs="+", metavar="ARG",
                   help="MODEL IMAGE [STRENGTH[:START:END]]: a ControlNet (folder, .safetensors or a name in "
                        f"{steering_dir('controlnets')}), its control image (as drawn; `self` = the input image, "
                        "for tile and inpaint ControlNets), strength 0-2 (default 1) and the fraction of the steps "
                        "it acts on (default 0:1); repeatable")
    g.add_argument("--control-kind", action="append", choices=CONTROL_KINDS, metavar="KIND",
                   help="the kind of the Nth --control (default: from the model's name; canny computes the edges "
                        f"of the image): {', '.join(CONTROL_KINDS)}")
    g.add_argument("--reference", action="append", metavar="IMAGE[:WEIGHT]",
                   help="a reference image for the IP-Adapter and its weight 0-2 (default 1); repeatable")
    g.add_argument("--reference-mode", choices=REFERENCE_MODES, default=None,
                   help="what the references steer: full (default), style or composition (where the adapter "
                        "supports it)")
    g.add_argument("--ip-adapter", metavar="MODEL", default=None,
                   help=f"the IP-Adapter for --reference (.safetensors, a folder, or a name in "
                        f"{steering_dir('ip-adapters')})")
    g.add_argument("--image-encoder", metavar="FOLDER", default=None,
                   help="the IP-Adapter's CLIP vision encoder folder (default: image_encoder/ in or beside it)")


def _weighted(text: str, what: str) -> tuple[str, float]:
    """``NAME[:WEIGHT]``: the weight after the last colon when it reads as a number (a Windows drive's
    colon is part of the name)."""
    name, sep, tail = text.rpartition(":")
    if sep and name and not (len(name) == 1 and tail.startswith(("\\", "/"))):
        try:
            return name, float(tail)
        except ValueError:
            pass
    return text, 1.0


def _strength(text: str, flag: str) -> tuple[float, float, float]:
    parts = text.split(":")
    if len(parts) not in (1, 3):
        raise InvalidRequest(f"{flag} STRENGTH {text!r} must be STRENGTH or STRENGTH:START:END, like 0.8 or 0.8:0:0.6.")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidRequest(f"{flag} STRENGTH {text!r} is not a number: give STRENGTH or STRENGTH:START:END, like "
                             "0.8 or 0.8:0:0.6.") from None
    return (values[0], 0.0, 1.0) if len(values) == 1 else tuple(values)


def _read_image(path: str, what: str):
    from .imagefiles import ImageFileError, flatten, image_size, read_document

    if not Path(path).is_file():
        raise ImageFileError(f"The {what} {path} was not found: give an image file (PNG, JPEG, WebP or .ora).")
    image_size(path)
    return flatten(read_document(path), path)


def controls_from_args(args, doc) -> tuple[Control, ...] | None:
    """The --control flags as Control values over the whole document (None when none was given)."""
    if not getattr(args, "control", None):
        if getattr(args, "control_kind", None):
            raise InvalidRequest("--control-kind names the kind of a --control: give the --control flags too.")
        return None
    kinds = list(args.control_kind or [])
    if len(kinds) > len(args.control):
        raise InvalidRequest(f"{len(kinds)} --control-kind flags for {len(args.control)} --control flags: give one "
                             "kind per control, in the same order.")
    b = doc.bounds
    out = []
    for i, values in enumerate(args.control):
        if len(values) not in (2, 3):
            raise InvalidRequest(f"--control takes MODEL IMAGE [STRENGTH], but was given {len(values)} value(s) "
                                 f"({' '.join(values)}).")
        model, image_path = values[0], values[1]
        strength, start, end = _strength(values[2], "--control") if len(values) == 3 else (1.0, 0.0, 1.0)
        kind = kinds[i] if i < len(kinds) else "auto"
        image = None if image_path == SELF else _read_image(image_path, "control image")
        control = Control(model, image, kind, strength, start, end, label=image_path)
        out.append(control.fitted(b.w, b.h))
    return tuple(out)


def controls_from_recorded(recorded, doc) -> tuple[Control, ...]:
    """Controls recorded in a result's parameters, their images read again from the files they name."""
    b = doc.bounds
    out = []
    for r in recorded:
        if r.label == SELF or not r.label:
            image = None
        elif Path(r.label).is_file():
            image = _read_image(r.label, "control image")
        else:
            raise InvalidRequest(f"The recorded control image {r.label!r} was not found: give the control again with "
                                 f"--control {r.model} IMAGE.")
        out.append(Control(r.model, image, r.kind, r.strength, r.start, r.end, label=r.label or SELF).fitted(b.w, b.h))
    return tuple(out)


def references_from(items, mode: str | None, recorded=()) -> tuple[Reference, ...]:
    out = []
    for text in items or ():
        path, weight = _weighted(text, "--reference")
        out.append(Reference(_read_image(path, "reference image"), weight, mode or "full", label=path))
    if not items:
        for r in recorded:
            if not Path(r.label).is_file():
                raise InvalidRequest(f"The recorded reference image {r.label!r} was not found: give it again with "
                                     "--reference IMAGE.")
            out.append(Reference(_read_image(r.label, "reference image"), r.weight, mode or r.mode, label=r.label))
    return tuple(out)


def steer(request, args, doc, recorded: dict | None = None):
    """``request`` with the steering of the flags (or, for what no flag gives, of ``recorded``:
    ``backend.steering.record.steering_fields`` of --settings-from), its controls cut to the part of
    the document it works on. Raises BackendError with one sentence."""
    recorded = recorded or {}
    changes: dict = {}
    if args.lora:
        changes["loras"] = tuple(LoraRef(*_weighted(text, "--lora")) for text in args.lora)
    elif recorded.get("loras"):
        changes["loras"] = recorded["loras"]
    if args.embedding:
        changes["embeddings"] = tuple(args.embedding)
    elif recorded.get("embeddings"):
        changes["embeddings"] = recorded["embeddings"]
    controls = controls_from_args(args, doc)
    if controls is None and recorded.get("recorded_controls"):
        controls = controls_from_recorded(recorded["recorded_controls"], doc)
    if controls:
        b = doc.bounds
        x, y, w, h = request.control_area
        changes["controls"] = tuple(c.cropped(x - b.x, y - b.y, x - b.x + w, y - b.y + h) for c in controls)
    ip_adapter = args.ip_adapter or ("" if args.reference else recorded.get("ip_adapter", ""))
    if ip_adapter:
        changes["ip_adapter"] = ip_adapter
    encoder = args.image_encoder or recorded.get("image_encoder", "")
    if encoder:
        changes["image_encoder"] = encoder
    references = references_from(args.reference, args.reference_mode, recorded.get("recorded_references", ()))
    if references:
        changes["references"] = references
    return request.replace(**changes) if changes else request
