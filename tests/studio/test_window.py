"""Driving the real window with pytest-qt on the scriptable fake engine: paint, select, generate,
preview, apply, undo, cancel, files. (tests/studio/test_studio_engine.py runs a few of these end to
end on the real engine with tiny models.)"""
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from canvas.geometry import Rect
from canvas.selection import Selection
from gestures import drag


def set_operation(window, name):
    window.generation.set_operation(name)
    assert window.generation.operation_key() == name


def test_paint_a_stroke_and_undo_it(window, qtbot):
    doc = window.doc
    layer = window.active_layer()
    before = doc.flatten().copy()
    window.select_tool("brush")
    window.tool_options.set_color((200, 30, 30))
    drag(qtbot, window.view, [(100, 100), (200, 150), (300, 160)])
    after = doc.flatten()
    assert not np.array_equal(before, after)
    assert after[150, 200, 0] > 150 and after[150, 200, 1] < 100
    assert layer.bbox() is not None
    assert doc.history.undo_description is not None
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(doc.flatten(), before)


def test_shortcuts_choose_tools_and_brush_size(window, qtbot):
    qtbot.keyClick(window, Qt.Key_E)
    assert window.view.tool.name == "eraser"
    qtbot.keyClick(window, Qt.Key_M)
    assert window.view.tool.name == "mask"
    size = window.tool_options.brush()["size"]
    qtbot.keyClick(window, Qt.Key_BracketRight)
    assert window.tool_options.brush()["size"] > size


def test_select_inpaint_preview_apply_undo(window, qtbot, fake_engine):
    window.generation.editor("prompt").set_value("a red door")
    window.select_tool("rect_select")
    drag(qtbot, window.view, [(300, 200), (500, 380)])
    assert window.doc.selection.bbox() is not None
    before_layers = len(window.doc.layers)
    seen = []
    window.bridge.event.connect(lambda e: seen.append(e) if type(e).__name__ == "Preview" else None)
    qtbot.keyClick(window, Qt.Key_Return, Qt.ControlModifier)
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)
    assert len(seen) == 4  # a preview at every step: 2 steps × 2 variations
    x, y, w, h = seen[0].rect
    assert x <= 300 and y <= 200 and x + w >= 500 and y + h >= 380  # previews land at the region
    assert all(not (isinstance(k, tuple) and k[0] == "job") for k in window.view.previews)
    assert "pick" in window.view.previews  # the first variation shows in place
    window.variations.list.setCurrentRow(1)
    assert window.view.previews["pick"][1] == Rect(*window.variations.results[1].rect)
    assert len(window.doc.layers) == before_layers  # nothing applied yet: the document is untouched
    request = fake_engine["engine"].submitted[-1]
    assert request.operation == "inpaint" and request.prompt == "a red door" and request.count == 2
    window.variations.apply.click()
    assert len(window.doc.layers) == before_layers + 1
    top = window.doc.layers[-1]
    assert top.name == "Inpaint: a red door" and "Seed: 1" in top.parameters
    assert not window.view.previews and not window.variations.results
    window.undo()
    assert len(window.doc.layers) == before_layers


def test_cancel_mid_job_restores_the_view(window, qtbot, fake_engine):
    fake_engine["engine"].hold()
    window.doc.select(Selection.rectangle(Rect(100, 100, 200, 200)))
    before = window.doc.flatten().copy()
    window.generate()
    qtbot.waitUntil(lambda: bool(window.view.previews), timeout=10_000)
    qtbot.keyClick(window, Qt.Key_Escape)
    qtbot.waitUntil(lambda: not window.jobs.jobs, timeout=10_000)
    assert not window.view.previews
    assert not window.variations.results
    assert np.array_equal(window.doc.flatten(), before)
    assert window.generation.progress.format() == "cancelled"


def test_a_backend_failure_shows_a_message_and_the_app_goes_on(window, qtbot, fake_engine):
    window.doc.select(Selection.rectangle(Rect(100, 100, 100, 100)))
    fake_engine["engine"].fail_next("Model 'x' was not found: give a diffusers folder.")
    window.generate()
    qtbot.waitUntil(lambda: window.messages.isVisible(), timeout=10_000)
    assert "was not found" in window.messages.label.text()
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)


def test_inpaint_without_a_selection_says_what_to_do(window):
    window.doc.clear_selection()
    window.generate()
    assert "Select or paint a mask" in window.messages.label.text()
    assert not window.jobs.jobs


def test_img2img_variation_of_the_document(window, qtbot, fake_engine):
    set_operation(window, "img2img")
    window.generation.editor("strength").set_value(0.5)
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)
    assert window.variations.results[0].rect == (0, 0, 1024, 768)
    assert fake_engine["engine"].submitted[-1].strength == 0.5


def test_save_and_open_ora_through_the_menus(window, qtbot, tmp_path, monkeypatch):
    target = tmp_path / "painting.ora"
    window.select_tool("brush")
    drag(qtbot, window.view, [(50, 50), (400, 300)])
    window.doc.set_layer_properties(window.active_layer(), opacity=0.5)
    expected = window.doc.flatten().copy()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "OpenRaster (*.ora)"))
    window.files.save_as()
    qtbot.waitUntil(lambda: target.exists() and not window.modified, timeout=30_000)
    assert window.windowTitle().startswith("painting.ora —")
    from studio.files import new_document

    window.set_document(new_document(), None)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(target), ""))
    window.files.open_file()
    qtbot.waitUntil(lambda: window.path == target, timeout=30_000)
    assert np.array_equal(window.doc.flatten(), expected)
    assert window.doc.layers[-1].opacity == 0.5


def test_opening_a_damaged_file_shows_a_message(window, qtbot, tmp_path):
    bad = tmp_path / "bad.ora"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    doc = window.doc
    window.files.open_path(bad)
    qtbot.waitUntil(lambda: window.messages.isVisible(), timeout=30_000)
    assert window.doc is doc  # nothing half-loaded replaced the document
    assert "\n" not in window.messages.label.text()


def test_extend_canvas_tool_grows_the_document(window, qtbot):
    b = window.doc.bounds
    window.select_tool("extend")
    drag(qtbot, window.view, [(b.right, b.y + 100), (b.right + 100, b.y + 100)])
    assert window.doc.bounds.w > b.w and window.doc.bounds.x == b.x
    window.undo()
    assert window.doc.bounds == b


def test_outpaint_after_extending_the_canvas(window, qtbot, fake_engine):
    b = window.doc.bounds
    original = window.doc.flatten().copy()
    window.doc.grow(right=64)
    set_operation(window, "outpaint")
    assert window.generation.editor("fill").value() == "blur"  # outpaint's own fill modes
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)
    request = fake_engine["engine"].submitted[-1]
    assert (request.left, request.right, request.top, request.bottom) == (0, 64, 0, 0)
    r = window.variations.results[0]
    assert r.rect == (0, 0, b.w + 64, b.h)
    window.variations.apply.click()
    flat = window.doc.flatten()
    assert (flat[:, b.w:, 3] == 255).all()  # the new area is painted
    assert np.array_equal(flat[:, : b.w], original)


def test_outpaint_without_new_area_says_what_to_do(window):
    set_operation(window, "outpaint")
    window.generate()
    assert "extend the canvas first" in window.messages.label.text()


def test_upscale_grows_the_document_and_undo_shrinks_it(window, qtbot):
    from studio.files import new_document

    window.set_document(new_document(96, 64), None)
    set_operation(window, "upscale")
    window.generation.editor("upscaler").set_value("lanczos")
    window.generation.editor("scale").set_value(2)
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 1, timeout=10_000)
    assert window.view.previews["pick"][1] == (0, 0, 96, 64)  # shown in place at the current scale
    window.variations.apply.click()
    assert window.doc.bounds == Rect(0, 0, 192, 128)
    assert window.doc.layers[-1].name.startswith("Upscale")
    window.undo()
    assert window.doc.bounds == Rect(0, 0, 96, 64)


def test_the_model_picker_lists_the_engines_models(window, fake_engine, tmp_path):
    fake_engine["engine"].models = [("latent-studio-mini", "embedded", "/x"), ("my-model", "folder", "/m/my-model")]
    window.list_models()
    items = [window.generation.model.itemText(i) for i in range(window.generation.model.count())]
    assert items[0] == "Embedded default model" and "/m/my-model" in items
    assert window.generation.model_ref() == ""  # the choice did not change


def test_high_dpi_tiles_are_rendered_at_device_resolution(window, monkeypatch):
    view = window.view
    monkeypatch.setattr(type(view), "devicePixelRatioF", lambda self: 2.0)
    view.set_zoom(1.0)
    image, r = view._make_pixels((0, 0))
    assert image.devicePixelRatio() == 2.0 and image.width() == 2 * r.w


def test_a_model_that_ignores_prompts_greys_out_the_prompt(window):
    panel = window.generation
    panel.set_model_state("latent-studio-mini", "ready", "", True)
    assert not panel.editor("prompt").widget.isEnabled() and not panel.editor("guidance").widget.isEnabled()
    assert "ignores prompts" in panel.model_state.text()
    panel.set_model_state("sd15", "ready", "", False)
    assert panel.editor("prompt").widget.isEnabled()


def test_a_new_model_brings_its_recommended_settings_once(window, tmp_path):
    from studio import settings as settings_mod

    panel = window.generation
    set_operation(window, "inpaint")
    recommended = (("inpaint", "fill", "blur"), ("inpaint", "strength", 0.8), ("outpaint", "fill", "exemplar"))
    panel.set_model_state("model-a", "ready", "", True, recommended)
    assert panel.editor("fill").value() == "blur" and panel.editor("strength").value() == 0.8
    assert panel.editor("fill", "outpaint").value() == "exemplar"
    assert ("recommended settings were applied: inpaint strength 0.8, inpaint fill blur, outpaint fill exemplar"
            in panel.model_state.text())
    panel.editor("strength").set_value(0.95)  # the user's own choice stands while the model stays
    panel.set_model_state("model-a", "ready", "", True, recommended)
    assert panel.editor("strength").value() == 0.95 and "applied" not in panel.model_state.text()
    # A model that recommends nothing brings the specs' defaults back.
    panel.set_model_state("sd15", "ready", "", False, ())
    assert panel.editor("fill").value() == "original" and panel.editor("strength").value() == 1.0
    assert panel.editor("fill", "outpaint").value() == "blur"
    # Remembered across runs: the next start does not override the user's settings again.
    s = settings_mod.Settings()
    panel.store(s)
    settings_mod.save(s, tmp_path / "s.json")
    assert settings_mod.load(tmp_path / "s.json").generation.defaults_applied_for == "sd15"


def test_pen_pressure_drives_the_brush(window):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QPointingDevice, QTabletEvent
    from PySide6.QtWidgets import QApplication

    view = window.view
    window.select_tool("brush")
    window.tool_options.set_color((0, 0, 0))
    window.tool_options.size.setValue(30)
    pen = QPointingDevice.primaryPointingDevice()

    def stroke(y, pressure):
        for kind, x in ((QEvent.TabletPress, 100), (QEvent.TabletMove, 200), (QEvent.TabletMove, 300),
                        (QEvent.TabletRelease, 300)):
            pos = view.to_widget(x, y)
            buttons = Qt.NoButton if kind == QEvent.TabletRelease else Qt.LeftButton
            event = QTabletEvent(kind, pen, pos, view.mapToGlobal(pos), pressure, 0.0, 0.0, 0.0, 0.0, 0.0,
                                 Qt.NoModifier, Qt.LeftButton, buttons)
            QApplication.sendEvent(view, event)

    stroke(100, 1.0)
    stroke(300, 0.2)
    flat = window.doc.flatten()
    hard = (flat[80:121, 200, 0] < 245).sum()  # stroke width across y at full pressure
    soft = (flat[280:321, 200, 0] < 245).sum()
    assert hard >= 25 and 0 < soft < hard / 2  # light pressure: a thinner line...
    assert flat[300, 200, 0] > flat[100, 200, 0] + 100  # ...and a lighter one


def test_history_panel_lists_steps_and_jumps_back(window, qtbot):
    doc = window.doc
    window.select_tool("brush")
    drag(qtbot, window.view, [(50, 50), (150, 60)])
    drag(qtbot, window.view, [(50, 150), (150, 160)])
    items = [window.history_panel.list.item(i).text() for i in range(window.history_panel.list.count())]
    assert items[0] == "Start" and len(items) == 3  # two strokes, each one step
    window.history_panel._on_click(window.history_panel.list.item(1))
    assert len(doc.history) == 1 and doc.history.can_redo
    assert window.history_panel.list.item(2).text().endswith("(undone)")


def test_the_detail_checkbox_reaches_inpaint_and_outpaint_requests_and_is_remembered(window, tmp_path):
    from studio import settings as settings_mod

    panel = window.generation
    set_operation(window, "inpaint")
    detail = panel.editor("restore_detail")
    assert detail.value() is True and detail.widget.isVisibleTo(window)
    window.doc.select(Selection.rectangle(Rect(100, 100, 100, 100)))
    spec = panel.spec()
    assert spec.build(window.doc, panel.common(), panel.settings()).restore_detail is True
    detail.set_value(False)
    assert spec.build(window.doc, panel.common(), panel.settings()).restore_detail is False
    set_operation(window, "img2img")  # img2img: no surroundings, no checkbox
    assert not detail.widget.isVisibleTo(window)
    s = settings_mod.Settings()
    panel.store(s)
    settings_mod.save(s, tmp_path / "s.json")
    assert settings_mod.load(tmp_path / "s.json").generation.of("inpaint").restore_detail is False


def test_outpaint_request_holds_exactly_the_content_pixels():
    """The request is built from one flatten of the document (not two): same pixels, box and sides."""
    from canvas.document import Document
    from operations import SPECS
    from operations.spec import CommonSettings

    spec = SPECS["outpaint"]
    doc = Document(40, 30, x=-12, y=7)
    rgba = np.random.default_rng(0).integers(0, 256, (20, 25, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    doc.add_image_layer(rgba, x=-5, y=11)
    req = spec.build(doc, CommonSettings(steps=2, sampler="ddim"), spec.settings(overlap=8))
    assert req.origin == (-5, 11)
    assert (req.left, req.top, req.right, req.bottom) == (7, 4, 40 - 7 - 25, 30 - 4 - 20)
    assert np.array_equal(req.image, doc.flatten(Rect(-5, 11, 25, 20)))
    assert np.array_equal(req.image[..., :3], rgba[..., :3])


def test_each_operation_keeps_its_own_settings(window, tmp_path):
    from studio import settings as settings_mod

    panel = window.generation
    set_operation(window, "inpaint")
    panel.editor("strength").set_value(0.9)
    set_operation(window, "img2img")  # img2img: its own, gentler default
    assert panel.editor("strength").value() == 0.6 and panel.settings().strength == 0.6
    panel.editor("strength").set_value(0.45)
    set_operation(window, "upscale")  # upscale has its refine strength instead
    assert "strength" not in panel.editors["upscale"]
    set_operation(window, "inpaint")
    assert panel.editor("strength").value() == 0.9
    # A model's recommendation changes inpaint's strength only, also while another operation is on show.
    set_operation(window, "img2img")
    panel.set_model_state("model-b", "ready", "", True, (("inpaint", "fill", "blur"), ("inpaint", "strength", 1.0)))
    assert panel.editor("strength").value() == 0.45
    s = settings_mod.Settings()
    panel.store(s)
    settings_mod.save(s, tmp_path / "s.json")
    g = settings_mod.load(tmp_path / "s.json").generation
    assert (g.of("inpaint").strength, g.of("img2img").strength, g.of("outpaint").strength) == (1.0, 0.45, 1.0)
    assert g.operation == "img2img"
