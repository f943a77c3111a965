"""Device selection is pure logic: tested here without a GPU."""

from __future__ import annotations

import pytest

from zoo.device import assigned_gpus_from_env, choose_device, select_device
from zoo.errors import ConfigError


def pick(prefer=None, cuda=True, bf16=True, gpus=None):
    return choose_device(prefer=prefer, cuda_available=cuda, bf16_supported=bf16,
                         assigned_gpu_ids=gpus)


def test_cuda_with_bf16_when_available_and_assigned():
    choice = pick(gpus=["0"])
    assert (choice.device, choice.autocast_dtype, choice.base_dtype) == ("cuda", "bfloat16",
                                                                          "bfloat16")
    assert pick().device == "cuda"  # no scheduler information: use the visible GPU


def test_fp32_on_cuda_without_bf16_and_on_cpu():
    assert pick(bf16=False).autocast_dtype is None
    assert pick(bf16=False).base_dtype == "float32"
    cpu = pick(cuda=False)
    assert (cpu.device, cpu.autocast_dtype, cpu.base_dtype) == ("cpu", None, "float32")


def test_task_given_no_gpu_stays_on_cpu_even_on_a_gpu_node():
    assert pick(gpus=[]).device == "cpu"


def test_prefer_cpu_wins_and_cuda_without_gpu_is_an_error():
    assert pick(prefer="cpu").device == "cpu"
    assert pick(prefer="CUDA:0").device == "cuda"
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        pick(prefer="cuda", cuda=False)
    with pytest.raises(ConfigError, match="no GPU was assigned"):
        pick(prefer="cuda", gpus=[])
    with pytest.raises(ConfigError, match="device='tpu' is invalid"):
        pick(prefer="tpu")


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", []), ("-1", []), ("0", ["0"]), ("1, 3", ["1", "3"]),
    ("GPU-4f2e", ["GPU-4f2e"]),
])
def test_assigned_gpus_from_env(value, expected):
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert assigned_gpus_from_env(env) == expected


def test_select_device_on_this_machine():
    import torch

    choice = select_device()
    assert choice.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu").device == "cpu"
