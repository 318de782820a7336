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


def torch_einsum(z, m):
    import torch

    return torch.einsum("bchw,cd->bdhw", z, m)


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
    """Turns latents into small uint8 RGB images, cheaply: with a configured tiny autoencoder, else
    the model's own preview head (shipped in its folder), else a linear map fitted to its VAE."""

    _memory: dict[str, np.ndarray] = {}

    def __init__(self, vae, tiny_decoder=None, head=None):
        self.tiny = tiny_decoder
        self.head = head if tiny_decoder is None else None
        self.scaling = float(vae.config.scaling_factor)
        self.matrix = None if tiny_decoder is not None or self.head is not None else self._matrix_for(vae)

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

    def reference(self, start_latents, start_rgb: np.ndarray, device, keep: float):
        """What a run's previews add back, as its result does (``core.input_detail_weight``): ``keep`` ×
        (the start image − this previewer's picture of the start's latents). None when ``keep`` is 0."""
        import torch

        if keep <= 0:
            return None
        with torch.no_grad():
            rgb = torch.from_numpy(np.ascontiguousarray(start_rgb[..., :3])).to(device)
            rgb = rgb.permute(2, 0, 1)[None].float() / 255.0
            return keep * (rgb - self._picture(start_latents[:1], (rgb.shape[3], rgb.shape[2])))

    def _picture(self, latents, size):
        """(1, 3, h, w) float RGB in 0-1 (unclamped) of scaled latents, at ``size`` (w, h)."""
        import torch
        import torch.nn.functional as F

        z = latents[:1]
        if self.tiny is not None:
            param = next(self.tiny.parameters())
            rgb = (self.tiny.decode(z.to(param.device, param.dtype) / self.scaling).sample.float() + 1) * 0.5
        elif self.head is not None:
            param = next(self.head.parameters())
            if param.device != z.device:
                self.head.to(z.device)
            rgb = (self.head(z.float().contiguous(memory_format=torch.channels_last)) + 1) * 0.5
        else:
            m = self._matrix_on(z.device)
            rgb = torch_einsum(z.float(), m[:-1]) + m[-1].view(1, 3, 1, 1)
        if size is not None and (rgb.shape[3], rgb.shape[2]) != tuple(size):
            rgb = F.interpolate(rgb, size=(size[1], size[0]), mode="bilinear", align_corners=False)
        return rgb

    def decode(self, latents, size: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) float RGB in 0-1 (unclamped) of scaled latents at ``size`` (w, h): a live update's
        result, drawn by this previewer instead of the VAE's decoder."""
        import torch

        with torch.no_grad():
            return self._picture(latents, size)[0].permute(1, 2, 0).float().cpu().numpy()

    def render(self, latents, size: tuple[int, int] | None = None, alpha=None, reference=None) -> np.ndarray:
        """(h, w, 4) uint8 from a (1, C, h', w') latent tensor (scaled, as the UNet sees it).

        All the work — the decode or map, the bilinear scaling to ``size`` (w, h), adding back the
        ``reference`` (from :meth:`reference`: what the result adds back of its start image) and the
        ``alpha`` (an (h, w) uint8 tensor) — stays on the latents' device; only the finished uint8
        image crosses to the CPU.
        """
        import torch

        with torch.no_grad():
            rgb = self._picture(latents, size)
            if reference is not None:
                rgb = rgb + reference.to(rgb.device)
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


# --- a learned preview decoder, shipped with a model ------------------------------------------------

HEAD_FILE = "preview_head.safetensors"
HEAD_HIDDEN = 128
HEAD_LAYERS = 8
HEAD_FACTOR = 8  # output pixels per latent pixel, a side


def make_head(latent_channels: int = 4, hidden: int = HEAD_HIDDEN, layers: int = HEAD_LAYERS,
              factor: int = HEAD_FACTOR):
    """A tiny decoder for previews, at the latents' resolution: a 3×3 convolution, then ``layers``−1
    depthwise-separable 3×3 blocks (a view of 2·layers+1 latent pixels, ~130 output px), then each latent
    pixel becomes its factor² output pixels (pixel shuffle). About 5 ms for a 256² preview on a CPU;
    trained to copy the model's own VAE decoder (``backend/training/preview_head.py``)."""
    import torch.nn as nn

    mods: list = [nn.Conv2d(latent_channels, hidden, 3, padding=1), nn.SiLU()]
    for _ in range(layers - 1):
        mods += [nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.Conv2d(hidden, hidden, 1), nn.SiLU()]
    mods += [nn.Conv2d(hidden, 3 * factor * factor, 1), nn.PixelShuffle(factor)]
    return nn.Sequential(*mods)


def load_head(folder, latent_channels: int = 4):
    """The preview head shipped in a model folder (``preview_head.safetensors``), or None."""
    from pathlib import Path

    file = Path(folder) / HEAD_FILE
    if not file.is_file():
        return None
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
        hidden = int(state["0.weight"].shape[0])
        depthwise = sum(1 for k, v in state.items() if k.endswith(".weight") and v.ndim == 4 and v.shape[1] == 1)
        head = make_head(latent_channels, hidden, depthwise + 1)
        head.load_state_dict(state)
    except Exception:  # a damaged or foreign file: fall back to the linear map, never fail a job
        return None
    import torch

    # Channels-last makes the depthwise and 1×1 convolutions about three times faster on a CPU.
    return head.eval().to(memory_format=torch.channels_last)


# --- a learned live encoder, shipped with a model -----------------------------------------------------

ENCODE_HEAD_FILE = "encode_head.safetensors"
ENCODE_HIDDEN = 128
ENCODE_LAYERS = 6


def make_encode_head(latent_channels: int = 4, hidden: int = ENCODE_HIDDEN, layers: int = ENCODE_LAYERS):
    """A tiny encoder for live updates, the preview head's mirror: pixels (-1…1) → scaled latents, 8× smaller.

    A 2×2 pixel unshuffle and a 3×3 convolution at half resolution, two strided 3×3 convolutions down to
    the latents' resolution (with a depthwise-separable block between them), then ``layers`` depthwise-
    separable 3×3 blocks there (a view of about 120 px) and a 1×1 convolution to the latent channels.
    About 0.7 GFLOP at 256² (the model's VAE encoder: about 40); trained to copy the mean of the model's
    own VAE encoder (``backend/training/encode_head.py``)."""
    import torch.nn as nn

    quarter, half = max(8, hidden // 4), max(8, hidden // 2)
    mods: list = [nn.PixelUnshuffle(2), nn.Conv2d(12, quarter, 3, padding=1), nn.SiLU(),
                  nn.Conv2d(quarter, half, 3, stride=2, padding=1), nn.SiLU(),
                  nn.Conv2d(half, half, 3, padding=1, groups=half), nn.Conv2d(half, half, 1), nn.SiLU(),
                  nn.Conv2d(half, hidden, 3, stride=2, padding=1), nn.SiLU()]
    for _ in range(layers):
        mods += [nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.Conv2d(hidden, hidden, 1), nn.SiLU()]
    mods += [nn.Conv2d(hidden, latent_channels, 1)]
    return nn.Sequential(*mods)


def encoder_fingerprint(vae) -> str:
    """A short hash of a VAE's encoder weights (the encoder and its quant conv: what an encode head copies;
    retraining only the decoder keeps it)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in vae.state_dict().items():
        if name.startswith(("encoder.", "quant_conv.")):
            h.update(name.encode())
            h.update(tensor.detach().flatten()[:256].to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def load_encode_head(folder, latent_channels: int = 4, vae=None):
    """The live encoder shipped in a model folder (``encode_head.safetensors``), or None (a missing,
    damaged or foreign file, or one fitted to another encoder than ``vae``'s when it records which: live
    updates then encode with the VAE, never fail)."""
    from pathlib import Path

    file = Path(folder) / ENCODE_HEAD_FILE
    if not file.is_file():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(file), "pt") as f:
            fitted_to = (f.metadata() or {}).get("encoder")
        if vae is not None and fitted_to and fitted_to != encoder_fingerprint(vae):
            return None
        state = load_file(str(file))
        last = max((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[0]))
        hidden = int(state[last].shape[1])  # the final 1×1 convolution: hidden → latent channels
        depthwise = sum(1 for k, v in state.items() if k.endswith(".weight") and v.ndim == 4 and v.shape[1] == 1)
        head = make_encode_head(latent_channels, hidden, depthwise - 1)
        head.load_state_dict(state)
    except Exception:
        return None
    import torch

    return head.eval().to(memory_format=torch.channels_last)
