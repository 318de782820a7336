"""Cheap previews of the denoised estimate at every step.

A full VAE decode per step would cost as much as a UNet step on big models.
Instead the 4 latent channels are mapped to RGB by a linear map (plus bias)
fitted by least squares to the loaded VAE itself: encode a few synthetic
images, pair each latent pixel with the mean colour of the 8×8 block it came
from, solve. That is computed once per VAE and cached on disk by a
fingerprint of its weights. When a tiny autoencoder (diffusers
``AutoencoderTiny``, e.g. TAESD) is configured, it decodes instead.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from . import paths

FIT_SIZE = 128  # synthetic images are FIT_SIZE² pixels


def vae_fingerprint(vae) -> str:
    """A short hash of the VAE's config and a sample of its weights."""
    import torch

    h = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for name, tensor in list(vae.state_dict().items())[::7]:
        h.update(name.encode())
        flat = tensor.detach().flatten()[:64].to(torch.float32).cpu().numpy()
        h.update(flat.tobytes())
    return h.hexdigest()[:20]


def _synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields, gradients and flat colours in [0, 1], shape (n, 3, size, size)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    for i in range(n):
        kind = i % 3
        if kind == 0:  # smooth random field: low-res noise, bilinearly upsampled
            small = rng.uniform(0, 1, (3, 5, 5)).astype(np.float32)
            gy = yy * 4
            gx = xx * 4
            y0, x0 = np.floor(gy).astype(int).clip(0, 3), np.floor(gx).astype(int).clip(0, 3)
            fy, fx = gy - y0, gx - x0
            for c in range(3):
                s = small[c]
                out[i, c] = (
                    s[y0, x0] * (1 - fy) * (1 - fx) + s[y0 + 1, x0] * fy * (1 - fx)
                    + s[y0, x0 + 1] * (1 - fy) * fx + s[y0 + 1, x0 + 1] * fy * fx
                )
        elif kind == 1:
            a, b = rng.uniform(0, 1, (2, 3))
            t = xx if i % 2 else yy
            out[i] = a[:, None, None] * (1 - t) + b[:, None, None] * t
        else:
            out[i] = rng.uniform(0, 1, (3, 1, 1))
    return out


def fit_linear_map(vae, n_images: int = 12) -> np.ndarray:
    """A (5, 3) matrix W with rgb ≈ [latent * scaling, 1] @ W, rgb in [0, 1]."""
    import torch

    images = _synthetic_images(n_images, FIT_SIZE)
    param = next(vae.parameters())
    x = torch.from_numpy(images * 2 - 1).to(param.device, param.dtype)
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    z = latents.float().cpu().numpy()  # (n, 4, s, s)
    n, c, s, _ = z.shape
    f = FIT_SIZE // s
    target = images.reshape(n, 3, s, f, s, f).mean(axis=(3, 5))  # block means
    a = np.concatenate([z.transpose(0, 2, 3, 1).reshape(-1, c), np.ones((n * s * s, 1), np.float32)], axis=1)
    b = target.transpose(0, 2, 3, 1).reshape(-1, 3)
    w, *_ = np.linalg.lstsq(a, b, rcond=None)
    return w.astype(np.float32)


class LatentPreviewer:
    """Turns latents into small uint8 RGB images, cheaply."""

    _memory: dict[str, np.ndarray] = {}

    def __init__(self, vae, tiny_decoder=None):
        self.tiny = tiny_decoder
        self.scaling = float(vae.config.scaling_factor)
        self.matrix = None if tiny_decoder is not None else self._matrix_for(vae)

    @classmethod
    def _matrix_for(cls, vae) -> np.ndarray:
        key = vae_fingerprint(vae)
        if key in cls._memory:
            return cls._memory[key]
        file = paths.cache_dir() / "previews" / f"{key}.npy"
        matrix = None
        if file.is_file():
            try:
                matrix = np.load(file)
            except (OSError, ValueError):
                matrix = None
        if matrix is None or matrix.shape != (vae.config.latent_channels + 1, 3):
            matrix = fit_linear_map(vae)
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                np.save(file, matrix)
            except OSError:
                pass  # a read-only cache only costs a refit next time
        cls._memory[key] = matrix
        return matrix

    def render(self, latents, size: tuple[int, int] | None = None, alpha=None) -> np.ndarray:
        """(h, w, 4) uint8 from a (1, C, h', w') latent tensor (scaled, as the UNet sees it).

        All the work — the linear map or tiny decode, the bilinear upscale to ``size`` (w, h) and
        adding ``alpha`` (an (h, w) uint8 tensor) — stays on the latents' device; only the finished
        uint8 image crosses to the CPU.
        """
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            if self.tiny is not None:
                param = next(self.tiny.parameters())
                img = self.tiny.decode(latents[:1].to(param.device, param.dtype) / self.scaling).sample
                rgb = (img.float().clamp(-1, 1) + 1) * 0.5
            else:
                z = latents[:1].float()
                m = self._matrix_on(z.device)
                rgb = torch.einsum("bchw,cd->bdhw", z, m[:-1]) + m[-1].view(1, 3, 1, 1)
            if size is not None and (rgb.shape[3], rgb.shape[2]) != tuple(size):
                rgb = F.interpolate(rgb, size=(size[1], size[0]), mode="bilinear", align_corners=False)
            rgb8 = (rgb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8)
            if alpha is None:
                alpha = torch.full(rgb8.shape[1:], 255, dtype=torch.uint8, device=rgb8.device)
            out = torch.cat([rgb8, alpha.to(rgb8.device)[None]], 0).permute(1, 2, 0).contiguous()
            return out.cpu().numpy()

    def _matrix_on(self, device):
        import torch

        cached = getattr(self, "_device_matrix", None)
        if cached is None or cached.device != device:
            self._device_matrix = torch.from_numpy(self.matrix).to(device)
        return self._device_matrix

    def to_rgb(self, latents) -> np.ndarray:
        """(h, w, 3) uint8 at the latents' own resolution."""
        return self.render(latents)[..., :3]
