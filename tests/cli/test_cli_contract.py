"""The CLI's error contract, walked as a table of bad invocations of ``python main.py``.

Each row runs main.py in a fresh process (as a user would) and asserts the exit code, exactly one
line on stderr, nothing written where the output would go, and, for every refusal that the
arguments or the files already decide, that torch was never imported. Bad input is exit 2 before
the job; a job that fails while running is exit 1, one line naming the log file, the traceback in
it. No model is loaded: the model folders here hold configs and placeholder weights, which every
row refuses before a weight is read (about 30 s in all, most of it the four rows that start torch,
which `make test-fast` leaves out).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenes import make_scene

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import hostile_files as hf  # noqa: E402

# Runs main.py exactly as `python main.py ARGS` does, then records whether torch was imported. With
# $LS_FAULT the inpaint operation is replaced, to make a job fail while it runs: "crash" raises
# inside the job, "disk-full" returns a result whose PNG cannot be written.
LAUNCHER = r"""
import json, os, runpy, sys
fault = os.environ.get("LS_FAULT")
if fault:
    import numpy as np
    from backend.events import ResultImage
    from backend.ops import OPERATIONS
    from backend.ops.inpaint import InpaintRequest

    def crash(ctx, request):
        raise RuntimeError("a fault made for the test\nover two lines")

    def result(ctx, request):
        h, w = request.image.shape[:2]
        return (ResultImage(np.array(request.image), (*request.origin, w, h), np.full((h, w), 255, np.uint8), 0),)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if fault == "disk-full":
        import canvas.image_io
        canvas.image_io.export_png = disk_full
    OPERATIONS[InpaintRequest] = OPERATIONS[InpaintRequest]._replace(run=crash if fault == "crash" else result)
sys.argv = ["main.py", *sys.argv[1:]]
code = 0
try:
    runpy.run_path("main.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
with open(os.environ["LS_PROBE"], "w") as f:
    json.dump({"torch": "torch" in sys.modules, "this": "this" in sys.modules}, f)
sys.exit(code)
"""

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
TEXT = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
VAE = "first_stage_model.decoder.conv_in.weight"
HOSTILE = ["this", "X"]  # importing `this` prints the Zen of Python: code run by configuration


class _OpensAFile:
    """Unpickled without restrictions, it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _safetensors(path: Path, names) -> Path:
    from safetensors.numpy import save_file

    save_file({n: np.zeros((320, 4, 3, 3) if n == UNET_IN else (2, 2), np.float32) for n in names}, str(path))
    return path


def _config_folder(path: Path, weights: bool = True, index: dict | None = None) -> Path:
    """The shipped SD 1.5 configs, with placeholder .safetensors weights and, if given, another index."""
    shutil.copytree(ROOT / "resources" / "model-configs" / "sd15", path)
    if weights:
        for part in ("unet", "vae", "text_encoder"):
            _safetensors(path / part / "weights.safetensors", ["x"])
    if index is not None:
        (path / "model_index.json").write_text(json.dumps(index))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Input files, hostile and broken models, and a folder for the output that must stay empty."""
    d = tmp_path_factory.mktemp("contract")
    img, mask = make_scene()
    Image.fromarray(img).save(d / "in.png")
    Image.fromarray(mask).save(d / "mask.png")
    (d / "broken.png").write_bytes((d / "in.png").read_bytes()[:300])
    (d / "huge.png").write_bytes(hf.PNG_SIG + hf.ihdr(16385, 16384) + hf.chunk(b"IEND", b""))
    (d / "16k.png").write_bytes(hf.PNG_SIG + hf.ihdr(16384, 16384) + hf.chunk(b"IEND", b""))
    (d / "a-folder.png").mkdir()
    (d / "a-file").write_text("not a folder")
    (d / "out").mkdir()

    sd15 = json.loads((ROOT / "resources" / "model-configs" / "sd15" / "model_index.json").read_text())
    (d / "bad-json").mkdir()
    (d / "bad-json" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline",')
    (d / "json-list").mkdir()
    (d / "json-list" / "model_index.json").write_text("[1, 2]")
    _config_folder(d / "hostile", index={**sd15, "unet": HOSTILE})

    bin_folder = _config_folder(d / "with-bin")
    (bin_folder / "unet" / "weights.safetensors").unlink()
    (bin_folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"x": 1}))
    evil_bin = _config_folder(d / "evil-bin")
    (evil_bin / "unet" / "weights.safetensors").unlink()
    (evil_bin / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_OpensAFile(d / "pwned-bin")))
    (d / "evil.ckpt").write_bytes(pickle.dumps(_OpensAFile(d / "pwned-ckpt")))

    _safetensors(d / "unet-only.safetensors", [UNET_IN])
    _safetensors(d / "no-vae.safetensors", [UNET_IN, TEXT])
    _safetensors(d / "sidecar.safetensors", [UNET_IN, TEXT, VAE])
    _config_folder(d / "sidecar.config", weights=False, index={**sd15, "text_encoder": HOSTILE})

    upscaler = {"_class_name": "StableDiffusionUpscalePipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"], "text_encoder": HOSTILE, "tokenizer": ["transformers",
                "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"],
                "low_res_scheduler": ["diffusers", "DDPMScheduler"]}
    (d / "hostile-upscaler").mkdir()
    (d / "hostile-upscaler" / "model_index.json").write_text(json.dumps(upscaler))
    (d / "models").mkdir()
    return d


def _rows(d: Path):
    """(id, argv, exit code, words the line must hold, whether torch may be imported, fault)."""
    out = d / "out" / "result.png"
    io = ["--image", d / "in.png", "--mask", d / "mask.png"]
    inpaint = ["inpaint", *io, "--out", out]
    a = ["--allow-pickle"]
    return [
        # argparse: one line and a pointer to --help
        ("missing arguments", ["inpaint", "--out", out], 2, "the following arguments are required", False),
        ("unknown flag", [*inpaint, "--bogus"], 2, "unrecognized arguments: --bogus", False),
        ("unknown command", ["paint", *io], 2, "invalid choice: 'paint'", False),
        ("not a number", [*inpaint, "--steps", "abc"], 2, "'abc' is not a whole number", False),
        ("number out of range", [*inpaint, "--steps", "0"], 2, "0 is out of range: give a whole number from 1 to 500",
         False),
        ("NaN", [*inpaint, "--guidance", "nan"], 2, "nan is out of range", False),
        ("count out of range", [*inpaint, "--count", "65"], 2, "65 is out of range", False),
        ("unknown sampler", [*inpaint, "--sampler", "best"], 2, "invalid choice: 'best'", False),
        ("training flag", ["train-unet", "--steps", "many"], 2, "invalid int value: 'many'", False),
        # the output, the previews folder, the device, the prompts: before anything is read
        ("--out in /proc", ["inpaint", *io, "--out", "/proc/out.png"], 2, "/proc cannot be written to", False),
        ("--out a folder/", ["inpaint", *io, "--out", f"{d / 'out'}/"], 2, "is a folder", False),
        ("--out names a folder", ["inpaint", *io, "--out", d / "a-folder.png"], 2, "is a folder", False),
        ("--out in no folder", ["inpaint", *io, "--out", d / "missing" / "x.png"], 2, "does not exist", False),
        ("--out .jpg", ["inpaint", *io, "--out", d / "out" / "x.jpg"], 2, "must end in .png or .ora", False),
        ("previews in a file", [*inpaint, "--save-previews", d / "a-file"], 2, "is a file, not a folder", False),
        ("unknown device", [*inpaint, "--device", "banana"], 2, "Device 'banana' is unknown", False),
        ("prompt not UTF-8", [*inpaint, "--prompt", b"a \xff cat"], 2,
         "`--prompt` is not valid UTF-8 text (the byte 0xFF at character 3)", False),
        ("negative not UTF-8", [*inpaint, "--negative", b"\xc3("], 2, "`--negative` is not valid UTF-8", False),
        # the inputs: sizes from the headers, then the files (the embedded model's notes held back)
        ("image over 16384²", ["inpaint", "--image", d / "huge.png", "--mask", d / "mask.png", "--out", out], 2,
         "huge.png is 16385×16384 = 268,451,840 pixels; the command line works on images of at most", False),
        ("16384² image, small mask", ["inpaint", "--image", d / "16k.png", "--mask", d / "mask.png", "--out", out],
         2, "The mask is 128×96 but the image is 16384×16384", False),
        ("damaged image", ["inpaint", "--image", d / "broken.png", "--mask", d / "mask.png", "--out", out], 2,
         "broken.png", False),
        ("mask shrunk to nothing", [*inpaint, "--grow", "-200"], 2, "`grow` shrinks the mask to nothing", False),
        # models: configs, classes, pickles, partial checkpoints
        ("model_index not JSON", [*inpaint, "--model", d / "bad-json"], 2,
         "bad-json/model_index.json is not valid JSON", False),
        ("model_index a list", [*inpaint, "--model", d / "json-list"], 2, "holds a JSON list, not an object", False),
        ("hostile class", [*inpaint, "--model", d / "hostile"], 2,
         "asks for the component `unet` to be loaded by this.X", False),
        ("hostile sidecar", [*inpaint, "--model", d / "sidecar.safetensors"], 2,
         "sidecar.config/model_index.json asks for the component `text_encoder` to be loaded by this.X", False),
        ("hostile upscaler", ["upscale", "--image", d / "in.png", "--out", out, "--model", d / "hostile-upscaler"], 2,
         "loaded by this.X", False),
        (".bin in a folder", [*inpaint, "--model", d / "with-bin"], 2,
         "unet/diffusion_pytorch_model.bin is a pickle file", False),
        (".bin with code, allowed", [*inpaint, *a, "--model", d / "evil-bin"], 2,
         "diffusion_pytorch_model.bin holds more than weights", True),
        (".ckpt with code, allowed", [*inpaint, *a, "--model", d / "evil.ckpt"], 2, "evil.ckpt holds more than weights",
         True),
        ("UNet-only checkpoint", [*inpaint, "--model", d / "unet-only.safetensors"], 2, "no text encoder", False),
        ("checkpoint without VAE", [*inpaint, "--model", d / "no-vae.safetensors"], 2, "no autoencoder (VAE)", False),
        # text to image: the embedded model cannot make images from text; a size out of range
        ("txt2img, captionless model", ["txt2img", "--prompt", "a cat", "--out", out], 2,
         "latent-studio-mini was trained without captions and ignores the prompt, so it cannot make an image", False),
        ("txt2img, size", ["txt2img", "--width", "32", "--out", out], 2, "32 is out of range", False),
        # during the job: one line naming the log, the details in it
        ("job crashes", [*inpaint, "--quiet"], 1, "The job failed unexpectedly (RuntimeError: a fault made for the "
         "test over two lines); details are in ", True, "crash"),
        ("disk full", [*inpaint, "--quiet"], 1, "No space left on device", True, "disk-full"),
    ]


def _run(d: Path, argv, fault: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENT_STUDIO_", "LS_"))}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", XDG_STATE_HOME=str(d / "state"),
               LATENT_STUDIO_CACHE=str(d / "cache"), LATENT_STUDIO_MODELS=str(d / "models"),
               LS_PROBE=str(d / "probe.json"))
    if fault:
        env["LS_FAULT"] = fault
    args = [a if isinstance(a, bytes) else os.fsencode(str(a)) for a in argv]
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=120)
    probe = json.loads((d / "probe.json").read_text())
    return done.returncode, done.stderr.decode("utf-8", "replace"), done.stdout.decode("utf-8", "replace"), probe


# Rows that start torch (opening a pickle, running a job) take seconds each: `make test-fast` leaves them out.
@pytest.mark.parametrize("row", [pytest.param(i, id=r[0], marks=[pytest.mark.slow] if r[4] else [])
                                 for i, r in enumerate(_rows(Path("/")))])
def test_bad_invocations_are_one_line_and_write_nothing(world, row):
    name, argv, code, words, torch_allowed, *fault = _rows(world)[row]
    log = world / "state" / "latent-studio" / "log" / "cli.log"
    log.unlink(missing_ok=True)
    rc, err, out, probe = _run(world, argv, *fault)
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert words in lines[0], lines[0]
    assert lines[0].endswith("."), lines[0]
    assert not list((world / "out").iterdir()), "something was written"
    assert not probe["this"] and "Zen of Python" not in out, "a model config imported a module"
    assert not (world / "pwned-bin").exists() and not (world / "pwned-ckpt").exists(), "a pickle ran code"
    if not torch_allowed:
        assert not probe["torch"], "torch was imported before the refusal"
    if "--help" not in " ".join(map(str, argv)) and lines[0].count("(see `") == 1:
        assert lines[0].endswith("--help`)."), lines[0]
    if code == 1:
        assert f"details are in {log}" in lines[0] or f"(details: {log})" in lines[0], lines[0]
        assert "Traceback" in log.read_text()
    else:  # warnings may be logged (torch warns about old pickles), tracebacks are not
        assert not log.exists() or " ERROR " not in log.read_text(), log.read_text()
