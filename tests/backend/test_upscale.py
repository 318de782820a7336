"""Upscale: tiling and blending, the bundled Real-ESRGAN against ncnn, every SR path on tiny models,
tiled = untiled, no seams, memory plans, and one clear message for each bad input."""
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main as app_main
import tiny_upscalers
from backend.errors import BackendError, InvalidRequest, ModelError
from backend.events import Cancelled, Preview, Progress, Result, Started
from backend.ops.upscale import UpscaleRequest
from backend.upscale import memory
from backend.upscale.colour import colour_fix
from backend.upscale.tiling import BandWriter, make_plan, overlap_centres, plan_axis, seam_score, tile_weights

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("upscalers")
    return {
        "esrgan": tiny_upscalers.save_esrgan(root / "tiny-esrgan", 4),
        "esrgan2_pth": tiny_upscalers.save_esrgan(root / "tiny-esrgan-2x", 2, ".pth"),
        "sd_x4": tiny_upscalers.save_sd_x4_upscaler(root / "tiny-x4-upscaler"),
        "ldm_sr": tiny_upscalers.save_ldm_sr(root / "tiny-ldm-sr"),
        "vae": tiny_upscalers.save_vae(root / "vae.safetensors"),
    }


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def gradient(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = (40 + 150 * xx / (w - 1)).astype(np.uint8)
    img[..., 1] = (60 + 120 * yy / (h - 1)).astype(np.uint8)
    img[..., 2] = 128
    img[..., 3] = 255
    return img


def textured(h, w, seed=0):
    img = gradient(h, w)
    img[..., :3] = np.clip(img[..., :3] + np.random.default_rng(seed).integers(-30, 30, (h, w, 3)), 0, 255)
    return img


def run(engine, recorder, request):
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Result), events[-1]
    return events


# --- tiling ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("length,tile,overlap", [(384, 256, 32), (1000, 256, 64), (300, 300, 16), (65, 64, 16)])
def test_tiles_cover_the_axis_evenly_and_overlap_enough(length, tile, overlap):
    spans = plan_axis(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert len({e - s for s, e in spans}) == 1 and spans[0][1] - spans[0][0] <= max(tile, 1)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a1 - b0 >= min(overlap, tile // 2)


def test_weights_are_a_partition_of_unity_and_tiles_of_one_image_reassemble_it_exactly():
    img = textured(150, 230)
    plan = make_plan(230, 150, 64, 16)
    total = np.zeros((150 * 2, 230 * 2))
    for t in plan.tiles:
        total[t.y0 * 2: t.y1 * 2, t.x0 * 2: t.x1 * 2] += tile_weights(plan, t, 2)
    assert np.allclose(total, 1.0)
    out = np.zeros((150, 230, 3), np.uint8)
    writer = BandWriter(plan, out)
    for t in plan.tiles:
        writer.add(t, img[t.y0: t.y1, t.x0: t.x1, :3])
        if t.x1 == plan.width:
            writer.finish_row(t.row)
    assert np.array_equal(out, img[..., :3])
    assert writer.acc.shape[0] == 0  # nothing left behind; the buffer never held the whole image


def test_colour_fix_removes_per_tile_drift_so_diffusion_tiles_leave_no_seam():
    """Diffusion tiles each drift in colour; without the fix the feathered blend shows it, with it not."""
    base = gradient(128, 256)
    plan = make_plan(256, 128, 96, 64)
    rng = np.random.default_rng(3)
    scores = {}
    for fix in (False, True):
        out = np.zeros((128, 256, 3), np.uint8)
        writer = BandWriter(plan, out)
        for t in plan.tiles:
            ref = base[t.y0: t.y1, t.x0: t.x1, :3].astype(np.float32)
            drifted = ref + rng.normal(0, 0.5, ref.shape) + (20.0 if t.index % 2 else -20.0)
            writer.add(t, colour_fix(drifted, ref) if fix else drifted)
            if t.x1 == plan.width:
                writer.finish_row(t.row)
        scores[fix] = seam_score(out, overlap_centres(plan.xs), overlap_centres(plan.ys))
    assert scores[True] <= 1.5 < scores[False]


# --- the bundled Real-ESRGAN -----------------------------------------------------------------------

def test_bundled_real_esrgan_reproduces_the_ncnn_reference():
    """tests/backend/data/realesrgan_x4plus_ref.npz: ncnn's own fp32 CPU output (tools/make_realesrgan_reference.py)."""
    import torch

    from backend.upscale.esrgan import BUNDLED, bundled_path, load_upscaler, resolve_upscaler

    ref = np.load(DATA / "realesrgan_x4plus_ref.npz")
    descriptor = load_upscaler(resolve_upscaler(""))
    assert bundled_path().is_file() and bundled_path().suffix == ".safetensors"
    assert descriptor.scale == 4 and descriptor.architecture.name == "ESRGAN" and BUNDLED == "RealESRGAN_x4plus"
    x = torch.from_numpy(ref["input"]).permute(2, 0, 1)[None].float() / 255
    torch.set_flush_denormal(True)
    try:
        with torch.inference_mode():
            y = descriptor.model.float()(x)[0].permute(1, 2, 0).numpy()
    finally:
        torch.set_flush_denormal(False)
    ours = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8).astype(int)
    diff = np.abs(ours - ref["output"].astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_converter_checks_the_graph_not_just_the_count(tmp_path):
    from backend.upscale.esrgan import bundled_ncnn_files
    from backend.upscale.ncnn import load_ncnn, rrdbnet_state_dict

    param, weights = bundled_ncnn_files()
    text = param.read_text().replace("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,5.000000e-01,1.000000e+00", 1)
    (tmp_path / "m.param").write_text(text)
    with pytest.raises(ModelError, match="not an RRDBNet"):
        rrdbnet_state_dict(load_ncnn(tmp_path / "m.param", weights))
    (tmp_path / "short.bin").write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="truncated"):
        load_ncnn(param, tmp_path / "short.bin")


def test_bundled_upscale_of_a_gradient_in_tiles_has_no_seam(engine, recorder):
    img = gradient(96, 96)
    events = run(engine, recorder, UpscaleRequest(image=img, tile=64))
    item = events[-1].images[0]
    assert item.image.shape == (384, 384, 4) and item.parameters["Hires upscaler"] == "RealESRGAN_x4plus"
    plan = make_plan(96, 96, 64, 16)
    assert plan.tiled
    assert events[0].total == len(plan) == 4
    score = seam_score(item.image, overlap_centres(plan.xs, 4), overlap_centres(plan.ys, 4))
    assert score <= 1.5


# --- spandrel files, tiled = untiled ---------------------------------------------------------------

def test_tiled_equals_untiled_and_progress_counts_tiles(engine, recorder, models):
    img = textured(90, 120)
    whole = run(engine, recorder, UpscaleRequest(image=img, upscaler=str(models["esrgan"]), origin=(3, 2)))
    tiled = run(engine, recorder, UpscaleRequest(image=img, upscaler=str(models["esrgan"]), tile=64, origin=(3, 2)))
    a, b = whole[-1].images[0], tiled[-1].images[0]
    assert a.rect == b.rect == (12, 8, 480, 360) and a.image.shape == (360, 480, 4)
    diff = np.abs(a.image.astype(int) - b.image.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8
    n = len(make_plan(120, 90, 64, 16))
    assert tiled[0].total == n == 6 and whole[0].total == 1
    stages = [e.stage for e in tiled if isinstance(e, Progress) and e.stage.startswith("Tile ")]
    assert stages == [f"Tile {i} of {n}" for i in range(1, n + 1)]
    assert any(e.stage.startswith("Tiles of 64 px on cpu") for e in tiled if isinstance(e, Progress))
    previews = [e for e in tiled if isinstance(e, Preview)]
    assert len(previews) == n
    for p in previews:
        x, y, w, h = p.rect
        assert p.image.shape == (h, w, 4) and p.image.dtype == np.uint8
        assert 12 <= x and x + w <= 12 + 480 and 8 <= y and y + h <= 8 + 360


def test_pth_upscaler_at_its_own_scale_and_a_4x_model_at_2x(engine, recorder, models):
    img = textured(40, 40)
    item = run(engine, recorder, UpscaleRequest(image=img, upscaler=str(models["esrgan2_pth"]), scale=2))[-1].images[0]
    assert item.image.shape == (80, 80, 4) and item.parameters["Hires upscale"] == 2
    item = run(engine, recorder, UpscaleRequest(image=img, upscaler=str(models["esrgan"]), scale=2))[-1].images[0]
    assert item.image.shape == (80, 80, 4)


def test_lanczos_any_scale_and_alpha_is_kept(engine, recorder):
    img = textured(30, 20)
    img[:10, :, 3] = 0
    item = run(engine, recorder, UpscaleRequest(image=img, upscaler="lanczos", scale=3))[-1].images[0]
    assert item.image.shape == (90, 60, 4)
    assert (item.image[:20, :, 3] == 0).all() and (item.image[40:, :, 3] == 255).all()


def test_an_upscale_no_seed_changes_gives_one_result_whatever_count_asks(engine, recorder):
    """Bug: Variations N gave N identical images labelled with N different seeds."""
    img = textured(24, 32)
    events = run(engine, recorder, UpscaleRequest(image=img, upscaler="lanczos", scale=2, count=3, seed=7))
    assert len(events[-1].images) == 1 and events[0].total == 1
    p = events[-1].images[0].parameters
    assert "Seed" not in p and "Steps" not in p and p["Hires upscale"] == 2 and p["Operation"] == "upscale"


# --- latent diffusion ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sd_x4", "ldm_sr"])
def test_latent_diffusion_sr_runs_in_tiles(engine, recorder, models, kind):
    img = textured(48, 72)
    req = UpscaleRequest(image=img, upscaler=str(models[kind]), steps=2, tile=64, seed=5)
    events = run(engine, recorder, req)
    item = events[-1].images[0]
    assert item.image.shape == (192, 288, 4) and item.seed == 5
    n = len(make_plan(72, 48, 64, 16))
    assert n == 2 and events[0].total == n * 2
    assert [e.step for e in events if isinstance(e, Progress) and e.stage.startswith("Tile ")] == [1, 2, 3, 4]
    assert item.parameters["Steps"] == 2 and item.parameters["Hires upscaler"] == models[kind].name


def test_refine_runs_img2img_per_tile_through_the_core(engine, recorder, tiny_sd15_folder):
    img = textured(80, 100)
    req = UpscaleRequest(image=img, upscaler="lanczos", scale=4, refine=True, strength=0.5, steps=4,
                         model=str(tiny_sd15_folder), prompt="detail")
    events = run(engine, recorder, req)
    item = events[-1].images[0]
    assert item.image.shape == (320, 400, 4)
    n = len(make_plan(400, 320, 256, 64))
    assert events[0].total == 1 + n * 2
    assert "Refine Tile 1 of 4" in {e.stage for e in events if isinstance(e, Progress)}
    p = item.parameters
    assert p["Denoising strength"] == "0.5" and p["prompt"] == "detail" and p["Model"] == tiny_sd15_folder.name
    assert p["Operation"] == "upscale" and p["Hires upscaler"] == "Lanczos"
    # the colour fix keeps the refined image on the upscaled one's colours (a random model adds only noise)
    base = np.asarray(Image.fromarray(img[..., :3]).resize((400, 320), Image.LANCZOS)).astype(np.float32)
    assert abs(item.image[..., :3].astype(np.float32).mean() - base.mean()) < 3


def test_cancel_between_tiles(engine, recorder, models):
    def cancel_at_first_tile(event):
        if isinstance(event, Progress) and event.stage.startswith("Tile 1 "):
            engine.cancel(event.job_id)

    recorder.on_event = cancel_at_first_tile
    events = recorder.wait(engine.submit(UpscaleRequest(image=textured(200, 200), upscaler=str(models["esrgan"]),
                                                        tile=64)))
    recorder.on_event = None
    assert isinstance(events[-1], Cancelled)
    assert max(e.step for e in events if isinstance(e, Progress)) <= 2


# --- memory ----------------------------------------------------------------------------------------

def test_memory_plan_shrinks_tiles_and_falls_back_to_the_cpu(monkeypatch):
    GB = memory.GB
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 16 * GB)
    roomy = memory.plan_feedforward(2048, 2048, 4, device="cpu", weights=67 << 20)
    monkeypatch.setattr(memory, "host_available_bytes", lambda: int(1.2 * GB))
    tight = memory.plan_feedforward(512, 512, 4, device="cpu", weights=67 << 20)
    assert tight.tile < roomy.tile and tight.device == "cpu"
    monkeypatch.setattr(memory, "available_bytes", lambda device: 100 << 20 if str(device) == "cuda" else 16 * GB)
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 16 * GB)
    fallback = memory.plan_feedforward(512, 512, 4, device="cuda", weights=67 << 20, element=2)
    assert fallback.device == "cpu" and "on cpu" in fallback.describe()
    assert memory.plan_diffusion(512, 512, 2, device="cpu", weights=2 * GB, native=512, element=4).device == "cpu"


def test_an_image_too_large_even_tiled_is_one_clear_sentence(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 1 << 20)
    with pytest.raises(InvalidRequest, match="needs about .* GB for the result alone"):
        memory.plan_feedforward(4096, 4096, 4, device="cpu", weights=1)
    with pytest.raises(InvalidRequest, match="each side must be at most 65536"):
        UpscaleRequest(image=np.zeros((20000, 8, 3), np.uint8), scale=4)
    Image.fromarray(textured(64, 64)).save(tmp_path / "in.png")
    code = app_main.main(["upscale", "--image", str(tmp_path / "in.png"), "--out", str(tmp_path / "o.png"),
                          "--model", "lanczos", "--scale", "8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "for the result alone" in err
    assert not (tmp_path / "o.png").exists()


# --- the CLI and bad inputs ------------------------------------------------------------------------

def test_cli_upscale_with_the_bundled_model_offline(tmp_path, capsys):
    Image.fromarray(textured(16, 20)[..., :3]).save(tmp_path / "in.png")
    code = app_main.main(["upscale", "--image", str(tmp_path / "in.png"), "--out", str(tmp_path / "big.png"),
                          "--quiet"])
    assert code == 0, capsys.readouterr().err
    out = Image.open(tmp_path / "big.png")
    assert out.size == (80, 64)
    params = out.text["parameters"]
    assert "Hires upscaler: RealESRGAN_x4plus" in params and "Hires upscale: 4" in params


def one_line(capsys, *argv):
    code = app_main.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err and err.startswith("error: "), err
    return err


def test_bad_inputs_give_one_clear_line_and_write_nothing(tmp_path, capsys, models, tiny_sd15_single_file,
                                                          tiny_sd15_folder, malicious_pickle):
    Image.fromarray(textured(32, 32)).save(tmp_path / "in.png")
    base = ["upscale", "--image", tmp_path / "in.png", "--out", tmp_path / "o.png"]
    assert "upscales 4×, so it cannot make 3×: choose 2 or 4" in one_line(capsys, *base, "--scale", "3")
    assert "cannot make 4×" in one_line(capsys, *base, "--model", models["esrgan2_pth"])
    checkpoint, _config = tiny_sd15_single_file
    assert "is a Stable Diffusion checkpoint, not an upscaler" in one_line(capsys, *base, "--model", checkpoint)
    assert "is a VAE, not an upscaler" in one_line(capsys, *base, "--model", models["vae"])
    assert "not an upscaler" in one_line(capsys, *base, "--model", tiny_sd15_folder)
    pickle_path, marker = malicious_pickle
    pth = pickle_path.with_suffix(".pth")
    pickle_path.rename(pth)
    assert "holds more than weights" in one_line(capsys, *base, "--model", pth)
    assert not marker.exists()
    junk = tmp_path / "junk.safetensors"
    junk.write_text("hello")
    assert "could not be read" in one_line(capsys, *base, "--model", junk)
    assert "was not found" in one_line(capsys, *base, "--model", tmp_path / "nothing.pth")
    assert "`tile`" in one_line(capsys, *base, "--tile", "10")
    assert "must end in .png or .ora" in one_line(capsys, "upscale", "--image", tmp_path / "in.png", "--out",
                                                  tmp_path / "o.jpg")
    assert not (tmp_path / "o.png").exists()


def test_engine_reports_a_wrong_scale_as_one_sentence(engine, recorder):
    events = recorder.wait(engine.submit(UpscaleRequest(image=textured(16, 16), scale=8)))
    assert type(events[-1]).__name__ == "Failed"
    assert "cannot make 8×" in events[-1].message
    assert issubclass(ModelError, BackendError)


def test_upscale_into_an_ora_scales_the_document(tmp_path, capsys):
    import main as app_main
    from canvas.document import Document
    from canvas.ora import load_ora, save_ora

    doc = Document(24, 16, x=-4, y=2)
    doc.add_image_layer(textured(16, 24), -4, 2, name="art")
    save_ora(doc, tmp_path / "in.ora")
    code = app_main.main(["upscale", "--image", str(tmp_path / "in.ora"), "--out", str(tmp_path / "out.ora"),
                          "--model", "lanczos", "--scale", "2", "--quiet"])
    assert code == 0, capsys.readouterr().err
    out = load_ora(tmp_path / "out.ora")
    assert (out.bounds.x, out.bounds.y, out.bounds.w, out.bounds.h) == (-8, 4, 48, 32)
    assert [l.name for l in out.layers] == ["art", "Upscale"]
    assert out.layers[1].pixels.content_bbox() == out.bounds


def test_the_upscale_runs_on_the_engines_device_not_its_own_pick():
    """`--device` reaches the upscaler too: a device the engine was told to use is the one it asks for."""
    import torch

    from backend.core import JobContext
    from backend.errors import BackendError
    from backend.models import ModelManager
    from backend.ops.upscale import _device

    ctx = JobContext(1, lambda e: None, threading.Event(), ModelManager("cpu"))
    assert _device(ctx)[0].type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA"):
            _device(JobContext(1, lambda e: None, threading.Event(), ModelManager("cuda")))
