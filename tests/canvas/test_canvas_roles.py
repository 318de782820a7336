"""Control and reference layers: marking is one undo step, they stay out of the picture the
operations work on, and .ora files keep them (our namespace) or, with bad values, open them plain."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest

from canvas.document import Document, layers_equal
from canvas.geometry import Rect
from canvas.ora import read_ora, write_ora
from canvas.ora_read import NS
from canvas.role import ControlRole, ReferenceRole

from ora_samples import make_ora, png_bytes, solid

RED = (200, 20, 20, 255)
WHITE_LINES = (255, 255, 255, 255)


def doc_with_marks():
    doc = Document(96, 64)
    doc.add_image_layer(solid(64, 96, RED), 0, 0, "photo")
    edges = doc.add_image_layer(solid(20, 30, WHITE_LINES), 10, 8, "edges")
    ref = doc.add_image_layer(solid(16, 16, (10, 200, 30, 255)), 60, 40, "style")
    doc.history.clear()
    return doc, edges, ref


def save_and_open(doc) -> Document:
    buf = io.BytesIO()
    write_ora(doc, buf)
    buf.seek(0)
    return read_ora(buf)


def test_marking_a_layer_is_one_undo_step_each_way():
    doc, edges, _ref = doc_with_marks()
    role = ControlRole("canny", "control_v11p_sd15_canny", 0.8, 0.1, 0.9)
    doc.set_layer_role(edges, role)
    assert edges.role == role and len(doc.history) == 1
    assert doc.history.undo_description == "Mark as control layer"
    doc.undo()
    assert edges.role is None
    doc.redo()
    assert edges.role == role
    doc.set_layer_role(edges, None)
    assert edges.role is None and doc.history.undo_description == "Mark as plain layer"
    doc.undo()
    assert edges.role == role
    doc.set_layer_role(edges, role)  # no change: no step, the redo kept
    assert len(doc.history) == 1 and doc.history.can_redo


def test_editing_a_roles_values_step_by_step_merges_until_sealed():
    doc, edges, _ref = doc_with_marks()
    doc.set_layer_role(edges, ControlRole("scribble", "m"))
    for strength in (1.1, 1.2, 1.3):
        doc.set_layer_role(edges, ControlRole("scribble", "m", strength), merge=True)
    doc.history.seal()
    assert len(doc.history) == 2 and doc.history.undo_description == "Control settings"
    doc.undo()
    assert edges.role == ControlRole("scribble", "m", 1.0)  # the three edits were one step
    doc.undo()
    assert edges.role is None


def test_several_roles_set_as_one_step():
    doc, edges, ref = doc_with_marks()
    doc.set_layer_roles([(edges, ControlRole("depth", "d")), (ref, ReferenceRole(0.6, "style"))], "Use settings")
    assert len(doc.history) == 1 and doc.history.undo_description == "Use settings"
    doc.undo()
    assert edges.role is None and ref.role is None


def test_marked_layers_stay_out_of_the_picture_but_show_in_the_view():
    doc, edges, ref = doc_with_marks()
    before = doc.flatten().copy()
    assert np.array_equal(before[20, 20], (255, 255, 255, 255))  # a plain layer: part of the picture
    doc.set_layer_role(edges, ControlRole("scribble", "m"))
    doc.set_layer_role(ref, ReferenceRole())
    picture = doc.flatten()
    assert np.array_equal(picture, solid(64, 96, RED))  # only the photo is left
    assert np.array_equal(doc.flatten(Rect(5, 5, 20, 20)), solid(20, 20, RED))
    view = doc.render(Rect(0, 0, 96, 64))
    assert np.array_equal(view[20, 20], (255, 255, 255, 255)) and view[45, 65, 1] == 200  # still shown
    assert doc.picture_layers() == [doc.layers[0]] and doc.marked_layers() == [edges, ref]
    doc.set_layer_properties(edges, visible=False)
    assert doc.render(Rect(20, 20, 1, 1))[0, 0, 0] == 200  # hidden: the view shows what is below
    doc.set_layer_properties(edges, visible=True)
    edges.parameters = "a prompt\nSteps: 2, Seed: 1"  # a generated layer marked as control
    assert doc.generation_parameters() is None  # an export's parameters are the picture's only


def test_roles_round_trip_through_ora_in_our_namespace():
    doc, edges, ref = doc_with_marks()
    control = ControlRole("lineart", "/models/controlnets/line, art.safetensors", 1.25, 0.2, 0.75)
    doc.set_layer_role(edges, control)
    doc.set_layer_role(ref, ReferenceRole(0.55, "composition"))
    buf = io.BytesIO()
    write_ora(doc, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        stack = ET.fromstring(zf.read("stack.xml"))
        merged = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(io.BytesIO(zf.read("mergedimage.png"))))
    els = {el.get("name"): el for el in stack.iter("layer")}
    assert els["edges"].get(f"{{{NS}}}role") == "control" and els["edges"].get("src")  # other apps: a plain layer
    assert not any(k.startswith(f"{{{NS}}}") and "role" in k for k in els["photo"].attrib)
    assert np.array_equal(merged[..., :3], solid(64, 96, RED)[..., :3])  # the merged image is the picture
    back = save_and_open(doc)
    assert layers_equal(back.layers, doc.layers)
    assert back.layers[1].role == control and back.layers[2].role == ReferenceRole(0.55, "composition")
    assert back.layers[0].role is None


def test_document_copies_and_scaling_keep_roles():
    doc, edges, _ref = doc_with_marks()
    doc.set_layer_role(edges, ControlRole("tile", "t"))
    assert doc.copy().layers[1].role == ControlRole("tile", "t")
    doc.scale(2)
    assert doc.layers[1].role == ControlRole("tile", "t")
    assert np.array_equal(doc.flatten(Rect(20, 16, 60, 40)), solid(40, 60, RED))  # the edges, scaled: still out


def _file_with(attrs: dict) -> bytes:
    extra = " ".join(f'ls:{k}="{v}"' for k, v in attrs.items())
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><image version="0.0.6" w="8" h="8" xmlns:ls="{NS}"><stack>'
           f'<layer name="marked" src="data/a.png" x="0" y="0" {extra}/>'
           '<layer name="bottom" src="data/b.png" x="0" y="0"/></stack></image>')
    return make_ora(xml, {"data/a.png": png_bytes(solid(8, 8, (255, 255, 255, 255))),
                          "data/b.png": png_bytes(solid(8, 8, RED))})


@pytest.mark.parametrize("attrs", [
    {"role": "control", "control-kind": "canny", "control-strength": "lots"},
    {"role": "control", "control-kind": "canny", "control-strength": "nan"},
    {"role": "control", "control-kind": "canny", "control-strength": "2.5"},
    {"role": "control", "control-kind": "canny", "control-start": "0.8", "control-end": "0.2"},
    {"role": "control", "control-kind": "Not A Kind!"},
    {"role": "control"},  # no kind
    {"role": "reference", "reference-weight": "-1"},
    {"role": "reference", "reference-mode": "everything"},
    {"role": "a future role"},
])
def test_a_role_with_bad_values_opens_as_a_plain_layer(attrs):
    doc = read_ora(io.BytesIO(_file_with(attrs)))
    marked = doc.layers[1]
    assert marked.name == "marked" and marked.role is None
    assert np.array_equal(marked.pixels.read(Rect(0, 0, 8, 8)), solid(8, 8, (255, 255, 255, 255)))
    assert np.array_equal(doc.flatten()[0, 0], (255, 255, 255, 255))  # plain: part of the picture


def test_a_role_written_by_hand_reads_with_defaults_for_missing_values():
    doc = read_ora(io.BytesIO(_file_with({"role": "control", "control-kind": "depth"})))
    assert doc.layers[1].role == ControlRole("depth", "", 1.0, 0.0, 1.0)
    doc = read_ora(io.BytesIO(_file_with({"role": "reference"})))
    assert doc.layers[1].role == ReferenceRole(1.0, "full")
    assert np.array_equal(doc.flatten()[0, 0], RED)


@pytest.mark.parametrize("make", [
    lambda: ControlRole("canny", "m", strength=2.01), lambda: ControlRole("canny", "m", start=0.5, end=0.5),
    lambda: ControlRole("", "m"), lambda: ControlRole("canny", 3), lambda: ControlRole("canny", "m", float("inf")),
    lambda: ReferenceRole(weight=True), lambda: ReferenceRole(mode="face"),
])
def test_bad_roles_are_refused_in_memory(make):
    with pytest.raises(ValueError):
        make()


def test_a_role_must_be_a_role():
    doc, edges, _ref = doc_with_marks()
    with pytest.raises(ValueError):
        doc.set_layer_role(edges, {"kind": "canny"})
    assert edges.role is None and len(doc.history) == 0
