"""The fast path (backend.fastpath): off is diffusers as it is, on changes what it says, compile falls back."""
import argparse
import time

import numpy as np
import pytest

from backend import fastpath
from backend.events import ModelState


def _load(folder, fast_path):
    from backend.models import ModelManager

    return ModelManager(device="cpu", fast_path=fast_path).get(str(folder))


def _channels_last(module) -> bool:
    import torch

    convs = [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    return bool(convs) and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                               for w in convs)


def test_off_loads_exactly_what_diffusers_loads(tiny_sd15_folder):
    import torch
    from diffusers import AutoencoderKL

    model = _load(tiny_sd15_folder, False)
    assert model.fast_path is None
    assert not _channels_last(model.vae.encoder) and not fastpath.is_compiled(model.inpaint.unet)
    stock = AutoencoderKL.from_pretrained(tiny_sd15_folder, subfolder="vae")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.vae.encode(x).latent_dist.mean, stock.encode(x).latent_dist.mean)


def test_on_the_cpu_only_the_vae_goes_channels_last(tiny_sd15_folder):
    import torch

    off, on = _load(tiny_sd15_folder, False), _load(tiny_sd15_folder, True)
    assert _channels_last(on.vae.encoder) and _channels_last(on.vae.decoder)
    assert not _channels_last(on.inpaint.unet)  # no faster on this CPU (measured): left as diffusers has it
    assert on.fast_path.applied == ["channels_last vae"] and on.fast_path.notes == []
    assert not fastpath.is_compiled(on.inpaint.unet)  # no compile on the CPU unless asked
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = off.vae.encode(x).latent_dist.mean, on.vae.encode(x).latent_dist.mean
    assert torch.allclose(a, b, atol=1e-4)  # the same numbers up to float rounding


def test_the_env_and_the_cli_turn_it_off(monkeypatch):
    from cli.generate import _factory

    monkeypatch.setenv("LATENT_STUDIO_FAST_PATH", "0")
    assert fastpath.enabled() is False and fastpath.enabled(True) is True
    monkeypatch.delenv("LATENT_STUDIO_FAST_PATH")
    assert fastpath.enabled() is True and fastpath.enabled(False) is False
    for flag, expected in ((True, False), (False, None)):
        engine = _factory(argparse.Namespace(no_fast_path=flag, engine=None, device="cpu"), None)(lambda e: None)
        try:
            assert engine._fast_path is expected
        finally:
            engine.shutdown()


def _fresh_pipe(folder):
    return _load(folder, False).inpaint


@pytest.mark.parametrize("how", ["the compiled call raises", "torch.compile raises"])
def test_a_compile_failure_leaves_eager_modules_and_a_note(tiny_sd15_folder, monkeypatch, how):
    import torch

    pipe = _fresh_pipe(tiny_sd15_folder)
    latents = torch.zeros(1, 4, 8, 8)
    with torch.no_grad():
        before = pipe.vae.decode(latents).sample

    def broken_compile(fn, *args, **kwargs):
        if how == "torch.compile raises":
            raise RuntimeError("no C++ compiler found")

        def compiled(*a, **k):
            raise RuntimeError("inductor: triton kernel failed")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    said = []
    report = fastpath.apply(pipe, torch.device("cpu"), compile=True, progress=said.append, warm_side=64)
    assert not fastpath.is_compiled(pipe.unet) and "forward" not in vars(pipe.unet)
    assert not fastpath.is_compiled(pipe.vae.decoder) and "forward" not in vars(pipe.vae.decoder)
    assert [n.split(" (")[0] for n in report.notes] == ["The UNet could not be compiled",
                                                       "The VAE decoder could not be compiled"]
    assert all(n.endswith("it runs uncompiled.") for n in report.notes)
    assert said[0].startswith("Compiling the UNet")
    assert not any(a.startswith("compiled") for a in report.applied)
    with torch.no_grad():  # eager again: it runs, and the same numbers as before (channels_last: rounding)
        assert torch.allclose(pipe.vae.decode(latents).sample, before, atol=1e-4)


def test_a_compile_that_works_wraps_forward_and_is_warmed_up_at_load(tiny_sd15_folder, monkeypatch):
    import torch

    pipe = _fresh_pipe(tiny_sd15_folder)
    calls = []

    def fake_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            calls.append(fn.__qualname__)
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    report = fastpath.apply(pipe, torch.device("cpu"), compile=True, warm_side=64)
    assert fastpath.is_compiled(pipe.unet) and fastpath.is_compiled(pipe.vae.decoder)
    assert calls == ["UNet2DConditionModel.forward", "Decoder.forward"]  # compiled at load, not in the first job
    assert report.applied[-2:] == ["compiled UNet", "compiled VAE decoder"] and report.notes == []
    handle = pipe.unet.register_forward_pre_hook(lambda m, i: calls.append("hook"))  # hooks stay eager, outside
    fastpath._warm_unet(pipe.unet, 64, torch.device("cpu"))
    handle.remove()
    assert calls[-2:] == ["hook", "UNet2DConditionModel.forward"]
    fastpath.eager(pipe.unet)
    assert not fastpath.is_compiled(pipe.unet)


def test_an_unsupported_bfloat16_falls_back_with_a_note(monkeypatch):
    import torch

    monkeypatch.setattr(fastpath, "cpu_has_bf16", lambda: False)
    dtype, note = fastpath.supported_dtype(torch.device("cpu"), torch.bfloat16)
    assert dtype == torch.float32 and note == "This CPU has no bfloat16 instructions: the model runs in float32."
    monkeypatch.setattr(fastpath, "cpu_has_bf16", lambda: True)
    assert fastpath.supported_dtype(torch.device("cpu"), torch.bfloat16) == (torch.bfloat16, None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    dtype, note = fastpath.supported_dtype(torch.device("cuda"), torch.bfloat16)
    assert dtype == torch.float16 and "float16" in note
    assert fastpath.supported_dtype(torch.device("cuda"), torch.float16) == (torch.float16, None)


def test_this_machine_stays_fp32():
    # the machine these figures were measured on has AVX2 but no avx512_bf16 / AMX
    import torch

    if fastpath.cpu_has_bf16():
        pytest.skip("this CPU has bfloat16")
    assert fastpath.supported_dtype(torch.device("cpu"), torch.bfloat16)[0] == torch.float32


def test_a_lora_gets_the_unfused_projections(tiny_sd15_folder):
    pipe = _fresh_pipe(tiny_sd15_folder)
    pipe.unet.fuse_qkv_projections()
    assert "Fused" in type(next(iter(pipe.unet.attn_processors.values()))).__name__
    fastpath.unfuse(pipe)
    assert not any("Fused" in type(p).__name__ for p in pipe.unet.attn_processors.values())


def test_the_model_state_says_what_the_fast_path_did(tiny_sd15_folder):
    from backend.engine import Engine

    events = []
    engine = Engine(events.append, device="cpu", threads=2, fast_path=True)
    try:
        engine.preload(str(tiny_sd15_folder))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(getattr(e, "state", "") == "ready" for e in events):
            time.sleep(0.05)
    finally:
        engine.shutdown()
    ready = [e for e in events if isinstance(e, ModelState) and e.state == "ready"]
    assert ready and ready[0].message == "fast path: channels_last vae."
