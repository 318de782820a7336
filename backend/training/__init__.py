"""Training of the embedded default model (latent-studio-mini): data, autoencoder, denoiser, evaluation.

No Qt here; heavy imports (torch, diffusers) happen inside functions.
"""
