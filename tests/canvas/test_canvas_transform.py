import numpy as np
import pytest

from canvas.document import Document
from canvas.errors import DocumentError, LayerLockedError
from canvas.geometry import Rect
from canvas.selection import Selection


def doc_with_square():
    doc = Document(300, 200)
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[...] = (200, 10, 10, 255)
    doc.add_image_layer(rgba, 20, 30, name="square")
    return doc


def test_move_layer_is_one_exact_undo_step():
    doc = doc_with_square()
    layer = doc.layers[0]
    before = doc.flatten().copy()
    steps = len(doc.history)
    doc.translate_layer(layer, 100, -10)
    assert len(doc.history) == steps + 1 and doc.history.undo_description == "Move layer"
    after = doc.flatten()
    assert after[25, 125, 3] == 255 and after[40, 25, 3] == 0
    assert layer.pixels.content_bbox() == Rect(120, 20, 50, 40)
    doc.undo()
    assert np.array_equal(doc.flatten(), before)
    doc.redo()
    assert np.array_equal(doc.flatten(), after)


def test_move_takes_the_mask_along_and_respects_the_lock():
    doc = doc_with_square()
    layer = doc.layers[0]
    doc.select(Selection.rectangle(Rect(20, 30, 10, 10)))
    doc.add_layer_mask(layer, from_selection=True)
    mask_before = layer.mask.read(Rect(0, 0, 300, 200)).copy()
    doc.translate_layer(layer, 5, 7)
    assert np.array_equal(layer.mask.read(Rect(5, 7, 295, 193)), mask_before[:193, :295])
    doc.set_layer_properties(layer, locked=True)
    with pytest.raises(LayerLockedError):
        doc.translate_layer(layer, 1, 1)


def test_scale_document_with_an_upscaled_layer_on_top_undoes_exactly():
    doc = doc_with_square()
    doc.select(Selection.rectangle(Rect(0, 0, 10, 10)))
    before = doc.flatten().copy()
    top = np.full((400, 600, 4), 77, np.uint8)
    added = doc.scale(2, top, (0, 0), "Upscale: test", {"prompt": "", "Steps": 1})
    assert doc.bounds == Rect(0, 0, 600, 400)
    assert doc.layers[-1] is added and "Steps: 1" in added.parameters
    assert doc.layers[0].pixels.content_bbox() == Rect(40, 60, 100, 80)
    assert doc.selection.bbox() == Rect(0, 0, 20, 20)
    assert doc.history.undo_description == "Upscale: test"
    doc.undo()
    assert doc.bounds == Rect(0, 0, 300, 200) and len(doc.layers) == 1
    assert np.array_equal(doc.flatten(), before)
    assert doc.selection.bbox() == Rect(0, 0, 10, 10)


def test_scale_refuses_absurd_sizes():
    doc = Document(100000, 10)
    with pytest.raises(DocumentError, match="more than"):
        doc.scale(2)


def test_history_lists_its_steps():
    doc = doc_with_square()
    doc.add_layer("two")
    doc.undo()
    assert doc.history.undo_descriptions[-1] == "Add image"
    assert doc.history.redo_descriptions == ["Add layer"]
