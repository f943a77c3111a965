"""Where training runs: CUDA with bf16 autocast when a GPU is usable, else CPU in fp32.

The decision is a pure function (:func:`choose_device`) of facts passed in, so it is tested
without a GPU; :func:`select_device` gathers the facts from torch and the environment.

``assigned_gpu_ids``: the GPUs this process was given by a scheduler. Ray sets
``CUDA_VISIBLE_DEVICES`` for a task to the GPUs it reserved — an empty string when the task
asked for none — so a CPU-only task on a GPU node stays on CPU instead of stealing a card.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from zoo.errors import ConfigError

DEVICE_CHOICES = ("cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cuda" or "cpu"
    autocast_dtype: str | None  # "bfloat16" on CUDA when supported, else None (fp32)

    @property
    def base_dtype(self) -> str:
        """dtype to load the frozen base in: bf16 under autocast (half the memory), else fp32."""
        return self.autocast_dtype or "float32"


def choose_device(
    *, prefer: str | None, cuda_available: bool, bf16_supported: bool,
    assigned_gpu_ids: Sequence[str] | None,
) -> DeviceChoice:
    """Pure decision. ``assigned_gpu_ids`` None means "no scheduler said anything"."""
    if prefer is not None:
        prefer = prefer.lower()
        if prefer.startswith("cuda:"):
            prefer = "cuda"
        if prefer not in DEVICE_CHOICES:
            raise ConfigError(f"device={prefer!r} is invalid: must be one of cpu, cuda or null")
    gpus_usable = cuda_available and (assigned_gpu_ids is None or len(assigned_gpu_ids) > 0)
    if prefer == "cuda" and not gpus_usable:
        why = "no CUDA device is available" if not cuda_available else "no GPU was assigned"
        raise ConfigError(f"device='cuda' was requested but {why}")
    if prefer == "cpu" or not gpus_usable:
        return DeviceChoice("cpu", None)
    return DeviceChoice("cuda", "bfloat16" if bf16_supported else None)


def assigned_gpus_from_env(environ: dict[str, str] | None = None) -> list[str] | None:
    """GPU ids from ``CUDA_VISIBLE_DEVICES`` (None when unset; [] when empty or -1)."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    return [] if ids in ([], ["-1"]) else ids


def select_device(prefer: str | None = None) -> DeviceChoice:
    """The device for this process: ``prefer`` ("cpu"/"cuda") wins, else CUDA if usable."""
    import torch

    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    return choose_device(prefer=prefer, cuda_available=cuda, bf16_supported=bf16,
                         assigned_gpu_ids=assigned_gpus_from_env())
