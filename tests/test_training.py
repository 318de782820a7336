"""The embedded model's training code: both stages for a few steps on tiny synthetic crops,
packaging, loading through the stock diffusers pipeline, and the evaluation functions.
No network and no real data here (the real fetch runs only from the commands)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backend.training import data  # noqa: E402
from backend.training.evaluate import (  # noqa: E402
    EngineModel, contact_sheet, evaluate_inpainting, load_pipeline, mean_colour_error, telea, texture_distance,
)
from backend.training.package import build_folder, unpack_folder  # noqa: E402
from backend.training.unet import UnetTrainConfig, random_masks, train_unet  # noqa: E402
from backend.training.vae import VaeTrainConfig, psnr, train_vae  # noqa: E402


def synthetic_photos(n=3, h=96, w=128, seed=0):
    """Smooth colour gradients with a few rectangles and noise: photo-like enough for a smoke test."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        c0, c1 = rng.random(3), rng.random(3)
        img = c0 * (1 - xx[..., None]) + c1 * yy[..., None]
        for _ in range(3):
            y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
            img[y : y + 16, x : x + 24] = rng.random(3)
        img = img + rng.normal(0, 0.03, img.shape)
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def vae_cfg(work, **kw):
    return VaeTrainConfig(data_dir=None, work_dir=work, preset="tiny", max_steps=3, batch=2, crop=32, bank_size=4,
                          bank_crop=64, warmup=1, log_every=0, **kw)


def unet_cfg(work, **kw):
    return UnetTrainConfig(data_dir=None, work_dir=work, preset="tiny", max_steps=3, batch=2, resolution=64,
                           bank_size=4, warmup=1, log_every=0, **kw)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    photos = synthetic_photos()
    lines = []
    train_vae(vae_cfg(work), log=lines.append, photos=photos)
    train_unet(unet_cfg(work), log=lines.append, photos=photos)
    folder = build_folder(work, tmp_path_factory.mktemp("models") / "latent-studio-mini", log=lines.append)
    return work, folder, lines


def test_stages_write_their_files_and_report_progress(tiny_model):
    work, _, lines = tiny_model
    for name in ("vae.safetensors", "vae_config.json", "unet.safetensors", "unet_config.json",
                 "null_embedding.safetensors", "vae_ckpt.pt", "unet_ckpt.pt", "train_stats.json"):
        assert (work / name).is_file(), name
    assert any("steps/s" in line and "ETA" in line for line in lines)
    stats = json.loads((work / "train_stats.json").read_text())
    assert stats["vae_steps"] == 3 and stats["unet_steps"] == 3
    assert json.loads((work / "vae_config.json").read_text())["scaling_factor"] > 0


def test_folder_loads_in_the_stock_inpaint_pipeline(tiny_model):
    from PIL import Image

    _, folder, _ = tiny_model
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"
    assert index["safety_checker"] == [None, None]
    assert json.loads((folder / "latent_studio.json").read_text()) == {
        "ignores_prompt": True, "native_resolution": 64, "anchor_latents": True, "colour_guide_cell": 4,
        "restore_detail": True, "inpaint_defaults": {"fill": "exemplar", "strength": 0.5},
        "outpaint_defaults": {"fill": "exemplar", "strength": 0.5},
        "live_defaults": {"steps": 6, "sampler": "dpmpp_2m", "strength": 0.5}, "name": "latent-studio-mini"}
    assert "## Data and licences" in (folder / "README.md").read_text()
    assert all(f.suffix != ".bin" for f in folder.rglob("*"))
    pipe = load_pipeline(folder)
    assert pipe.unet.config.in_channels == 9
    image = Image.fromarray(synthetic_photos(1, 64, 64)[0])
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = pipe(prompt="a red boat", image=image, mask_image=mask, height=64, width=64, num_inference_steps=2,
               guidance_scale=1.0).images[0]
    assert out.size == (64, 64)


def test_every_prompt_gives_the_learned_null_context(tiny_model):
    from safetensors.torch import load_file

    work, folder, _ = tiny_model
    pipe = load_pipeline(folder)
    null = load_file(str(work / "null_embedding.safetensors"))["null"]
    contexts = []
    for prompt in ("", "a cat on a sofa", "oil painting, dramatic light"):
        emb = pipe.encode_prompt(prompt, "cpu", 1, False)[0]
        with torch.no_grad():
            contexts.append(pipe.unet.encoder_hid_proj(emb))
    for c in contexts:
        torch.testing.assert_close(c, contexts[0])
    torch.testing.assert_close(contexts[0][0, 0], null.float(), atol=1e-3, rtol=1e-3)


def test_a_packaged_model_is_fine_tuned_from_its_weights_with_a_pair_bank(tiny_model, tmp_path):
    from safetensors.torch import load_file

    _, folder, _ = tiny_model
    work = tmp_path / "ft"
    unpack_folder(folder, work)
    shipped = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    start = load_file(str(work / "unet_init.safetensors"))
    assert "encoder_hid_proj.bias" not in start and set(start) == set(shipped) - {"encoder_hid_proj.weight",
                                                                                   "encoder_hid_proj.bias"}
    assert torch.equal(load_file(str(work / "null_init.safetensors"))["null"],
                       shipped["encoder_hid_proj.bias"].float())
    lines = []
    stats = train_unet(unet_cfg(work, init=True, pair_bank=6, lr=1e-12), log=lines.append, photos=synthetic_photos())
    assert any("starting from" in line for line in lines)
    assert any("encoding masked crops 6/6" in line for line in lines)
    assert stats["unet_finetune_steps"] == 3 and "unet_steps" not in stats
    # With a vanishing learning rate the weights are still the packaged ones: it started from them.
    tuned = load_file(str(work / "unet.safetensors"))
    key = "conv_in.weight"
    assert torch.allclose(tuned[key].float(), shipped[key].float(), atol=1e-3)
    again = build_folder(work, tmp_path / "out" / "latent-studio-mini", log=lines.append)
    record = json.loads((again / "training.json").read_text())
    assert record["unet_steps"] == 3 and record["unet_finetune_steps"] == 3  # the first run and the fine-tune
    # Fine-tuned again from that folder: the card counts both fine-tunes.
    unpack_folder(again, tmp_path / "ft2")
    train_unet(unet_cfg(tmp_path / "ft2", init=True, pair_bank=6), log=lines.append, photos=synthetic_photos())
    third = build_folder(tmp_path / "ft2", tmp_path / "out2" / "latent-studio-mini", log=lines.append)
    record = json.loads((third / "training.json").read_text())
    assert (record["unet_finetune_steps"], record["unet_finetune_earlier_steps"]) == (3, 3)
    assert "6 steps in 2 runs" in (third / "README.md").read_text()


def test_a_packaged_models_decoder_is_fine_tuned_with_its_latent_space_kept(tiny_model, tmp_path):
    from safetensors.torch import load_file

    _, folder, _ = tiny_model
    work = tmp_path / "dec"
    unpack_folder(folder, work)
    before = load_file(str(work / "vae.safetensors"))
    config = json.loads((work / "vae_config.json").read_text())
    lines = []
    stats = train_vae(vae_cfg(work, decoder_only=True, lr=1e-2), log=lines.append, photos=synthetic_photos())
    assert any("fine-tuning the decoder" in line for line in lines)
    assert stats["vae_finetune_steps"] == 3 and "vae_steps" not in stats
    after = load_file(str(work / "vae.safetensors"))
    for key in before:  # the encoder side is untouched (so latents and the denoiser still fit), the decoder moved
        same = torch.equal(before[key], after[key])
        assert same == key.startswith(("encoder.", "quant_conv.")), key
    assert json.loads((work / "vae_config.json").read_text()) == config  # scaling factor and all
    # Packageable straight away with the model's own UNet: unpack_folder left it as the stage-2 output.
    again = build_folder(work, tmp_path / "out" / "latent-studio-mini", log=lines.append)
    shipped = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    repacked = load_file(str(again / "unet" / "diffusion_pytorch_model.safetensors"))
    assert set(repacked) == set(shipped) and all(torch.equal(repacked[k], shipped[k]) for k in shipped)
    record = json.loads((again / "training.json").read_text())
    assert record["vae_steps"] == 3 and record["vae_finetune_steps"] == 3
    assert "decoder alone fine-tuned" in (again / "README.md").read_text()


def test_a_gpu_runs_files_are_packaged_by_the_tool(tiny_model, tmp_path):
    from cli.training import main_package

    work, _, _ = tiny_model
    assert main_package(work, tmp_path / "latent-studio-mini") == 0
    assert (tmp_path / "latent-studio-mini" / "model_index.json").is_file()


def test_the_gpu_run_fine_tunes_a_packaged_model_and_returns_seven_files(tiny_model, tmp_path):
    """tools/gpu_train.sh's fine-tune path (here on the CPU, for seconds): decoder, then UNet."""
    from PIL import Image

    from backend.training import gpu
    from cli.training import main_package

    _, folder, _ = tiny_model
    d = tmp_path / "data"
    (d / "photos").mkdir(parents=True)
    entries = []
    for i, photo in enumerate(synthetic_photos(3, seed=5)):
        Image.fromarray(photo).save(d / f"photos/p{i}.png")
        entries.append(dict(file=f"photos/p{i}.png", split="heldout" if i == 0 else "train"))
    (d / data.MANIFEST).write_text(json.dumps(dict(photos=entries)))
    out = tmp_path / "out"
    rc = gpu.main(["--data", str(d), "--out", str(out), "--init-from", str(folder), "--vae-minutes", "0.1",
                   "--unet-minutes", "0.15", "--vae-batch", "2", "--vae-crop", "32", "--unet-batch", "2",
                   "--bank", "4", "--preset", "tiny", "--resolution", "64", "--device", "cpu"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "null_embedding.safetensors", "train_log.txt", "train_stats.json", "unet.safetensors", "unet_config.json",
        "vae.safetensors", "vae_config.json"]
    log = (out / "train_log.txt").read_text()
    assert "VAE PSNR before" in log and "decoder fine-tune" in log
    stats = json.loads((out / "train_stats.json").read_text())
    # The decoder is kept only if the held-out PSNR rose; either way the record says what happened.
    assert ("vae_finetune_steps" in stats) != ("vae_decoder_finetune_rejected" in stats)
    assert stats["unet_finetune_steps"] >= 1 and stats["unet_steps"] == 3
    assert main_package(out, tmp_path / "latent-studio-mini") == 0


def test_vae_stage_resumes_from_its_checkpoint(tmp_path):
    photos = synthetic_photos(2)
    train_vae(vae_cfg(tmp_path), log=lambda s: None, photos=photos)
    lines = []
    stats = train_vae(vae_cfg(tmp_path), log=lines.append, photos=photos)
    assert stats["vae_steps"] == 6
    assert any("resuming at step 3" in line for line in lines)


def test_masks_cover_every_kind():
    g = torch.Generator().manual_seed(0)
    masks = random_masks(64, 64, g)
    assert masks.shape == (64, 1, 64, 64)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    cover = masks.mean(dim=(1, 2, 3))
    assert (cover == 1).any() and ((cover > 0) & (cover < 1)).sum() > 40


def test_crop_bank_shapes():
    bank = data.make_crop_bank(synthetic_photos(2), 5, 32, seed=1)
    assert bank.shape == (5, 3, 32, 32) and bank.dtype == torch.uint8


def test_psnr_on_known_inputs():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = np.full((2, 8, 8, 3), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-9)
    assert psnr(a, a) > 90


def test_inpainting_comparison_and_contact_sheet(tiny_model, tmp_path):
    from PIL import Image

    _, folder, _ = tiny_model
    crops = np.stack(synthetic_photos(2, 64, 64, seed=3))
    lines = []
    scores = evaluate_inpainting(EngineModel(folder), crops, steps=2, hole=16, log=lines.append)
    assert len(scores.examples) == 2 and len(lines) == 2
    assert scores.ours_colour_error >= 0 and scores.telea_colour_error >= 0 and scores.exemplar_colour_error >= 0
    assert 0 <= scores.ours_texture <= 2 and 0 <= scores.telea_texture <= 2 and 0 <= scores.exemplar_texture <= 2
    assert scores.preview_last >= 0 and scores.preview_half >= 0  # previews were caught and compared
    sheet = contact_sheet(scores.examples, tmp_path / "sheet.png")
    assert Image.open(sheet).size[0] == 5 * 64 + 6 * 4  # input, ours, exemplar, Telea, truth


def test_metric_helpers():
    flat = np.full((16, 16, 3), 100, np.uint8)
    assert mean_colour_error(flat, flat + 3) == pytest.approx(np.sqrt(27))
    assert texture_distance(flat, flat) == 0
    noisy = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    assert texture_distance(flat, noisy) > 1
    img = np.full((32, 32, 3), 80, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    hole = img.copy()
    hole[8:16, 8:16] = 0
    assert np.abs(telea(hole, mask).astype(int) - 80).max() <= 2


def test_sources_and_heldout_split():
    scenes = {s.scene for s in data.SOURCES}
    assert data.HELDOUT_SCENES < scenes and len(data.HELDOUT_SCENES) >= 4
    assert all(s.licence and s.author for s in data.SOURCES)


def test_heldout_crops_are_cached(tmp_path):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    entries = []
    for i, photo in enumerate(synthetic_photos(2, 80, 120)):
        Image.fromarray(photo).save(tmp_path / f"photos/p{i}.jpg")
        entries.append(dict(file=f"photos/p{i}.jpg", split="heldout" if i == 0 else "train"))
    (tmp_path / data.MANIFEST).write_text(json.dumps(dict(photos=entries)))
    crops = data.heldout_crops(tmp_path, size=32, per_scene=4)
    assert crops.shape == (4, 32, 32, 3)
    assert (tmp_path / data.EVAL_CROPS).is_file()
    np.testing.assert_array_equal(data.heldout_crops(tmp_path, size=32, per_scene=4), crops)


@pytest.mark.parametrize("argv", [
    ["train-vae"],
    ["train-vae", "--steps", "0"],
    ["train-unet", "--package-from", "/no/such/folder"],
    ["train-vae", "--steps", "3", "--init-from", "/no/such/model"],  # without --decoder-only
    ["train-vae", "--steps", "3", "--decoder-only", "--init-from", "/no/such/model"],
    ["evaluate", "--model", "/no/such/model"],
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    import main

    parser = main.build_parser()
    args = parser.parse_args(argv)
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_write_card_records_the_metrics_and_follows_the_template(tiny_model, tmp_path):
    from backend.training.package import TRAINING_RECORD, update_card_metrics

    _, folder, _ = tiny_model
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    metrics = dict(vae_psnr=24.5, ours_colour_error=11.0, telea_colour_error=10.0, ours_texture=0.3,
                   telea_texture=0.5, inpaint_fill="blur", inpaint_strength=1.0, restore_detail=True, crops=40,
                   nodetail_colour_error=11.2, nodetail_texture=0.6, contact_sheet="/tmp/x.png",
                   exemplar_colour_error=10.5, exemplar_texture=0.25, preview_last=3.5, preview_half=6.0,
                   img2img_s03_ssim=0.93, img2img_s03_colour=0.1, img2img_s03_seeds=5.0)
    update_card_metrics(model, metrics)
    card = (model / "README.md").read_text()
    assert "40 held-out 256² crops" in card and "detail transfer): mean colour error 11.00 vs 10.00 (ratio 1.10" in card
    assert "without detail transfer (`restore_detail`): colour error 11.20" in card
    assert "`restore_detail` asks the engine" in card and "## Data and licences" in card
    assert "exemplar fill alone" in card and "1.05 in colour" in card and "1.20 in texture" in card
    assert "last step and 6.00 halfway" in card and "SSIM to the input 0.930" in card
    record = json.loads((model / TRAINING_RECORD).read_text())
    assert record["metrics"]["ours_texture"] == 0.3 and "contact_sheet" not in record["metrics"]
    assert record["vae_steps"] == 3  # the training figures stay


def test_the_evaluation_json_has_every_figure_the_issue_names():
    from backend.training.evaluate import flat_metrics

    m = dict(vae_psnr=24.9, crops=8, seconds=600, ours_colour_error=12.0, ours_texture=0.2, inpaint_seconds=3.0,
             inpaint_fill="exemplar", inpaint_strength=0.5, telea_colour_error=20.0, telea_texture=0.5,
             exemplar_colour_error=13.0, exemplar_texture=0.21, preview_last=3.0, preview_half=5.0,
             nodetail_colour_error=12.5, nodetail_texture=0.4, bare_colour_error=16.0, bare_texture=0.6,
             img2img_s03_ssim=0.93, img2img_s03_colour=0.1, img2img_s03_seeds=5.0, img2img_s06_ssim=0.84,
             img2img_s06_colour=0.3, img2img_s06_seeds=10.0)
    flat = flat_metrics(m)
    for key in ("vae_psnr", "inpaint.ours.colour", "inpaint.ours.texture", "inpaint.telea.colour",
                "inpaint.telea.texture", "inpaint.exemplar.colour", "inpaint.exemplar.texture",
                "inpaint.denoiser_alone.colour", "img2img.s03.ssim", "img2img.s06.ssim",
                "preview.last_step_colour_error"):
        assert key in flat, key
    assert flat["img2img.s06.seed_difference"] == 10.0 and json.dumps(flat)
