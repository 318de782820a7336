"""Training the preview head: a tiny decoder that copies a model's own VAE decoder, for live previews.

A linear map from four latent channels to RGB shows the small autoencoder's latents in false colours
(purple, blue and yellow speckle where the result is grey-blue: an L1 error of 41 levels against the
decoder's output on training crops), and the full decoder costs about twelve denoising steps at 256².
The head (``backend.preview.make_head``: eight 3×3 layers at the latents' resolution, seven of them
depthwise-separable, and a pixel shuffle, ~0.15M parameters, about 5 ms for a 256² preview on a CPU) is
fitted to the decoder's output on the latents of the training photos — and of noisier, shifted
copies of them, since a denoiser's estimate mid-run is not a clean photo's latent — with an L1
loss. It is saved as ``preview_head.safetensors`` in the model folder, which the engine uses for
that model's previews.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PreviewHeadConfig:
    crops: int = 256  # training photo crops (encoded and decoded once, and once more perturbed)
    size: int = 128  # crop side, px
    steps: int = 6000
    batch: int = 16
    lr: float = 2e-3
    hidden: int = 128
    layers: int = 8
    seed: int = 0
    minutes: float | None = None  # wall-clock budget (stops early, keeps what it has)


def encoded_batches(vae, images_u8: np.ndarray, device, batch: int = 16):
    """Yields (pixels in -1…1, scaled mean latents) on ``device``, ``batch`` images at a time, for ``images_u8``
    (n, s, s, 3) uint8; the caller holds ``torch.no_grad()``."""
    import torch

    vae.eval()
    for i in range(0, len(images_u8), batch):
        x = torch.as_tensor(np.ascontiguousarray(images_u8[i:i + batch])).permute(0, 3, 1, 2).float()
        x = (x / 127.5 - 1).to(device)
        yield x, vae.encode(x).latent_dist.mean * vae.config.scaling_factor


def make_pairs(vae, crops_u8: np.ndarray, device, seed: int = 0, batch: int = 16):
    """(latents, decoded) training pairs: each crop's clean latents and a perturbed copy (noise of a
    random strength, a random scale and shift per channel), with what the decoder makes of each."""
    import torch

    rng = torch.Generator().manual_seed(seed)
    latents, targets = [], []
    sf = vae.config.scaling_factor
    with torch.no_grad():
        for _, z in encoded_batches(vae, crops_u8, device, batch):
            n, c = z.shape[:2]
            sigma = torch.rand(n, 1, 1, 1, generator=rng) * 0.6
            scale = 1 + 0.2 * torch.randn(n, c, 1, 1, generator=rng)
            shift = 0.2 * torch.randn(n, c, 1, 1, generator=rng)
            noisy = (z.cpu() * scale + shift + sigma * torch.randn(z.shape, generator=rng)).to(device)
            for latent in (z, noisy):
                y = vae.decode(latent / sf).sample.clamp(-1, 1)
                latents.append(latent.cpu())
                targets.append(y.cpu())
    return torch.cat(latents), torch.cat(targets)


def train_preview_head(vae, crops_u8: np.ndarray, config: PreviewHeadConfig, device="cpu", log=print) -> dict:
    """The head's state dict, fitted to ``vae``'s decoder; ``crops_u8``: (n, s, s, 3) uint8 photo crops."""
    import torch

    from backend.preview import make_head

    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    log(f"encoding and decoding {len(crops_u8)} crops (and perturbed copies) for the preview head ...")
    z, y = make_pairs(vae, crops_u8, device, config.seed)
    log(f"  {len(z)} pairs in {time.perf_counter() - t0:.0f} s")
    head = make_head(z.shape[1], config.hidden, config.layers).to(device)
    return fit_head(head, z, y, config, device, loss=lambda out, target: (out - target).abs().mean(),
                    describe=lambda loss: f"L1 {loss * 127.5:.2f} (0-255)", log=log)


def fit_head(head, inputs, targets, config, device, loss, describe, log=print, mirror: bool = False) -> dict:
    """Fits ``head`` to map ``inputs`` to ``targets`` (tensors on the CPU, batches drawn at random) with Adam and a
    cosine schedule, for ``config.steps`` or ``config.minutes``, logging ``describe(smoothed loss)`` every 250
    steps; ``mirror``: half the batches flipped left-right, inputs and targets alike. Returns the state dict."""
    import torch

    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    g = torch.Generator().manual_seed(config.seed)
    deadline = time.perf_counter() + config.minutes * 60 if config.minutes else None
    smooth = None
    for step in range(1, config.steps + 1):
        idx = torch.randint(0, len(inputs), (config.batch,), generator=g)
        x, y = inputs[idx], targets[idx]
        if mirror and torch.rand((), generator=g) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        value = loss(head(x.to(device)), y.to(device))
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
        smooth = value.item() if smooth is None else 0.98 * smooth + 0.02 * value.item()
        if step % 250 == 0 or step == config.steps:
            log(f"  step {step}/{config.steps}: {describe(smooth)}")
        if deadline and time.perf_counter() > deadline:
            log(f"  time budget reached at step {step}")
            break
    return {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}


def save_head(state: dict, model_dir: Path) -> Path:
    from safetensors.torch import save_file

    from backend.preview import HEAD_FILE

    path = Path(model_dir) / HEAD_FILE
    save_file(state, str(path))
    path.chmod(0o644)
    return path
