"""What a training worker process keeps between jobs: its base model, device and node label.

A Ray worker process runs many jobs (``max_calls=0``); loading the base model is the slow part
of a short job, so the previous job's model is reused when the next job asks for the same base,
task, head labels, device and dtype. CUDA with bf16 is used only when Ray assigned this task a
GPU (``zoo.device`` decides, testable without a GPU).
"""

from __future__ import annotations

import os
import socket
import sys
from collections import OrderedDict
from typing import Any

MODEL_CACHE_SIZE = int(os.environ.get("ZOO_MODEL_CACHE_SIZE", "1"))
_models: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
MODEL_LOADS = {"count": 0}  # observable by tests: how often this process loaded a base


def node_label() -> str:
    """``host:<ray node id prefix>``: which machine, and which Ray node on it, ran an attempt.

    Cached once known inside Ray: a worker process never moves to another node.
    """
    if _NODE_LABEL:
        return _NODE_LABEL[0]
    host = socket.gethostname()
    ray = sys.modules.get("ray")  # not imported: not in Ray (and no import to pay for)
    try:
        if ray is not None and ray.is_initialized():
            _NODE_LABEL.append(f"{host}:{ray.get_runtime_context().get_node_id()[:12]}")
            return _NODE_LABEL[0]
    except Exception:  # noqa: BLE001 - outside Ray the host alone
        pass
    return host


_NODE_LABEL: list[str] = []


def assigned_gpu_ids() -> list[str] | None:
    """GPU ids Ray gave this task ([] for a CPU task); None outside Ray."""
    ray = sys.modules.get("ray")  # not imported: not in Ray
    try:
        if ray is None or not ray.is_initialized():
            return None
        return [str(i) for i in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None


def choose_job_device(gpu_ids: list[str] | None = None, *, cuda_available: bool | None = None,
                      bf16_supported: bool | None = None) -> Any:
    """CUDA (bf16 when supported) iff a GPU is assigned AND usable, else CPU."""
    from zoo.device import choose_device

    if cuda_available is None or bf16_supported is None:
        import torch

        cuda_available = torch.cuda.is_available()
        bf16_supported = bool(cuda_available and torch.cuda.is_bf16_supported())
    return choose_device(prefer=None, cuda_available=cuda_available,
                         bf16_supported=bf16_supported,
                         assigned_gpu_ids=gpu_ids if gpu_ids is not None else [])


def cached_base(model_dir: str, task: str, *, labels: tuple[str, ...], seed: int,
                device: str, dtype: str) -> tuple[Any, Any]:
    """The base model for a job, reused from this process's previous job when it matches.

    A seq-cls head is freshly initialised from the job's seed, so the seed is part of the key
    for seq-cls (a reused model must give the same adapter as a fresh load).
    """
    key = (model_dir, task, labels, seed if task == "seq-cls" else None, device, dtype)
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    while len(_models) >= max(MODEL_CACHE_SIZE, 1):
        _models.popitem(last=False)
        _free_device_memory()
    import random

    import torch

    from zoo.base_models import load_base

    random.seed(seed)
    torch.manual_seed(seed)  # as train_adapter seeds before loading: same head init
    model, tokenizer = load_base(model_dir, task, label_names=list(labels) or None,
                                 dtype=dtype, device=device)
    MODEL_LOADS["count"] += 1
    _models[key] = (model, tokenizer)
    return model, tokenizer


def _free_device_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass
