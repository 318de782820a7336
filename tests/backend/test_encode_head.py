"""The encode head: a tiny encoder, trained to copy a model's VAE encoder, that live updates start from."""
import shutil

import numpy as np
import pytest

from backend import Img2ImgRequest

from conftest import count_calls, make_scene, result_of as run  # tests/backend/conftest.py is first on sys.path here


@pytest.fixture(scope="module")
def headed_folder(tmp_path_factory, tiny_sd15_inpaint_folder):
    """A copy of the tiny 9-channel model with a briefly trained encode head."""
    from diffusers import AutoencoderKL

    from backend.training.encode_head import EncodeHeadConfig, save_encode_head, train_encode_head

    folder = tmp_path_factory.mktemp("headed") / "model"
    shutil.copytree(tiny_sd15_inpaint_folder, folder)
    vae = AutoencoderKL.from_pretrained(str(folder / "vae"))
    img, _ = make_scene()
    crops = np.stack([img[y:y + 64, x:x + 64, :3] for y in (0, 16, 32) for x in (0, 24, 48)])
    lines = []
    state = train_encode_head(vae, crops, EncodeHeadConfig(crops=len(crops), size=64, steps=40, batch=4, hidden=16,
                                                           layers=1), log=lines.append)
    assert "MSE" in lines[-1] and "variance" in lines[-1]
    save_encode_head(state, folder, vae)
    return folder


def live(folder, **kw):
    img, _ = make_scene()
    args = dict(model=str(folder), steps=4, strength=0.5, guidance=1.0, seed=3, live=True)
    args.update(kw)
    return Img2ImgRequest(image=img[:64, :64], **args)


def test_the_head_copies_the_encoder_in_shape_and_loads_back(headed_folder):
    import torch
    from diffusers import AutoencoderKL

    from backend.preview import load_encode_head

    head = load_encode_head(headed_folder)
    assert head is not None
    vae = AutoencoderKL.from_pretrained(str(headed_folder / "vae"))
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        assert head(x).shape == vae.encode(x).latent_dist.mean.shape == (1, 4, 8, 12)


def test_a_live_update_with_a_head_never_runs_the_vae_and_a_full_job_ignores_the_head(
        engine, recorder, monkeypatch, headed_folder, tiny_sd15_inpaint_folder):
    run(engine, recorder, live(headed_folder))  # loads the model
    model = engine._models.get(str(headed_folder))
    assert model.encode_head() is not None
    calls = count_calls(monkeypatch, model.vae, "encode", "decode")
    with_head = run(engine, recorder, live(headed_folder, seed=9))
    assert calls == {"encode": 0, "decode": 0}
    # A full job encodes and decodes with the VAE as before: the same pixels as the model without a head.
    full = run(engine, recorder, live(headed_folder, seed=9, live=False))
    assert calls["encode"] >= 3 and calls["decode"] == 2
    plain = run(engine, recorder, live(tiny_sd15_inpaint_folder, seed=9, live=False))
    assert np.array_equal(full.image, plain.image)
    # The head's latents are not the VAE's: the live result differs from the headless model's live result.
    without = run(engine, recorder, live(tiny_sd15_inpaint_folder, seed=9))
    assert with_head.image.shape == without.image.shape and not np.array_equal(with_head.image, without.image)


def test_a_damaged_head_or_one_fitted_to_another_encoder_is_ignored(tmp_path, headed_folder):
    import torch
    from diffusers import AutoencoderKL

    from backend.preview import ENCODE_HEAD_FILE, load_encode_head

    folder = tmp_path / "model"
    shutil.copytree(headed_folder, folder)
    vae = AutoencoderKL.from_pretrained(str(folder / "vae"))
    assert load_encode_head(folder, vae=vae) is not None
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(1.5)  # a decoder-only retrain keeps the head
    assert load_encode_head(folder, vae=vae) is not None
    with torch.no_grad():
        vae.encoder.conv_in.weight.mul_(1.5)  # a retrained encoder does not
    assert load_encode_head(folder, vae=vae) is None
    (folder / ENCODE_HEAD_FILE).write_bytes(b"not a safetensors file")
    assert load_encode_head(folder) is None
    (folder / ENCODE_HEAD_FILE).unlink()
    assert load_encode_head(folder) is None


def test_painting_over_a_crop_changes_some_pixels_to_flat_colours():
    from backend.training.encode_head import paint_over

    img, _ = make_scene()
    crop = np.ascontiguousarray(img[:64, :64, :3])
    out = paint_over(crop, np.random.default_rng(1))
    assert out.shape == crop.shape and out.dtype == np.uint8
    changed = np.any(out != crop, axis=-1)
    assert 0 < changed.sum() < changed.size
    assert np.array_equal(paint_over(crop, np.random.default_rng(1)), out)  # seeded
