"""Live painting (issue 16) on the scriptable fake engine: strokes drawn with pytest-qt in the real window."""
import numpy as np
import pytest
from PySide6.QtCore import Qt

from backend.events import Cancelled, Result
from backend.interface import ModelInfo
from canvas.geometry import Rect
from canvas.live import LiveSettings
from canvas.ora import load_ora, save_ora
from canvas.selection import Selection
from gestures import drag
from studio.live import FALLBACK, live_defaults



def stroke(qtbot, window, y, x0=120, x1=220):
    drag(qtbot, window.view, [(x0, y), ((x0 + x1) / 2, y + 5), (x1, y)])


def start_live(window, qtbot, box=Rect(100, 100, 256, 256)):
    window.select_tool("brush")
    window.tool_options.set_color((30, 120, 220))
    stroke(qtbot, window, 150)  # something visible to regenerate
    if box is not None:
        window.doc.select(Selection.rectangle(box))
    assert window.live.set_on(True), window.messages.history
    return window.live


def completed_in_engine(events):
    return [e for e in events if isinstance(e, Result)]


@pytest.fixture
def events(window):
    seen = []
    window.bridge.event.connect(seen.append)
    return seen


def test_live_submits_img2img_of_the_region_with_fallback_settings(window, qtbot, fake_engine):
    live = start_live(window, qtbot)
    engine = fake_engine["engine"]
    req = engine.submitted[-1]
    assert req.operation == "img2img" and req.live  # the engine's live path
    assert req.origin == (100, 100) and req.image.shape[:2] == (256, 256)
    assert (req.steps, req.sampler, req.count) == (FALLBACK["steps"], FALLBACK["sampler"], 1)
    assert req.strength == pytest.approx(0.5)
    assert np.array_equal(req.image, window.doc.flatten(Rect(100, 100, 256, 256)))
    qtbot.waitUntil(lambda: live.result is not None)
    image, rect = window.view.previews["live"]
    assert tuple(rect) == (100, 100, 256, 256)
    assert window.view.live_region == Rect(100, 100, 256, 256)
    assert window.live_action.isChecked() and window.generation.live.button.isChecked()


def test_a_new_stroke_cancels_the_running_live_job(window, qtbot, fake_engine, events):
    live = start_live(window, qtbot)
    engine = fake_engine["engine"]
    qtbot.waitUntil(lambda: live.running is None)
    engine.hold()
    stroke(qtbot, window, 200)
    qtbot.waitUntil(lambda: live.running is not None)
    first = live.running
    qtbot.wait(50)
    stroke(qtbot, window, 250)
    qtbot.waitUntil(lambda: any(isinstance(e, Cancelled) and e.job_id == first for e in events))
    qtbot.waitUntil(lambda: live.running is not None and live.running != first)
    newest = window.doc.flatten(Rect(100, 100, 256, 256))
    assert np.array_equal(engine.submitted[-1].image, newest)  # built from the painting after the 2nd stroke
    engine.release()
    qtbot.waitUntil(lambda: live.running is None)
    assert not any(isinstance(e, Result) and e.job_id == first for e in events)


def test_a_burst_of_strokes_runs_at_most_two_jobs_and_shows_the_last(window, qtbot, fake_engine, events):
    live = start_live(window, qtbot)
    engine = fake_engine["engine"]
    qtbot.waitUntil(lambda: live.running is None)
    events.clear()
    before = len(engine.submitted)
    engine.hold()
    for i in range(20):
        stroke(qtbot, window, 110 + i * 12, 110 + i * 5, 300 - i * 3)
        qtbot.wait(50)
    last = window.doc.flatten(Rect(100, 100, 256, 256))
    engine.release()
    qtbot.waitUntil(lambda: live.running is None and not live.pending, timeout=5000)
    done = completed_in_engine(events)
    assert 1 <= len(done) <= 2
    assert len(engine.submitted) - before <= 20  # never more than one job per stroke
    request, result = live.result
    assert np.array_equal(request.image, last)  # the shown result is the last stroke's
    assert result.seed == request.seed
    shown, rect = window.view.previews["live"]
    assert tuple(rect) == (100, 100, 256, 256)


def test_keep_is_one_undo_step_with_parameters(window, qtbot):
    live = start_live(window, qtbot)
    qtbot.waitUntil(lambda: live.result is not None)
    doc = window.doc
    depth, layers = len(doc.history), len(doc.layers)
    layer = live.keep()
    assert len(doc.layers) == layers + 1 and doc.layers[-1] is layer
    assert len(doc.history) == depth + 1
    assert layer.name.startswith("Live")
    assert "Denoising strength: 0.5" in layer.parameters and "Steps: 4" in layer.parameters
    _request, result = live.result if live.result else (None, None)
    window.undo()
    assert len(doc.layers) == layers


def test_leaving_live_removes_the_preview_and_leaves_the_document_bit_identical(window, qtbot, fake_engine):
    window.select_tool("brush")
    stroke(qtbot, window, 150)
    doc = window.doc
    before = [layer.pixels.read(doc.bounds).copy() for layer in doc.layers]
    revision = doc.history.revision
    live = window.live
    assert live.set_on(True)
    qtbot.waitUntil(lambda: live.result is not None)
    assert "live" in window.view.previews
    live.set_on(False)
    assert "live" not in window.view.previews and window.view.live_region is None
    assert not window.live_action.isChecked()
    assert doc.history.revision == revision
    assert all(np.array_equal(a, layer.pixels.read(doc.bounds)) for a, layer in zip(before, doc.layers))
    n = len(fake_engine["engine"].submitted)
    stroke(qtbot, window, 300)
    qtbot.wait(50)
    assert len(fake_engine["engine"].submitted) == n  # off: strokes start nothing


def test_a_stroke_outside_the_region_or_a_selection_change_starts_nothing(window, qtbot, fake_engine):
    live = start_live(window, qtbot, box=Rect(100, 100, 128, 128))
    qtbot.waitUntil(lambda: live.running is None)
    n = len(fake_engine["engine"].submitted)
    stroke(qtbot, window, 500, 500, 600)
    window.doc.select(Selection.rectangle(Rect(10, 10, 30, 30)))
    qtbot.wait(50)
    assert len(fake_engine["engine"].submitted) == n


def test_live_state_round_trips_through_ora(window, qtbot, tmp_path):
    live = start_live(window, qtbot)
    window.generation.live.strength.setValue(0.35)
    window.generation.live.seed.setValue(1234)
    path = tmp_path / "live.ora"
    save_ora(window.doc.copy(), path)
    doc = load_ora(path)
    assert doc.live == LiveSettings(Rect(100, 100, 256, 256), 0.35, 1234, True)
    live.set_on(False)
    window.set_document(doc, path)
    assert not live.on and "live" not in window.view.previews  # opened: live stays off
    assert window.generation.live.values() == (0.35, 1234)


def test_a_bad_live_value_in_a_file_is_dropped(tmp_path):
    import zipfile

    from canvas.document import Document

    doc = Document(64, 64)
    doc.add_layer()
    doc.live = LiveSettings(Rect(0, 0, 32, 32), 0.4, 7, False)
    path = tmp_path / "a.ora"
    save_ora(doc, path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    xml = members["stack.xml"].decode().replace('ls:live-strength="0.4"', 'ls:live-strength="nan"')
    xml = xml.replace('ls:live-w="32"', 'ls:live-w="-5"').replace('ls:live-seed="7"', 'ls:live-seed="seven"')
    bad = tmp_path / "bad.ora"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, xml if name == "stack.xml" else data)
    assert load_ora(bad).live == LiveSettings(None, 0.5, 0, False)


@pytest.mark.parametrize("case", ["empty", "too big", "bad model"])
def test_bad_input_is_one_sentence_and_live_stays_off(window, qtbot, fake_engine, case):
    doc = window.doc
    window.select_tool("brush")
    stroke(qtbot, window, 150)
    if case == "empty":
        for layer in doc.layers:
            doc.set_layer_properties(layer, visible=False)  # nothing visible in the region
        assert not doc.flatten()[..., 3].any()
    elif case == "too big":
        doc.grow(right=1200)
    else:
        window.generation.editor("model").set_value("/no/such/model")
    before = doc.history.revision
    n = len(fake_engine["engine"].submitted)
    assert not window.live.set_on(True)
    message = window.messages.history[-1]
    assert message.count(". ") == 0 and message.endswith(".")
    assert not window.live.on and not window.generation.live.button.isChecked()
    assert len(fake_engine["engine"].submitted) == n and doc.history.revision == before


def test_the_model_live_settings_are_used():
    info = ModelInfo("m", recommended=(("inpaint", "strength", 0.5), ("live", "steps", 6)))
    info_mapping = type("Info", (), {"live_defaults": {"steps": 2, "sampler": "euler", "strength": 0.7,
                                                       "guidance": 1.5}, "recommended": ()})()
    assert live_defaults(info)["steps"] == 6
    assert live_defaults(info_mapping) == {"steps": 2, "sampler": "euler", "strength": 0.7, "guidance": 1.5}
    assert live_defaults(type("I", (), {"live_defaults": {"steps": -1, "sampler": "nope"}})()) == FALLBACK
    engines = ModelInfo("m", live=(("steps", 6), ("sampler", "dpmpp_2m"), ("strength", 0.5)))  # as the engine says
    assert live_defaults(engines) == {"steps": 6, "sampler": "dpmpp_2m", "strength": 0.5}


def test_the_embedded_models_live_setting_reaches_the_app():
    from backend.models import model_info

    assert live_defaults(model_info("")) == {"steps": 6, "sampler": "dpmpp_2m", "strength": 0.5}


def test_a_live_update_is_quick_on_the_gui_thread(window, qtbot):
    live = start_live(window, qtbot, box=Rect(0, 0, 512, 512))
    qtbot.waitUntil(lambda: live.running is None)
    stroke(qtbot, window, 300)
    qtbot.waitUntil(lambda: live.submitted >= 2)
    assert live.last_build_s < 0.033


def test_a_long_stroke_updates_while_it_goes_on(window, qtbot, fake_engine):
    live = start_live(window, qtbot)
    qtbot.waitUntil(lambda: live.running is None)
    live._during.setInterval(30)
    n = live.submitted
    view = window.view
    qtbot.mousePress(view, Qt.LeftButton, pos=view.to_widget(120, 300).toPoint())
    for i in range(8):
        qtbot.mouseMove(view, pos=view.to_widget(120 + i * 15, 300 + i * 2).toPoint())
        qtbot.wait(40)
    assert window.doc.stroking and live.submitted > n  # updated before the stroke ended
    during = live.submitted
    qtbot.mouseRelease(view, Qt.LeftButton, pos=view.to_widget(240, 316).toPoint())
    qtbot.waitUntil(lambda: live.running is None and not live.pending and not live.dirty)
    request, _result = live.result
    assert np.array_equal(request.image, window.doc.flatten(Rect(100, 100, 256, 256)))  # the whole stroke
    assert live.submitted >= during


@pytest.mark.slow
def test_live_on_the_real_engine_with_a_tiny_model(real_window, qtbot, tiny_sd15_folder):
    window = real_window
    window.generation.editor("model").set_value(str(tiny_sd15_folder))
    live = start_live(window, qtbot, box=Rect(96, 96, 128, 128))
    qtbot.waitUntil(lambda: live.result is not None, timeout=120_000)
    first = live.completed
    stroke(qtbot, window, 120, 100, 200)
    stroke(qtbot, window, 180, 100, 200)
    qtbot.waitUntil(lambda: live.running is None and not live.pending and live.completed > first, timeout=120_000)
    request, result = live.result
    assert np.array_equal(request.image, window.doc.flatten(Rect(96, 96, 128, 128)))  # the newest painting
    assert tuple(result.rect) == (96, 96, 128, 128) and "live" in window.view.previews
    before = window.doc.flatten().copy()
    live.set_on(False)
    assert np.array_equal(window.doc.flatten(), before) and "live" not in window.view.previews


def test_keep_without_a_result_is_one_sentence(window):
    assert window.live.keep() is None
    assert window.messages.history[-1].startswith("There is no live result to keep yet")


def test_the_model_live_settings_reach_the_request(window, qtbot, fake_engine):
    fake_engine["engine"].infos[""] = ModelInfo("mini", recommended=(
        ("live", "steps", 6), ("live", "sampler", "euler"), ("live", "strength", 0.3)))
    start_live(window, qtbot)
    req = fake_engine["engine"].submitted[-1]
    assert (req.steps, req.sampler, req.strength) == (6, "euler", pytest.approx(0.3))
    assert window.generation.live.values()[0] == pytest.approx(0.3)  # the document's first live takes it
    assert window.doc.live.strength == pytest.approx(0.3)


def test_live_jobs_are_steered_like_every_job(window, qtbot, fake_engine):
    from operations.steering import AppSteering, LoraEntry

    window.generation.set_app_steering(AppSteering(loras=(LoraEntry("ink.safetensors", 0.7),)))
    start_live(window, qtbot)
    req = fake_engine["engine"].submitted[-1]
    assert [(l.name, l.weight) for l in req.loras] == [("ink.safetensors", 0.7)]
