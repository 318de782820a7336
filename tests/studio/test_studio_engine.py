"""The window end to end on the real engine with tiny models: generate, preview, apply, cancel; and the
same seed gives the same pixels in the app and on the command line."""
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from canvas.geometry import Rect
from canvas.selection import Selection

pytestmark = pytest.mark.slow


def use_model(window, folder):
    window.generation.editor("model").set_value(str(folder))


def test_select_inpaint_preview_apply_undo(real_window, qtbot, tiny_sd15_folder, artifacts):
    window = real_window
    use_model(window, tiny_sd15_folder)
    window.generation.editor("prompt").set_value("a red door")
    window.doc.select(Selection.rectangle(Rect(300, 200, 200, 180)))
    before_layers = len(window.doc.layers)
    seen = []
    shot = {}

    def on_event(event):
        if type(event).__name__ == "Preview":
            seen.append(event)
            if "done" not in shot and window.view.previews:
                window.grab().save(str(artifacts / "window-mid-generation.png"))
                shot["done"] = True

    window.bridge.event.connect(on_event)
    qtbot.keyClick(window, Qt.Key_Return, Qt.ControlModifier)
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=120_000)
    assert len(seen) == 6  # a preview at every step: 3 steps × 2 variations
    assert shot.get("done") and (artifacts / "window-mid-generation.png").stat().st_size > 1000
    x, y, w, h = seen[0].rect
    assert x <= 300 and y <= 200 and x + w >= 500 and y + h >= 380
    window.variations.apply.click()
    top = window.doc.layers[-1]
    assert len(window.doc.layers) == before_layers + 1
    assert top.name == "Inpaint: a red door" and "Seed: 0," in top.parameters and "Operation: inpaint" in top.parameters
    window.undo()
    assert len(window.doc.layers) == before_layers


def test_cancel_mid_job_restores_the_view(real_window, qtbot, tiny_sd15_folder):
    window = real_window
    use_model(window, tiny_sd15_folder)
    window.generation.editor("steps").set_value(40)
    window.doc.select(Selection.rectangle(Rect(100, 100, 200, 200)))
    before = window.doc.flatten().copy()
    window.generate()
    qtbot.waitUntil(lambda: bool(window.view.previews), timeout=120_000)
    qtbot.keyClick(window, Qt.Key_Escape)
    qtbot.waitUntil(lambda: not window.jobs.jobs, timeout=60_000)
    assert not window.view.previews and not window.variations.results
    assert np.array_equal(window.doc.flatten(), before)
    assert window.generation.progress.format() == "cancelled"


def test_outpaint_and_upscale_through_the_window(real_window, qtbot, tiny_sd15_folder):
    window = real_window
    use_model(window, tiny_sd15_folder)
    from studio.files import new_document

    window.set_document(new_document(160, 120), None)
    original = window.doc.flatten().copy()
    window.doc.grow(right=48)
    window.generation.set_operation("outpaint")
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 2, timeout=120_000)
    window.variations.apply.click()
    flat = window.doc.flatten()
    assert (flat[:, 160:, 3] == 255).all()
    assert np.array_equal(flat[:, : 160 - 48], original[:, : 160 - 48])  # outside the overlap band: untouched
    window.generation.set_operation("upscale")
    window.generation.editor("upscaler").set_value("lanczos")
    window.generation.editor("scale").set_value(2)
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 1, timeout=120_000)
    window.variations.apply.click()
    assert window.doc.bounds == Rect(0, 0, 416, 240)


def test_the_same_seed_gives_the_same_image_in_the_app_and_the_cli(real_window, qtbot, tiny_sd15_inpaint_folder,
                                                                   tmp_path):
    import main as app_main
    from scenes import make_scene
    from studio.files import new_document

    window = real_window
    img, mask = make_scene()
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    doc = new_document(img.shape[1], img.shape[0])
    doc.layers[0].pixels.write(0, 0, img)
    doc.select(Selection.from_array(mask))
    window.set_document(doc, None)
    use_model(window, tiny_sd15_inpaint_folder)
    window.generation.editor("count").set_value(1)
    window.generation.editor("seed").set_value(31)
    window.generate()
    qtbot.waitUntil(lambda: len(window.variations.results) == 1, timeout=120_000)
    window.variations.apply.click()
    app_pixels = window.doc.flatten()
    code = app_main.main([str(a) for a in ("inpaint", "--image", tmp_path / "in.png", "--mask", tmp_path / "mask.png",
                                           "--model", tiny_sd15_inpaint_folder, "--steps", 3, "--seed", 31,
                                           "--out", tmp_path / "cli.png", "--quiet")])
    assert code == 0
    cli_pixels = np.asarray(Image.open(tmp_path / "cli.png").convert("RGBA"))
    assert np.array_equal(app_pixels, cli_pixels)
