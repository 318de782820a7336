"""The steering flags (--lora, --embedding, --control, --reference, --ip-adapter) build the request's
steering values, cut to the part of the document the request works on; bad values are one sentence and
exit 2 before any job; --settings-from restores LoRAs and controls. Driven in-process with the fake
engine (the engine side has its own tests in tests/backend)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.fake import FakeEngine
from backend.steering import LoraRef
from cli import generate
from cli.contract import Parser


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(tmp_path / "models"))
    engines = []

    def factory(on_event):
        engine = FakeEngine(on_event)
        engines.append(engine)
        return engine

    def run(*argv):
        parser = Parser(prog="latent-studio")
        generate.register(parser.add_subparsers(dest="command"), engine_factory=factory)
        args = parser.parse_args([str(a) for a in argv])
        code = args.func(args)
        submitted = [r for e in engines for r in e.submitted]
        return code, (submitted[-1] if submitted else None)

    return run


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (192, 256, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((192, 256), np.uint8)
    mask[90:106, 120:140] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    control = np.zeros((192, 256, 3), np.uint8)
    control[:, ::7] = 255  # vertical lines: every crop of it is recognisable
    control[::5, :, 1] = 200
    Image.fromarray(control).save(tmp_path / "lines.png")
    Image.fromarray(control[::2, ::2]).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((192, 256, 4), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    return tmp_path


def test_loras_with_weights_reach_the_request_and_the_parameters(run, files):
    code, request = run("img2img", "--image", files / "in.png", "--out", files / "o.png", "--quiet",
                        "--prompt", "a cat", "--lora", "ink:0.5", "--lora", "paper", "--lora", "neg:-1.25")
    assert code == 0
    assert request.loras == (LoraRef("ink", 0.5), LoraRef("paper", 1.0), LoraRef("neg", -1.25))
    text = Image.open(files / "o.png").text["parameters"]
    assert text.splitlines()[0] == "a cat <lora:ink:0.5> <lora:paper:1> <lora:neg:-1.25>"


def test_settings_from_restores_loras_embeddings_and_a_clean_prompt(run, files):
    assert run("img2img", "--image", files / "in.png", "--out", files / "o.png", "--quiet", "--prompt", "a cat",
               "--lora", "ink:0.5", "--embedding", "mytoken")[0] == 0
    code, request = run("img2img", "--image", files / "in.png", "--out", files / "p.png", "--quiet",
                        "--settings-from", files / "o.png")
    assert code == 0
    assert request.prompt == "a cat" and request.loras == (LoraRef("ink", 0.5),)
    assert request.embeddings == ("mytoken",)
    # A flag given wins over the record.
    code, request = run("img2img", "--image", files / "in.png", "--out", files / "q.png", "--quiet",
                        "--settings-from", files / "o.png", "--lora", "other:2")
    assert request.loras == (LoraRef("other", 2.0),)


def test_a_control_is_cut_to_the_part_of_the_document_the_inpaint_works_on(run, files):
    code, request = run("inpaint", "--image", files / "in.png", "--mask", files / "mask.png", "--out",
                        files / "o.png", "--quiet", "--control", "my_scribble_net", files / "lines.png", "0.8:0.1:0.9",
                        "--control-kind", "scribble")
    assert code == 0
    (control,) = request.controls
    assert (control.model, control.kind, control.strength, control.start, control.end) == \
        ("my_scribble_net", "scribble", 0.8, 0.1, 0.9)
    x, y = request.origin
    h, w = request.image.shape[:2]
    assert (w, h) != (256, 192)  # the inpaint works on a crop around the mask
    drawn = np.asarray(Image.open(files / "lines.png").convert("RGBA"))
    assert np.array_equal(control.image, drawn[y:y + h, x:x + w])
    text = Image.open(files / "o.png").text["parameters"]
    assert 'ControlNet 0: "Module: scribble, Model: my_scribble_net, Weight: 0.8, Guidance Start: 0.1, ' \
           'Guidance End: 0.9, Image: ' in text
    # --settings-from finds the control image again by the file it names.
    code, again = run("inpaint", "--image", files / "in.png", "--mask", files / "mask.png", "--out", files / "p.png",
                      "--quiet", "--settings-from", files / "o.png")
    assert code == 0
    (restored,) = again.controls
    assert np.array_equal(restored.image, control.image)
    assert (restored.kind, restored.strength, restored.start, restored.end) == ("scribble", 0.8, 0.1, 0.9)


def test_a_control_image_of_another_size_is_scaled_not_refused(run, files):
    code, request = run("img2img", "--image", files / "in.png", "--out", files / "o.png", "--quiet",
                        "--control", "net_canny", files / "small.png")
    assert code == 0
    (control,) = request.controls
    assert control.image.shape == (192, 256, 4) and control.scaled_from == (128, 96)
    assert control.resolved_kind == "canny"


def test_a_tile_control_takes_the_image_itself(run, files):
    code, request = run("img2img", "--image", files / "in.png", "--out", files / "o.png", "--quiet",
                        "--control", "control_v11f1e_sd15_tile", "self", "0.6")
    assert code == 0
    assert request.controls[0].image is None and request.controls[0].resolved_kind == "tile"


BAD = [
    (["--lora", "ink:3"], "`lora ink weight` must be between -2 and 2, but is 3"),
    (["--lora", "a", "--lora", "a:0.5"], "The LoRA 'a' is listed twice"),
    (["--control", "net"], "--control takes MODEL IMAGE [STRENGTH], but was given 1 value(s) (net)."),
    (["--control", "net", "{lines}", "2.5"], "strength` must be between 0 and 2, but is 2.5"),
    (["--control", "net", "{lines}", "1:0.8:0.2"], "ends (0.2) before it starts (0.8)"),
    (["--control", "net", "{lines}", "strong"], "--control STRENGTH 'strong' is not a number"),
    (["--control", "net", "{empty}"], "The control 'empty.png' is empty"),
    (["--control", "net", "{missing}"], "The control image"),
    (["--control", "net_canny", "self"], "has no image: only tile and inpaint controls take the image itself"),
    (["--control-kind", "canny"], "--control-kind names the kind of a --control: give the --control flags too."),
    (["--reference", "{ref}"], "Reference images need an IP-Adapter model"),
    (["--reference", "{ref}:5", "--ip-adapter", "ipa"], "weight` must be between 0 and 2, but is 5"),
]


@pytest.mark.parametrize("extra,sentence", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_steering_is_one_sentence_and_exit_2_before_any_job(run, files, capsys, extra, sentence):
    names = {"lines": files / "lines.png", "empty": files / "empty.png", "missing": files / "nope.png",
             "ref": files / "ref.png"}
    extra = [str(a).format(**{k: str(v) for k, v in names.items()}) for a in extra]
    code, request = run("img2img", "--image", files / "in.png", "--out", files / "o.png", "--quiet", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and request is None
    assert len(err) == 1 and sentence.replace("'empty.png'", repr(str(files / "empty.png"))) in err[0], err
    assert not (files / "o.png").exists()


def test_an_outpaint_control_covers_the_extended_canvas(run, files):
    code, request = run("outpaint", "--image", files / "in.png", "--out", files / "o.png", "--quiet", "--right", "32",
                        "--control", "my_scribble_net", files / "lines.png")
    assert code == 0
    (control,) = request.controls
    assert control.image.shape == (192, 256 + 32, 4)  # the new area too: transparent where the file ends
    drawn = np.asarray(Image.open(files / "lines.png").convert("RGBA"))
    assert np.array_equal(control.image[:, :256], drawn) and not control.image[:, 256:, 3].any()


def test_black_lines_on_a_transparent_layer_are_a_control_and_a_flat_image_is_empty():
    from backend.errors import InvalidRequest
    from backend.steering import Control

    lines = np.zeros((32, 32, 4), np.uint8)
    lines[:, ::4, 3] = 255  # black strokes on transparency
    assert Control("net_scribble", lines).image is not None
    with pytest.raises(InvalidRequest, match="is empty"):
        Control("net_scribble", np.full((32, 32, 4), 255, np.uint8), label="white")
    assert Control("net_depth", np.full((32, 32, 4), 255, np.uint8)).image is not None  # a flat depth map
