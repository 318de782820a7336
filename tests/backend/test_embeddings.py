"""Textual-inversion embeddings (backend.steering.embeddings) on the tiny random models, through the engine and
diffusers' ``load_textual_inversion``: a token in the prompt changes the result, a prompt without it is the
base model's exactly; files from the embeddings folder by the words of the prompts; one sentence for every
file that cannot be used."""
import numpy as np
import pytest

from backend import Img2ImgRequest
from backend.errors import InvalidRequest, ModelError
from backend.events import Failed, Result
from backend.ops.base import check_model
from backend.steering import embeddings

import tiny_steering_lora as tl
from conftest import make_scene

WIDTH = 32  # the tiny text encoders' hidden size (SDXL's second one: 64)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(the embeddings folder beside the user's model folder, a store of embedding files outside it)."""
    root = tmp_path_factory.mktemp("user")
    (root / "models").mkdir()
    (root / "embeddings").mkdir()
    store = root / "store"
    store.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENT_STUDIO_MODELS", str(root / "models"))
        yield root / "embeddings", store


def save(folder, name, sd):
    return tl.save_lora(folder / name, sd)


def job(model, prompt="a red boat", **kw):
    img, _ = make_scene()
    args = dict(image=img, model=str(model), steps=2, strength=0.75, guidance=5.0, seed=3, prompt=prompt)
    args.update(kw)
    return Img2ImgRequest(**args)


def result(engine, recorder, request):
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Result), events[-1]
    return events[-1].images[0]


def run(engine, recorder, request):
    return result(engine, recorder, request).image


def test_a_token_in_the_prompt_uses_the_embedding_and_a_prompt_without_it_is_the_base(
        engine, recorder, tiny_sd15_folder, folders):
    folder, store = folders
    base = run(engine, recorder, job(tiny_sd15_folder))
    as_words = run(engine, recorder, job(tiny_sd15_folder, "a tiny-style boat"))  # no such embedding yet
    save(folder, "tiny-style.safetensors", tl.embedding_state_dict(WIDTH, "a1111", vectors=2, seed=1))
    with_token = run(engine, recorder, job(tiny_sd15_folder, "a tiny-style boat"))
    assert not np.array_equal(with_token, as_words)
    # Loaded, but not written in the prompt: exactly the base model's result.
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder)), base)
    # In the negative prompt it counts too; in any case for a one-vector embedding.
    save(folder, "Flat-Look.safetensors", tl.embedding_state_dict(WIDTH, "diffusers", vectors=1, seed=2,
                                                                   token="flat-look"))
    neg = run(engine, recorder, job(tiny_sd15_folder, negative_prompt="flat-look"))
    neg_words = run(engine, recorder, job(tiny_sd15_folder, negative_prompt="flat look"))
    assert not np.array_equal(neg, base) and not np.array_equal(neg, neg_words)
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, negative_prompt="FLAT-LOOK")), neg)
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, "a tiny-style boat")), with_token)
    model = engine._models.get(str(tiny_sd15_folder))
    assert model.embedding_loads == 2  # each file read once
    assert model.inpaint.tokenizer.convert_tokens_to_ids("tiny-style_1") != model.inpaint.tokenizer.unk_token_id


def test_every_vector_of_an_embedding_is_used(engine, recorder, tiny_sd15_folder, folders):
    """Two embeddings that differ in their second vector only give different results."""
    _, store = folders
    first = tl.embedding_state_dict(WIDTH, "a1111", vectors=3, seed=5)
    second = {"emb_params": first["emb_params"].clone()}
    second["emb_params"][1] += 1.0
    a = save(store, "vec-a.safetensors", first)
    b = save(store, "vec-b.safetensors", second)
    ra = run(engine, recorder, job(tiny_sd15_folder, "a vec-a boat", embeddings=(str(a),)))
    rb = run(engine, recorder, job(tiny_sd15_folder, "a vec-b boat", embeddings=(str(b),)))
    assert not np.array_equal(ra, rb)
    # Written other than in lower case, diffusers would use the first vector only: refused, before the job.
    with pytest.raises(InvalidRequest) as err:
        check_model(job(tiny_sd15_folder, "a Vec-A boat", embeddings=(str(a),)))
    assert str(err.value) == ("The embedding vec-a.safetensors has 3 vectors and is written 'Vec-A' in the prompts: "
                              "write it in lower case, vec-a, so that all of them are used.")


def test_an_sdxl_embedding_loads_into_both_text_encoders(engine, recorder, tiny_sdxl_folder, folders):
    _, store = folders
    path = save(store, "xl-style.safetensors", tl.embedding_state_dict((WIDTH, 64), "sdxl", vectors=2, seed=7))
    plain = run(engine, recorder, job(tiny_sdxl_folder, "a red boat"))
    base = run(engine, recorder, job(tiny_sdxl_folder, "a xl-style boat"))
    with_it = run(engine, recorder, job(tiny_sdxl_folder, "a xl-style boat", embeddings=(str(path),)))
    assert not np.array_equal(with_it, base)
    pipe = engine._models.get(str(tiny_sdxl_folder)).inpaint
    for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
        assert {"xl-style", "xl-style_1"} <= set(tokenizer.added_tokens_encoder)
    assert np.array_equal(run(engine, recorder, job(tiny_sdxl_folder, "a red boat")), plain)


def test_a_pickled_embedding_is_used_only_when_allowed(engine, recorder, tiny_sd15_folder, folders):
    import torch

    folder, _ = folders
    tensor = tl.embedding_state_dict(WIDTH, "a1111", vectors=1, seed=9)["emb_params"]
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": tensor}, "name": "old-style", "step": 100},
               folder / "old-style.pt")
    refused = result(engine, recorder, job(tiny_sd15_folder, "an old-style boat"))
    assert ("The word old-style is the name of the embedding old-style.pt, a pickle file, so it was not used: use a "
            ".safetensors version, or allow pickle files (--allow-pickle).") in refused.notes
    with pytest.raises(ModelError, match=r"^The embedding old-style\.pt is a pickle file"):
        check_model(job(tiny_sd15_folder, "an old-style boat", embeddings=("old-style",)))
    allowed = run(engine, recorder, job(tiny_sd15_folder, "an old-style boat", allow_pickle=True))
    assert not np.array_equal(allowed, refused.image)
    (folder / "old-style.pt").unlink()


def test_refusals_name_the_file(tiny_sd15_folder, tiny_sdxl_folder, folders):
    folder, store = folders
    given = save(store, "given.safetensors", tl.embedding_state_dict(WIDTH, "a1111", seed=3))
    with pytest.raises(InvalidRequest) as err:
        check_model(job(tiny_sd15_folder, "a red boat", embeddings=(str(given),)))
    assert str(err.value) == ("The embedding given.safetensors is not used by the prompts: write its token given in "
                              "the prompt or the negative prompt, or remove the embedding.")
    with pytest.raises(ModelError) as err:
        check_model(job(tiny_sd15_folder, "a nowhere boat", embeddings=("nowhere",)))
    assert str(err.value) == (f"The embedding 'nowhere' was not found: give the path of its .safetensors file, or put "
                              f"it into {folder}.")
    xl = save(store, "xl-only.safetensors", tl.embedding_state_dict((WIDTH, 64), "sdxl", seed=4))
    with pytest.raises(ModelError) as err:
        check_model(job(tiny_sd15_folder, "a xl-only boat", embeddings=(str(xl),)))
    assert str(err.value) == (f"xl-only.safetensors is an embedding for SDXL, but the model {tiny_sd15_folder.name} is "
                              "SD 1.x/2.x: choose an embedding made for SD 1.x/2.x.")
    with pytest.raises(ModelError, match=r"^given\.safetensors is an embedding for a text encoder 32 wide, but the "
                                         r"model .* is SDXL: choose an embedding made for SDXL\.$"):
        check_model(job(tiny_sdxl_folder, "a given boat", embeddings=(str(given),)))
    wide = save(store, "wide.safetensors", tl.embedding_state_dict(768, "a1111", seed=4))
    with pytest.raises(ModelError, match=r"^wide\.safetensors is an embedding for SD 1\.x, but the model "):
        check_model(job(tiny_sd15_folder, "a wide boat", embeddings=(str(wide),)))
    import torch

    lora = save(store, "not-one.safetensors", {"a.weight": torch.zeros(2, 2), "b.weight": torch.zeros(2)})
    with pytest.raises(ModelError, match=r"^not-one\.safetensors is not a textual-inversion embedding \(its tensors "
                                         r"are a\.weight, b\.weight…\)"):
        check_model(job(tiny_sd15_folder, "a not-one boat", embeddings=(str(lora),)))
    cut = store / "cut.safetensors"
    cut.write_bytes(given.read_bytes()[:-20])
    with pytest.raises(ModelError, match=r"^cut\.safetensors could not be read as a \.safetensors file"):
        check_model(job(tiny_sd15_folder, "a cut boat", embeddings=(str(cut),)))


@pytest.mark.parametrize("config_name, width, family", [("sd15", 1024, "SD 2.x"), ("sd21-base", 768, "SD 1.x")])
def test_full_size_text_widths_are_told_apart(tmp_path, config_name, width, family):
    from backend.models import ModelSource
    from backend.paths import MODEL_CONFIGS
    from backend.steering.lora import source_shape

    path = save(tmp_path, "emb.safetensors", tl.embedding_state_dict(width, "a1111"))
    shape = source_shape(ModelSource("folder", str(MODEL_CONFIGS / config_name), config_name))
    emb = embeddings.inspect(path, embeddings.tensor_table(path))
    theirs = {"sd15": "SD 1.x", "sd21-base": "SD 2.x"}[config_name]
    with pytest.raises(ModelError, match=rf"^emb\.safetensors is an embedding for {family}, but the model "
                                         rf"{config_name} is {theirs}"):
        embeddings.check_fits(emb, shape.name, shape.text_widths)
    sdxl = source_shape(ModelSource("folder", str(MODEL_CONFIGS / "sdxl-base"), "sdxl-base"))
    xl = save(tmp_path, "xl.safetensors", tl.embedding_state_dict((768, 1280), "sdxl"))
    embeddings.check_fits(embeddings.inspect(xl, embeddings.tensor_table(xl)), sdxl.name, sdxl.text_widths)


def test_a_folder_embedding_for_another_model_is_skipped_with_a_note(engine, recorder, tiny_sdxl_folder, folders):
    """Only a given embedding that does not fit is an error; one found by a word of the prompts is left out."""
    folder, _ = folders
    prompt = "a boat in sd-only light"
    before = run(engine, recorder, job(tiny_sdxl_folder, prompt))
    save(folder, "sd-only.safetensors", tl.embedding_state_dict(WIDTH, "a1111", seed=11))
    check_model(job(tiny_sdxl_folder, prompt))
    got = result(engine, recorder, job(tiny_sdxl_folder, prompt))
    assert np.array_equal(got.image, before)
    assert any(n.startswith("The word sd-only is the name of an embedding in embeddings/ that was not used: "
                            "sd-only.safetensors is an embedding for a text encoder 32 wide, but the model ")
               for n in got.notes), got.notes
    with pytest.raises(ModelError, match=r"^sd-only\.safetensors is an embedding for"):
        check_model(job(tiny_sdxl_folder, prompt, embeddings=("sd-only",)))
    (folder / "sd-only.safetensors").unlink()
