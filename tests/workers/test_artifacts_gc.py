"""``zoo gc`` in the job-artifact area: what a job row needs stays, crash leftovers go."""

from __future__ import annotations

import json
import os
import time

from click.testing import CliRunner

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.storage import jobs, staging
from zoo.storage.gc import collect, referenced_artifacts
from zoo.workers import train_task as tasks


def _age(store, digest: str, seconds: float) -> None:
    """Make a blob look ``seconds`` old (older than the grace period)."""
    path = store.path_for(digest)
    then = time.time() - seconds
    os.utime(path, (then, then))


def _finished_job(tmp_path, tiny_model_dir, local_zoo, catalog) -> str:
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    specs = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    [job_id] = jobs.create_jobs(catalog, specs)
    result = tasks.run_job(job_id, local_zoo["catalog_url"], local_zoo["store_url"])
    assert result["state"] == "SUCCEEDED", result
    return job_id


def test_gc_keeps_what_jobs_need_and_removes_leftovers(tmp_path, tiny_model_dir, local_zoo,
                                                       catalog):
    job_id = _finished_job(tmp_path, tiny_model_dir, local_zoo, catalog)
    store = staging.open_artifacts(local_zoo["store_url"])
    needed = referenced_artifacts(catalog, store)
    view = jobs.get_job(catalog, job_id)
    manifest = staging.digest_of(view.spec["base_model"])
    files = json.loads(staging.get_bytes(store, manifest))["files"].values()
    assert view.log_uri is None  # a short job's log is kept in its row, not as a blob
    assert {manifest, *files, staging.digest_of(view.spec["data"]["train"]),
            staging.digest_of(view.spec["data"]["eval"])} == needed
    assert {b.digest for b in store.list_blobs()} == needed  # nothing left behind by the job

    # leftovers of crashes: a log superseded but not deleted, a dead attempt's checkpoint
    stale_log = staging.put_bytes(store, b"2026-11-29T00:00:00Z attempt 1 started\n")
    stale_ckpt = staging.put_bytes(store, b"zoo-job-checkpoint\0other\0state")
    young = staging.put_bytes(store, b"a submission staging right now")
    for digest in (*needed, stale_log, stale_ckpt):
        _age(store, digest, 7200)

    def gc_job_artifacts(**kwargs):  # the job-area half of `zoo gc`
        return collect(store, lambda: referenced_artifacts(catalog, store), grace_s=3600, **kwargs)

    dry = gc_job_artifacts(dry_run=True)
    assert {b.digest for b in dry.removed} == {stale_log, stale_ckpt}
    assert stale_log in {b.digest for b in store.list_blobs()}  # a dry run deletes nothing

    report = gc_job_artifacts()
    assert {b.digest for b in report.removed} == {stale_log, stale_ckpt}
    assert [b.digest for b in report.kept_young] == [young]
    assert {b.digest for b in store.list_blobs()} == needed | {young}

    # the job's inputs still serve a retry on a fresh node
    model_dir, _ = staging.fetch_model(view.spec["base_model"], local_zoo["store_url"],
                                       home=str(tmp_path / "fresh-node"))
    assert (tmp_path / "fresh-node").exists() and os.path.isfile(
        os.path.join(model_dir, "config.json"))


def test_zoo_gc_reports_the_job_area(tmp_path, tiny_model_dir, local_zoo, catalog,
                                     monkeypatch):
    from zoo.cli.main import cli

    _finished_job(tmp_path, tiny_model_dir, local_zoo, catalog)
    store = staging.open_artifacts(local_zoo["store_url"])
    orphan = staging.put_bytes(store, b"left behind")
    _age(store, orphan, 7200)
    monkeypatch.setenv("ZOO_CATALOG_URL", local_zoo["catalog_url"])
    monkeypatch.setenv("ZOO_STORE_URL", local_zoo["store_url"])
    out = CliRunner().invoke(cli, ["gc", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["adapter_blobs"]["removed"] == []
    assert [b["digest"] for b in report["job_artifacts"]["removed"]] == [orphan]
    text = CliRunner().invoke(cli, ["gc", "--dry-run"]).output
    assert "job artifacts: would remove 0 orphan(s)" in text
