"""Resource mapping and device choice, without a GPU."""

from __future__ import annotations

import pytest

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.workers.tasks import assigned_gpu_ids, choose_job_device, ray_options


def test_spec_resources_become_ray_task_options(tmp_path):
    (tmp_path / "model").mkdir()
    path = write_tiny_job(tmp_path, retries=3)
    [spec] = load_specs(path, overrides=["resources={gpus: 0.25, cpus: 1, custom: {zoo_worker: 1}}",
                                         "resources.memory_gb=2"])
    opts = ray_options(spec)
    assert opts["num_gpus"] == 0.25 and opts["num_cpus"] == 1
    assert opts["resources"] == {"zoo_worker": 1.0}
    assert opts["memory"] == 2 * 1024**3
    assert opts["max_retries"] == 3 and opts["retry_exceptions"] is False
    assert opts["name"].startswith("zoo:tiny")


@pytest.mark.parametrize(("gpus", "cuda", "bf16", "device", "dtype"), [
    (["0"], True, True, "cuda", "bfloat16"),
    (["0"], True, False, "cuda", None),
    ([], True, True, "cpu", None),        # a CPU task on a GPU node stays off the card
    (["0"], False, False, "cpu", None),   # assigned but not usable (no CUDA build)
    (None, True, True, "cpu", None),      # outside Ray: nothing was assigned to us
])
def test_device_follows_the_assigned_gpus(gpus, cuda, bf16, device, dtype):
    choice = choose_job_device(gpus, cuda_available=cuda, bf16_supported=bf16)
    assert (choice.device, choice.autocast_dtype) == (device, dtype)


def test_inside_a_ray_task_without_gpu_the_device_is_cpu(ray_local):
    import ray

    @ray.remote(num_cpus=1, num_gpus=0)
    def probe():
        return assigned_gpu_ids(), choose_job_device(assigned_gpu_ids()).device

    assert ray.get(probe.remote()) == ([], "cpu")
    assert assigned_gpu_ids() in (None, [])  # the driver itself holds no GPU
