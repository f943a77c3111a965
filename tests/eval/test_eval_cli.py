"""``zoo eval`` / ``zoo leaderboard`` edges that need no Ray: datasets, progress, one-line errors."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from zoo.cli.evaluate import progress_printer
from zoo.cli.main import cli
from zoo.cli.plot import config_label
from zoo.storage.evals import write_results
from zoo.workers.eval_pool import read_dataset


def test_dataset_from_s3_is_the_same_bytes(s3_server, s3_bucket, tmp_path, monkeypatch, zoo_home):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    body = b'{"prompt": "a:", "completion": " b"}\n'
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=s3_bucket, Key="sets/qa.jsonl",
                                                         Body=body)
    data, name = read_dataset(f"s3://{s3_bucket}/sets/qa.jsonl", f"file://{tmp_path}/store")
    assert (data, name) == (body, "qa.jsonl")
    local = tmp_path / "qa.jsonl"
    local.write_bytes(body)
    assert read_dataset(str(local), "file:///unused") == (body, "qa.jsonl")


def test_progress_line_has_count_rate_and_eta():
    out = io.StringIO()
    update = progress_printer(out)
    update(0, 10, 0)
    update(4, 10, 1)
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("eval: 4/10 adapters") and "adapters/s" in last
    assert "ETA 0:" in last and last.endswith("errors 1")


def test_config_label():
    assert config_label({"r": 8, "unshared_r": 8, "share_a": 2, "share_b": 2}) == "LoRA r=8"
    assert config_label({"r": 8, "unshared_r": 1, "share_a": 7, "share_b": 7}) == "PRoLoRA r=8"


@pytest.fixture
def catalog_with_results(zoo_home, tmp_path):
    import random

    from evalkit import BERT_TARGETS, make_adapter, random_config, tiny_bert_cls

    from zoo.adapter import Adapter
    from zoo.settings import resolve_settings
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.publish import publish

    settings = resolve_settings()
    init_catalog(settings.catalog_url)
    catalog = open_catalog(settings.catalog_url)
    store = open_store(settings.store_url)
    model = tiny_bert_cls()
    ids = []
    for i in range(3):
        adapter = make_adapter(model, random_config(random.Random(i), BERT_TARGETS), seed=i)
        path = tmp_path / f"a{i}.safetensors"
        Adapter.save(adapter, path)
        ids.append(publish(catalog, store, path, name=f"cls-{i}").id)
    results = [{"id": ids[0], "metrics": {"accuracy": 0.5, "loss": 1.0}, "examples": 4,
                "elapsed_s": 0.1, "error": None},
               {"id": ids[1], "metrics": {"accuracy": 0.75, "loss": 0.8}, "examples": 4,
                "elapsed_s": 0.1, "error": None},
               {"id": ids[2], "metrics": {}, "examples": 0, "elapsed_s": 0.0,
                "error": "IntegrityError: bad blob"}]
    write_results(catalog, results, fingerprint="f" * 64, dataset_name="sst.jsonl")
    yield ids
    catalog.close()


def test_leaderboard_ranks_and_skips_errors(catalog_with_results):
    ids = catalog_with_results
    runner = CliRunner()
    res = runner.invoke(cli, ["leaderboard", "--dataset", "f" * 12, "--metric", "accuracy",
                              "--json"])  # the 12-character prefix `zoo eval` prints
    assert res.exit_code == 0, res.output
    board = json.loads(res.stdout)
    assert [b["id"] for b in board] == [ids[1], ids[0]]  # higher accuracy first, error row absent
    assert {b["dataset"] for b in board} == {"sst.jsonl@ffffffffffff"}
    res = runner.invoke(cli, ["leaderboard", "--dataset", "f" * 64, "--metric", "loss"])
    assert res.exit_code == 0 and res.output.index(ids[1]) < res.output.index(ids[0])
    res = runner.invoke(cli, ["leaderboard", "--dataset", "sst.jsonl", "--metric", "loss"])
    assert res.exit_code == 4 and "known by its content" in res.output  # a name is not enough
    res = runner.invoke(cli, ["leaderboard", "--dataset", "f" * 64, "--metric", "perplexity"])
    assert res.exit_code == 4 and "no 'perplexity' results" in res.output


def test_two_files_with_one_name_never_share_a_leaderboard(catalog_with_results, tmp_path):
    """`eval.jsonl` in two folders are two datasets: each path ranks only its own results."""
    from zoo.settings import resolve_settings
    from zoo.storage.db import open_catalog

    ids = catalog_with_results
    first, second = tmp_path / "a" / "eval.jsonl", tmp_path / "b" / "eval.jsonl"
    for path, text in ((first, "one"), (second, "two")):
        path.parent.mkdir()
        path.write_text(json.dumps({"text": text, "label": "x"}) + "\n")
    import hashlib

    with open_catalog(resolve_settings().catalog_url) as catalog:
        for path, adapter_id in ((first, ids[0]), (second, ids[1])):
            write_results(catalog, [{"id": adapter_id, "metrics": {"accuracy": 0.1},
                                     "examples": 1, "elapsed_s": 0.0, "error": None}],
                          fingerprint=hashlib.sha256(path.read_bytes()).hexdigest(),
                          dataset_name="eval.jsonl")
    for path, adapter_id in ((first, ids[0]), (second, ids[1])):
        res = CliRunner().invoke(cli, ["leaderboard", "--dataset", str(path), "--metric",
                                       "accuracy", "--json"])
        assert [b["id"] for b in json.loads(res.stdout)] == [adapter_id], res.output


def test_eval_without_matches_is_one_line(catalog_with_results, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x", "label": "a"}\n')
    res = CliRunner().invoke(cli, ["eval", "--select", "name=nothing-here", "--dataset", str(data)])
    assert res.exit_code == 4, res.output
    assert "no adapter matches" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["eval", "--select", "task=seq-cls", "--dataset",
                                   str(tmp_path / "missing.jsonl")])
    assert res.exit_code != 0 and "not found" in res.output


def test_plot_shows_the_ranked_adapters_in_the_format_asked(catalog_with_results, tmp_path):
    import re

    res = CliRunner().invoke(cli, ["leaderboard", "--dataset", "f" * 12, "--metric", "accuracy",
                                   "--limit", "1", "--plot", str(tmp_path / "lb.svg")])
    assert res.exit_code == 0, res.output
    svg = (tmp_path / "lb.svg").read_text()
    # one point per ranked adapter (scatter markers are <use> elements; the legend's own
    # sample marker comes after the legend starts), labelled, titled
    plotted = svg.split('<g id="legend_1">')[0]
    markers = re.findall(r'<g id="PathCollection_\d+">(.*?)</g>', plotted, flags=re.S)
    assert sum(m.count("<use ") for m in markers) == 1
    assert "#1 cls-1" in svg and "cls-0" not in svg
    assert "accuracy (higher is better)" in svg and "Pareto front" in svg
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        out = tmp_path / f"lb.{ext}"
        assert CliRunner().invoke(cli, ["leaderboard", "--dataset", "f" * 12, "--metric", "loss",
                                        "--plot", str(out)]).exit_code == 0
        assert out.read_bytes().startswith(magic)
    res = CliRunner().invoke(cli, ["leaderboard", "--dataset", "f" * 12, "--metric", "loss",
                                   "--plot", str(tmp_path / "lb.jpg")])
    assert res.exit_code == 2 and "must end in .png, .svg, .pdf" in res.output
    assert not (tmp_path / "lb.jpg").exists()


def test_pareto_front_and_flat_values():
    from zoo.cli.plot import _limits, pareto_front

    rows = [{"params": 10, "value": 0.5}, {"params": 20, "value": 0.4},
            {"params": 30, "value": 0.9}, {"params": 5, "value": 0.1}]
    assert [r["params"] for r in pareto_front(rows, True)] == [5, 10, 30]
    assert [r["params"] for r in pareto_front(rows, False)] == [5]
    lo, hi = _limits([0.0, 0.0, 0.0])  # all-zero values: a visible band around them
    assert lo < 0 < hi and hi - lo >= 0.1
