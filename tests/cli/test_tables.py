"""Tables a person can read: at 80 columns every line of `zoo ls`, `zoo jobs ls`,
`zoo leaderboard` and `zoo alias ls` fits, and every row stays on one line (no cell is broken),
on a catalog that looks like a team's: long names, hub ids, many tags, failed jobs."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import write_adapter  # noqa: E402

from tests.workers.conftest import write_tiny_job  # noqa: E402
from zoo.cli.main import cli  # noqa: E402
from zoo.cli.output import display_width  # noqa: E402

sqlite_backend = bf.sqlite_backend

BASES = ["meta-llama/Meta-Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
         "/srv/models/internal/customer-support-base-2026-11"]
N_ADAPTERS = 9


@pytest.fixture
def team_catalog(sqlite_backend, tmp_path):
    """Nine adapters (three bases, long names, five tags each, aliases, eval results) and a
    sweep of jobs, one failed with a long error."""
    from zoo.jobspec import load_specs
    from zoo.storage import jobs
    from zoo.storage.evals import write_results

    b = sqlite_backend
    ids = []
    for i in range(N_ADAPTERS):
        path, _ = write_adapter(tmp_path / f"a{i}.safetensors", seed=100 + i,
                                base_model=BASES[i % 3], r=4 + 4 * (i % 2))
        name = f"customer-support-intent-classifier-{['en', 'de', 'ja'][i % 3]}"
        args = ["push", str(path), "--name", name, "--tag", "team=customer-support-nlp",
                "--tag", "owner=alice.wonderland.example.com", "--tag", "experiment=q4-sweep",
                "--tag", "prod" if i % 2 else "candidate", "--tag", f"seed={i}"]
        if i < 3:
            args += ["--alias", f"{name}@production-2026-12"]
        result = CliRunner().invoke(cli, args, env=b.env())
        assert result.exit_code == 0, result.output
        ids.append(result.stdout.strip())
    data = tmp_path / "held-out-support-tickets-2026-11-30.jsonl"
    data.write_text('{"prompt": "q", "completion": " a"}\n')
    fingerprint = hashlib.sha256(data.read_bytes()).hexdigest()
    write_results(b.catalog, [
        {"id": a, "metrics": {"accuracy": 0.5 + i / 40, "loss": 1.0 / (i + 1)}, "examples": 500,
         "elapsed_s": 1.5, "error": None} for i, a in enumerate(ids)],
        fingerprint=fingerprint, dataset_name=data.name)
    (tmp_path / "job" / "model").mkdir(parents=True)
    spec = write_tiny_job(tmp_path / "job", name="customer-support-intent-classifier-sweep",
                          extra="sweep: {prolora.r: [4, 8], train.seed: [0, 1]}\n")
    job_ids = jobs.create_jobs(b.catalog, load_specs(spec))
    jobs.mark_failed(b.catalog, job_ids[0], "RuntimeError: CUDA out of memory. Tried to allocate "
                     "2.00 GiB (GPU 0; 79.35 GiB total capacity; 75.12 GiB already allocated)")
    return b, data, len(job_ids)


def _fits(result, rows: int, titles: int = 0) -> list[str]:
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if display_width(line) > 80] == [], result.stdout
    assert len(lines) == titles + rows + 1, result.stdout  # a header, one line per row
    return lines


def test_tables_fit_80_columns(team_catalog):
    b, data, n_jobs = team_catalog
    env = {**b.env(), "COLUMNS": "80"}

    def run(*args: str):
        return CliRunner().invoke(cli, list(args), env=env)

    lines = _fits(run("ls"), N_ADAPTERS)
    assert "NAME" in lines[0] and "…" in "".join(lines)  # long cells end in …, not wrap
    _fits(run("ls", "tag:prod"), 4)
    jobs_lines = _fits(run("jobs", "ls"), n_jobs)
    assert any("FAILED" in line for line in jobs_lines)
    board = _fits(run("leaderboard", "--dataset", str(data), "--metric", "accuracy"),
                  N_ADAPTERS, titles=1)
    assert board[0].startswith("accuracy (higher is better) on held-out-support-ti")
    assert board[0].endswith("…@" + hashlib.sha256(data.read_bytes()).hexdigest()[:12])
    _fits(run("alias", "ls"), 3)
    # --wide shows the whole cells (and so may be wider)
    wide = run("ls", "--wide").stdout
    assert "owner=alice.wonderland.example.com" in wide
    assert max(display_width(line) for line in wide.splitlines()) > 80



def test_one_json_vocabulary(team_catalog):
    """ls, show, leaderboard, jobs and alias JSON name the same things the same way, and every
    time is ISO-8601 UTC."""
    import json
    from datetime import datetime, timedelta

    b, data, _ = team_catalog

    def run(*args: str):
        result = CliRunner().invoke(cli, [*args, "--json"], env=b.env())
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    listed = run("ls")
    shown = run("show", listed[0]["id"])
    board = run("leaderboard", "--dataset", str(data), "--metric", "loss")
    jobs_listed = run("jobs", "ls")
    aliases = run("alias", "ls")
    assert set(listed[0]) <= set(shown)
    shared = set(board[0]) & set(listed[0])
    assert {"id", "name", "params", "r", "unshared_r", "share_a", "share_b", "task"} <= shared
    for key in shared:
        assert board[0][key] == next(a for a in listed if a["id"] == board[0]["id"])[key], key
    assert board[0]["dataset_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    times = [listed[0]["created_at"], shown["created_at"], jobs_listed[0]["submitted_at"],
             aliases[0]["updated_at"]]
    for text in times:
        assert datetime.fromisoformat(text).utcoffset() == timedelta(0), text
