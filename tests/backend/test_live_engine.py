"""Live painting's engine side: few-step samplers, the text-embedding cache, the live (fast) path."""
import numpy as np
import pytest

from backend import Img2ImgRequest, InpaintRequest

from conftest import count_calls, make_scene, result_of as run  # tests/backend/conftest.py is first on sys.path here

FEW_STEP = ["lcm", "tcd", "euler_trailing", "euler_a_trailing"]


def img2img(model, **kw):
    img, _ = make_scene()
    args = dict(model=str(model), steps=4, strength=0.6, guidance=1.0, seed=3)
    args.update(kw)
    return Img2ImgRequest(image=img[:64, :64], **args)


@pytest.mark.parametrize("sampler", FEW_STEP)
def test_few_step_samplers_run_deterministic_per_seed_and_differ_from_dpmpp_2m(engine, recorder,
                                                                             tiny_sd15_inpaint_folder, sampler):
    a = run(engine, recorder, img2img(tiny_sd15_inpaint_folder, sampler=sampler))
    b = run(engine, recorder, img2img(tiny_sd15_inpaint_folder, sampler=sampler))
    base = run(engine, recorder, img2img(tiny_sd15_inpaint_folder, sampler="dpmpp_2m"))
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, base.image)
    assert a.parameters["Sampler"] == {"lcm": "LCM", "tcd": "TCD", "euler_trailing": "Euler Trailing",
                                       "euler_a_trailing": "Euler a Trailing"}[sampler]


def test_trailing_spacing_is_what_the_trailing_samplers_use():
    from backend.samplers import make_scheduler

    config = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "timestep_spacing": "leading",
              "steps_offset": 1}
    trailing = make_scheduler("euler_trailing", config)
    trailing.set_timesteps(4)
    plain = make_scheduler("euler", config)
    plain.set_timesteps(4)
    assert int(trailing.timesteps[0]) == 999 and int(plain.timesteps[0]) < 999


@pytest.mark.parametrize("folder", ["tiny_sd15_folder", "tiny_sdxl_inpaint_folder"])
def test_kept_text_embeddings_give_the_same_pixels_as_encoding_the_prompt(engine, recorder, request,
                                                                           monkeypatch, folder):
    from backend import core

    model = request.getfixturevalue(folder)
    img, mask = make_scene()
    make = lambda prompt="a red boat": InpaintRequest.from_document(  # noqa: E731
        img, mask, model=str(model), steps=2, guidance=5.0, prompt=prompt, negative_prompt="blurry",
        padding=8, seed=5)
    monkeypatch.setattr(core, "TEXT_CACHE", False)
    reference = run(engine, recorder, make())
    monkeypatch.setattr(core, "TEXT_CACHE", True)
    calls = []
    original = core.text_kwargs

    def counting(pipe, model, *args):
        before = model.text_cache.get("key")
        out = original(pipe, model, *args)
        calls.append(before == model.text_cache.get("key"))
        return out

    monkeypatch.setattr(core, "text_kwargs", counting)
    first = run(engine, recorder, make())
    second = run(engine, recorder, make())
    other = run(engine, recorder, make(prompt="a green field"))
    assert calls == [False, True, False]  # encoded, kept, encoded again for a new prompt
    assert np.array_equal(first.image, reference.image) and np.array_equal(second.image, reference.image)
    assert not np.array_equal(other.image, reference.image)


def test_a_live_update_is_deterministic_recorded_and_keeps_the_shape(engine, recorder,
                                                                              tiny_sd15_inpaint_folder):
    full = run(engine, recorder, img2img(tiny_sd15_inpaint_folder, strength=0.5))
    live = run(engine, recorder, img2img(tiny_sd15_inpaint_folder, strength=0.5, live=True))
    again = run(engine, recorder, img2img(tiny_sd15_inpaint_folder, strength=0.5, live=True))
    assert np.array_equal(live.image, again.image)
    assert live.parameters["Live"] == "True" and full.parameters["Live"] == "False"
    assert live.image.shape == full.image.shape
    assert np.array_equal(live.image[..., 3], full.image[..., 3])


def test_a_live_update_encodes_the_start_once_and_never_runs_the_vae_decoder(engine, recorder, monkeypatch,
                                                                           tiny_sd15_inpaint_folder):
    run(engine, recorder, img2img(tiny_sd15_inpaint_folder, live=True))  # loaded; the grey latents kept
    model = engine._models.get(str(tiny_sd15_inpaint_folder))
    calls = count_calls(monkeypatch, model.vae, "encode", "decode")
    run(engine, recorder, img2img(tiny_sd15_inpaint_folder, live=True, seed=9))
    assert calls == {"encode": 1, "decode": 0}
    run(engine, recorder, img2img(tiny_sd15_inpaint_folder, seed=9))
    assert calls["encode"] >= 3 and calls["decode"] == 2  # what the full path costs: image, grey, start; result, start


def test_live_inpaint_keeps_unmasked_pixels_and_differs_from_the_full_decode(engine, recorder, tiny_sd15_inpaint_folder):
    img, mask = make_scene()
    make = lambda live: InpaintRequest.from_document(img, mask, model=str(tiny_sd15_inpaint_folder),  # noqa: E731
                                                     steps=4, strength=0.5, padding=8, seed=2, live=live)
    live, full = run(engine, recorder, make(True)), run(engine, recorder, make(False))
    outside = live.mask == 0
    assert outside.sum() > 100 and np.array_equal(live.image[outside], full.image[outside])
    assert not np.array_equal(live.image, full.image)


def test_live_defaults_are_read_checked_and_travel_in_model_info():
    from backend.interface import ModelInfo
    from backend.models import live_defaults, model_info
    from remote.protocol import decode, encode

    assert live_defaults({"live_defaults": {"steps": 4, "sampler": "lcm", "strength": 0.5}}) == (
        ("steps", 4), ("sampler", "lcm"), ("strength", 0.5))
    for bad in ({"steps": 0, "sampler": "lcm", "strength": 0.5}, {"steps": 4, "sampler": "nope", "strength": 0.5},
                {"steps": 4, "sampler": "lcm", "strength": 1.5}, {"steps": 1, "sampler": "lcm", "strength": 0.5},
                {"steps": True, "sampler": "lcm", "strength": 0.5}, "4 steps"):
        assert live_defaults({"live_defaults": bad}) == ()
    embedded = model_info("")
    assert dict(embedded.live)["steps"] >= 1 and dict(embedded.live)["sampler"]
    assert decode(encode(embedded)) == embedded
    assert ModelInfo("x").live == ()
