"""Which torch device the trainer, the API and the benches run their models on (`settings.device`).

    device = devices.of(settings)          # at a service's start: `cuda` without a GPU raises here

`resolve` is the rule alone (pure, tested without a GPU); `of` asks torch whether a GPU is
visible. It lives with the models (not in `ctrlgpt/`) because it is about where models run and needs torch,
which the services without models (crawler, cleaner, sinks) never import.
"""

from __future__ import annotations

import torch

from ctrlgpt.settings import Settings

__all__ = ["NoGpu", "describe", "of", "resolve"]


class NoGpu(RuntimeError):
    """`device=cuda` was asked for on a machine where torch sees no CUDA GPU."""


def resolve(setting: str, cuda_available: bool) -> torch.device:
    """auto: the GPU when there is one, else the CPU; cpu and cuda as named (cuda only with a GPU)."""
    if setting == "cpu" or (setting == "auto" and not cuda_available):
        return torch.device("cpu")
    if setting not in ("auto", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {setting!r}")
    if not cuda_available:
        raise NoGpu(
            "device=cuda but torch sees no CUDA GPU (torch.cuda.is_available() is False): "
            "set CTRLGPT_DEVICE=auto or cpu, or check the driver and the torch build"
        )
    return torch.device("cuda")


def of(settings: Settings) -> torch.device:
    return resolve(settings.device, torch.cuda.is_available())


def describe(device: torch.device) -> str:
    """The device in one line for a benchmark's figures: the GPU's name and the CUDA and torch versions."""
    if device.type != "cuda":
        return f"cpu, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, torch {torch.__version__}"
