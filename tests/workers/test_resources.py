"""Resource mapping and device choice, without a GPU."""

from __future__ import annotations

import pytest

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.workers.model_cache import assigned_gpu_ids, choose_job_device
from zoo.workers.train_task import ray_options


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


@pytest.mark.gpu
def test_job_given_a_gpu_trains_on_cuda_in_bf16(tmp_path, tiny_model_dir, local_zoo, catalog,
                                                ray_local):
    """The CUDA path end to end (runs only where a GPU is): a job asking for a fraction of a
    GPU gets one from Ray, trains on it in bf16 and publishes."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from zoo.storage import jobs, staging
    from zoo.workers.submit import run_jobs

    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=2)
    path.write_text(path.read_text().replace("resources: {cpus: 1}",
                                             "resources: {cpus: 1, gpus: 0.5}"))
    specs = staging.stage_inputs(load_specs(path), local_zoo["store_url"])
    job_ids = jobs.create_jobs(catalog, specs)
    states = run_jobs(catalog, job_ids, catalog_url=local_zoo["catalog_url"],
                      store_url=local_zoo["store_url"], specs=specs)
    assert states == {job_ids[0]: "SUCCEEDED"}
    from zoo.workers.control import read_log

    log = read_log(catalog, local_zoo["store_url"], job_ids[0])[1].decode()
    assert "device cuda" in log and "bfloat16" in log, log
