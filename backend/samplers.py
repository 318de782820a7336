"""The samplers a request can name, mapped to diffusers schedulers.

Names are plain strings so requests can be built and validated without torch;
:func:`make_scheduler` imports diffusers when a job actually runs.
"""
from __future__ import annotations

# name -> (A1111 label, diffusers class, extra config)
SAMPLERS: dict[str, tuple[str, str, dict]] = {
    "dpmpp_2m": ("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp_2m_karras": (
        "DPM++ 2M Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "euler": ("Euler", "EulerDiscreteScheduler", {}),
    "euler_a": ("Euler a", "EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIM", "DDIMScheduler", {}),
    "unipc": ("UniPC", "UniPCMultistepScheduler", {}),
    # Few-step samplers. LCM and TCD suit LCM-distilled models and LCM/TCD/Hyper LoRAs (guidance 1 to 2);
    # the "trailing" ones space the timesteps from the last training step down, which the few-step
    # Turbo, Lightning and Hyper checkpoints are distilled for (Euler for Lightning/Hyper, Euler a for Turbo).
    "lcm": ("LCM", "LCMScheduler", {}),
    "tcd": ("TCD", "TCDScheduler", {}),
    "euler_trailing": ("Euler Trailing", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "euler_a_trailing": ("Euler a Trailing", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
}
# Samplers whose step returns something other than the clean estimate beside the next sample (TCD's
# second output is its partly noised sample): previews draw the current latents instead.
NO_X0 = ("TCDScheduler",)
DEFAULT_SAMPLER = "dpmpp_2m"


def sampler_label(name: str) -> str:
    return SAMPLERS[name][0]


def make_scheduler(name: str, base_config):
    """A fresh scheduler of the named kind, configured like the model's own."""
    import diffusers

    _, class_name, extra = SAMPLERS[name]
    cls = getattr(diffusers, class_name)
    config = dict(base_config)
    # Leave the model's prediction type and betas as they are; the timestep spacing too, unless the
    # sampler is a "trailing" one.
    return cls.from_config(config, **extra)
