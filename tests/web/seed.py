"""A catalog of 100k adapters for the browser tests, seeded in seconds through storage/.

A dozen adapters go in through the ordinary API (``add_adapter``, ``set_alias``,
``write_results``, the job transitions): those carry real evaluation results, aliases with a
history and jobs with logs. The other ~100k are copies of a few validated configs
(``plan_adapter``) with their own ids, names, digests and tags, bulk-inserted in chunks with
``insert_ignoring_conflicts`` — one ``executemany`` per table and chunk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

BULK = 100_000
CHUNK = 10_000
TEAMS = ("nlp", "search", "ads", "vision")
# (r, u, m=n): LoRA (u = r) and PRoLoRA points of different sizes for the leaderboard picture
CONFIGS = ((2, 2, 1), (4, 1, 2), (8, 8, 1), (8, 2, 4), (16, 2, 4), (16, 16, 1))


def adapter_config(*, r: int, u: int, share: int, hidden: int = 64, layers: int = 4,
                   base_model: str = "tiny-llama") -> dict[str, Any]:
    modules = {f"model.layers.{i}.self_attn.{p}": {"in_features": hidden, "out_features": hidden,
                                                   "kind": "linear"}
               for i in range(layers) for p in ("q_proj", "v_proj")}
    return {"base_model": base_model, "base_model_digest": None, "task": "causal-lm", "r": r,
            "unshared_r": u, "share_a": share, "share_b": share,
            "stride_a": max((r - u) // share, 1), "stride_b": max((r - u) // share, 1),
            "rotation": True, "init": "rectified", "alpha": 2.0 * r, "dropout": 0.0,
            "dtype": "float32", "modules": modules, "modules_to_save": []}


def digest(seed: object) -> str:
    return hashlib.sha256(repr(seed).encode()).hexdigest()


@dataclass
class Seeded:
    """What the tests look for in the seeded catalog."""

    total: int
    real: dict[str, str] = field(default_factory=dict)  # name -> adapter id
    jobs: dict[str, str] = field(default_factory=dict)  # role -> job id
    datasets: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    alias_moves: list[str] = field(default_factory=list)  # adapter ids sentiment@prod pointed at


def seed(catalog: Any, store_url: str, work: Path, *, bulk: int = BULK) -> Seeded:
    """Fill ``catalog`` (initialised, empty): ``bulk`` bulk adapters plus the real ones."""
    base_id = _bulk(catalog, bulk)
    facts = Seeded(total=bulk)
    _real(catalog, facts)
    _jobs(catalog, store_url, work, facts)
    with catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if catalog.dialect == "postgresql" else "ANALYZE")
    assert base_id is not None
    return facts


def _bulk(catalog: Any, n: int) -> int:
    from zoo.storage.catalog import add_adapter, plan_adapter
    from zoo.storage.sql import insert_ignoring_conflicts
    from zoo.storage.tables import AdapterRow, TagRow, new_id

    plans = [plan_adapter(digest=digest(("plan", c)), size=1, name="template",
                          config=adapter_config(r=c[0], u=c[1], share=c[2])) for c in CONFIGS]
    # the base model row comes from the ordinary API (a first bulk-shaped adapter)
    first = catalog.run(lambda s: add_adapter(
        s, digest=digest("bulk-first"), size=4096, name="nlp.bulk-00000",
        config=adapter_config(r=4, u=1, share=2), tags=["team=nlp"],
        created_at=datetime(2025, 1, 1, tzinfo=timezone.utc)))
    start = datetime(2025, 1, 1, 0, 1, tzinfo=timezone.utc)
    for lo in range(1, n, CHUNK):
        adapters, tags = [], []
        for i in range(lo, min(lo + CHUNK, n)):
            plan = plans[i % len(plans)]
            created = start + timedelta(seconds=60 * i)
            team = TEAMS[i % len(TEAMS)]
            aid = new_id(int(created.timestamp() * 1000))
            adapters.append({**plan.values, "id": aid, "name": f"{team}.bulk-{i // 10:05d}",
                             "digest": digest(i), "size": plan.values["params"] * 4 + 512,
                             "created_at": created, "base_model_id": first.base_model_id,
                             "dataset_fingerprint": digest(("data", i % 97))})
            tags.append({"adapter_id": aid, "key": "team", "value": team})
            if i % 100 == 0:
                tags.append({"adapter_id": aid, "key": "prod", "value": ""})

        def write(s: Any, adapters: list = adapters, tags: list = tags) -> None:
            insert_ignoring_conflicts(s, AdapterRow, adapters)
            insert_ignoring_conflicts(s, TagRow, tags)

        catalog.run(write)
    return first.base_model_id


def _real(catalog: Any, facts: Seeded) -> None:
    """Twelve adapters through the API, evaluated on two datasets; sentiment@prod moved twice."""
    from zoo.storage.catalog import add_adapter, set_alias
    from zoo.storage.evals import write_results

    for k in range(12):
        r, u, share = CONFIGS[k % len(CONFIGS)]
        name = "sentiment" if k < 3 else f"team-b.qa-{k:02d}"
        row = catalog.run(lambda s, k=k, r=r, u=u, share=share, name=name: add_adapter(
            s, digest=digest(("real", k)), size=9000 + k, name=name,
            config=adapter_config(r=r, u=u, share=share), tags=["team=nlp", "eval"],
            dataset_fingerprint=digest("sst2-train")))
        facts.real[f"{name}#{k}"] = row.id
    ids = list(facts.real.values())
    for alias_target in ids[:3]:  # sentiment@prod: set, moved, moved again
        catalog.run(lambda s, a=alias_target: set_alias(s, "sentiment@prod", a))
        facts.alias_moves.append(alias_target)
    for name, offset in (("sst2-dev.jsonl", 0.0), ("imdb-test.jsonl", -0.1)):
        fingerprint = digest(("dataset", name))
        facts.datasets[name] = fingerprint
        results = [{"id": aid, "metrics": {"accuracy": 0.6 + 0.03 * k + offset,
                                           "loss": 1.2 - 0.05 * k},
                    "examples": 872, "elapsed_s": 0.5, "error": None}
                   for k, aid in enumerate(ids)]
        write_results(catalog, results, fingerprint=fingerprint, dataset_name=name)


def _jobs(catalog: Any, store_url: str, work: Path, facts: Seeded) -> None:
    """A succeeded job (log in its row, its adapter published), a failed one, a running one
    (log shipped to the store) and a pending one."""
    from zoo.jobspec import load_specs
    from zoo.storage import jobs, staging
    from zoo.storage.blobstore import open_store
    from zoo.storage.catalog import add_adapter

    work.mkdir(parents=True, exist_ok=True)
    (work / "model").mkdir(exist_ok=True)
    (work / "train.jsonl").write_text(json.dumps({"prompt": "a", "completion": " b"}) + "\n")
    spec_text = ("name: sentiment\nbase_model: model\ntask: causal-lm\ndata: {train: train.jsonl}\n"
                 "prolora: {r: 4, unshared_r: 1, share_a: 2, share_b: 2, alpha: 8,\n"
                 "          target_modules: [q_proj, v_proj]}\nretries: 2\n")
    specs = load_specs(text=spec_text, base_dir=work)
    roles = ("succeeded", "failed", "running", "pending")
    for role in roles:
        facts.jobs[role] = jobs.create_jobs(catalog, specs)[0]
    done = facts.jobs["succeeded"]
    _, attempt = jobs.start_attempt(catalog, done, node="worker-1", pid=4242)

    blob = b"zoo adapter bytes the browser downloads\n" * 64  # a real blob in the store
    blob_digest = hashlib.sha256(blob).hexdigest()
    open_store(store_url).put_bytes(blob_digest, blob)

    def publish(s: Any) -> None:
        row = add_adapter(s, digest=blob_digest, size=len(blob), name="sentiment",
                          config=adapter_config(r=4, u=1, share=2), job_id=done,
                          dataset_fingerprint=digest("sst2-train"))
        facts.real["trained"] = row.id
        jobs.succeed_in_transaction(s, done, attempt, row.id,
                                    log_text="step 1 loss 1.25\nstep 2 loss 0.75\npublished\n")

    catalog.run(publish)
    jobs.start_attempt(catalog, facts.jobs["failed"], node="worker-2", pid=4243)
    jobs.mark_failed(catalog, facts.jobs["failed"], "CUDA out of memory at step 3")
    running = facts.jobs["running"]
    jobs.start_attempt(catalog, running, node="worker-3", pid=4244)
    store = staging.open_artifacts(store_url)
    uri = "sha256:" + staging.put_bytes(store, b"step 1 loss 2.00\nstep 2 loss 1.50 (running)\n")
    jobs.set_log_uri(catalog, running, uri)
