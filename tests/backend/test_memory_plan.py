"""The per-job memory plan (backend.memory_plan): a table of simulated GPUs, the CPU, and out of memory mid-job."""
import functools

import numpy as np
import pytest

from backend import InpaintRequest, memory_plan
from backend.errors import InvalidRequest
from backend.events import Failed, Progress, Result
from backend.paths import MODEL_CONFIGS
from backend.upscale.memory import GB

from scenes import make_scene


@functools.lru_cache(maxsize=None)
def full_size_bytes(config: str) -> dict:
    """Bytes (fp16) of each component of a full-size model, built on the meta device from its shipped config."""
    import torch
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = MODEL_CONFIGS / config
    out = {}
    with torch.device("meta"):
        out["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        out["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        for name in ("text_encoder", "text_encoder_2"):
            if (folder / name).is_dir():
                cfg = transformers.AutoConfig.from_pretrained(folder / name)
                cls = transformers.CLIPTextModelWithProjection if name.endswith("_2") else transformers.CLIPTextModel
                out[name] = cls(cfg)
    return {k: sum(p.numel() for p in m.parameters()) * 2 for k, m in out.items()}


@pytest.mark.parametrize("config, family, side, free_gb, mode, tiling", [
    ("sd15-inpainting", "sd15", 512, 24, "full", False),
    ("sd15-inpainting", "sd15", 512, 4, "model offload", False),
    ("sd15-inpainting", "sd15", 512, 2, "sequential offload", False),
    ("sdxl-base", "sdxl", 1024, 24, "full", False),
    ("sdxl-base", "sdxl", 1024, 8, "model offload", True),
    ("sdxl-base", "sdxl", 1024, 4, "sequential offload", True),
])
def test_plan_table_with_simulated_free_memory(config, family, side, free_gb, mode, tiling):
    sizes = full_size_bytes(config)
    plan = memory_plan.choose(sizes, side, side, device="cuda", free=int(free_gb * GB), family=family)
    assert (plan.mode, plan.vae_tiling) == (mode, tiling)
    # the plan's own estimate of its peak stays inside the memory it was given
    assert plan.estimate <= free_gb * GB
    assert f"of {free_gb:.1f} GB free" in plan.describe()


def test_sd15_weights_are_what_the_plans_assume():
    sizes = full_size_bytes("sd15-inpainting")
    assert 1.6 * GB < sizes["unet"] < 1.7 * GB and sum(sizes.values()) < 2.1 * GB


def test_floor_and_thriftier_step_through_the_modes():
    sizes = full_size_bytes("sd15-inpainting")
    plan = memory_plan.choose(sizes, 512, 512, device="cuda", free=24 * GB, floor="model offload")
    assert plan.mode == "model offload"
    assert memory_plan.thriftier(plan) == "sequential offload"
    assert memory_plan.thriftier(memory_plan.choose(sizes, 512, 512, device="cuda", free=2 * GB)) is None


def test_too_little_memory_is_one_sentence():
    with pytest.raises(InvalidRequest) as err:
        memory_plan.choose(full_size_bytes("sdxl-base"), 2048, 2048, device="cuda", free=int(0.5 * GB), family="sdxl")
    text = str(err.value)
    assert text.count(". ") == 0 and "smaller region" in text


def test_on_the_cpu_the_plan_is_always_full():
    sizes = full_size_bytes("sdxl-base")
    for free in (1 * GB, 64 * GB):
        plan = memory_plan.choose(sizes, 1024, 1024, device="cpu", free=free, family="sdxl")
        assert (plan.mode, plan.vae_tiling, plan.device) == ("full", False, "cpu")
        assert memory_plan.thriftier(plan) is None


def inpaint(model, **kw):
    img, mask = make_scene()
    return InpaintRequest.from_document(img, mask, model=str(model), steps=2, guidance=5.0, feather=4, grow=2,
                                        padding=8, **kw)


def test_cpu_job_applies_no_offload_and_records_no_memory_line(engine, recorder, tiny_sd15_folder):
    events = recorder.wait(engine.submit(inpaint(tiny_sd15_folder)))
    assert isinstance(events[-1], Result)
    assert "Memory" not in events[-1].images[0].parameters
    assert not [e for e in events if isinstance(e, Progress) and e.stage.startswith("Memory")]


class _SimulatedGpu:
    """Plans as if on a 24 GB GPU (the CPU's job runs as it is); records every plan applied."""

    def __init__(self, monkeypatch):
        self.applied = []
        real_plan_for = memory_plan.plan_for

        def choose_for(model, pipe, width, height, floor="full"):
            plan = real_plan_for(model, pipe, width, height, floor=floor)
            return memory_plan.JobMemoryPlan(floor, False, plan.estimate, 24 * GB, device="cuda")

        monkeypatch.setattr(memory_plan, "choose_for", choose_for)
        monkeypatch.setattr(memory_plan, "apply", lambda model, pipe, plan: self.applied.append(plan.mode))


def _oom_hook(model_folder, engine, times):
    """A forward pre-hook on the loaded UNet that raises torch's out-of-memory error ``times`` times."""
    import torch

    left = [times]

    def hook(_module, _inputs):
        if left[0] > 0:
            left[0] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    model = engine._models.get(str(model_folder))
    return model.inpaint.unet.register_forward_pre_hook(hook)


def test_out_of_memory_mid_job_retries_once_with_the_next_thriftier_plan(engine, recorder, tiny_sd15_folder,
                                                                          monkeypatch):
    gpu = _SimulatedGpu(monkeypatch)
    reference = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, seed=3)))[-1].images[0]
    handle = _oom_hook(tiny_sd15_folder, engine, times=1)
    try:
        events = recorder.wait(engine.submit(inpaint(tiny_sd15_folder, seed=3)))
    finally:
        handle.remove()
    assert isinstance(events[-1], Result)
    assert gpu.applied == ["full", "full", "model offload"]
    assert any(isinstance(e, Progress) and e.stage == "Out of memory: trying again with model offload" for e in events)
    item = events[-1].images[0]
    assert item.parameters["Memory"] == "model offload (retried after running out of memory)"
    assert np.array_equal(item.image, reference.image)  # the rerun is the same job, from the start


def test_out_of_memory_twice_fails_with_one_sentence_and_the_engine_goes_on(engine, recorder, tiny_sd15_folder,
                                                                             monkeypatch):
    _SimulatedGpu(monkeypatch)
    handle = _oom_hook(tiny_sd15_folder, engine, times=2)
    try:
        events = recorder.wait(engine.submit(inpaint(tiny_sd15_folder)))
    finally:
        handle.remove()
    assert isinstance(events[-1], Failed)
    assert events[-1].message.startswith("The job ran out of memory") and events[-1].message.count(". ") == 0
    after = recorder.wait(engine.submit(inpaint(tiny_sd15_folder)))
    assert isinstance(after[-1], Result)


class _FakePipe:
    """Records the diffusers calls a plan makes (the offload hooks need a GPU to run for real)."""

    def __init__(self):
        import types

        self.calls = []
        self.vae = types.SimpleNamespace(tile_sample_min_size=1024, tile_latent_min_size=128)
        self.vae_scale_factor = 8

    def __getattr__(self, name):
        if name in ("remove_all_hooks", "enable_model_cpu_offload", "enable_sequential_cpu_offload", "to"):
            return lambda *a, **k: self.calls.append(name)
        raise AttributeError(name)


def test_apply_installs_an_offload_and_undoes_it_when_the_next_job_has_room():
    import types

    import torch

    pipe = _FakePipe()
    model = types.SimpleNamespace(device=torch.device("cuda", 0), inpaint=pipe)
    plan = functools.partial(memory_plan.JobMemoryPlan, estimate=0, available=0, device="cuda")
    memory_plan.apply(model, pipe, plan("model offload", True))
    assert pipe.calls == ["enable_model_cpu_offload"] and model.memory_mode == "model offload"
    assert (pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size) == (512, 64)
    memory_plan.apply(model, pipe, plan("model offload", False))
    assert pipe.calls == ["enable_model_cpu_offload"]  # already in that mode: nothing re-installed
    assert (pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size) == (1024, 128)  # the VAE's own tiles
    memory_plan.apply(model, pipe, plan("full", False))
    assert pipe.calls[1:] == ["remove_all_hooks", "to"] and model.memory_mode == "full"
    memory_plan.apply(model, pipe, plan("sequential offload", False))
    memory_plan.apply(model, pipe, plan("full", False))
    assert pipe.calls[3:] == ["enable_sequential_cpu_offload", "remove_all_hooks", "to"]
    cpu = types.SimpleNamespace(device=torch.device("cpu"), inpaint=pipe)
    memory_plan.apply(cpu, pipe, plan("model offload", True, device="cpu"))
    assert len(pipe.calls) == 6 and not hasattr(cpu, "memory_mode")
