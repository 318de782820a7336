"""Steering in the app, on the scriptable fake engine: the LoRA list, marking control and reference
layers, the Control section, "Use these settings", and the settings and files that keep them."""
import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from backend.steering import LoraRef, steering_dir
from canvas.geometry import Rect
from canvas.role import ControlRole, ReferenceRole
from canvas.selection import Selection
from operations.steering import AppSteering, LoraEntry


@pytest.fixture
def models_home(tmp_path, monkeypatch):
    """The user's model folder (and the steering folders beside it) in the test's own folder."""
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(tmp_path / "data" / "models"))
    return tmp_path / "data"


@pytest.fixture
def app(models_home, window):
    return window


def add_loras(window, monkeypatch, *names):
    """Adds LoRA files through the Add… button's dialog; returns their paths and where the dialog opened."""
    folder = steering_dir("loras")
    opened = []
    paths = [str(folder / f"{n}.safetensors") for n in names]

    def pick(parent, caption, start, filters):
        opened.append(start)
        return paths, filters

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", pick)
    window.generation.steering.loras.add.click()
    return paths, opened


def paint_layer(window, name, rgba, x, y):
    layer = window.doc.add_image_layer(np.asarray(rgba, np.uint8), x, y, name)
    window.layers.set_active(layer)
    return layer


def lines(h, w):
    out = np.zeros((h, w, 4), np.uint8)
    out[::4, :] = (250, 40, 40, 255)  # red lines on a transparent layer
    return out


def mark_control(window, monkeypatch, layer, kind="canny", model="control_canny"):
    monkeypatch.setattr(window.layers, "ask_control", lambda l, role: (kind, model))
    window.layers.set_active(layer)
    window.layers.role.setCurrentIndex(window.layers.role.findData("control"))
    window.layers.role.activated.emit(window.layers.role.currentIndex())


def run(window, qtbot, fake_engine):
    n = len(fake_engine["engine"].submitted)
    assert window.jobs.generate() is not None, window.messages.label.text()
    qtbot.waitUntil(lambda: not window.jobs.jobs, timeout=10_000)
    assert len(fake_engine["engine"].submitted) == n + 1
    return fake_engine["engine"].submitted[-1]


def test_the_jobs_request_carries_the_enabled_loras_and_disabling_one_removes_it(app, qtbot, fake_engine,
                                                                                 monkeypatch, models_home):
    window = app
    paths, opened = add_loras(window, monkeypatch, "ink", "film grain")
    assert opened == [str(steering_dir("loras"))] and steering_dir("loras").is_dir()  # the folder is made
    rows = window.generation.steering.loras.rows
    assert [r.enabled.text() for r in rows] == ["ink", "film grain"]
    rows[0].weight.setValue(0.75)
    rows[1].slider.setValue(-150)  # the slider and the spin box are one value
    assert rows[1].weight.value() == -1.5
    window.generation.set_operation("img2img")
    request = run(window, qtbot, fake_engine)
    assert request.loras == (LoraRef(paths[0], 0.75), LoraRef(paths[1], -1.5))
    rows[0].enabled.setChecked(False)
    assert run(window, qtbot, fake_engine).loras == (LoraRef(paths[1], -1.5),)
    rows[1].remove.click()
    assert [r.name for r in window.generation.steering.loras.rows] == [paths[0]]
    assert run(window, qtbot, fake_engine).loras == ()
    add_loras(window, monkeypatch, "ink")  # a file listed already is not listed twice
    assert len(window.generation.steering.loras.rows) == 1


def test_controls_and_references_from_marked_layers_reach_the_request(app, qtbot, fake_engine, monkeypatch):
    window = app
    edges = paint_layer(window, "edges", lines(40, 60), 300, 200)
    mark_control(window, monkeypatch, edges, "canny", "control_v11p_sd15_canny")
    assert edges.role == ControlRole("canny", "control_v11p_sd15_canny")
    editor = window.generation.steering.controls.editor_for(edges)
    editor.strength.setValue(1.4)
    editor.end.setValue(0.6)
    editor.start.setValue(0.2)
    assert edges.role == ControlRole("canny", "control_v11p_sd15_canny", 1.4, 0.2, 0.6)
    sky = paint_layer(window, "sky", np.full((10, 20, 4), (30, 90, 250, 255), np.uint8), 5, 5)
    window.layers.mark(sky, "reference")
    window.generation.steering.controls.editor_for(sky).weight.setValue(0.5)
    window.generation.steering.ip_adapter.set_value("ip-adapter_sd15")
    window.doc.select(Selection.rectangle(Rect(280, 180, 120, 100)))
    window.generation.set_operation("inpaint")
    request = run(window, qtbot, fake_engine)
    x, y = request.origin
    h, w = request.image.shape[:2]
    (control,) = request.controls
    assert (control.kind, control.model, control.strength, control.start, control.end, control.label) == (
        "canny", "control_v11p_sd15_canny", 1.4, 0.2, 0.6, "edges")
    assert np.array_equal(control.image, edges.pixels.read(Rect(x, y, w, h)))  # the layer over the request's area
    assert control.image[..., 3].any()
    (reference,) = request.references
    assert reference.weight == 0.5 and reference.label == "sky" and request.ip_adapter == "ip-adapter_sd15"
    assert np.array_equal(reference.image, np.full((10, 20, 4), (30, 90, 250, 255), np.uint8))
    assert request.image[..., 1].min() == 255  # the red lines are not in the picture being repainted (all white)
    assert window.doc.render(Rect(300, 200, 1, 1))[0, 0, 1] == 40  # but they show in the view


def test_marking_a_layer_is_one_undo_step_and_the_panels_follow(app, monkeypatch):
    window = app
    edges = paint_layer(window, "edges", lines(16, 16), 10, 10)
    section = window.generation.steering.controls
    assert section.empty.isVisibleTo(window) and not section.editors
    steps = len(window.doc.history)
    mark_control(window, monkeypatch, edges, "depth", "depth_model")
    assert len(window.doc.history) == steps + 1 and edges.role.kind == "depth"
    assert window.layers.list.item(0).text() == "edges  [control: depth]"
    assert window.layers.role.currentData() == "control"
    assert [e.layer for e in section.editors] == [edges] and not section.empty.isVisibleTo(window)
    window.undo()
    assert edges.role is None and not section.editors and window.layers.role.currentData() == "plain"
    assert window.layers.list.item(0).text() == "edges"
    window.redo()
    assert edges.role.kind == "depth" and section.editor_for(edges).kind.currentData() == "depth"
    monkeypatch.setattr(window.layers, "ask_control", lambda l, role: None)  # a cancelled dialog changes nothing
    window.layers.mark(window.doc.layers[0], "control")
    assert window.doc.layers[0].role is None and len(window.doc.history) == steps + 1
    item = window.layers.list.item(0)
    item.setText("lines  [control: depth]")  # renaming in the list keeps the role out of the name
    assert edges.name == "lines" and section.editor_for(edges).title() == "lines  (control)"
    window.layers.mark(edges, "plain")
    assert edges.role is None and window.doc.history.undo_description == "Mark as plain layer"


def test_control_section_edits_are_undoable_and_a_value_stepped_in_a_row_is_one_step(app, monkeypatch):
    window = app
    edges = paint_layer(window, "edges", lines(16, 16), 10, 10)
    mark_control(window, monkeypatch, edges)
    editor = window.generation.steering.controls.editor_for(edges)
    steps = len(window.doc.history)
    for value in (1.1, 1.2, 1.3):
        editor.strength.setValue(value)
    editor.end.setValue(0.9)
    assert len(window.doc.history) == steps + 2
    window.undo()
    assert edges.role.end == 1.0 and editor.end.value() == 1.0
    window.undo()
    assert edges.role.strength == 1.0 and editor.strength.value() == 1.0
    editor.kind.setCurrentIndex(editor.kind.findData("scribble"))
    assert edges.role.kind == "scribble" and window.layers.list.item(0).text() == "edges  [control: scribble]"
    editor.model.box.lineEdit().setText("/somewhere/control_v11p_sd15_lineart.safetensors")
    assert edges.role.model == "control_canny"  # not at every key
    editor.model.box.lineEdit().editingFinished.emit()  # typing finished: the kind follows the model's name
    assert edges.role == ControlRole("lineart", "/somewhere/control_v11p_sd15_lineart.safetensors")
    assert editor.start.maximum() == pytest.approx(0.99) and editor.end.minimum() == pytest.approx(0.01)


def test_marked_layers_save_and_open_through_the_menus(app, qtbot, tmp_path, monkeypatch):
    window = app
    edges = paint_layer(window, "edges", lines(16, 16), 10, 10)
    mark_control(window, monkeypatch, edges, "scribble", "scribble_model")
    window.generation.steering.controls.editor_for(edges).strength.setValue(0.6)
    sky = paint_layer(window, "sky", np.full((8, 8, 4), 200, np.uint8), 40, 40)
    window.layers.mark(sky, "reference")
    target = tmp_path / "steered.ora"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "OpenRaster (*.ora)"))
    window.files.save_as()
    qtbot.waitUntil(lambda: target.exists() and not window.modified, timeout=30_000)
    from studio.files import new_document

    window.set_document(new_document(), None)
    assert not window.generation.steering.controls.editors
    window.files.open_path(target)
    qtbot.waitUntil(lambda: window.path == target, timeout=30_000)
    roles = {l.name: l.role for l in window.doc.layers}
    assert roles["edges"] == ControlRole("scribble", "scribble_model", 0.6) and roles["sky"] == ReferenceRole()
    assert [e.layer.name for e in window.generation.steering.controls.editors] == ["sky", "edges"]  # topmost first


def test_use_these_settings_restores_loras_and_finds_controls_by_layer_name(app, qtbot, fake_engine, monkeypatch):
    window = app
    paths, _ = add_loras(window, monkeypatch, "ink", "film")
    rows = window.generation.steering.loras.rows
    rows[0].weight.setValue(0.8)
    rows[1].enabled.setChecked(False)
    edges = paint_layer(window, "edges", lines(64, 64), 100, 100)
    mark_control(window, monkeypatch, edges, "canny", "cn_canny")
    editor = window.generation.steering.controls.editor_for(edges)
    editor.strength.setValue(0.7)
    window.generation.set_operation("img2img")
    run(window, qtbot, fake_engine)
    window.variations.apply.click()
    result = window.doc.layers[-1]
    assert "<lora:ink:0.8>" in result.parameters and "cn_canny" in result.parameters
    # The painter changes everything since.
    rows[0].weight.setValue(-1.0)
    rows[1].enabled.setChecked(True)
    window.generation.editor("prompt").set_value("something else")
    editor.strength.setValue(1.9)
    steps = len(window.doc.history)
    window.use_layer_settings(result)
    assert window.generation.common().prompt == ""  # the recorded prompt, its <lora:…> tags taken out
    assert window.generation.app_steering().loras == (LoraEntry(paths[0], 0.8, True), LoraEntry(paths[1], 1.0, False))
    assert edges.role.strength == 0.7 and editor.strength.value() == 0.7
    assert len(window.doc.history) == steps + 1  # the layers' settings came back as one step
    assert "are in the generation panel" in window.statusBar().currentMessage()
    window.doc.set_layer_properties(edges, name="outlines")
    window.use_layer_settings(result)
    assert window.statusBar().currentMessage() == (
        "No control layer is named “edges”, so its settings were not restored: mark a layer of that name as a "
        "control layer to use them.")
    assert not window.messages.isVisible()  # said in the status bar, nothing failed


def test_the_lora_list_and_ip_adapter_persist_in_the_settings(app, monkeypatch, tmp_path):
    from studio import settings as settings_mod
    from studio.panels.generation import GenerationPanel

    window = app
    paths, _ = add_loras(window, monkeypatch, "ink", "film")
    window.generation.steering.loras.rows[1].weight.setValue(-0.25)
    window.generation.steering.loras.rows[0].enabled.setChecked(False)
    window.generation.steering.ip_adapter.set_value("/adapters/ip-adapter_sd15.safetensors")
    window.generation.store(window.settings)
    settings_mod.save(window.settings)
    loaded = settings_mod.load()
    assert loaded.steering.value() == AppSteering((LoraEntry(paths[0], 1.0, False), LoraEntry(paths[1], -0.25, True)),
                                                  "/adapters/ip-adapter_sd15.safetensors")
    panel = GenerationPanel(loaded)
    assert panel.app_steering() == loaded.steering.value()
    panel.deleteLater()


def test_bad_steering_settings_are_dropped_or_clamped(tmp_path):
    import json

    from studio import settings as settings_mod

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"steering": {"loras": [
        {"name": "a", "weight": 7}, {"name": "", "weight": 1}, "junk", {"name": "b", "weight": "x", "enabled": False},
        {"name": "a", "weight": 0.5}, {"weight": 1}], "ip_adapter": 3}}))
    s = settings_mod.load(path)
    assert s.steering.value() == AppSteering((LoraEntry("a", 2.0, True), LoraEntry("b", 1.0, False)), "")
    path.write_text(json.dumps({"steering": "nonsense"}))
    assert settings_mod.load(path).steering.value() == AppSteering()


def test_a_problem_with_a_marked_layer_is_one_sentence_and_nothing_is_submitted(app, fake_engine):
    window = app
    sky = paint_layer(window, "sky", np.full((8, 8, 4), 200, np.uint8), 40, 40)
    window.layers.mark(sky, "reference")
    window.generation.set_operation("img2img")
    n = len(fake_engine["engine"].submitted)
    assert window.jobs.generate() is None
    assert window.messages.label.text().startswith("The reference layer “sky” needs an IP-Adapter model")
    assert len(fake_engine["engine"].submitted) == n


def test_the_window_still_fits_a_laptop_screen_with_loras_and_control_layers(app, qtbot, monkeypatch):
    from PySide6.QtCore import QRect

    from test_house import LAPTOP, inside

    window = app
    add_loras(window, monkeypatch, "ink", "a LoRA with a very long file name that would widen the panel", "film")
    for i in range(3):
        layer = paint_layer(window, f"control {i} with a long layer name", lines(16, 16), 10 * i, 10)
        mark_control(window, monkeypatch, layer, "canny", "/very/long/path/to/controlnets/control_v11p_sd15_canny")
    window.layers.mark(paint_layer(window, "sky", np.full((8, 8, 4), 200, np.uint8), 40, 40), "reference")
    qtbot.wait(1)
    hint = window.minimumSizeHint()
    assert hint.width() <= LAPTOP.width() and hint.height() <= LAPTOP.height(), hint
    window.setGeometry(QRect(0, 0, LAPTOP.width() - 16, LAPTOP.height() - 48))
    qtbot.wait(50)
    for widget in (window.generation.generate, window.generation.cancel, window.generation.progress, window.view):
        assert inside(window, widget), widget
    scroll = window.generation.scroll
    assert scroll.widget().width() <= scroll.viewport().width()  # nothing cut off at the right: no sideways scroll
    scroll.ensureWidgetVisible(window.generation.steering.controls.editors[-1])
    qtbot.wait(10)
    assert scroll.verticalScrollBar().value() > 0  # the panel scrolls to its Control section


def test_the_control_dialog_guesses_the_kind_from_the_models_name(app, models_home):
    from studio.panels.layers import ControlDialog

    folder = steering_dir("controlnets")
    folder.mkdir(parents=True)
    (folder / "control_v11f1p_sd15_depth.safetensors").write_bytes(b"")
    dialog = ControlDialog("edges", None, app)
    assert dialog.model.box.itemText(0) == "control_v11f1p_sd15_depth"  # the folder's models are offered
    dialog.model.box.setCurrentIndex(0)
    dialog.model.box.activated.emit(0)
    assert dialog.chosen() == ("depth", str(folder / "control_v11f1p_sd15_depth.safetensors"))
    dialog.deleteLater()
