"""Inputs that are not local files: s3:// base models and data, and hub-id bases. They are
staged as they are (no upload at submit); the worker fetches or resolves them itself."""

from __future__ import annotations

import json

import boto3

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.storage import jobs, staging
from zoo.workers import train_task as tasks


def _upload_dir(client, bucket: str, prefix: str, root) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def test_s3_base_model_and_data_train_and_publish(tmp_path, monkeypatch, s3_server, s3_bucket,
                                                   tiny_model_dir, local_zoo, catalog):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    client = boto3.client("s3", endpoint_url=s3_server)
    _upload_dir(client, s3_bucket, "models/tiny", tiny_model_dir)
    rows = [{"prompt": f"k{i} =", "completion": f" v{i}"} for i in range(10)]
    client.put_object(Bucket=s3_bucket, Key="data/train.jsonl",
                      Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=2)
    text = spec_path.read_text().replace(f"base_model: {tiny_model_dir}",
                                         f"base_model: s3://{s3_bucket}/models/tiny")
    text = text.replace("data: {train: train.jsonl, eval: eval.jsonl}",
                        f"data: {{train: s3://{s3_bucket}/data/train.jsonl}}")
    spec_path.write_text(text)

    [spec] = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    assert spec.base_model == f"s3://{s3_bucket}/models/tiny"  # passed through, not uploaded
    assert spec.data.train == f"s3://{s3_bucket}/data/train.jsonl"
    [job_id] = jobs.create_jobs(catalog, [spec])

    result = tasks.run_job(job_id, local_zoo["catalog_url"], local_zoo["store_url"])
    assert result["state"] == "SUCCEEDED", result

    from zoo.storage.catalog import adapter_to_dict, resolve_ref

    with catalog.transaction(readonly=True) as session:
        adapter = adapter_to_dict(resolve_ref(session, result["adapter_id"]))
    assert adapter["base_model"] == f"s3://{s3_bucket}/models/tiny"  # not the node cache path
    assert adapter["job_id"] == job_id
    cached = list((staging.cache_dir() / "models").glob("s3-*/config.json"))
    assert len(cached) == 1  # fetched once into this node's cache


def test_s3_base_model_without_config_fails_the_job_with_the_reason(
        tmp_path, monkeypatch, s3_server, s3_bucket, tiny_model_dir, local_zoo, catalog):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    client = boto3.client("s3", endpoint_url=s3_server)
    client.put_object(Bucket=s3_bucket, Key="models/empty/README", Body=b"not a model")
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=1)
    spec_path.write_text(spec_path.read_text().replace(
        f"base_model: {tiny_model_dir}", f"base_model: s3://{s3_bucket}/models/empty"))
    [spec] = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    [job_id] = jobs.create_jobs(catalog, [spec])

    result = tasks.run_job(job_id, local_zoo["catalog_url"], local_zoo["store_url"])
    assert result["state"] == "FAILED"
    assert "holds no config.json" in jobs.get_job(catalog, job_id).error


def test_hub_id_base_resolves_offline_from_the_hf_cache(tmp_path, tiny_model_dir, local_zoo,
                                                        catalog):
    """``base_model: org/name`` passes staging untouched and the worker loads it from the
    local Hugging Face cache (offline, as workers run). The train task runs in a subprocess
    so that it sees this test's cache directory."""
    import os
    import shutil
    import subprocess
    import sys

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--zoo-test--tiny-kv"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=1)
    spec_path.write_text(spec_path.read_text().replace(f"base_model: {tiny_model_dir}",
                                                       "base_model: zoo-test/tiny-kv"))
    [spec] = staging.stage_inputs(load_specs(spec_path), local_zoo["store_url"])
    assert spec.base_model == "zoo-test/tiny-kv"
    [job_id] = jobs.create_jobs(catalog, [spec])

    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "ZOO_HOME": local_zoo["home"]}
    done = subprocess.run([sys.executable, "-m", "zoo.workers.train_task", job_id,
                           local_zoo["catalog_url"], local_zoo["store_url"]],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    view = jobs.get_job(catalog, job_id)
    assert view.state == "SUCCEEDED", view.error

    from zoo.storage.catalog import adapter_to_dict, resolve_ref

    with catalog.transaction(readonly=True) as session:
        adapter = adapter_to_dict(resolve_ref(session, view.adapter_id))
    assert adapter["base_model"] == "zoo-test/tiny-kv"
