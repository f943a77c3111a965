"""Acceptance: a sweep through Ray's job submission API on a real two-node cluster, catalog on
PostgreSQL, store on an S3 server, every adapter pulled from a third ZOO_HOME."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.workers.conftest import write_tiny_job
from tests.workers.raycluster import start_cluster
from zoo.cli.main import cli

pytestmark = pytest.mark.slow


def test_sweep_on_two_nodes_via_job_submission(tmp_path, monkeypatch, pg_url, s3_server,
                                               s3_bucket, s3_credentials, tiny_model_dir):
    from zoo.storage.db import init_catalog

    # a password the server never asks for (trust auth): it must not leave this process
    secret = "s3cret-pw-never-forwarded"
    pg_url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    init_catalog(pg_url)
    store_url = f"s3://{s3_bucket}/zoo"
    submitter_home = tmp_path / "submitter"
    submitter_home.mkdir()
    monkeypatch.setenv("ZOO_HOME", str(submitter_home))
    monkeypatch.setenv("ZOO_CATALOG_URL", pg_url)
    monkeypatch.setenv("ZOO_STORE_URL", store_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=2,
                          extra="resources: {cpus: 1, custom: {zoo_worker: 1}}\n"
                                "sweep: {prolora.r: [2, 4], train.seed: [0, 1, 2]}\n")
    spec.write_text(spec.read_text().replace("resources: {cpus: 1}\n", "")
                    .replace("tags: [test]", "tags: [multinode]"))

    # each node holds the store's credentials in its own environment, as a team's nodes do
    cluster = start_cluster(s3_credentials)
    try:
        # a wrong token: refused with one line naming the fix, and nothing written
        env = {**os.environ, "RAY_AUTH_TOKEN": "0" * 64, "RAY_AUTH_MODE": "token"}
        bad = subprocess.run([str(Path(sys.executable).with_name("zoo")), "submit", str(spec),
                              "--address", cluster.address], env=env, capture_output=True,
                             text=True, timeout=120)
        assert bad.returncode != 0
        last = bad.stderr.strip().splitlines()[-1]
        assert last.startswith("zoo: error: ") and "token" in last, bad.stderr
        assert _job_count(pg_url) == 0

        runner = CliRunner()
        result = runner.invoke(cli, ["submit", str(spec), "--address", cluster.address,
                                     "--json"])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        out = json.loads(result.stdout)
        assert out["mode"] == "cluster" and len(out["job_ids"]) == 6 and out["submission_id"]
        assert out["states"] == {}  # returned at once
        # what Ray shows every token holder (runtime_env, entrypoint, metadata) has no password
        from zoo.workers.cluster import job_client

        info = job_client(cluster.address).get_job_info(out["submission_id"])
        shown = json.dumps({"env": info.runtime_env, "entrypoint": info.entrypoint,
                            "metadata": info.metadata}, default=str)
        assert secret not in shown and "ZOO_FORWARDED_CATALOG_URL" in shown

        monkeypatch.setenv("RAY_ADDRESS", cluster.address)  # wait also asks Ray about the job
        waited = runner.invoke(cli, ["jobs", "wait", *out["job_ids"], "--timeout", "900",
                                     "--json"])
        listed = json.loads(runner.invoke(cli, ["jobs", "ls", "--json"]).stdout)
        assert waited.exit_code == 0, (waited.stdout, listed, _logs(cluster))
        # the worker node fetched the inputs into ITS ZOO_HOME; the head's stayed empty
        assert list((cluster.homes["worker"] / "cache" / "models").iterdir())
        assert not (cluster.homes["head"] / "cache").exists()
    finally:
        cluster.stop()

    assert {j["state"] for j in listed} == {"SUCCEEDED"} and len(listed) == 6
    nodes = {j["node"] for j in listed}
    assert len(nodes) == 1, nodes  # one node: the one with the zoo_worker resource
    assert not (submitter_home / "cache").exists()

    monkeypatch.delenv("RAY_ADDRESS")
    puller = tmp_path / "third"
    puller.mkdir()
    monkeypatch.setenv("ZOO_HOME", str(puller))
    out_dir = tmp_path / "pulled"
    pulled = CliRunner().invoke(cli, ["pull", "--tag", "multinode", "-o", str(out_dir)])
    assert pulled.exit_code == 0, (pulled.stdout, pulled.stderr)
    adapters = json.loads(CliRunner().invoke(cli, ["ls", "tag:multinode", "--json"]).stdout)
    assert {a["id"] for a in adapters} == {j["adapter_id"] for j in listed}
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert digests == {a["digest"] for a in adapters} and len(digests) == 6
    assert secret not in _job_text(pg_url)  # nor is it in any job row

    # a third machine evaluates a job-trained and a pushed adapter from the REGISTERED base:
    # the job registered where it found its base; the pushed file names a path that exists
    # nowhere, and links to that registered base by its digest
    pushed = _push_random_adapter(tmp_path, tiny_model_dir)
    ev = CliRunner().invoke(cli, ["eval", "--select", "tag:multinode", "--dataset",
                                  str(tmp_path / "spec" / "eval.jsonl"), "--force", "--json"])
    assert ev.exit_code == 0, (ev.stdout, ev.stderr)
    summary = json.loads(ev.stdout)
    assert (summary["evaluated"], summary["errors"]) == (7, 0), summary["error_messages"]
    shown = json.loads(CliRunner().invoke(cli, ["show", pushed, "--json"]).stdout)
    assert shown["config"]["base_model"] == "/nowhere/tiny" and shown["metrics"]["loss"] > 0
    bases = json.loads(CliRunner().invoke(cli, ["base", "ls", "--json"]).stdout)
    assert [b["location"].startswith("zoo-model:") for b in bases] == [True]


def _job_count(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("select count(*) from jobs")).scalar()
    engine.dispose()
    return count


def _job_text(url: str) -> str:
    """Every text column of every job row, concatenated."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select spec, coalesce(error, ''), coalesce(ray_ref, ''), "
                                    "coalesce(log_text, '') from jobs")).all()
    engine.dispose()
    return "\n".join(" ".join(r) for r in rows)


def _push_random_adapter(tmp_path: Path, model_dir: Path) -> str:
    """`zoo push` an adapter for the tiny base whose file names a base path nowhere."""
    from transformers import AutoModelForCausalLM

    from zoo.config import PRoLoRAConfig
    from zoo.digest import base_model_digest
    from zoo.testing import random_adapter

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    adapter = random_adapter(model, PRoLoRAConfig(r=2, target_modules=["q_proj"]),
                             base_model="/nowhere/tiny", seed=7, scale=0.01,
                             base_model_digest=base_model_digest(model_dir))
    path = tmp_path / "pushed.safetensors"
    adapter.save(path)
    out = CliRunner().invoke(cli, ["push", str(path), "--name", "pushed", "--tag", "multinode"])
    assert out.exit_code == 0, out.output
    return out.stdout.strip()


def _logs(cluster) -> str:
    texts = []
    for path in sorted(Path(cluster.root).rglob("job-driver-*.log")):
        texts.append(path.read_text()[-3000:])
    return "\n".join(texts) or "no driver logs"
