"""Training the encode head: a tiny encoder that copies a model's own VAE encoder, for live updates.

A live update starts from the painted region's latents. The embedded model's VAE encoder costs about
300 ms at 256² on two CPU cores, more than the three denoising steps of a live update together; the
head (``backend.preview.make_encode_head``: a pixel unshuffle, three 3×3 convolutions down to the
latents' resolution and depthwise-separable blocks there, ~0.2M parameters, about 7 ms at 256²) is
fitted to the mean of the encoder's latent distribution (scaled, as the UNet sees it) with a mean
squared error. It learns from the training photos' crops and from copies with brush strokes and flat
blocks of colour painted over them, since that is what a live region holds. It is saved as
``encode_head.safetensors`` in the model folder; live updates use it, full jobs keep the VAE.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class EncodeHeadConfig:
    crops: int = 512  # training photo crops (each encoded once as it is and once painted over)
    size: int = 128  # crop side, px
    steps: int = 4000
    batch: int = 16
    lr: float = 2e-3
    hidden: int = 128
    layers: int = 6
    seed: int = 0
    minutes: float | None = None  # wall-clock budget (stops early, keeps what it has)


def paint_over(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a (s, s, 3) uint8 crop with 1–6 opaque round-brush strokes and flat rectangles of
    random colours, as a painter blocks in colour over a live region."""
    out = crop.copy()
    s = out.shape[0]
    yy, xx = np.mgrid[0:s, 0:s]
    for _ in range(int(rng.integers(1, 7))):
        colour = rng.integers(0, 256, 3)
        if rng.random() < 0.25:  # a flat block
            x0, y0 = rng.integers(0, s, 2)
            w, h = rng.integers(s // 8, s // 2, 2)
            out[y0:y0 + h, x0:x0 + w] = colour
            continue
        (x0, y0), (x1, y1) = rng.uniform(0, s, 2), rng.uniform(0, s, 2)
        radius = rng.uniform(2, s / 8)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        out[(xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= radius ** 2] = colour
    return out


def make_pairs(vae, crops_u8: np.ndarray, device, seed: int = 0, batch: int = 16):
    """(pixels in -1…1, scaled mean latents) for each crop and a painted-over copy of it."""
    import torch

    from backend.training.preview_head import encoded_batches

    rng = np.random.default_rng(seed)
    painted = np.stack([paint_over(c, rng) for c in crops_u8])
    images = np.concatenate([crops_u8, painted])
    pixels, latents = [], []
    with torch.no_grad():
        for x, z in encoded_batches(vae, images, device, batch):
            latents.append(z.cpu())
            pixels.append(x.cpu())
    return torch.cat(pixels), torch.cat(latents)


def train_encode_head(vae, crops_u8: np.ndarray, config: EncodeHeadConfig, device="cpu", log=print) -> dict:
    """The head's state dict, fitted to ``vae``'s encoder; ``crops_u8``: (n, s, s, 3) uint8 photo crops."""
    import torch

    from backend.preview import make_encode_head
    from backend.training.preview_head import fit_head

    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    log(f"encoding {len(crops_u8)} crops (and painted-over copies) for the encode head ...")
    x, z = make_pairs(vae, crops_u8, device, config.seed)
    spread = float(z.var()) or 1.0
    log(f"  {len(x)} pairs in {time.perf_counter() - t0:.0f} s")
    head = make_encode_head(z.shape[1], config.hidden, config.layers).to(device)
    # Mirrored batches too: the encoder is close to mirror-symmetric.
    return fit_head(head, x, z, config, device, loss=lambda out, target: (out - target).pow(2).mean(),
                    describe=lambda mse: f"MSE {mse:.4f} ({mse / spread:.1%} of the latents' variance)", log=log,
                    mirror=True)


def save_encode_head(state: dict, model_dir: Path, vae=None) -> Path:
    """Writes the head into the model folder, recording which encoder it copies (``vae``'s), so that a head
    left behind by a retrained encoder is not used."""
    from safetensors.torch import save_file

    from backend.preview import ENCODE_HEAD_FILE, encoder_fingerprint

    path = Path(model_dir) / ENCODE_HEAD_FILE
    save_file(state, str(path), metadata={"encoder": encoder_fingerprint(vae)} if vae is not None else None)
    path.chmod(0o644)
    return path
