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
}
DEFAULT_SAMPLER = "dpmpp_2m"


def sampler_label(name: str) -> str:
    return SAMPLERS[name][0]


def make_scheduler(name: str, base_config):
    """A fresh scheduler of the named kind, configured like the model's own."""
    import diffusers

    _, class_name, extra = SAMPLERS[name]
    cls = getattr(diffusers, class_name)
    config = dict(base_config)
    # Leave the model's prediction type, betas and timestep spacing as they are.
    return cls.from_config(config, **extra)
