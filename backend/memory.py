"""What a device has free: ``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` from ``/proc/meminfo`` on
the CPU. Shared by the upscaler's tile plan (``upscale.memory``) and the diffusion jobs' plan (``memory_plan``)."""
from __future__ import annotations

import os

GB = 1024**3


def available_bytes(device) -> int:
    """Free memory on ``device`` (a torch.device or a name)."""
    kind = getattr(device, "type", str(device)).split(":")[0]
    if kind == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available_bytes()


def host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * GB
