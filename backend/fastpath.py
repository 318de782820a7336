"""The fast path: what a model gets when it loads, per device, so that its steps run near the hardware.

On CUDA (fp16, or bf16 where the GPU has it; PyTorch's SDPA attention, diffusers' default):

* ``channels_last`` for the UNet and the VAE (the convolutions' fast layout on tensor cores);
* fused QKV projections (``fuse_qkv_projections``) in the UNet and the VAE, where diffusers offers them;
  taken back (``unfuse``) before a LoRA is loaded, whose layers are the unfused ones;
* ``torch.compile`` of the UNet's and the VAE decoder's ``forward`` (the modules' hooks, ours for
  cancelling included, stay eager around them), compiled on the worker at load time with a warm-up
  call at the model's native size, the ``ModelState`` saying "Compiling …". Inductor's cache lives
  on disk in ``paths.cache_dir()/"compile"``, so the next start reuses it. When compiling, or the
  warm-up call, raises, the module goes back to eager and a note says so.

On MPS: channels_last only. On the CPU: ``channels_last`` for the VAE (its encoder measured 25 % faster,
its decoder 5 %, on a 2-core AVX2 machine; the UNet no faster, torch.compile of the decoder slower: 0.81 s
against 0.63 s eager, after 42 s of compiling); the UNet stays as it is, fp32 (bf16 only where the CPU has ``avx512_bf16``
or AMX, which is not the case of the machine measured). Nothing here changes a model's numbers on the
CPU beyond float rounding.

The setting that turns it off: ``Engine(fast_path=False)``, ``$LATENT_STUDIO_FAST_PATH=0``, the CLI's
``--no-fast-path``, Settings ▸ Engine "Fast path" in the app.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from . import paths

log = logging.getLogger(__name__)
ENV = "LATENT_STUDIO_FAST_PATH"
_OFF = ("0", "false", "no", "off")


def enabled(setting: bool | None = None) -> bool:
    """The fast path is on unless ``setting`` is False, or (when None) $LATENT_STUDIO_FAST_PATH says off."""
    if setting is not None:
        return bool(setting)
    return os.environ.get(ENV, "1").strip().lower() not in _OFF


@dataclass
class FastPathReport:
    applied: list = field(default_factory=list)  # what was done, e.g. "channels_last unet", "compiled unet"
    notes: list = field(default_factory=list)  # sentences for the painter (a fallback)

    def describe(self) -> str:
        text = "fast path: " + (", ".join(self.applied) if self.applied else "nothing applies on this device")
        return " ".join([text + "."] + self.notes)


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def supported_dtype(device, dtype):
    """(dtype, note or None): ``dtype`` where ``device`` runs it, else the nearest one that it does."""
    import torch

    kind = getattr(device, "type", str(device)).split(":")[0]
    if dtype == torch.bfloat16:
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16, "This GPU has no bfloat16: the model runs in float16."
        if kind == "cpu" and not cpu_has_bf16():
            return torch.float32, "This CPU has no bfloat16 instructions: the model runs in float32."
    return dtype, None


def compile_cache_dir():
    return paths.cache_dir() / "compile"


def apply(pipe, device, *, compile: bool | None = None, progress=None, warm_side: int | None = None) -> FastPathReport:
    """Applies the fast path to a loaded ``pipe`` on ``device``; ``compile`` (default: on CUDA only) compiles
    the UNet and VAE decoder. Never raises for what it tries: a failure leaves the module eager and a note."""
    import torch

    report = FastPathReport()
    kind = getattr(device, "type", str(device)).split(":")[0]
    unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
    if kind == "cpu":
        if vae is not None:
            vae.to(memory_format=torch.channels_last)
            report.applied.append("channels_last vae")
    else:
        for name, module in (("unet", unet), ("vae", vae)):
            if module is not None:
                module.to(memory_format=torch.channels_last)
                report.applied.append(f"channels_last {name}")
        if kind == "cuda":
            for name, module in (("unet", unet), ("vae", vae)):
                if module is not None and hasattr(module, "fuse_qkv_projections"):
                    try:
                        module.fuse_qkv_projections()
                        report.applied.append(f"fused qkv {name}")
                    except Exception as exc:  # e.g. added KV projections: the module stays as it was
                        log.info("fuse_qkv_projections(%s) not applied: %s", name, exc)
    if compile is None:
        compile = kind == "cuda"
    if compile:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        side = warm_side or int(unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        if unet is not None:
            _compile(unet, "UNet", lambda: _warm_unet(unet, side, device), report, progress)
        if vae is not None:
            _compile(vae.decoder, "VAE decoder", lambda: _warm_decoder(vae, side, device), report, progress)
    return report


def is_compiled(module) -> bool:
    return "forward" in vars(module) and getattr(module, "_latent_studio_compiled", False)


def _compile(module, label: str, warm, report: FastPathReport, progress) -> None:
    """``module.forward`` compiled and run once; eager again (with a note) when either raises."""
    import torch

    if progress:
        progress(f"Compiling the {label} (the first start only; later starts read the cache)…")
    try:
        module.forward = torch.compile(module.forward)
        module._latent_studio_compiled = True
        warm()
    except Exception as exc:  # inductor, triton or the compiled call itself: eager is always there
        log.warning("compiling the %s failed; it runs uncompiled", label, exc_info=True)
        eager(module)
        report.notes.append(f"The {label} could not be compiled ({type(exc).__name__}): it runs uncompiled.")
    else:
        report.applied.append(f"compiled {label}")


def eager(module) -> None:
    """Takes a compiled ``forward`` away: the module's own method again."""
    vars(module).pop("forward", None)
    module._latent_studio_compiled = False


def unfuse(pipe) -> None:
    """Fused QKV projections taken back (before loading a LoRA, whose layers are the separate ones)."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if module is not None and getattr(module, "original_attn_processors", None) is not None:
            module.unfuse_qkv_projections()
            module.original_attn_processors = None


def _warm_unet(unet, side: int, device) -> None:
    import torch

    cfg = unet.config
    p = next(unet.parameters())
    n = side // 8
    kwargs = {}
    if cfg.addition_embed_type == "text_time":
        text = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.zeros(2, text, dtype=p.dtype, device=device),
                                       "time_ids": torch.zeros(2, 6, dtype=p.dtype, device=device)}
    with torch.no_grad():
        unet(torch.zeros(2, cfg.in_channels, n, n, dtype=p.dtype, device=device),
             torch.tensor(999.0, device=device),
             encoder_hidden_states=torch.zeros(2, 77, (cfg.encoder_hid_dim or cfg.cross_attention_dim), dtype=p.dtype, device=device),
             **kwargs)


def _warm_decoder(vae, side: int, device) -> None:
    import torch

    p = next(vae.parameters())
    n = side // 8
    with torch.no_grad():
        vae.decode(torch.zeros(1, vae.config.latent_channels, n, n, dtype=p.dtype, device=device))
