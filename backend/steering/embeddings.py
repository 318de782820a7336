"""Textual-inversion embeddings, loaded through diffusers' ``load_textual_inversion``.

Contract (used by :func:`backend.steering.job.prepare`, once per job):

    apply(ctx, model, prompt, negative_prompt, embeddings, allow_pickle=False) -> list[str]  # notes
"""
from __future__ import annotations


def apply(ctx, model, prompt: str, negative_prompt: str, embeddings, *, allow_pickle: bool = False) -> list[str]:
    if not embeddings:
        return []
    raise NotImplementedError("textual inversion is being built")
