"""run_job as a plain function (no Ray): stage → train → publish → SUCCEEDED, exactly once."""

from __future__ import annotations

import pytest

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.storage import jobs, staging
from zoo.workers import model_cache
from zoo.workers import train_task as tasks
from zoo.workers.control import read_log


@pytest.fixture
def staged_job(tmp_path, tiny_model_dir, local_zoo, catalog):
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir,
                               extra="alias: tiny@latest\n")
    specs = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    [job_id] = jobs.create_jobs(catalog, specs)
    return job_id


def test_run_job_publishes_once_and_records_everything(staged_job, local_zoo, catalog):
    result = tasks.run_job(staged_job, local_zoo["catalog_url"], local_zoo["store_url"])
    assert result["state"] == "SUCCEEDED", result
    view = jobs.get_job(catalog, staged_job)
    assert view.attempt == 1 and view.adapter_id == result["adapter_id"]
    assert view.checkpoint_uri is None and view.finished_at
    # the final log is kept in the job's row: no log blob is left in the store
    assert view.log_uri is None
    log = read_log(catalog, local_zoo["store_url"], staged_job)[1].decode()
    assert "step 3/3" in log and "publishing adapter" in log
    assert log.startswith(f"{log[:20]} job {staged_job} attempt 1/2 started")
    specs_blobs = {staging.digest_of(view.spec["data"]["train"]),
                   staging.digest_of(view.spec["data"]["eval"])}
    artifacts = staging.open_artifacts(local_zoo["store_url"])
    assert specs_blobs <= {b.digest for b in artifacts.list_blobs()}
    from zoo.storage.gc import referenced_artifacts

    assert {b.digest for b in artifacts.list_blobs()} == referenced_artifacts(catalog, artifacts)

    import sqlalchemy as sa

    from zoo.storage.catalog import resolve_ref
    from zoo.storage.tables import EvalRow

    with catalog.transaction(readonly=True) as session:
        row = resolve_ref(session, "tiny@latest")
        assert row.id == view.adapter_id and row.job_id == staged_job
        evals = session.scalars(sa.select(EvalRow).where(
            EvalRow.adapter_id == row.id)).all()
        assert "loss" in {e.metric for e in evals}
        assert {(e.dataset_name, e.n_examples) for e in evals} == {("eval.jsonl", 4)}
    # a second run of the same job (a late retry) changes nothing
    again = tasks.run_job(staged_job, local_zoo["catalog_url"], local_zoo["store_url"])
    assert again["state"] == "SUCCEEDED" and again["adapter_id"] == view.adapter_id
    assert jobs.get_job(catalog, staged_job).attempt == 1


def test_base_model_is_reused_by_the_next_job(tmp_path, tiny_model_dir, local_zoo, catalog):
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=1)
    specs = staging.stage_inputs(load_specs(spec_path, overrides=["sweep.train.lr=[0.001, 0.002]"]),
                                 local_zoo["store_url"])
    ids = jobs.create_jobs(catalog, specs)
    before = model_cache.MODEL_LOADS["count"]
    for job_id in ids:
        assert tasks.run_job(job_id, local_zoo["catalog_url"],
                             local_zoo["store_url"])["state"] == "SUCCEEDED"
    assert model_cache.MODEL_LOADS["count"] - before <= 1


def test_bad_data_fails_with_the_reason(tmp_path, tiny_model_dir, local_zoo, catalog):
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    (tmp_path / "spec" / "train.jsonl").write_text('{"prompt": "k1 ="}\n')
    specs = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    [job_id] = jobs.create_jobs(catalog, specs)
    result = tasks.run_job(job_id, local_zoo["catalog_url"], local_zoo["store_url"])
    assert result["state"] == "FAILED"
    assert "completion" in result["error"] and result["error"].startswith("attempt 1:")
