"""The bugs a new user hit (issue 12), each reproduced, and the window's fit on a laptop screen."""
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt

from canvas.geometry import Rect
from canvas.selection import Selection

LAPTOP = QRect(0, 0, 1366, 768 - 40)  # a 1366×768 screen less a task bar


def inside(window, widget) -> bool:
    """Whether ``widget`` is shown and lies wholly inside the window."""
    if not widget.isVisible():
        return False
    top_left = widget.mapTo(window, QPoint(0, 0))
    return window.rect().contains(QRect(top_left, widget.size()))


def test_the_window_fits_a_laptop_screen_in_every_operation(window, qtbot):
    """Bug 1: the minimum height was 1046 px in Inpaint mode (1143 with the message bar or results)."""
    window.messages.show_message("Something went wrong with a rather long explanation " * 4, "details")
    window.doc.select(Selection.rectangle(Rect(100, 100, 100, 100)))
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)
    for name in ("inpaint", "outpaint", "img2img", "upscale"):
        window.generation.set_operation(name)
        qtbot.wait(1)
        hint = window.minimumSizeHint()
        assert hint.width() <= LAPTOP.width() and hint.height() <= LAPTOP.height(), (name, hint)
    window.setGeometry(QRect(0, 0, LAPTOP.width() - 16, LAPTOP.height() - 48))
    qtbot.wait(50)
    for widget in (window.variations.apply, window.variations.discard, window.variations.more,
                   window.generation.generate, window.generation.cancel, window.generation.progress,
                   window.statusBar(), window.view):
        assert inside(window, widget), widget
    window.resize(window.minimumSizeHint())  # the smallest the window gets: still everything within it
    qtbot.wait(50)
    assert inside(window, window.variations.apply) and inside(window, window.generation.generate)


def test_the_window_opens_inside_the_screen_even_with_a_size_from_a_bigger_one(window):
    from studio.layout import fit_geometry
    from studio.settings import WindowSettings

    for saved in ((), (1800, 900, 2400, 1500), (-500, -300, 1400, 900), (100, 50, 900, 600)):
        g = fit_geometry(saved, LAPTOP, minimum=(800, 500))
        assert LAPTOP.contains(g.adjusted(-8, -40, 8, 8)), (saved, g)  # the window and its frame
    assert fit_geometry((100, 50, 900, 600), LAPTOP) == QRect(100, 50, 900, 600)  # a place that fits is kept
    window.panels.place(WindowSettings(geometry=(1800, 900, 2400, 1500)), LAPTOP)
    assert LAPTOP.contains(window.geometry())
    window.panels.store(window.settings.window)
    g = window.geometry()
    assert window.settings.window.geometry == (g.x(), g.y(), g.width(), g.height())


@pytest.mark.parametrize("zoom", [0.5, 1 / 3, 2 / 3, 1.5, 0.75])
def test_the_selection_tint_has_no_seams_between_display_tiles(window, qtbot, zoom):
    """Bug 4: a darker line every 256 screen px at zooms other than 100 % (the tint drawn twice)."""
    from studio.files import new_document

    window.set_document(new_document(1400, 1000), None)
    window.select_all()
    view = window.view
    view.set_zoom(zoom)
    view.pan_by(-view.pan.x() + 3.4, -view.pan.y() + 2.7)  # a fractional pan, the hard case
    qtbot.waitUntil(lambda: (view.grab(), not view.pending)[1], timeout=10_000)  # every display tile built
    image = view.grab().toImage()
    w, h = min(view.width(), int(1400 * zoom)), min(view.height(), int(1000 * zoom))
    shot = np.array([[image.pixelColor(x, y).green() for x in range(8, w - 8, 1)] for y in (h // 2,)])[0]
    column = np.array([image.pixelColor(w // 2, y).green() for y in range(8, h - 8)])
    for line in (shot, column):
        assert line.max() - line.min() <= 1, (zoom, np.unique(line, return_counts=True))


def test_autosave_writes_only_when_the_document_changed_and_is_not_a_save(window, qtbot):
    """Bug 5: `due` was read without calling it, so every tick autosaved; then the status said "Saved"."""
    autosave = window.autosave
    autosave.saver.interval_s = 0
    autosave.tick()
    qtbot.wait(50)
    assert autosave.writes == 0  # nothing changed: nothing written
    window.doc.add_layer("Sketch")
    autosave.tick()
    qtbot.waitUntil(lambda: autosave.writes == 1, timeout=10_000)
    assert autosave.saver.path.exists()
    assert window.windowTitle().startswith("Untitled *")  # still unsaved
    status = window.statusBar().currentMessage()
    assert "Saved" not in status and "recovery copy" in status.lower()
    autosave.tick()
    qtbot.wait(50)
    assert autosave.writes == 1  # unchanged since: no second write


def test_a_brush_click_outside_the_document_changes_nothing(window, qtbot):
    """Bug 6: a click on the grey area added a "Paint" undo step and marked the document modified."""
    window.select_tool("brush")
    doc = window.doc
    assert not window.modified
    outside = window.view.to_widget(doc.bounds.right + 40, doc.bounds.bottom + 40).toPoint()
    qtbot.mouseClick(window.view, Qt.LeftButton, pos=outside)
    assert not doc.history.can_undo and not window.modified
    edge = window.view.to_widget(doc.bounds.right, 100).toPoint()  # half the dab inside: that half paints
    qtbot.mouseClick(window.view, Qt.LeftButton, pos=edge)
    assert doc.history.can_undo and window.active_layer().bbox().right <= doc.bounds.right


def test_inpaint_with_nothing_visible_says_so(window, fake_engine):
    """Bug 7: with every layer hidden, inpaint returned an opaque black square without a word."""
    for layer in window.doc.layers:
        window.doc.set_layer_properties(layer, visible=False)
    window.doc.select(Selection.rectangle(Rect(100, 100, 100, 100)))
    for name in ("inpaint", "img2img", "outpaint", "upscale"):
        window.generation.set_operation(name)
        window.messages.hide()
        window.generate()
        assert "Nothing is visible" in window.messages.label.text(), name
    assert not fake_engine["engine"].submitted


def test_a_deterministic_upscale_hides_variations_and_asks_for_one(window, qtbot, fake_engine):
    """Bug 3: upscale returned N identical images under N seeds, and showed the Variations field."""
    panel = window.generation
    count_row = panel.editor("count").widget
    panel.set_operation("upscale")
    panel.editor("upscaler").set_value("lanczos")
    assert not count_row.isVisibleTo(window)
    panel.editor("refine_strength").set_value(0.3)  # a refine depends on the seed: variations again
    assert count_row.isVisibleTo(window)
    panel.editor("refine_strength").set_value(0.0)
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 1, timeout=10_000)
    assert fake_engine["engine"].submitted[-1].count == 1


def test_use_these_settings_puts_a_layers_settings_back(window, qtbot):
    panel = window.generation
    panel.set_operation("inpaint")
    panel.random_seed.setChecked(True)
    for name, value in (("grow", 20), ("feather", 3), ("fill", "flat"), ("strength", 0.7)):
        panel.editor(name).set_value(value)
    panel.editor("prompt").set_value("a red boat")
    window.doc.select(Selection.rectangle(Rect(100, 100, 100, 100)))
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=10_000)
    seed = window.variations.results[1].seed
    window.variations.list.setCurrentRow(1)
    window.variations.apply.click()
    layer = window.doc.layers[-1]
    panel.set_operation("img2img")
    for name, value in (("grow", 0), ("fill", "original"), ("strength", 1.0)):
        panel.editor(name, "inpaint").set_value(value)
    panel.editor("prompt").set_value("")
    window.use_layer_settings(layer)
    assert panel.operation_key() == "inpaint" and not panel.random_seed.isChecked()
    assert panel.common().seed == seed and panel.common().prompt == "a red boat"
    s = panel.settings()
    assert (s.grow, s.feather, s.fill, s.strength) == (20, 3, "flat", 0.7)
    window.use_layer_settings(window.doc.layers[0])  # the white background was never generated
    assert "has no generation parameters" in window.messages.label.text()


def test_settings_of_version_1_are_migrated(tmp_path):
    import json

    from studio import settings as settings_mod

    old = {"version": 1, "generation": {
        "operation": "outpaint", "model": "m", "prompt": "p", "steps": 12, "seed": 5, "count": 3, "strength": 0.8,
        "outpaint_strength": 0.9, "img2img_strength": 0.4, "grow": 4, "feather": 16, "padding": 30, "fill": "edge",
        "overlap": 20, "upscaler": "lanczos", "upscale_scale": 2, "upscale_tile": 512, "refine_strength": 0.2,
        "restore_detail": False, "random_seed": False, "defaults_applied_for": "m"},
        "recent_files": ["a.ora"], "brush_size": 33}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(old))
    s = settings_mod.load(path)
    g = s.generation
    assert s.version == 2 and s.recent_files == ["a.ora"] and s.brush_size == 33
    assert g.operation == "outpaint" and not g.random_seed and g.defaults_applied_for == "m"
    assert (g.common.model, g.common.prompt, g.common.steps, g.common.seed, g.common.count) == ("m", "p", 12, 5, 3)
    i, o, v, u = (g.of(n) for n in ("inpaint", "outpaint", "img2img", "upscale"))
    assert (i.strength, i.grow, i.feather, i.padding, i.restore_detail) == (0.8, 4, 16, 30, False)
    assert (o.strength, o.fill, o.overlap, o.restore_detail) == (0.9, "edge", 20, False)
    assert v.strength == 0.4
    assert (u.upscaler, u.scale, u.tile, u.refine_strength) == ("lanczos", 2, 512, 0.2)
    settings_mod.save(s, path)
    assert settings_mod.load(path) == s


def test_bad_settings_values_take_their_defaults(tmp_path):
    import json

    from studio import settings as settings_mod

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 2, "generation": {
        "operation": "warp", "common": {"steps": "many", "seed": -4, "sampler": "nope", "count": 1000},
        "operations": {"inpaint": {"fill": "paint", "grow": 9999, "restore_detail": "yes"}}},
        "window": {"geometry": [1, 2, "x", 4]}}))
    s = settings_mod.load(path)
    g = s.generation
    assert g.operation == "inpaint"
    assert (g.common.steps, g.common.seed, g.common.sampler, g.common.count) == (20, 0, "dpmpp_2m", 64)
    assert (g.of("inpaint").fill, g.of("inpaint").grow, g.of("inpaint").restore_detail) == ("original", 256, True)
    assert s.window.geometry == ()
