"""Requests from a (mocked) Krita document through the plugin's code: the same frozen requests the studio
and the CLI build from the same pixels; bad input is one sentence and leaves the document as it was."""
import dataclasses

import numpy as np
import pytest

from krita_mock import Document
from krita_plugin.latent_studio_krita.build import build_request
from krita_plugin.latent_studio_krita.document import KritaDocument
from krita_plugin.latent_studio_krita.pixels import bgra_to_rgba, rgba_to_bgra
from operations import SPECS, CommonSettings, NothingToDo
from scenes import make_scene

COMMON = CommonSettings(steps=3, seed=7)


def settings(name, **changes):
    return dataclasses.replace(SPECS[name].default_settings(), **changes)


def layer_names(doc):
    return [n.name() for n in doc.layers()]


def test_bgra_and_rgba_round_trip_and_swap_red_and_blue():
    rgba, _ = make_scene(5, 7)
    bgra = rgba_to_bgra(rgba)
    assert bgra[:4] == bytes([rgba[0, 0, 2], rgba[0, 0, 1], rgba[0, 0, 0], rgba[0, 0, 3]])
    assert np.array_equal(bgra_to_rgba(bgra, 7, 5), rgba)


def test_inpaint_takes_the_selection_as_its_mask_and_matches_the_cli_request():
    image, mask = make_scene(96, 128)
    doc = Document(image)
    doc.select(42, 32, 43, 32)  # make_scene's mask: rows 32-63, columns 42-84
    assert np.array_equal(doc.selection().mask, mask)
    spec, request = build_request(KritaDocument(doc), "inpaint", COMMON, settings("inpaint"))
    expected = spec.from_image(image, mask, (0, 0), COMMON, settings("inpaint"))  # the CLI's request
    assert request.origin == expected.origin and request.image.shape == expected.image.shape
    assert np.array_equal(request.image, expected.image) and np.array_equal(request.mask, expected.mask)
    assert request.seed == 7 and request.steps == 3 and doc.journal == []


def test_img2img_varies_the_active_layer_not_the_whole_image():
    image, _ = make_scene(48, 64)
    doc = Document(image)
    top = doc.createNode("Sketch", "paintlayer")
    top.pixels[10:20, 5:25] = (200, 10, 10, 255)
    doc.rootNode().addChildNode(top, None)
    doc.setActiveNode(top)
    _, request = build_request(KritaDocument(doc), "img2img", COMMON, settings("img2img", strength=0.4))
    assert request.origin == (0, 0) and request.strength == 0.4
    assert np.array_equal(request.image, top.pixels)  # the layer's own pixels, transparency kept
    doc.select(5, 10, 20, 10)  # with a selection: its box of the layer
    _, request = build_request(KritaDocument(doc), "img2img", COMMON, settings("img2img"))
    assert request.origin == (5, 10) and request.image.shape == (10, 20, 4) and (request.image[..., 3] == 255).all()


def test_outpaint_fills_the_transparent_border_a_canvas_resize_left():
    image, _ = make_scene(40, 48)
    doc = Document(w=48 + 16, h=40 + 8)
    doc.layers()[0].pixels[0:40, 16:64] = image  # content on the right: 16 new px on the left, 8 at the bottom
    _, request = build_request(KritaDocument(doc), "outpaint", COMMON, settings("outpaint"))
    assert (request.left, request.right, request.top, request.bottom) == (16, 0, 0, 8)
    assert request.origin == (16, 0) and np.array_equal(request.image, image)


def test_upscale_takes_the_whole_image_flattened():
    image, _ = make_scene(24, 32)
    doc = Document(image)
    _, request = build_request(KritaDocument(doc), "upscale", COMMON, settings("upscale", scale=2))
    assert np.array_equal(request.image, image) and request.scale == 2 and request.origin == (0, 0)


@pytest.mark.parametrize("operation, prepare, words", [
    ("inpaint", lambda doc: None, "Select"),
    ("inpaint", lambda doc: doc.setSelection(doc.select(0, 0, 0, 0)), "Select"),
    ("img2img", lambda doc: doc.setActiveNode(_empty_layer(doc)), "is empty"),
    ("outpaint", lambda doc: None, "no new canvas area"),
])
def test_bad_input_is_one_sentence_and_the_document_is_untouched(operation, prepare, words):
    image, _ = make_scene(32, 32)
    doc = Document(image)
    prepare(doc)
    before, journal = layer_names(doc), list(doc.journal)
    with pytest.raises(NothingToDo) as info:
        build_request(KritaDocument(doc), operation, COMMON, settings(operation))
    text = str(info.value)
    assert words in text and text.endswith(".") and "\n" not in text
    assert layer_names(doc) == before and doc.journal == journal


def _empty_layer(doc):
    node = doc.createNode("Empty", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    return node


@pytest.mark.parametrize("model, depth, said", [("RGBA", "U16", "RGBA 16-bit"), ("CMYKA", "U8", "CMYKA 8-bit"),
                                                ("GRAYA", "F32", "GRAYA 32-bit float")])
def test_a_colour_model_other_than_8_bit_rgba_says_how_to_convert(model, depth, said):
    doc = Document(w=16, h=16, model=model, depth=depth)
    doc.select(2, 2, 4, 4)
    with pytest.raises(NothingToDo) as info:
        build_request(KritaDocument(doc), "inpaint", COMMON, settings("inpaint"))
    assert said in str(info.value) and "8-bit RGBA" in str(info.value) and "Convert Image Color Space" in str(info.value)
