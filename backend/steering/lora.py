"""LoRAs: found, checked and applied through diffusers' ``load_lora_weights`` / ``set_adapters`` (peft).

Contract (used by :func:`backend.steering.job.prepare`, once per job):

    apply(ctx, model, loras, allow_pickle=False) -> None

sets exactly ``loras`` (a tuple of :class:`backend.steering.LoraRef`) with their weights on ``model``
(a :class:`backend.models.LoadedModel`); an empty tuple leaves the base model's weights as they are.
"""
from __future__ import annotations


def apply(ctx, model, loras, *, allow_pickle: bool = False) -> None:
    if not loras and not getattr(model, "lora_state", None):
        return
    raise NotImplementedError("LoRA support is being built")
