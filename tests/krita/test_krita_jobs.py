"""Jobs in a (mocked) Krita document through the plugin's controller and a scripted engine: previews in a
temporary layer that goes on cancel, failure, apply and discard; results applied as one new layer named with
the seed, one undo step, the document unchanged outside the job's mask."""
import dataclasses
import queue

import numpy as np
import pytest

from backend.fake import FakeEngine
from backend.events import Cancelled, Failed, Result, TERMINAL
from krita_mock import Document
from krita_plugin.latent_studio_krita.apply import PREVIEW_NAME, parameters_of, remove_stale_previews
from krita_plugin.latent_studio_krita.controller import Controller
from operations import SPECS, CommonSettings, NothingToDo
from scenes import make_scene

COMMON = CommonSettings(steps=3, seed=40, count=3)


class GuiThread:
    """``post`` as Krita's GUI thread sees it: events queue up and run when the test lets them."""

    def __init__(self):
        self.queue = queue.Queue()

    def post(self, func, event):
        self.queue.put((func, event))

    def run_until(self, done, timeout=10.0):
        while True:
            func, event = self.queue.get(timeout=timeout)
            func(event)
            if done(event):
                return event


@pytest.fixture
def setup():
    gui = GuiThread()
    engines = []

    def factory(on_event):
        engines.append(FakeEngine(on_event, steps=2))
        return engines[-1]

    controller = Controller(factory, gui.post, "test")
    image, mask = make_scene(96, 128)
    doc = Document(image)
    doc.select(42, 32, 43, 32)
    yield controller, gui, engines[0], doc, image, mask
    controller.shutdown()


def names(doc):
    return [n.name() for n in doc.layers()]


def settings(name):
    return SPECS[name].default_settings()


def test_previews_show_in_a_temporary_layer_that_cancel_removes(setup):
    controller, gui, engine, doc, image, _ = setup
    engine.hold()
    job = controller.generate(doc, "inpaint", COMMON, settings("inpaint"))
    gui.run_until(lambda e: type(e).__name__ == "Preview")
    assert names(doc) == ["Background", PREVIEW_NAME] and doc.activeNode().name() == "Background"
    assert controller.jobs[job].state == "running" and controller.jobs[job].total > 0
    controller.cancel(job)
    engine.release()
    assert isinstance(gui.run_until(lambda e: isinstance(e, TERMINAL)), Cancelled)
    assert names(doc) == ["Background"] and np.array_equal(doc.projection(), image)
    assert "as it was" in controller.jobs[job].message


def test_a_result_offers_its_variations_and_applying_one_is_one_layer_and_one_step(setup):
    controller, gui, engine, doc, image, mask = setup
    job = controller.generate(doc, "inpaint", COMMON, settings("inpaint"))
    assert isinstance(gui.run_until(lambda e: isinstance(e, TERMINAL)), Result)
    assert controller.variations.id == job and len(controller.variations.results) == 3
    assert names(doc) == ["Background", PREVIEW_NAME]  # the first variation, previewed
    controller.select(2)
    node = controller.apply()
    chosen = controller.jobs[job].results[2]
    assert names(doc) == ["Background", node.name()] and node.name().endswith(f"seed {chosen.seed}")
    assert chosen.seed == 42 and doc.activeNode().name() == "Background"
    assert doc.journal == [("add", PREVIEW_NAME)]  # the whole job: one step in Krita's history, the layer's
    flat = doc.projection()
    x, y, w, h = chosen.rect
    outside = np.ones(image.shape[:2], bool)
    outside[y:y + h, x:x + w] = chosen.mask == 0
    assert np.array_equal(flat[outside], image[outside])  # bit-identical outside the job's mask
    inside = flat[y:y + h, x:x + w][chosen.mask > 0]
    assert np.array_equal(inside, chosen.image[chosen.mask > 0]) and not np.array_equal(inside, image[mask > 0])
    assert "Seed: 42" in parameters_of(doc, node) and "Steps: 3" in parameters_of(doc, node)


def test_a_failed_job_says_its_sentence_and_leaves_no_preview(setup):
    controller, gui, engine, doc, image, _ = setup
    engine.fail_next("The model ran out of memory: use fewer variations.")
    job = controller.generate(doc, "inpaint", COMMON, settings("inpaint"))
    assert isinstance(gui.run_until(lambda e: isinstance(e, TERMINAL)), Failed)
    assert controller.jobs[job].message == "The model ran out of memory: use fewer variations."
    assert names(doc) == ["Background"] and np.array_equal(doc.projection(), image)


def test_applying_two_variations_of_one_job_gives_two_layers(setup):
    controller, gui, engine, doc, image, _ = setup
    controller.generate(doc, "inpaint", COMMON, settings("inpaint"))
    gui.run_until(lambda e: isinstance(e, TERMINAL))
    first, second = controller.apply(0), controller.apply(1)
    assert names(doc) == ["Background", first.name(), second.name()]
    assert first.name().endswith("seed 40") and second.name().endswith("seed 41")
    assert not np.array_equal(first.pixels, second.pixels)


def test_discard_removes_the_preview_and_applies_nothing(setup):
    controller, gui, engine, doc, image, _ = setup
    controller.generate(doc, "img2img", dataclasses.replace(COMMON, count=1), settings("img2img"))
    gui.run_until(lambda e: isinstance(e, TERMINAL))
    controller.discard()
    assert names(doc) == ["Background"] and np.array_equal(doc.projection(), image)
    assert controller.apply() is None


def test_jobs_queue_and_each_is_answered_in_turn(setup):
    controller, gui, engine, doc, *_ = setup
    first = controller.generate(doc, "inpaint", COMMON, settings("inpaint"))
    second = controller.generate(doc, "upscale", COMMON, settings("upscale"))
    assert controller.busy and [j.state for j in controller.jobs.values()] == ["queued", "queued"]
    gui.run_until(lambda e: isinstance(e, TERMINAL) and e.job_id == second)
    assert controller.jobs[first].state == "done" and controller.jobs[second].state == "done"
    assert not controller.busy and controller.variations.id == second


def test_an_upscale_scales_the_document_and_adds_the_image_on_top(setup):
    controller, gui, engine, doc, image, _ = setup
    controller.generate(doc, "upscale", COMMON, dataclasses.replace(settings("upscale"), scale=2))
    gui.run_until(lambda e: isinstance(e, TERMINAL))
    node = controller.apply(0)
    assert (doc.width(), doc.height()) == (256, 192) and names(doc)[-1] == node.name()
    assert np.array_equal(node.pixels, controller.jobs[1].results[0].image)


def test_a_request_the_engine_refuses_is_one_sentence_before_anything_runs(setup):
    controller, gui, engine, doc, *_ = setup
    with pytest.raises(NothingToDo, match="was not found"):
        controller.generate(doc, "inpaint", dataclasses.replace(COMMON, model="/no/such/model"), settings("inpaint"))
    with pytest.raises(NothingToDo, match="Open or create an image"):
        controller.generate(None, "inpaint", COMMON, settings("inpaint"))
    assert engine.submitted == [] and names(doc) == ["Background"]


def test_stale_preview_layers_are_found_and_removed():
    doc = Document(w=8, h=8)
    doc.rootNode().addChildNode(doc.createNode(PREVIEW_NAME, "paintlayer"), None)
    assert remove_stale_previews(doc) == 1 and names(doc) == ["Background"]


def test_a_preview_layer_left_in_a_saved_file_goes_at_the_next_job(setup):
    controller, gui, engine, doc, image, _ = setup
    doc.rootNode().addChildNode(doc.createNode(PREVIEW_NAME, "paintlayer"), None)
    controller.generate(doc, "inpaint", COMMON, settings("inpaint"))
    gui.run_until(lambda e: isinstance(e, TERMINAL))
    assert names(doc).count(PREVIEW_NAME) == 1  # the new job's own preview only


def test_text_to_image_into_the_selection_is_a_layer_with_the_selections_alpha(setup):
    controller, gui, engine, doc, image, mask = setup
    job = controller.generate(doc, "txt2img", COMMON, settings("txt2img"))
    assert isinstance(gui.run_until(lambda e: isinstance(e, TERMINAL)), Result), controller.jobs[job].message
    chosen = controller.jobs[job].results[controller.selected]
    node = controller.apply()
    x, y, w, h = chosen.rect
    assert (x, y, w, h) == (42, 32, 43, 32)  # the selection's box
    assert names(doc) == ["Background", node.name()]
    layer = node.pixels[y:y + h, x:x + w]
    assert np.array_equal(layer[..., 3], mask[y:y + h, x:x + w])  # the selection is the new layer's alpha
