"""Catalog lookups at 100k adapters (SQLite and PostgreSQL) vs MLflow's model registry.

Run: ``python bench/catalog_bench.py [--n 100000] [--mlflow-n 10000] [--pg-url URL]``.
Needs the ``bench`` extra (mlflow). Prints p50/p95 in ms of four lookups measured through
the zoo's library functions (``zoo.storage.catalog``: list_adapters / resolve_ref /
adapter_to_dict, i.e. exactly what ``zoo ls``/``zoo show`` run, minus process start), then a
few cold end-to-end ``zoo ls`` processes, then the same lookups on MLflow's registry
(``MlflowClient``: search_model_versions, get_model_version_by_alias, get_model_version) and
the speed-up ratios, all in one run.

Seeding is bulk (Core executemany, not the per-row API) on both sides: MLflow's create_model_version
takes tens of ms per call, so its SQLite tables are filled directly in the same shape the API
writes (a version made through the API is checked against a bulk-seeded one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

BASES = ["gpt2", "llama-3-8b", "mistral-7b", "qwen2-1.5b", "phi-3-mini"]
TASKS = ["seq-cls", "causal-lm"]
TEAMS = ["nlp", "vision", "search", "ads", "speech", "risk", "ranking", "infra", "legal", "med"]
STAGES = ["dev", "staging", "prod"]
RANKS = [2, 4, 8, 16, 32]
VERSIONS_PER_NAME = 10
FILTER = "base=llama-3-8b task=seq-cls tag:team=nlp"  # 3 terms, also expressible in MLflow


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(fn: Callable[[int], Any], repeat: int) -> tuple[float, float]:
    """p50/p95 in ms of fn(i) over ``repeat`` calls (after 3 warm-up calls)."""
    for i in range(3):
        fn(i)
    samples = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), pct(samples, 0.95)


# ------------------------------------------------------------------------------- seed data
def synth(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """n adapter descriptions: name families of 10 versions, tags, base, task, rank."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        r = rng.choice(RANKS)
        u = rng.choice([0, 1, 2]) if r > 2 else 0
        tags = {f"team={rng.choice(TEAMS)}", f"stage={rng.choice(STAGES)}"}
        if rng.random() < 0.01:
            tags.add("prod")
        out.append({
            "i": i, "name": f"adapter-{i // VERSIONS_PER_NAME:05d}",
            "version": i % VERSIONS_PER_NAME + 1, "base": rng.choice(BASES),
            "task": rng.choice(TASKS), "r": r, "u": u, "share": rng.choice([1, 2, 4]),
            "created": start + timedelta(seconds=300 * i + rng.random()),
            "digest": hashlib.sha256(f"adapter-{i}".encode()).hexdigest(),
            "tags": sorted(tags), "accuracy": round(rng.uniform(0.5, 0.99), 4)
            if rng.random() < 0.2 else None,
        })
    return out


def seed_zoo(url: str, items: list[dict[str, Any]]) -> None:
    """Bulk-insert items as adapters (+ tags, a prod/staging alias per name, eval rows)."""
    import sqlalchemy as sa

    from zoo.config import trainable_params
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.tables import AdapterRow, AliasRow, BaseModelRow, EvalRow, TagRow, new_id

    init_catalog(url)
    cat = open_catalog(url)
    hidden = 64
    modules = {f"layers.{k}.{p}": {"in_features": hidden, "out_features": hidden,
                                   "kind": "linear"} for k in range(4) for p in ("q", "v")}
    with cat.engine.begin() as conn:
        conn.execute(sa.insert(BaseModelRow.__table__),
                     [{"id": k + 1, "name": b, "digest": hashlib.sha256(b.encode()).hexdigest()}
                      for k, b in enumerate(BASES)])
    base_id = {b: k + 1 for k, b in enumerate(BASES)}
    chunk = 5000
    for lo in range(0, len(items), chunk):
        adapters, tags, evals = [], [], []
        for it in items[lo:lo + chunk]:
            aid = new_id(int(it["created"].timestamp() * 1000))
            it["id"] = aid
            r, u, s = it["r"], it["u"], it["share"]
            cfg = {"base_model": it["base"], "base_model_digest": None, "task": it["task"],
                   "r": r, "unshared_r": u, "share_a": s, "share_b": s,
                   "stride_a": max((r - u) // s, 1), "stride_b": max((r - u) // s, 1),
                   "rotation": True, "init": "rectified", "alpha": 2 * r, "dropout": 0.0,
                   "dtype": "float32", "modules": modules, "modules_to_save": []}
            params = len(modules) * trainable_params(hidden, hidden, r=r, unshared_r=u,
                                                     share_a=s, share_b=s)
            adapters.append({
                "id": aid, "name": it["name"], "digest": it["digest"], "size": params * 4 + 512,
                "task": it["task"], "base_model_id": base_id[it["base"]], "r": r,
                "unshared_r": u, "share_a": s, "share_b": s, "stride_a": cfg["stride_a"],
                "stride_b": cfg["stride_b"], "rotation": True, "init": "rectified",
                "alpha": float(2 * r), "dtype": "float32", "params": params,
                "config": json.dumps(cfg, sort_keys=True, separators=(",", ":")),
                "created_at": it["created"], "job_id": f"job-{it['i']}",
                "dataset_fingerprint": f"ds-{it['i'] % 97}"})
            for t in it["tags"]:
                key, _, value = t.partition("=")
                tags.append({"adapter_id": aid, "key": key, "value": value})
            if it["accuracy"] is not None:
                evals.append({"adapter_id": aid, "dataset_fingerprint": "fp-sst2",
                              "dataset_name": "sst2", "metric": "accuracy",
                              "value": it["accuracy"], "n_examples": 872, "elapsed_s": 1.0,
                              "created_at": it["created"]})
        with cat.engine.begin() as conn:
            conn.execute(sa.insert(AdapterRow.__table__), adapters)
            conn.execute(sa.insert(TagRow.__table__), tags)
            if evals:
                conn.execute(sa.insert(EvalRow.__table__), evals)
    aliases = []
    for it in items:
        if it["version"] == VERSIONS_PER_NAME:
            aliases.append({"name": it["name"], "alias": "prod", "adapter_id": it["id"],
                            "updated_at": it["created"]})
        elif it["version"] == VERSIONS_PER_NAME - 1:
            aliases.append({"name": it["name"], "alias": "staging", "adapter_id": it["id"],
                            "updated_at": it["created"]})
    with cat.engine.begin() as conn:
        for lo in range(0, len(aliases), chunk):
            conn.execute(sa.insert(AliasRow.__table__), aliases[lo:lo + chunk])
    # Planner statistics and (PG) the visibility map, as autovacuum leaves a live catalog.
    with cat.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if cat.dialect == "postgresql" else "ANALYZE")
    cat.close()


# ---------------------------------------------------------------------------------- zoo side
def bench_zoo(url: str, items: list[dict[str, Any]], repeat: int) -> dict[str, tuple]:
    from zoo.storage.catalog import adapter_to_dict, list_adapters, resolve_ref
    from zoo.storage.db import open_catalog

    cat = open_catalog(url)
    rng = random.Random(1)
    tag_choices = ["prod"] + [f"team={t}" for t in TEAMS]
    names = sorted({it["name"] for it in items})
    ids = [it["id"] for it in items]

    def ls(query: str, sort: str = "-created") -> list[dict]:
        with cat.transaction(readonly=True) as s:
            return [adapter_to_dict(r, config=False) for r in list_adapters(s, query, sort, 50)]

    def show(ref: str) -> dict:
        with cat.transaction(readonly=True) as s:
            return adapter_to_dict(resolve_ref(s, ref))

    assert ls(FILTER) and ls("tag:prod")
    results = {
        "ls by tag (tag:<t>, 50 newest)": timed(
            lambda i: ls(f"tag:{rng.choice(tag_choices)}"), repeat),
        "by alias (show name@prod)": timed(lambda i: show(f"{rng.choice(names)}@prod"), repeat),
        f"3-term filter, sort, limit 50 ({FILTER})": timed(lambda i: ls(FILTER), repeat),
        "show (by id)": timed(lambda i: show(rng.choice(ids)), repeat),
        "extra: metrics.accuracy>=0.9 sort -metrics.accuracy": timed(
            lambda i: ls("task=seq-cls metrics.accuracy>=0.9", "-metrics.accuracy"),
            max(10, repeat // 10)),
    }
    cat.close()
    return results


def cold_zoo_ls(url: str, runs: int) -> float:
    """Median wall time (ms) of a fresh `zoo ls tag:prod --json` process."""
    zoo = shutil.which("zoo") or os.path.join(os.path.dirname(sys.executable), "zoo")
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([zoo, "ls", "tag:prod", "--json", "--catalog", url],
                             capture_output=True, text=True, check=True)
        samples.append((time.perf_counter() - t0) * 1000)
        assert json.loads(out.stdout)
    return statistics.median(samples)


# ------------------------------------------------------------------------------- MLflow side
def seed_mlflow(db_path: str, items: list[dict[str, Any]]) -> Any:
    """Registry schema via MlflowClient, one version via the API, the rest bulk-inserted."""
    import sqlite3

    from mlflow import MlflowClient

    uri = f"sqlite:///{db_path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = items[0]
    client.create_registered_model(first["name"])
    api_mv = client.create_model_version(first["name"], f"s3://bucket/{first['digest']}",
                                         tags=_mlflow_tags(first))
    client.set_registered_model_alias(first["name"], "api-check", api_mv.version)
    conn = sqlite3.connect(db_path)
    names = sorted({it["name"] for it in items} - {first["name"]})
    ms = [int(it["created"].timestamp() * 1000) for it in items]
    conn.executemany("INSERT INTO registered_models (name, creation_time, last_updated_time, "
                     "description) VALUES (?, ?, ?, '')", [(n, ms[0], ms[0]) for n in names])
    rows, tags, aliases = [], [], []
    for it, t in zip(items[1:], ms[1:], strict=True):
        rows.append((it["name"], it["version"], t, t, "", None, "None",
                     f"s3://bucket/{it['digest']}", f"s3://bucket/{it['digest']}", None, "",
                     "READY", ""))
        tags += [(it["name"], it["version"], k, v) for k, v in _mlflow_tags(it).items()]
        if it["version"] == VERSIONS_PER_NAME:
            aliases.append((it["name"], "prod", it["version"]))
        elif it["version"] == VERSIONS_PER_NAME - 1:
            aliases.append((it["name"], "staging", it["version"]))
    conn.executemany(
        "INSERT INTO model_versions (name, version, creation_time, last_updated_time, "
        "description, user_id, current_stage, source, storage_location, run_id, run_link, "
        "status, status_message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.executemany("INSERT INTO model_version_tags (name, version, key, value) "
                     "VALUES (?,?,?,?)", tags)
    conn.executemany("INSERT INTO registered_model_aliases (name, alias, version) "
                     "VALUES (?,?,?)", aliases)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    bulk = client.get_model_version(items[1]["name"], str(items[1]["version"]))
    assert bulk.tags == _mlflow_tags(items[1]) and bulk.status == api_mv.status
    return client


def _mlflow_tags(it: dict[str, Any]) -> dict[str, str]:
    tags = {"base": it["base"], "task": it["task"], "r": str(it["r"])}
    for t in it["tags"]:
        key, _, value = t.partition("=")
        tags[key] = value or "true"
    return tags


def bench_mlflow(client: Any, items: list[dict[str, Any]], repeat: int) -> dict[str, tuple]:
    rng = random.Random(1)
    names = sorted({it["name"] for it in items})
    tag_filters = ["tags.prod = 'true'"] + [f"tags.team = '{t}'" for t in TEAMS]
    order = ["creation_timestamp DESC"]
    three = "tags.base = 'llama-3-8b' AND tags.task = 'seq-cls' AND tags.team = 'nlp'"
    assert client.search_model_versions(three, max_results=50, order_by=order)
    return {
        "ls by tag (tag:<t>, 50 newest)": timed(lambda i: client.search_model_versions(
            rng.choice(tag_filters), max_results=50, order_by=order), repeat),
        "by alias (show name@prod)": timed(lambda i: client.get_model_version_by_alias(
            rng.choice(names[1:]), "prod"), repeat),
        f"3-term filter, sort, limit 50 ({FILTER})": timed(
            lambda i: client.search_model_versions(three, max_results=50, order_by=order),
            repeat),
        "show (by id)": timed(lambda i: (lambda it: client.get_model_version(
            it["name"], str(it["version"])))(rng.choice(items[1:])), repeat),
    }


def cold_mlflow(db_path: str, name: str, runs: int) -> float:
    code = ("from mlflow import MlflowClient\n"
            f"c = MlflowClient(tracking_uri='sqlite:///{db_path}', registry_uri='sqlite:///{db_path}')\n"
            f"c.get_model_version_by_alias('{name}', 'prod')\n")
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


# -------------------------------------------------------------------------------------- main
def _pg_database(server_url: str) -> tuple[str, Callable[[], None]]:
    import sqlalchemy as sa

    name = f"zoo_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--mlflow-n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--pg-url", default=os.environ.get(
        "ZOO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()

    t_start, load0 = time.time(), os.getloadavg()
    work = tempfile.mkdtemp(prefix="zoo-catalog-bench-")
    items = synth(args.n)
    backends: dict[str, str] = {"sqlite": f"sqlite:///{work}/catalog.db"}
    cleanups: list[Callable[[], None]] = []
    if not args.skip_pg:
        url, drop = _pg_database(args.pg_url)
        backends["postgresql"] = url
        cleanups.append(drop)
    results: dict[str, dict[str, tuple]] = {}
    cold: dict[str, float] = {}
    try:
        for label, url in backends.items():
            t0 = time.time()
            seed_zoo(url, items)
            print(f"[seed] zoo/{label}: {args.n} adapters in {time.time() - t0:.1f}s (bulk)",
                  flush=True)
            results[f"zoo/{label}"] = bench_zoo(url, items, args.repeat)
            cold[f"zoo/{label}"] = cold_zoo_ls(url, args.cold_runs)
        if not args.skip_mlflow:
            t0 = time.time()
            ml_items = items[: args.mlflow_n]
            client = seed_mlflow(f"{work}/mlflow.db", ml_items)
            print(f"[seed] mlflow/sqlite: {len(ml_items)} model versions in "
                  f"{time.time() - t0:.1f}s (schema + 1 version via API, rest bulk SQL)",
                  flush=True)
            results["mlflow/sqlite"] = bench_mlflow(client, ml_items, max(20, args.repeat // 4))
            cold["mlflow/sqlite"] = cold_mlflow(f"{work}/mlflow.db", ml_items[-1]["name"],
                                                min(3, args.cold_runs))
    finally:
        for fn in cleanups:
            fn()
        shutil.rmtree(work, ignore_errors=True)
    report(results, cold, args)
    print(f"total bench time {time.time() - t_start:.0f}s; machine: {os.cpu_count()} CPUs, "
          f"load average at start {load0[0]:.1f}, at end {os.getloadavg()[0]:.1f} "
          "(a load above the CPU count inflates every absolute figure; ratios are side by side)")


def report(results: dict[str, dict[str, tuple]], cold: dict[str, float], args: Any) -> None:
    print()
    print(f"Catalog lookups, p50 / p95 ms (zoo: {args.n:,} adapters via zoo.storage.catalog "
          f"library calls in one process; mlflow: {args.mlflow_n:,} model versions via "
          "MlflowClient)")
    systems = list(results)
    lookups = list(next(iter(results.values())))
    width = max(len(k) for k in lookups) + 2
    print("lookup".ljust(width) + "".join(s.rjust(22) for s in systems))
    for lk in lookups:
        cells = [f"{results[s][lk][0]:.2f} / {results[s][lk][1]:.2f}" if lk in results[s]
                 else "-" for s in systems]
        print(lk.ljust(width) + "".join(c.rjust(22) for c in cells))
    if "mlflow/sqlite" in results:
        print()
        print("speed-up vs MLflow (p50 ratio, mlflow / zoo; MLflow holds 10x fewer rows):")
        for s in systems:
            if s == "mlflow/sqlite":
                continue
            parts = [f"{lk.split(' (')[0]}: {results['mlflow/sqlite'][lk][0] / results[s][lk][0]:.1f}x"
                     for lk in lookups if lk in results["mlflow/sqlite"]]
            print(f"  {s}: " + "; ".join(parts))
    print()
    print("cold process, one lookup (median ms, includes interpreter start + imports):")
    for s, ms in cold.items():
        what = "`zoo ls tag:prod --json`" if s.startswith("zoo") else \
            "python -c 'MlflowClient().get_model_version_by_alias(...)'"
        print(f"  {s:16} {ms:8.0f}  {what}")
    if "mlflow/sqlite" in cold:
        for s in cold:
            if s != "mlflow/sqlite":
                print(f"  speed-up {s} vs mlflow: {cold['mlflow/sqlite'] / cold[s]:.1f}x")


if __name__ == "__main__":
    main()
