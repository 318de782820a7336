"""operations.steering: the document's marked layers and the app's LoRA list turned into request fields,
and back from a result's parameters ("Use these settings")."""
import dataclasses

import numpy as np
import pytest

from backend.errors import InvalidRequest
from backend.requests import request_parameters
from backend.steering import LoraRef
from backend.steering.record import steering_fields
from canvas.document import Document
from canvas.geometry import Rect
from canvas.parameters import format_parameters
from canvas.role import ControlRole, ReferenceRole
from canvas.selection import Selection
from operations import SPECS
from operations.recipe import read_recipe
from operations.spec import CommonSettings, NothingToDo
from operations.steering import AppSteering, LoraEntry, recall, steered

COMMON = CommonSettings(prompt="a harbour", steps=4, count=1)


def document():
    """128×96: a grey photo; a control layer with a white square at (70, 10)–(90, 30); a reference."""
    doc = Document(128, 96)
    doc.add_image_layer(np.full((96, 128, 4), (90, 90, 90, 255), np.uint8), 0, 0, "photo")
    lines = np.zeros((20, 20, 4), np.uint8)
    lines[..., :3] = 255
    lines[..., 3] = 255
    edges = doc.add_image_layer(lines, 70, 10, "edges")
    doc.set_layer_role(edges, ControlRole("canny", "control_v11p_sd15_canny", 0.7, 0.1, 0.8))
    ref = doc.add_image_layer(np.full((8, 12, 4), (0, 120, 240, 255), np.uint8), 4, 80, "sky")
    doc.set_layer_role(ref, ReferenceRole(0.6, "style"))
    return doc, edges, ref


def build(doc, name="img2img", **changes):
    spec = SPECS[name]
    return spec.build(doc, COMMON, dataclasses.replace(spec.settings(), **changes))


APP = AppSteering((LoraEntry("/loras/ink.safetensors", 0.8), LoraEntry("film", -0.5, enabled=False)), "ip-adapter_sd15")


def test_a_request_carries_the_enabled_loras_the_controls_and_the_references():
    doc, _edges, _ref = document()
    request = steered(build(doc), doc, APP)
    assert request.loras == (LoraRef("/loras/ink.safetensors", 0.8),)  # the disabled one is left out
    (control,) = request.controls
    assert (control.model, control.kind, control.strength, control.start, control.end, control.label) == (
        "control_v11p_sd15_canny", "canny", 0.7, 0.1, 0.8, "edges")
    assert control.image.shape == (96, 128, 4)  # over the request's area: the whole document here
    assert control.image[10:30, 70:90].min() == 255 and control.image[:10].max() == 0  # transparent outside
    (reference,) = request.references
    assert reference.image.shape == (8, 12, 4) and reference.weight == 0.6 and reference.mode == "style"
    assert reference.label == "sky" and request.ip_adapter == "ip-adapter_sd15"
    assert np.all(request.image[..., :3] == 90)  # the marked layers are not in the picture


def test_the_control_image_covers_the_requests_area_only():
    doc, _edges, _ref = document()
    doc.select(Selection.rectangle(Rect(60, 0, 40, 40)))
    request = steered(build(doc, "inpaint", padding=8, grow=0, feather=0), doc, AppSteering((), "m"))
    x, y = request.origin
    h, w = request.image.shape[:2]
    (control,) = request.controls
    assert control.image.shape == (h, w, 4)
    expected = np.zeros((h, w, 4), np.uint8)
    part = Rect(70, 10, 20, 20).intersect(Rect(x, y, w, h))
    expected[part.y - y: part.bottom - y, part.x - x: part.right - x] = 255
    assert np.array_equal(control.image, expected)


def test_a_control_layer_elsewhere_does_not_steer_and_an_upscale_takes_only_tile_controls():
    doc, edges, _ref = document()
    doc.select(Selection.rectangle(Rect(0, 40, 30, 30)))  # far from the white square
    request = steered(build(doc, "inpaint", padding=4, grow=0, feather=0), doc, AppSteering((), "x"))
    assert request.controls == ()
    upscale = steered(build(doc, "upscale", refine_strength=0.3, upscaler="lanczos", scale=2), doc, APP)
    assert upscale.controls == () and upscale.loras == (LoraRef("/loras/ink.safetensors", 0.8),)
    doc.set_layer_role(edges, ControlRole("tile", "control_v11f1e_sd15_tile"))
    upscale = steered(build(doc, "upscale", refine_strength=0.3, upscaler="lanczos", scale=2), doc, APP)
    assert [c.kind for c in upscale.controls] == ["tile"]
    plain = steered(build(doc, "upscale", upscaler="lanczos", scale=2), doc, APP)  # no refine: no model runs
    assert plain.loras == () and plain.controls == () and plain.references == ()


def test_hidden_marked_layers_still_steer_and_a_layer_mask_hides_control_pixels():
    doc, edges, _ref = document()
    doc.set_layer_properties(edges, visible=False)
    mask = doc.add_layer_mask(edges)
    mask.write(70, 10, np.zeros((20, 10), np.uint8))  # hides the square's left half
    (control,) = steered(build(doc), doc, AppSteering((), "m")).controls
    assert control.image[10:30, 70:80, 3].max() == 0 and control.image[10:30, 80:90, 3].min() == 255


def test_what_cannot_be_used_is_one_sentence_naming_the_layer():
    doc, edges, ref = document()
    with pytest.raises(NothingToDo, match="The reference layer “sky” needs an IP-Adapter model"):
        steered(build(doc), doc, AppSteering())
    doc.set_layer_role(ref, None)
    doc.set_layer_role(edges, ControlRole("canny", ""))
    with pytest.raises(NothingToDo, match="The control layer “edges” has no ControlNet model"):
        steered(build(doc), doc, AppSteering())
    doc.set_layer_role(edges, ControlRole("not-a-kind", "m"))
    with pytest.raises(InvalidRequest, match="kind 'not-a-kind' is unknown"):
        steered(build(doc), doc, AppSteering())
    doc.set_layer_role(edges, None)
    with pytest.raises(InvalidRequest, match="listed twice"):
        steered(build(doc), doc, AppSteering((LoraEntry("a/ink.safetensors"), LoraEntry("b/ink.safetensors"))))


def test_without_steering_the_request_is_untouched():
    doc = Document(64, 64)
    doc.add_image_layer(np.full((64, 64, 4), 200, np.uint8), 0, 0, "photo")
    request = build(doc)
    assert steered(request, doc, AppSteering((LoraEntry("x", 1.0, enabled=False),))) is request


def test_use_these_settings_restores_loras_and_finds_controls_by_layer_name():
    doc, edges, ref = document()
    request = steered(build(doc), doc, APP)
    text = format_parameters(request_parameters(request, seed=request.seed))
    recipe = read_recipe(text)
    assert recipe.common["prompt"] == "a harbour"  # the <lora:…> tags come back as LoRAs, not as prompt text
    # The painter changed things since: the LoRA's weight, a new LoRA, the control's strength.
    app = AppSteering((LoraEntry("/loras/ink.safetensors", 1.5), LoraEntry("extra", 1.0)), "")
    doc.set_layer_role(edges, ControlRole("canny", "control_v11p_sd15_canny", 1.9, 0.0, 1.0))
    doc.set_layer_role(ref, ReferenceRole(1.0, "full"))
    back = recall(recipe.steering, doc, app)
    assert back.steering.loras == (LoraEntry("/loras/ink.safetensors", 0.8, True), LoraEntry("extra", 1.0, False))
    assert back.steering.ip_adapter == "ip-adapter_sd15" and back.message == ""
    assert dict(back.roles) == {edges: ControlRole("canny", "control_v11p_sd15_canny", 0.7, 0.1, 0.8),
                                ref: ReferenceRole(0.6, "style")}


def test_a_recorded_control_without_its_layer_is_said_in_one_sentence():
    doc, edges, ref = document()
    fields = steering_fields({"prompt": "x <lora:gone:0.4>", "ControlNet 0": 'Module: depth, Model: d, Weight: 1, '
                              'Guidance Start: 0, Guidance End: 1, Image: "depth map"'})
    back = recall(fields, doc, AppSteering())
    assert back.steering.loras == (LoraEntry("gone", 0.4),)  # a LoRA not in the list is added
    assert back.roles == () and back.missing == ("depth map",)
    assert back.message == ("No control layer is named “depth map”, so its settings were not restored: mark a layer "
                            "of that name as a control layer to use them.")
    doc.set_layer_properties(ref, name="depth map")  # a reference layer of that name is no control layer
    assert recall(fields, doc, AppSteering()).missing == ("depth map",)
