"""Results a painter would keep: low strengths keep the start image's detail, img2img at full resolution in
tiles, exemplar-refined inpaint, previews drawn as the result is made, --save-previews."""
import threading

import numpy as np
import pytest
from PIL import Image

from backend.core import JobContext, input_detail_weight
from backend.events import Preview, Result, Started
from backend.models import ModelManager
from backend.ops.img2img import Img2ImgRequest
from backend.ops.img2img import run as run_img2img
from backend.ops.inpaint import InpaintRequest
from backend.ops.inpaint import run as run_inpaint

pytestmark = pytest.mark.slow


def textured(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = (xx * 255 // max(w - 1, 1))
    img[..., 1] = 120 + 60 * ((xx // 6 + yy // 6) % 2)  # a fine checker: detail the autoencoder loses
    img[..., 2] = 128 + rng.integers(-30, 30, (h, w))
    img[..., 3] = 255
    return img


@pytest.fixture(scope="module")
def manager():
    return ModelManager(None, None)


def context(manager, events=None, total=100):
    sink = events.append if events is not None else (lambda e: None)
    return JobContext(1, sink, threading.Event(), manager, 0.0, None, total)


def test_the_detail_weight_falls_from_all_below_half_to_none_at_one():
    assert input_detail_weight(0.2) == 1.0 and input_detail_weight(0.5) == 1.0
    assert input_detail_weight(0.75) == pytest.approx(0.5) and input_detail_weight(1.0) == 0.0


def test_a_low_strength_keeps_the_start_images_detail(manager, tiny_sd15_folder, monkeypatch):
    """A random tiny autoencoder's round trip destroys the picture; at a low strength the result is the
    input plus what the denoiser changed, much closer to the input than the decoded latents alone."""
    from backend import core

    img = textured(96, 128)
    req = Img2ImgRequest(image=img, model=str(tiny_sd15_folder), steps=10, strength=0.2, seed=1)
    err = lambda out: np.abs(out[..., :3].astype(int) - img[..., :3]).mean()  # noqa: E731
    kept = err(run_img2img(context(manager), req)[0].image)
    monkeypatch.setattr(core, "input_detail_weight", lambda strength: 0.0)
    decoded = err(run_img2img(context(manager), req)[0].image)
    assert kept < 0.7 * decoded, (kept, decoded)


def test_img2img_runs_at_full_resolution_in_tiles(manager, tiny_sd15_folder):
    img = textured(300, 520)  # larger than the tiny model's native 256: tiles, no downscale
    events = []
    req = Img2ImgRequest(image=img, model=str(tiny_sd15_folder), steps=4, strength=0.5, seed=2, origin=(10, 20))
    results = run_img2img(context(manager, events), req)
    r = results[0]
    assert r.image.shape == img.shape and r.rect == (10, 20, 520, 300)
    assert r.parameters["Size"] == "520x300" and r.parameters["Tiles"] > 1
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and all(e.rect[2] <= 300 for e in previews)  # tile by tile
    assert np.abs(r.image[..., :3].astype(int) - img[..., :3]).mean() < 40  # the composition stays


def test_tiled_img2img_counts_its_progress_and_two_seeds_differ(tiny_sd15_folder):
    from backend.engine import Engine

    events = []
    done = threading.Event()

    def sink(e):
        events.append(e)
        if isinstance(e, Result):
            done.set()

    with Engine(sink, preview_interval=0.0, threads=2) as engine:
        engine.submit(Img2ImgRequest(image=textured(280, 400), model=str(tiny_sd15_folder), steps=4, strength=0.5,
                                     seed=3, count=2))
        assert done.wait(240)
    started = next(e for e in events if isinstance(e, Started))
    result = events[-1]
    assert started.total == max(e.step for e in events if hasattr(e, "step") and not isinstance(e, Started))
    a, b = (r.image for r in result.images)
    assert np.abs(a.astype(int) - b).mean() > 0.5


def test_exemplar_inpaint_searches_wider_than_its_region_and_says_when_it_cannot(manager, tiny_sd15_inpaint_folder):
    img = textured(160, 200)
    mask = np.zeros((160, 200), np.uint8)
    mask[60:100, 80:120] = 255
    req = InpaintRequest.from_document(img, mask, model=str(tiny_sd15_inpaint_folder), steps=4, strength=0.5,
                                       fill="exemplar", padding=8, grow=0, feather=0)
    assert req.image.shape[0] > 40 + 2 * 8  # the request carries more context than the padding asks
    events = []
    r = run_inpaint(context(manager, events), req)[0]
    assert r.parameters["Fill"] == "exemplar" and not r.notes
    assert any(getattr(e, "stage", "") == "Filling the hole from the surroundings" for e in events)
    whole = np.full((64, 64), 255, np.uint8)
    req = InpaintRequest(image=img[:64, :64], mask=whole, model=str(tiny_sd15_inpaint_folder), steps=2,
                         fill="exemplar", strength=0.5)
    r = run_inpaint(context(manager), req)[0]
    assert r.notes and "blur fill was used instead" in r.notes[0]


def test_previews_are_drawn_as_the_result_is_made(manager, tiny_sd15_folder):
    """At a low strength the result adds back the start's lost detail; so does every preview: the last one
    is close to the result, not the autoencoder's blurred copy of the start."""
    img = textured(96, 128)
    events = []
    req = Img2ImgRequest(image=img, model=str(tiny_sd15_folder), steps=10, strength=0.3, seed=4)
    result = run_img2img(context(manager, events), req)[0].image
    last = [e for e in events if isinstance(e, Preview)][-1].image
    assert np.abs(last[..., :3].astype(int) - result[..., :3]).mean() < 12


def test_a_preview_head_is_trained_saved_and_used(tmp_path, tiny_sd15_folder):
    import shutil

    from diffusers import AutoencoderKL

    from backend.models import ModelManager
    from backend.preview import HEAD_FILE, load_head
    from backend.training.preview_head import PreviewHeadConfig, save_head, train_preview_head

    folder = tmp_path / "model"
    shutil.copytree(tiny_sd15_folder, folder)
    vae = AutoencoderKL.from_pretrained(str(folder / "vae"))
    crops = textured(64, 64)[None, ..., :3].repeat(8, 0)
    lines = []
    state = train_preview_head(vae, crops, PreviewHeadConfig(crops=8, size=64, steps=60, batch=4, hidden=16, layers=2),
                               log=lines.append)
    assert "L1" in lines[-1]
    save_head(state, folder)
    head = load_head(folder)
    assert head is not None and sum(1 for _ in head.parameters()) > 0
    model = ModelManager(None, None).get(str(folder))
    assert model.previewer().head is not None
    (folder / HEAD_FILE).write_bytes(b"not a safetensors file")
    assert load_head(folder) is None  # a damaged head: previews fall back to the linear map


def test_save_previews_writes_every_step_at_the_outputs_size(tmp_path, tiny_sd15_folder):
    import main as app_main

    img = textured(96, 128)
    Image.fromarray(img).save(tmp_path / "in.png")
    code = app_main.main([str(a) for a in ("outpaint", "--image", tmp_path / "in.png", "--right", 32,
                                           "--model", tiny_sd15_folder, "--steps", 3, "--out", tmp_path / "o.png",
                                           "--save-previews", tmp_path / "steps" / "deep", "--quiet")])
    assert code == 0
    files = sorted((tmp_path / "steps" / "deep").glob("step-*.png"))
    assert [f.name for f in files] == ["step-001.png", "step-002.png", "step-003.png"]
    out = Image.open(tmp_path / "o.png")
    for f in files:
        step = Image.open(f)
        assert step.size == out.size == (160, 96)
        assert np.array_equal(np.asarray(step)[:, :80], img[:, :80])  # the input, outside the preview's area
