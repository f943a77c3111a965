"""1,000 adapters through one ``zoo eval`` run, then ``zoo ls`` on metrics and ``zoo leaderboard``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from zoo.cli.main import cli


@pytest.mark.slow
def test_thousand_adapters_one_run_then_query(ray_local, embedded_zoo, tmp_path):
    z = embedded_zoo
    ids = z.publish_random(1000, seed=7)
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", "--select", "task=causal-lm", "--dataset", str(z.data),
                              "--batch-size", "16", "--max-examples", "4", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["total"], summary["evaluated"], summary["errors"]) == (1000, 1000, 0)
    rows = z.results()
    assert len([r for r in rows if r.metric == "loss"]) == 1000
    assert {r.adapter_id for r in rows} == set(ids)
    losses = sorted(r.value for r in rows if r.metric == "loss")
    median = losses[500]

    res = runner.invoke(cli, ["ls", f"metrics.loss<{median}", "--sort", "metrics.loss",
                              "--all", "--json"])
    assert res.exit_code == 0, res.output
    listed = [json.loads(line) for line in res.stdout.splitlines()]  # --all streams JSON lines
    assert len(listed) == 500
    got = [a["metrics"]["loss"] for a in listed]
    assert got == sorted(got) and got[0] == losses[0]

    plot = tmp_path / "board.png"
    res = runner.invoke(cli, ["leaderboard", "--dataset", str(z.data), "--metric", "loss",
                              "--top", "5", "--json", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    board = json.loads(res.stdout)
    assert [b["value"] for b in board] == losses[:5] and board[0]["rank"] == 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = runner.invoke(cli, ["leaderboard", "--dataset", str(z.data), "--metric", "exact_match",
                              "--select", "r=8", "--top", "3"])
    assert res.exit_code == 0, res.output
    assert len(res.output.strip().splitlines()) == 5  # title, header + 3
