"""The operation specs: one source of defaults, the same request from the app and the CLI, settings that
survive the trip through a result's parameters, and every CLI flag the commands ever had."""
import argparse
import dataclasses

import numpy as np
import pytest

from backend.fake import FakeEngine
from backend.ops import OPERATIONS, REQUESTS
from backend.requests import GenerationRequest, request_parameters
from canvas.document import Document
from canvas.geometry import Rect
from canvas.parameters import format_parameters
from canvas.selection import Selection
from operations import SPECS
from operations.recipe import read_recipe
from operations.spec import CommonSettings
from scenes import make_scene


def test_every_engine_operation_has_a_spec_and_back():
    assert set(SPECS) == set(REQUESTS)
    for name, spec in SPECS.items():
        assert spec.request is REQUESTS[name] and spec.request in OPERATIONS


@pytest.mark.parametrize("name", list(SPECS))
def test_one_source_of_defaults(name):
    spec = SPECS[name]
    request_fields = {f.name: f for f in dataclasses.fields(spec.request)}
    for f in dataclasses.fields(spec.settings):
        if f.name in request_fields:
            assert f.default == request_fields[f.name].default, (name, f.name)
    for f in dataclasses.fields(CommonSettings):
        assert f.default == request_fields[f.name].default, f.name
    # The CLI, left to its defaults, asks for exactly the spec's defaults (count stays 1).
    args = _parse(name, [])
    common, own = _settings_for(spec, args)
    assert common == CommonSettings() and common.count == 1
    assert own == spec.settings()


def _parser():
    from cli.generate import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser


def _parse(name, extra):
    base = ["--image", "in.png", "--out", "out.png"] + (["--mask", "m.png"] if SPECS[name].needs_mask else [])
    return _parser().parse_args([name, *base, *extra])


def _settings_for(spec, args):
    from cli.generate import settings_for

    engine = FakeEngine(lambda e: None)
    try:
        return settings_for(spec, args, engine)
    finally:
        engine.shutdown()


def test_every_flag_the_commands_ever_had_is_still_there():
    parser = _parser()
    old = {
        "inpaint": "--image --out --model --prompt --negative --steps --guidance --seed --count --sampler --device "
                   "--allow-pickle --quiet --mask --strength --grow --feather --fill --padding --no-detail",
        "img2img": "--image --out --model --prompt --negative --steps --guidance --seed --count --sampler --device "
                   "--allow-pickle --quiet --strength",
        "outpaint": "--image --out --model --prompt --negative --steps --guidance --seed --count --sampler --device "
                    "--allow-pickle --quiet --left --right --top --bottom --overlap --fill --strength --no-detail",
        "upscale": "--image --out --model --prompt --negative --steps --guidance --seed --count --sampler --device "
                   "--allow-pickle --quiet --scale --tile --refine-strength --refine-model --noise-level",
    }
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, flags in old.items():
        known = {s for a in subparsers.choices[name]._actions for s in a.option_strings}
        assert set(flags.split()) | {"--settings-from"} <= known, (name, set(flags.split()) - known)


def test_the_app_and_the_cli_build_the_same_request():
    """The same document, selection and settings give the same request (pixels, mask, origin, every
    field), so the same seed gives the same image in the app and on the command line."""
    img, mask = make_scene(120, 160)
    doc = Document(160, 120, x=-20, y=-10)
    doc.add_image_layer(img, -20, -10)
    doc.select(Selection.from_array(mask, -20, -10))
    common = CommonSettings(seed=42, steps=4, prompt="a pier")
    for name in ("inpaint", "img2img", "upscale", "txt2img"):
        spec = SPECS[name]
        settings = spec.settings()
        app = spec.build(doc, common, settings)
        if name == "img2img":
            doc_all = doc.copy()
            doc_all.selection = Selection()
            app = spec.build(doc_all, common, settings)
        takes_mask = spec.needs_mask or spec.takes_mask
        cli = spec.from_image(doc.flatten(), mask if takes_mask else None, (-20, -10), common, settings)
        _same(app, cli)
    # Text to image without a selection: the whole canvas, as the CLI's --image without --mask.
    doc_all = doc.copy()
    doc_all.selection = Selection()
    spec = SPECS["txt2img"]
    _same(spec.build(doc_all, common, spec.settings()),
          spec.from_image(doc.flatten(), None, (-20, -10), common, spec.settings()))
    # Outpaint: the app's document grown by the extend tool; the CLI's --left/--top.
    spec = SPECS["outpaint"]
    grown = doc.copy()
    grown.grow(left=24, top=8)
    app = spec.build(grown, common, spec.settings())
    cli = spec.from_image(doc.flatten(), None, (-20, -10), common, spec.settings(left=24, top=8))
    _same(app, cli)


def _same(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, (f.name, x, y)


@pytest.mark.parametrize("name", list(SPECS))
def test_settings_survive_a_results_parameters(name):
    spec = SPECS[name]
    common = CommonSettings(model="", prompt="a quiet, grey sea", negative_prompt="text: \"none\"", steps=17,
                            guidance=4.5, seed=4_000_000_000, count=1, sampler="euler_a")
    changes = {"inpaint": dict(strength=0.65, grow=-6, feather=11, padding=30, fill="noise", restore_detail=False),
               "img2img": dict(strength=0.35),
               "outpaint": dict(strength=0.8, overlap=20, fill="edge", restore_detail=False, left=3, bottom=90),
               "upscale": dict(upscaler="lanczos", scale=3, tile=128, refine_strength=0.25),
               "txt2img": dict(width=200, height=136)}[name]
    settings = dataclasses.replace(spec.settings(), **changes)
    img, mask = make_scene()
    # Text to image without an image: a new one of the settings' size, recorded as its `Size`.
    request = spec.from_image(img if spec.needs_image else None, mask if spec.needs_mask else None, (0, 0), common,
                              settings)
    text = format_parameters(request_parameters(request, seed=request.seed))
    recipe = read_recipe(text)
    assert recipe.spec is spec
    got_common, got = recipe.apply(CommonSettings(count=3), spec.settings())
    assert got == settings
    assert got_common == dataclasses.replace(common, count=3)  # the count is the caller's


def test_every_request_field_that_changes_pixels_is_recorded():
    """What is not recorded: the pixels themselves (image, mask), where they are (origin), how many
    (count: each result records its own seed) and whether pickles may load."""
    not_recorded = {"image", "mask", "origin", "count", "allow_pickle", "refine"}
    for request in REQUESTS.values():
        missing = [f.name for f in dataclasses.fields(request)
                   if f.name not in not_recorded and "parameter" not in f.metadata and "steering" not in f.metadata]
        assert not missing, (request.__name__, missing)
    steering = {f.name for f in dataclasses.fields(GenerationRequest) if "steering" in f.metadata}
    assert steering == {"loras", "embeddings", "controls", "references", "ip_adapter", "image_encoder"}
    assert {f.name for f in dataclasses.fields(GenerationRequest)} - not_recorded - steering <= {
        f.name for f in dataclasses.fields(CommonSettings)} | {"strength"}


def test_no_visible_pixels_is_one_sentence_for_every_operation():
    from operations.spec import NothingToDo

    doc = Document(64, 48)
    doc.add_layer("empty")
    doc.select(Selection.rectangle(Rect(8, 8, 16, 16)))
    doc.grow(right=16)
    for spec in SPECS.values():
        if not spec.needs_image:
            # Text to image makes a new layer and needs nothing visible: the selection's box is its size.
            request = spec.build(doc, CommonSettings(), spec.settings())
            assert request.image.shape[:2] == (16, 16) and request.origin == (8, 8)
            continue
        with pytest.raises(NothingToDo, match="Nothing is visible"):
            spec.build(doc, CommonSettings(), spec.settings())
