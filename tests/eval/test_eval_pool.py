"""The Ray eval pool: results in the catalog, corrupted blobs, resumability, a killed actor."""

from __future__ import annotations

import collections
import random

import pytest

from zoo.workers.eval_pool import EvalPool, plan_chunks, pool_size


def loss_rows_per_adapter(results):
    return collections.Counter(r.adapter_id for r in results if r.metric == "loss")


def test_flipped_byte_is_an_error_row_and_runs_resume(ray_local, embedded_zoo):
    z = embedded_zoo
    ids = z.publish_random(10, seed=1)
    z.flip_byte(ids[3])
    pool = EvalPool(z.catalog, z.settings.store_url, dataset=str(z.data), query="task=causal-lm",
                    batch_size=8, chunk_size=4, max_actors=2, worker_home=z.worker_home)
    seen = []
    summary = pool.run(lambda done, total, errors: seen.append((done, total, errors)))
    assert (summary.total, summary.evaluated, summary.errors) == (10, 9, 1)
    assert "verification" in summary.error_messages[ids[3]]
    assert seen[-1] == (10, 10, 1)
    rows = z.results()
    assert loss_rows_per_adapter(rows) == {i: 1 for i in ids if i != ids[3]}
    [err] = [r for r in rows if r.metric == "error"]
    assert err.adapter_id == ids[3] and err.value is None and "sha256" in err.error
    metrics = {r.metric for r in rows if r.adapter_id == ids[0]}
    assert metrics == {"loss", "perplexity", "exact_match"}
    assert all(r.n_examples == 6 and r.dataset_name == "eval.jsonl" for r in rows if r.value)

    # resumable: only the failed adapter is tried again; --force redoes everything
    again = EvalPool(z.catalog, z.settings.store_url, dataset=str(z.data),
                     query="task=causal-lm", metrics=["loss"], max_actors=1,
                     worker_home=z.worker_home).run()
    assert (again.skipped, again.evaluated, again.errors) == (9, 0, 1)
    forced = EvalPool(z.catalog, z.settings.store_url, dataset=str(z.data), query="name~rand-1-1",
                      metrics=["loss"], force=True, max_actors=1,
                      worker_home=z.worker_home).run()
    assert forced.skipped == 0 and forced.evaluated == 1


def test_killed_actor_work_is_retried_once(ray_local, embedded_zoo):
    import ray

    z = embedded_zoo
    ids = z.publish_random(24, seed=2)
    pool = EvalPool(z.catalog, z.settings.store_url, dataset=str(z.data), query="task=causal-lm",
                    batch_size=8, chunk_size=2, max_actors=2, worker_home=z.worker_home)
    killed = []

    def progress(done, total, errors):
        if done and not killed:
            victim = pool.actors[0]
            killed.append(victim)
            ray.kill(victim, no_restart=True)

    summary = pool.run(progress)
    assert killed and summary.retried_chunks >= 1
    assert (summary.evaluated, summary.errors) == (24, 0)
    assert loss_rows_per_adapter(z.results()) == {i: 1 for i in ids}


def test_pool_size_and_chunks():
    assert pool_size({"CPU": 4.0}, n_chunks=10, max_actors=None) == (4, {"num_cpus": 1})
    assert pool_size({"CPU": 16.0, "GPU": 2.0}, 10, None) == (2, {"num_gpus": 1, "num_cpus": 1})
    assert pool_size({"CPU": 8.0}, n_chunks=3, max_actors=2)[0] == 2

    from zoo.storage.bases import BaseLocation
    from zoo.storage.evals import EvalItem

    bases = [BaseLocation("a", "d1", "/models/a"), BaseLocation("b", "d2", "/models/b")]
    items = [EvalItem(str(i), "n", "d", 1, "causal-lm", base=bases[i % 2]) for i in range(5)]
    chunks = plan_chunks(items, 2)
    assert [len(c) for _, c in chunks] == [2, 1, 2]
    assert all(len({m.base for m in c}) == 1 for _, c in chunks)


@pytest.mark.parametrize("bad", ["loss,bleu"])
def test_bad_metric_is_one_line(bad, zoo_home):
    from click.testing import CliRunner

    from zoo.cli.main import cli

    res = CliRunner().invoke(cli, ["eval", "--select", "task=causal-lm", "--dataset", "x.jsonl",
                                   "--metrics", bad])
    assert res.exit_code == 2, res.output
    assert "bleu" in res.output


def test_one_odd_adapter_cannot_fail_its_group(zoo_home, tmp_path):
    """Adapters without recorded labels (PEFT imports) share a group; the first one's 3-way
    head used to size the base for all of them, so every 2-way adapter after it failed."""
    import json as _json

    from evalkit import BERT_TARGETS, char_tokenizer, make_adapter, random_config, tiny_bert_cls

    from zoo.digest import base_model_digest
    from zoo.settings import resolve_settings
    from zoo.storage.bases import register_location
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.evals import select_items
    from zoo.storage.publish import publish
    from zoo.workers.eval_pool import EvalWorker

    settings = resolve_settings()
    init_catalog(settings.catalog_url)
    catalog, store = open_catalog(settings.catalog_url), open_store(settings.store_url)
    base_dir = tmp_path / "bert"
    tiny_bert_cls(num_labels=2).save_pretrained(str(base_dir))
    char_tokenizer(base_dir)
    register_location(catalog, store, "bert", str(base_dir))
    digest = base_model_digest(base_dir)
    rng = random.Random(0)
    for i, labels in enumerate((3, 2, 2)):  # the odd one first
        cfg = random_config(rng, BERT_TARGETS, modules_to_save=("classifier",))
        adapter = make_adapter(tiny_bert_cls(num_labels=labels), cfg, seed=i,
                               base_model="bert", task="seq-cls")
        adapter = type(adapter)(adapter.config.with_base("bert", digest), adapter.tensors)
        publish(catalog, store, adapter.to_bytes(), name=f"head{labels}-{i}")
    data = tmp_path / "cls.jsonl"
    data.write_text("".join(_json.dumps({"text": t, "label": f"LABEL_{k}"}) + "\n"
                            for t, k in (("good", 1), ("bad", 0), ("fine", 1), ("awful", 0))))
    items = select_items(catalog, "task=seq-cls")
    worker = EvalWorker(settings.store_url, data.read_bytes(), "cls.jsonl",
                        home=str(tmp_path / "worker"))
    results = worker.evaluate(items[0].group, items)
    assert [r["error"] for r in results] == [None, None, None], results
    assert all(0 <= r["metrics"]["accuracy"] <= 1 for r in results)
    catalog.close()


def test_a_run_where_nothing_evaluated_fails(ray_local, embedded_zoo):
    """Every adapter an error: the summary says so and the command exits non-zero (8)."""
    from click.testing import CliRunner

    from zoo.cli.main import cli

    z = embedded_zoo
    ids = z.publish_random(2, seed=5)
    for adapter_id in ids:
        z.flip_byte(adapter_id)
    result = CliRunner().invoke(cli, ["eval", "--select", "name~rand-5-", "--dataset",
                                      str(z.data)])
    assert result.exit_code == 8, result.output
    assert "evaluated 0 adapter(s)" in result.stdout and "2 error(s)" in result.stdout
    last = result.stderr.strip().splitlines()[-1]  # after the progress lines
    assert last == "zoo: error: no adapter could be evaluated (2 error(s))"
