"""The engine end to end on tiny random models loaded through the real loaders."""
import shutil

import numpy as np
import pytest

from backend.events import Cancelled, Failed, Preview, Progress, Result, Started
from backend import Img2ImgRequest, InpaintRequest, OutpaintRequest

from conftest import make_scene  # tests/backend/conftest.py is first on sys.path here


def inpaint(model, **kw):
    img, mask = make_scene()
    args = dict(model=str(model), steps=3, guidance=5.0, feather=4, grow=2, padding=8)
    args.update(kw)
    return InpaintRequest.from_document(img, mask, **args)


def test_events_arrive_in_order_with_a_preview_every_step(engine, recorder, tiny_sd15_folder):
    job = engine.submit(inpaint(tiny_sd15_folder, steps=4, origin=(100, -50)))
    events = recorder.wait(job)
    assert isinstance(events[0], Started) and events[0].operation == "inpaint" and events[0].total == 4
    assert isinstance(events[-1], Result)
    steps = [e.step for e in events if isinstance(e, Progress) and not e.stage.startswith("Loading")]
    assert steps == [1, 2, 3, 4]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3, 4]
    result = events[-1].images[0]
    for p in previews:
        assert p.image.dtype == np.uint8 and p.image.shape[2] == 4
        assert p.rect == result.rect and p.image.shape[:2] == (p.rect[3], p.rect[2])
    x, y, w, h = result.rect
    assert (x, y) != (0, 0) and x >= 100 and y >= -50  # document coordinates


def test_unmasked_pixels_are_bit_exact(engine, recorder, tiny_sd15_folder):
    req = inpaint(tiny_sd15_folder, padding=24)
    events = recorder.wait(engine.submit(req))
    item = events[-1].images[0]
    ox, oy = req.origin
    x, y, w, h = item.rect
    original = req.image[y - oy: y - oy + h, x - ox: x - ox + w]
    outside = item.mask == 0
    assert outside.sum() > 500
    assert np.array_equal(item.image[outside], original[outside])
    assert not np.array_equal(item.image[item.mask == 255], original[item.mask == 255])


def test_same_seed_same_pixels_and_variations_use_following_seeds(engine, recorder, tiny_sd15_folder):
    a = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, seed=7)))[-1].images[0]
    b = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, seed=7)))[-1].images[0]
    assert np.array_equal(a.image, b.image)
    many = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, seed=6, count=2)))[-1].images
    assert [m.seed for m in many] == [6, 7]
    assert np.array_equal(many[1].image, a.image)
    assert not np.array_equal(many[0].image, many[1].image)
    assert many[0].parameters["Seed"] == 6 and many[1].parameters["Seed"] == 7


def test_cancel_mid_job_then_the_engine_still_works(engine, recorder, tiny_sd15_folder):
    def cancel_at_step_2(event):
        if isinstance(event, Progress) and event.step == 2:
            engine.cancel(event.job_id)

    recorder.on_event = cancel_at_step_2
    job = engine.submit(inpaint(tiny_sd15_folder, steps=10))
    events = recorder.wait(job)
    recorder.on_event = None
    assert isinstance(events[-1], Cancelled)
    assert not any(isinstance(e, Result) for e in events)
    last_step = max(e.step for e in events if isinstance(e, Progress))
    assert last_step <= 3  # stopped within one step of the request
    after = recorder.wait(engine.submit(inpaint(tiny_sd15_folder)))
    assert isinstance(after[-1], Result)


def test_cancel_a_queued_job(engine, recorder, tiny_sd15_folder):
    first = engine.submit(inpaint(tiny_sd15_folder, steps=6))
    second = engine.submit(inpaint(tiny_sd15_folder))
    assert engine.cancel(second)
    assert isinstance(recorder.wait(first)[-1], Result)
    events = recorder.wait(second)
    assert [type(e) for e in events] == [Cancelled]
    assert not engine.cancel(second)


def test_a_failed_job_leaves_the_engine_ready(engine, recorder, tiny_sd15_folder, tmp_path):
    events = recorder.wait(engine.submit(inpaint(tmp_path / "no-such-model")))
    assert isinstance(events[-1], Failed) and "was not found" in events[-1].message
    assert isinstance(recorder.wait(engine.submit(inpaint(tiny_sd15_folder)))[-1], Result)


def test_nine_channel_inpainting_model(engine, recorder, tiny_sd15_inpaint_folder):
    events = recorder.wait(engine.submit(inpaint(tiny_sd15_inpaint_folder, fill="blur")))
    assert isinstance(events[-1], Result), events[-1]
    assert engine._models.get(str(tiny_sd15_inpaint_folder)).is_inpainting


@pytest.mark.parametrize("which", ["tiny_sd15_folder", "tiny_sd15_inpaint_folder"])
def test_img2img_variations_keep_the_size_and_alpha(engine, recorder, request, which):
    model = request.getfixturevalue(which)
    img, _ = make_scene()
    img[:10, :10, 3] = 0
    req = Img2ImgRequest(image=img, model=str(model), steps=4, strength=0.5, count=2, origin=(5, 6))
    events = recorder.wait(engine.submit(req))
    assert isinstance(events[0], Started) and events[0].total == 4  # 2 steps × 2 images
    results = events[-1].images
    assert len(results) == 2
    for r in results:
        assert r.rect == (5, 6, 128, 96)
        assert np.array_equal(r.image[..., 3], img[..., 3])
        assert r.parameters["Denoising strength"] == "0.5"


def test_img2img_shares_the_inpaint_weights(engine, tiny_sd15_folder):
    model = engine._models.get(str(tiny_sd15_folder))
    assert model.img2img is not model.inpaint
    assert model.img2img.unet is model.inpaint.unet and model.img2img.vae is model.inpaint.vae


def test_single_file_checkpoint_with_sidecar_config(engine, recorder, tiny_sd15_single_file, tmp_path):
    ckpt, config = tiny_sd15_single_file
    local = tmp_path / "painter.safetensors"
    shutil.copy(ckpt, local)
    shutil.copytree(config, tmp_path / "painter.config")
    events = recorder.wait(engine.submit(inpaint(local)))
    assert isinstance(events[-1], Result), events[-1]
    assert events[-1].images[0].parameters["Model"] == "painter"


def test_nine_channel_single_file(engine, recorder, tiny_sd15_inpaint_single_file, tmp_path):
    ckpt, config = tiny_sd15_inpaint_single_file
    local = tmp_path / "inp.safetensors"
    shutil.copy(ckpt, local)
    shutil.copytree(config, tmp_path / "inp.config")
    events = recorder.wait(engine.submit(inpaint(local)))
    assert isinstance(events[-1], Result), events[-1]


def test_pickle_checkpoints_are_refused_and_run_nothing(engine, recorder, malicious_pickle):
    path, marker = malicious_pickle
    events = recorder.wait(engine.submit(inpaint(path)))
    assert isinstance(events[-1], Failed) and "pickle" in events[-1].message and "refused" in events[-1].message
    events = recorder.wait(engine.submit(inpaint(path, allow_pickle=True)))
    assert isinstance(events[-1], Failed) and "refused" in events[-1].message
    assert not marker.exists()


def test_every_sampler_runs_previews_and_repeats_itself(engine, recorder, tiny_sd15_folder):
    """Ancestral samplers draw fresh noise at every step: from the seeded generator, never torch's global one."""
    import torch

    from backend.samplers import SAMPLERS

    for name in SAMPLERS:
        torch.manual_seed(1)  # torch's global generator in another state for each run: a seeded result must not care
        events = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, sampler=name, steps=3, seed=5)))
        assert isinstance(events[-1], Result), (name, events[-1])
        assert len([e for e in events if isinstance(e, Preview)]) == 3, name
        torch.manual_seed(2)
        again = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, sampler=name, steps=3, seed=5)))
        assert np.array_equal(events[-1].images[0].image, again[-1].images[0].image), name


def test_preload_reports_the_model_state(engine, recorder, tiny_sd15_folder, tmp_path):
    import time

    from backend.events import ModelState

    engine.preload(str(tiny_sd15_folder))
    engine.preload(str(tmp_path / "missing"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [(e.state, e.name) for e in recorder.of(0) if isinstance(e, ModelState)]
        if any(s == "failed" for s, _ in states):
            break
        time.sleep(0.05)
    assert ("ready", tiny_sd15_folder.name) in states
    assert states.index(("loading", tiny_sd15_folder.name)) < states.index(("ready", tiny_sd15_folder.name))
    failed = [e for e in recorder.of(0) if isinstance(e, ModelState) and e.state == "failed"]
    assert "was not found" in failed[-1].message


def test_colour_guidance_removes_a_colour_cast_keeps_detail_and_damps_blotches(tiny_sd15_inpaint_folder):
    import torch
    from PIL import Image

    from backend.core import _LatentAnchor
    from backend.models import ModelManager

    pipe = ModelManager(device="cpu").get(str(tiny_sd15_inpaint_folder)).inpaint
    pipe.scheduler.set_timesteps(4)
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    mask = np.zeros((128, 128), np.uint8)
    mask[32:96, 32:96] = 255
    plain = _LatentAnchor(pipe, init, Image.fromarray(mask), seed=1)
    guided = _LatentAnchor(pipe, init, Image.fromarray(mask), seed=1, guide_cell=4)
    inside = plain.mask.bool().expand_as(plain.known)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float().expand_as(plain.known)  # finer than a guide cell: detail

    def detail_rms_outside(x):  # per channel, of the fine part of the known latents
        fine = x - guided._low(x)
        return torch.tensor([float((fine[:, c] ** 2)[~inside[:, c]].mean().sqrt())
                             for c in range(x.shape[1])]).view(1, -1, 1, 1)

    for done, known in ((0, pipe.scheduler.add_noise(plain.known, plain.noise, pipe.scheduler.timesteps[:1])),
                        (4, plain.known)):  # a middle step, and after the last (the clean prefill)
        coarse = guided._low(known)
        rms = detail_rms_outside(known)
        # What the model made in the hole: a flat colour cast (its own coarse part) with detail
        # weaker than the surroundings', to keep...
        weak = 2.0 + 0.5 * rms * checker
        a, b = plain.blend(weak, done, 4), guided.blend(weak, done, 4)
        assert torch.equal(a[inside], weak.expand_as(a)[inside])  # unguided: the hole is the model's
        assert torch.allclose(b[inside], (coarse + 0.5 * rms * checker)[inside], atol=1e-4)  # cast gone, detail kept
        assert torch.equal(a[~inside], b[~inside])  # outside: the known image either way
        # ... and a blotchy pattern ten times stronger than the surroundings' detail, damped to their strength.
        loud = 2.0 + 10 * rms * checker
        assert torch.allclose(guided.blend(loud, done, 4)[inside], (coarse + rms * checker)[inside], atol=1e-4)
    # A hole with nothing known around it: nothing to measure the detail against, so it is kept.
    whole = _LatentAnchor(pipe, init, Image.fromarray(np.full((128, 128), 255, np.uint8)), seed=1, guide_cell=4)
    loud = 2.0 + checker
    assert torch.allclose(whole.blend(loud, 4, 4), whole._low(whole.known) + checker, atol=1e-4)


def test_colour_guidance_is_used_only_with_fills_from_the_surroundings(engine, recorder, tiny_sd15_inpaint_folder,
                                                                       tmp_path, monkeypatch):
    import json

    from backend import core

    model = tmp_path / "guided"
    shutil.copytree(tiny_sd15_inpaint_folder, model)
    (model / "latent_studio.json").write_text(json.dumps({"anchor_latents": True, "colour_guide_cell": 2}))
    cells = []
    real = core._LatentAnchor

    def spy(*args, **kw):
        cells.append(kw.get("guide_cell", 0))
        return real(*args, **kw)

    monkeypatch.setattr(core, "_LatentAnchor", spy)
    for fill in ("blur", "original", "flat", "noise"):
        events = recorder.wait(engine.submit(inpaint(model, fill=fill)))
        assert isinstance(events[-1], Result), events[-1]
    assert cells == [2, 0, 2, 0]
    img, _ = make_scene()
    for fill, cell in (("edge", 2), ("blur", 2), ("noise", 0)):  # outpaint prefills the new area itself
        cells.clear()
        events = recorder.wait(engine.submit(OutpaintRequest(image=img, model=str(model), right=32, steps=2,
                                                             fill=fill)))
        assert isinstance(events[-1], Result), events[-1]
        assert cells and set(cells) == {cell}, fill


def test_detail_transfer_runs_for_models_that_ask_for_it_unless_the_request_declines(
        engine, recorder, tiny_sd15_inpaint_folder, tmp_path, monkeypatch):
    import json

    from backend import core

    calls = []
    real = core.transfer_detail

    def spy(original, generated, soft, seed=0):
        calls.append(soft.shape)
        return real(original, generated, soft, seed)

    monkeypatch.setattr(core, "transfer_detail", spy)
    asks = tmp_path / "asks"
    shutil.copytree(tiny_sd15_inpaint_folder, asks)
    (asks / "latent_studio.json").write_text(json.dumps({"restore_detail": True}))
    img, _ = make_scene()
    runs = [
        (inpaint(tiny_sd15_inpaint_folder), 0),  # the model does not ask
        (inpaint(asks), 1),
        (inpaint(asks, restore_detail=False), 0),
        (OutpaintRequest(image=img, model=str(asks), right=32, steps=2), 1),
        (OutpaintRequest(image=img, model=str(asks), right=32, steps=2, restore_detail=False), 0),
        (Img2ImgRequest(image=img, model=str(asks), steps=2, strength=0.5), 0),  # no surroundings
    ]
    for request, expected in runs:
        calls.clear()
        events = recorder.wait(engine.submit(request))
        assert isinstance(events[-1], Result), events[-1]
        assert bool(calls) == bool(expected), (request.operation, calls)
