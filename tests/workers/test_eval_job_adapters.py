"""``zoo eval`` of adapters that `zoo submit` trained: the base comes from where the job found
it (staged in the store), not from the display name in the adapter or the submitter's disk."""

from __future__ import annotations

import shutil

import pytest

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.storage import jobs, staging
from zoo.workers import train_task as tasks


@pytest.fixture
def trained_then_model_gone(tmp_path, tiny_model_dir, local_zoo, catalog):
    """A finished job whose base directory no longer exists on this machine, and the
    metrics its own training recorded on the eval set."""
    model = shutil.copytree(tiny_model_dir, tmp_path / "models" / "kv")
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=model, steps=2)
    specs = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    [job_id] = jobs.create_jobs(catalog, specs)
    result = tasks.run_job(job_id, local_zoo["catalog_url"], local_zoo["store_url"])
    assert result["state"] == "SUCCEEDED", result
    shutil.rmtree(model)
    return result["adapter_id"], tmp_path / "spec" / "eval.jsonl"


def test_eval_fetches_a_jobs_staged_base(ray_local, trained_then_model_gone, local_zoo,
                                         catalog):
    from zoo.storage.catalog import adapter_to_dict, resolve_ref
    from zoo.storage.evals import select_items
    from zoo.workers.eval_pool import run_eval

    adapter_id, eval_path = trained_then_model_gone
    with catalog.transaction(readonly=True) as session:
        before = adapter_to_dict(resolve_ref(session, adapter_id))
    assert before["base_model"] == "kv"  # a display name: loadable nowhere
    [item] = select_items(catalog, "name=tiny")
    assert item.base.location.startswith(staging.MODEL_SCHEME)  # the job registered its base

    summary = run_eval(catalog, local_zoo["store_url"], dataset=str(eval_path),
                       query="name=tiny", force=True, worker_home=local_zoo["home"])
    assert (summary.evaluated, summary.errors) == (1, 0), summary.error_messages
    with catalog.transaction(readonly=True) as session:
        after = adapter_to_dict(resolve_ref(session, adapter_id))
    # the same base and adapter as training's own evaluation on this set: the same loss
    assert after["metrics"]["loss"] == pytest.approx(before["metrics"]["loss"], rel=1e-4)
