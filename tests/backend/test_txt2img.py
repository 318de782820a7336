"""Text to image: the request, and runs on tiny random models through the real engine."""
import numpy as np
import pytest

from backend.errors import InvalidRequest
from backend.events import Failed, Preview, Progress, Result, Started
from backend.ops.txt2img import Txt2ImgRequest, check
from backend.region import feather_mask
from backend.requests import request_parameters


def soft_mask(w=96, h=64):
    """A feathered ellipse in the right half: soft edges, its box well inside the image."""
    yy, xx = np.mgrid[:h, :w]
    hard = (((xx - 64) / 20.0) ** 2 + ((yy - 30) / 16.0) ** 2 <= 1).astype(np.uint8) * 255
    return (feather_mask(hard, 8) * 255 + 0.5).astype(np.uint8)


def request(model, w=96, h=64, mask=None, **kw):
    args = dict(model=str(model), steps=3, guidance=5.0, prompt="a red barn in a field")
    args.update(kw)
    return Txt2ImgRequest.covering(w, h, mask, **args)


# --- the request ---------------------------------------------------------------------------------

def test_the_request_is_a_transparent_canvas_of_the_size_or_of_the_masks_box():
    r = request("m", 96, 64, origin=(-10, 5))
    assert r.image.shape == (64, 96, 4) and not r.image.any() and r.mask is None
    assert r.origin == (-10, 5) and r.region() == (0, 0, 96, 64)
    mask = soft_mask()
    ys, xs = np.nonzero(mask)
    r = request("m", 96, 64, mask, origin=(-10, 5))
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert r.image.shape[:2] == (box[3] - box[1], box[2] - box[0])  # only the mask's box is copied
    assert r.origin == (-10 + box[0], 5 + box[1])
    assert np.array_equal(r.mask, mask[box[1]:box[3], box[0]:box[2]])
    params = request_parameters(r, seed=3)
    assert params["Size"] == f"{box[2] - box[0]}x{box[3] - box[1]}" and params["Operation"] == "txt2img"


def test_control_images_over_the_whole_area_are_cropped_with_the_mask():
    from backend.steering import Control

    mask = soft_mask()
    drawn = np.zeros((64, 96, 4), np.uint8)
    drawn[..., 3] = 255
    drawn[:, :, 0] = np.arange(96, dtype=np.uint8)[None, :]  # each column says where it was
    drawn[10:50, 40:90, 1] = 255
    r = request("m", 96, 64, mask, controls=(Control("control_canny", drawn, "canny"),))
    x0, y0 = r.origin
    h, w = r.mask.shape
    assert r.controls[0].image.shape[:2] == (h, w) and r.controls[0].scaled_from is None
    assert np.array_equal(r.controls[0].image, drawn[y0:y0 + h, x0:x0 + w])


@pytest.mark.parametrize("kw, words", [
    (dict(strength=0.5), "`strength` must be 1 for text to image"),
    (dict(mask=np.zeros((64, 96), np.uint8)), "`mask` is empty"),
    (dict(mask=np.full((10, 10), 255, np.uint8)), "`mask` is 10×10 but the image is 96×64"),
    (dict(mask=np.full((64, 96), 1.0)), "`mask` must hold uint8 pixels"),
])
def test_bad_fields_are_one_sentence_naming_them(kw, words):
    with pytest.raises(InvalidRequest) as caught:
        Txt2ImgRequest(image=np.zeros((64, 96, 4), np.uint8), **kw)
    assert words in str(caught.value) and str(caught.value).count(". ") == 0


def test_a_model_that_ignores_prompts_is_refused_before_the_job():
    """The embedded model was trained without captions: one sentence saying which models can do it."""
    with pytest.raises(InvalidRequest) as caught:
        check(request(""))
    text = str(caught.value)
    assert "latent-studio-mini was trained without captions" in text
    assert "Stable Diffusion 1.x, 2.x or SDXL checkpoint or folder" in text and text.count(". ") == 0


def test_the_engine_refuses_it_too_without_loading_the_model(engine, recorder):
    events = recorder.wait(engine.submit(request("")))
    assert isinstance(events[-1], Failed) and "cannot make an image from text" in events[-1].message
    assert not any(isinstance(e, Progress) and e.stage.startswith("Loading") for e in events)


# --- runs on tiny models ---------------------------------------------------------------------------

def result_of(engine, recorder, req):
    events = recorder.wait(engine.submit(req))
    assert isinstance(events[-1], Result), events[-1]
    return events


def test_a_new_image_of_the_size_that_varies_with_the_seed_and_the_prompt(engine, recorder, tiny_sd15_folder):
    events = result_of(engine, recorder, request(tiny_sd15_folder, seed=5, count=2, origin=(30, -20)))
    started = events[0]
    assert isinstance(started, Started) and started.operation == "txt2img" and started.total == 6
    a, b = events[-1].images
    for item in (a, b):
        assert item.image.shape == (64, 96, 4) and item.rect == (30, -20, 96, 64)
        assert (item.image[..., 3] == 255).all() and (item.mask == 255).all()
        assert item.image[..., :3].std() > 1  # an image, not a flat fill
    assert [a.seed, b.seed] == [5, 6] and a.parameters["Seed"] == 5 and b.parameters["Seed"] == 6
    assert not np.array_equal(a.image, b.image)
    assert a.parameters["Size"] == "96x64" and a.parameters["Operation"] == "txt2img"
    assert a.parameters["Model"] == "sd15-4ch-diffusers" and a.parameters["prompt"] == "a red barn in a field"
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3, 4, 5, 6] and all(p.rect == a.rect for p in previews)
    # The same seed, the same pixels; another prompt, another image.
    again = result_of(engine, recorder, request(tiny_sd15_folder, seed=6, origin=(30, -20)))[-1].images[0]
    assert np.array_equal(again.image, b.image)
    other = result_of(engine, recorder, request(tiny_sd15_folder, seed=6, origin=(30, -20),
                                                prompt="a lighthouse at night"))[-1].images[0]
    assert not np.array_equal(other.image, b.image)


def test_the_selection_is_the_new_layers_alpha_soft_edges_kept(engine, recorder, tiny_sd15_folder):
    mask = soft_mask()
    req = request(tiny_sd15_folder, mask=mask, seed=2)
    item = result_of(engine, recorder, req)[-1].images[0]
    x, y, w, h = item.rect
    assert (x, y) == req.origin and item.image.shape[:2] == (h, w) == req.mask.shape
    alpha = item.image[..., 3]
    assert np.array_equal(alpha, req.mask) and np.array_equal(item.mask, req.mask)
    assert ((alpha > 0) & (alpha < 255)).sum() > 50  # the soft edge is kept, not thresholded
    inside = alpha == 255
    assert item.image[inside][:, :3].std() > 1
    # Not composited over anything: the same seed over the whole box gives the same pixels inside.
    whole = result_of(engine, recorder, request(tiny_sd15_folder, w, h, seed=2, origin=req.origin))[-1].images[0]
    assert np.array_equal(item.image[inside], whole.image[inside])


def test_a_9_channel_inpainting_model_makes_images_from_text(engine, recorder, tiny_sd15_inpaint_folder):
    a, b = result_of(engine, recorder, request(tiny_sd15_inpaint_folder, 64, 80, seed=1, count=2))[-1].images
    assert a.image.shape == (80, 64, 4) and (a.image[..., 3] == 255).all()
    assert not np.array_equal(a.image, b.image) and a.image[..., :3].std() > 1


@pytest.mark.parametrize("family", ["sd21", "sdxl"])
def test_sd2_and_sdxl_models_make_images_from_text(engine, recorder, tiny_model_cache, family):
    folder = tiny_model_cache.folder(family, 4)
    item = result_of(engine, recorder, request(folder, 64, 64, seed=4))[-1].images[0]
    assert item.image.shape == (64, 64, 4) and item.image[..., :3].std() > 1


def test_a_size_far_above_the_models_native_area_says_it_was_scaled_up(engine, recorder, tiny_sd15_folder):
    item = result_of(engine, recorder, request(tiny_sd15_folder, 512, 512, steps=1))[-1].images[0]
    assert item.image.shape == (512, 512, 4) and item.parameters["Size"] == "512x512"
    assert any("scaled up to 512×512" in note for note in item.notes)


def test_at_the_native_size_it_is_diffusers_own_text_to_image_pipeline(engine, recorder, tiny_sd15_folder):
    """No sampler of our own: the result is the pixels of diffusers' StableDiffusionPipeline (from_pipe of the
    loaded model) for the same prompt, steps, guidance, sampler and seed."""
    import torch

    from backend.samplers import make_scheduler

    req = request(tiny_sd15_folder, 256, 256, seed=9, negative_prompt="fog")  # the tiny models' native size
    item = result_of(engine, recorder, req)[-1].images[0]
    model = engine._models.get(str(tiny_sd15_folder))
    pipe = model.txt2img
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.unet is model.inpaint.unet
    pipe.scheduler = make_scheduler(req.sampler, model.scheduler_config)
    out = pipe(prompt=req.prompt, negative_prompt="fog", height=256, width=256, num_inference_steps=3,
               guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(9), output_type="np").images[0]
    assert np.array_equal(item.image[..., :3], (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
