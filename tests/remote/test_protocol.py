"""The wire format without a server: requests and events survive the trip, images stay lossless (previews
excepted), only known classes are rebuilt, limits and refusals say what to do in one sentence."""
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend import Img2ImgRequest, InpaintRequest, OutpaintRequest, UpscaleRequest
from backend.errors import InvalidRequest
from backend.events import Cancelled, Failed, ModelState, Preview, Progress, Result, ResultImage, Started
from backend.interface import ModelInfo
from remote import protocol
from remote.protocol import Limits, RemoteRefused
from scenes import make_scene

ROOT = Path(__file__).resolve().parents[2]


def trip(value, **kw):
    """Through JSON text, as on the wire."""
    return protocol.decode(json.loads(json.dumps(protocol.encode(value))), **kw)


def requests():
    img, mask = make_scene()
    return [
        InpaintRequest(image=img, mask=mask, model="tiny", prompt="a ☃ roof", seed=7, steps=5, guidance=5.5,
                       strength=0.75, count=2, origin=(-3, 40), grow=-2, fill="blur", restore_detail=False),
        Img2ImgRequest(image=img[..., :3], strength=0.4, sampler="euler_a", seed=4294967290),
        OutpaintRequest(image=img, left=16, bottom=8, overlap=12, fill="edge"),
        UpscaleRequest(image=img[:32, :40], upscaler="lanczos", scale=2, origin=(5, 6)),
    ]


@pytest.mark.parametrize("index", range(4), ids=["inpaint", "img2img", "outpaint", "upscale"])
def test_every_request_survives_the_trip_field_for_field(index):
    request = requests()[index]
    back = trip(request, allowed=protocol.request_names())
    assert type(back) is type(request)
    for name, value in vars(request).items():
        other = getattr(back, name)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and np.array_equal(other, value), name
        else:
            assert other == value and type(other) is type(value), name


def test_steering_travels_with_its_images_bit_exact():
    from backend.steering import Control, LoraRef, Reference

    img, mask = make_scene()
    h, w = img.shape[:2]
    lines = np.zeros((h, w, 4), np.uint8)
    lines[:, ::5] = 255
    request = Img2ImgRequest(image=img, loras=(LoraRef("ink", 0.5), LoraRef("/x/paper.safetensors", -1.0)),
                             embeddings=("tok",), ip_adapter="ipa", image_encoder="/enc",
                             controls=(Control("net_scribble", lines, "scribble", 0.7, 0.1, 0.8, "Lines"),
                                       Control("control_tile", None, strength=0.4)),
                             references=(Reference(img[:20, :30], 0.6, "style", "Ref"),))
    back = trip(request, allowed=protocol.request_names())
    assert back.loras == request.loras and back.embeddings == ("tok",)
    assert (back.ip_adapter, back.image_encoder) == ("ipa", "/enc")
    a, b = back.controls
    assert np.array_equal(a.image, lines) and (a.model, a.kind, a.strength, a.start, a.end, a.label) == \
        ("net_scribble", "scribble", 0.7, 0.1, 0.8, "Lines")
    assert b.image is None and b.resolved_kind == "tile" and b.strength == 0.4
    (ref,) = back.references
    assert np.array_equal(ref.image, request.references[0].image) and (ref.weight, ref.mode) == (0.6, "style")


def test_events_survive_the_trip_and_results_stay_bit_exact():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (24, 40, 4), np.uint8)
    mask = rng.integers(0, 256, (24, 40), np.uint8)
    item = ResultImage(image=image, rect=(-4, 9, 40, 24), mask=mask, seed=12,
                       parameters={"Seed": 12, "CFG scale": "7", "$odd": 1.5}, notes=("A note.",))
    result = trip(Result(3, (item, item)))
    assert isinstance(result, Result) and result.job_id == 3 and len(result.images) == 2
    back = result.images[0]
    assert np.array_equal(back.image, image) and np.array_equal(back.mask, mask)
    assert back.rect == (-4, 9, 40, 24) and back.seed == 12 and back.notes == ("A note.",)
    assert back.parameters == {"Seed": 12, "CFG scale": "7", "$odd": 1.5}
    for event in (Started(1, "inpaint", 20), Progress(1, 3, 20, "Image 1 of 2"), Failed(1, "It broke.", "trace"),
                  Cancelled(2), ModelState(0, "tiny", "ready", "", True, (("inpaint", "strength", 0.5),))):
        assert trip(event) == event
    assert trip(Started(5, "img2img", 3), job_id=77).job_id == 77  # the client's own numbering


def test_previews_travel_small_and_lossy_but_keep_their_alpha():
    image = np.zeros((64, 64, 4), np.uint8)
    image[..., 0] = np.arange(64)[None] * 4
    image[16:48, 16:48, 3] = 255
    data = protocol.encode(Preview(1, image, (0, 0, 64, 64), 2, 4))
    assert "$webp" in data["$fields"]["image"]
    back = protocol.decode(json.loads(json.dumps(data)))
    assert back.image.shape == image.shape and back.rect == (0, 0, 64, 64)
    painted = image[..., 3] == 255  # where alpha is 0 the colour means nothing, and WebP drops it
    assert np.abs(back.image.astype(int) - image)[painted].mean() <= 4
    assert back.image[:8, :8, 3].max() == 0 and back.image[24:40, 24:40, 3].min() == 255


def test_only_known_classes_are_built():
    with pytest.raises(InvalidRequest, match="do not share the type 'Popen'"):
        protocol.decode({"$type": "Popen", "$fields": {"args": ["rm", "-rf", "/"]}})
    event = protocol.encode(Started(1, "inpaint", 3))
    with pytest.raises(InvalidRequest, match="do not share the type 'Started'"):
        protocol.decode(event, allowed=protocol.request_names())  # a request was expected
    event["$fields"]["extra"] = 1
    with pytest.raises(InvalidRequest, match=r"fields this side does not know \(extra\)"):
        protocol.decode(event)


def test_a_request_is_validated_again_when_it_arrives():
    data = protocol.encode(requests()[0])
    data["$fields"]["steps"] = 0
    with pytest.raises(InvalidRequest, match="`steps` must be between 1 and 500"):
        protocol.decode(data)


def test_an_image_too_large_is_refused_before_it_is_decoded():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (20000, 2)).save(buffer, "PNG")  # a few hundred bytes that would decode to 40 kpx
    import base64

    data = {"$png": base64.b64encode(buffer.getvalue()).decode()}
    with pytest.raises(RemoteRefused, match=r"^An image of 20000×2 pixels is larger than this server takes"):
        protocol.decode_image(data, Limits(max_side=4096).image_limits())
    with pytest.raises(InvalidRequest, match="could not be read"):
        protocol.decode_image({"$png": "bm90IGEgcG5n"})


def test_limits_refuse_in_one_sentence():
    img, mask = make_scene()
    limits = Limits(max_side=200, max_pixels=64 * 64, max_steps=10, max_count=2)
    with pytest.raises(RemoteRefused, match=r"`steps` is 20 but this server runs at most 10 steps a job: ask for fewer\.$"):
        limits.check(InpaintRequest(image=img, mask=mask))
    with pytest.raises(RemoteRefused, match="`count` is 3 but this server makes at most 2 variations"):
        limits.check(InpaintRequest(image=img, mask=mask, steps=5, count=3))
    with pytest.raises(RemoteRefused, match=r"covers 12288 pixels but this server takes at most 4096"):
        limits.check(InpaintRequest(image=img, mask=mask, steps=5))
    with pytest.raises(RemoteRefused, match=r"The result is 256×192 pixels but this server takes at most 200 px"):
        limits.check(UpscaleRequest(image=img, upscaler="lanczos", scale=2, steps=5))
    with pytest.raises(RemoteRefused, match=r"`image` is 128×96 pixels but this server takes at most 100 px a side"):
        Limits(max_side=100).check(InpaintRequest(image=img, mask=mask, steps=5))


def test_protocol_mismatch_is_one_sentence():
    error = protocol.error_from({"error": protocol.mismatch_sentence(2, 1), "code": "protocol"}, 400)
    assert isinstance(error, RemoteRefused)
    assert str(error) == ("The server speaks Latent Studio protocol 2 and this client protocol 1: use the same "
                          "version of Latent Studio on both sides.")


def test_an_unreachable_server_is_one_sentence():
    import socket

    from remote.client import RemoteEngine
    from remote.protocol import RemoteError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(RemoteError, match=rf"Cannot reach the server at http://127.0.0.1:{port} \(.*\): check the "
                                          "address and that `main.py serve` runs there.$"):
        RemoteEngine(lambda e: None, f"http://127.0.0.1:{port}", "t", timeout=5)


def test_the_client_reads_the_token_file_without_its_whitespace(tmp_path):
    from remote.client import token_from

    (tmp_path / "token").write_text("  s3cret\n\n")
    assert token_from(str(tmp_path / "token"), {}) == "s3cret"
    assert token_from(None, {"LATENT_STUDIO_TOKEN": " env-token \n"}) == "env-token"


def run_main(*args, env=None):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env)


def test_serve_refuses_the_network_without_a_token():
    done = run_main("serve", "--host", "0.0.0.0", "--port", "7861")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("error: Serving on 0.0.0.0 would let anyone on the network use this machine: "
                                   "give a token with --token-file, or serve on 127.0.0.1.")


def test_serve_refuses_an_empty_token_file(tmp_path):
    (tmp_path / "token").write_text(" \n")
    done = run_main("serve", "--token-file", str(tmp_path / "token"))
    assert done.returncode == 2 and "is empty: put a long random token in it" in done.stderr


def test_the_cli_says_in_one_sentence_that_a_server_cannot_be_reached(tmp_path):
    img, mask = make_scene()
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "in.png")
    done = run_main("img2img", "--image", str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png"),
                    "--engine", "http://127.0.0.1:9", "--quiet")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: Cannot reach the server at http://127.0.0.1:9") and "Traceback" not in done.stderr
    assert not (tmp_path / "out.png").exists()


def test_serve_takes_its_settings_from_a_config_file_and_flags_win(tmp_path):
    import argparse

    from cli import serve as serve_cli
    from remote.serve import ServeError

    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    (tmp_path / "token").write_text("s3cret\n")
    config = tmp_path / "serve.toml"
    config.write_text(f'replicas = 2\nmax-replicas = 4\nmax_steps = 30\ntoken_file = "{tmp_path / "token"}"\n')
    options = serve_cli.options_from(parser.parse_args(["serve", "--config", str(config), "--max-steps", "20"]))
    assert (options.replicas, options.max_replicas, options.token) == (2, 4, "s3cret")
    assert options.limits.max_steps == 20  # the flag wins over the file
    assert options.host == "127.0.0.1" and options.limits.max_count == serve_cli._defaults()["max_count"]
    for text, said in (("replica = 2\n", "sets `replica`, which `serve` does not have"),
                       ('replicas = "two"\n', "sets `replicas` to 'two': give a whole number"),
                       ("replicas = \n", "is not valid TOML"),
                       ("replicas = 0\n", "`replicas` is 0: give a whole number of at least 1")):
        config.write_text(text)
        with pytest.raises(ServeError, match=re.escape(said)):
            serve_cli.options_from(parser.parse_args(["serve", "--config", str(config)]))
    with pytest.raises(ServeError, match="cannot be read"):
        serve_cli.options_from(parser.parse_args(["serve", "--config", str(tmp_path / "missing.toml")]))


def test_serve_refuses_a_port_in_use_but_not_one_a_stopped_server_just_left():
    import socket

    from remote.serve import ServeError, ServeOptions, check_options

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server's socket is
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    options = ServeOptions(host="127.0.0.1", port=port)
    with pytest.raises(ServeError) as refused:
        check_options(options)
    assert str(refused.value).startswith(f"Cannot listen on 127.0.0.1:{port} (") and str(refused.value).endswith(
        "): choose another --port or stop what uses it.")
    # The server closes a client's connection and stops: its side of the connection waits (TIME_WAIT) for a
    # minute, which must not keep `serve` from starting again on the same port.
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()
    client.recv(1)
    client.close()
    listener.close()
    check_options(options)
