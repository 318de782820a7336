"""Text to image in the app (on the scriptable fake engine): into a new layer the size of the canvas, into
the selection (its coverage the layer's alpha), into an empty document; one undo step each."""
import numpy as np

from canvas.document import Document
from canvas.geometry import Rect
from canvas.selection import Selection


def generate_and_apply(window, qtbot, fake_engine):
    window.generation.set_operation("txt2img")
    before = len(window.doc.layers)
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)
    request = fake_engine["engine"].submitted[-1]
    assert request.operation == "txt2img"
    assert len(window.doc.layers) == before  # nothing applied yet
    window.variations.apply.click()
    assert len(window.doc.layers) == before + 1
    return request, window.doc.layers[-1]


def test_the_generation_panel_offers_text_to_image(window):
    panel = window.generation
    labels = {panel.operation.itemData(i): panel.operation.itemText(i) for i in range(panel.operation.count())}
    assert labels["txt2img"] == "Text to image"
    panel.set_operation("txt2img")
    assert panel.spec().name == "txt2img" and panel.editors["txt2img"] == {}  # the size is the canvas's
    assert panel.editor("count").widget.isVisibleTo(window) and panel.editor("prompt").widget.isEnabled()


def test_into_a_new_layer_the_size_of_the_canvas_one_undo_step(window, qtbot, fake_engine):
    window.generation.editor("prompt").set_value("a red barn")
    doc = window.doc
    request, layer = generate_and_apply(window, qtbot, fake_engine)
    assert request.image.shape[:2] == (doc.height, doc.width) and request.mask is None
    assert request.prompt == "a red barn" and request.count == 2
    assert layer.name == "Text to image: a red barn" and "Operation: txt2img" in layer.parameters
    pixels = layer.pixels.read(doc.bounds)
    assert (pixels[..., 3] == 255).all()  # covers the whole canvas
    assert np.array_equal(doc.flatten(), pixels)  # over what was there, not blended into it
    window.undo()
    assert layer not in window.doc.layers


def test_into_the_selection_whose_soft_coverage_is_the_layers_alpha(window, qtbot, fake_engine):
    doc = window.doc
    doc.select(Selection.ellipse(Rect(200, 150, 240, 160)).feather(6))
    coverage = doc.selection.read(doc.bounds)
    assert ((coverage > 0) & (coverage < 255)).sum() > 100  # soft edges
    request, layer = generate_and_apply(window, qtbot, fake_engine)
    ys, xs = np.nonzero(coverage)
    assert request.origin == (xs.min(), ys.min())
    assert request.image.shape[:2] == (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert np.array_equal(layer.pixels.read(doc.bounds)[..., 3], coverage)  # soft edges kept
    window.undo()
    assert layer not in window.doc.layers


def test_into_an_empty_document(window, qtbot, fake_engine):
    empty = Document(320, 200, x=-40, y=10)
    empty.add_layer("Layer 1")
    empty.history.clear()
    window.set_document(empty)
    request, layer = generate_and_apply(window, qtbot, fake_engine)
    assert request.origin == (-40, 10) and request.image.shape[:2] == (200, 320)
    assert (layer.pixels.read(empty.bounds)[..., 3] == 255).all()
    assert len(empty.layers) == 2
    window.undo()
    assert len(empty.layers) == 1


def test_the_apps_control_layers_cover_the_new_layers_area():
    """Steering reaches text to image as every operation: a control layer over the selection's box."""
    from canvas.role import ControlRole
    from operations import SPECS
    from operations.spec import CommonSettings
    from operations.steering import AppSteering, steered

    doc = Document(128, 96)
    lines = np.zeros((20, 20, 4), np.uint8)
    lines[..., :3] = 255
    lines[..., 3] = 255
    doc.set_layer_role(doc.add_image_layer(lines, 70, 10, "edges"), ControlRole("canny", "control_canny", 1.0, 0, 1))
    doc.select(Selection.rectangle(Rect(60, 0, 40, 40)))
    spec = SPECS["txt2img"]
    request = steered(spec.build(doc, CommonSettings(), spec.settings()), doc, AppSteering())
    (control,) = request.controls
    assert request.origin == (60, 0) and control.image.shape == (40, 40, 4)
    assert control.image[10:30, 10:30].min() == 255 and control.image[:10].max() == 0
