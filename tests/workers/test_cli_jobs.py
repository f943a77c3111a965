"""`zoo submit` and `zoo jobs …` through the CLI: bad specs write nothing; embedded runs work."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.workers.conftest import write_tiny_job
from zoo.cli.main import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def initialised(zoo_home, runner) -> str:
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    return zoo_home


def job_rows(home: str) -> int:
    engine = sa.create_engine(f"sqlite:///{home}/catalog.db")
    with engine.connect() as conn:
        count = conn.execute(sa.text("select count(*) from jobs")).scalar()
    engine.dispose()
    return count


BAD = [
    (("retries: 1", "retries: 1\nepochs: 3"), "epochs: unknown field"),
    (("lr: 1.0e-3", "lr: fast"), "train.lr: expected a number, got 'fast'"),
    (("r: 4,", "r: 0,"), "prolora.r: r=0 is invalid: must be a positive integer"),
    # what publish would refuse after training, the dry run refuses at once
    (("tags: [test]", "tags: [team=nlp/core]"), "tags[0]: tag value 'nlp/core'"),
    (("tags: [test]", "tags: [a..b]"), "tags[0]: tag key 'a..b' contains '..'"),
    (("retries: 1", "retries: 1\nsweep: {prolora.rank: [1, 2]}"),
     "sweep: unknown key 'prolora.rank'"),
    (("task: causal-lm", "task: [causal-lm"), "malformed YAML"),
    (("data: {train: train.jsonl", "data: {train: nope.jsonl"), "data.train: data file not found"),
    (("base_model: ", "base_model: ./missing-model #"), "base_model: model directory not found"),
]


@pytest.mark.parametrize(("edit", "expected"), BAD)
def test_bad_spec_exits_2_with_one_line_and_writes_nothing(tmp_path, initialised, runner,
                                                           tiny_model_dir, edit, expected):
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    for dry in ([], ["--dry-run"]):
        result = runner.invoke(cli, ["submit", str(path), *dry])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr
        assert expected in lines[0]
        if "YAML" not in expected:
            assert lines[0][len("zoo: error: "):].startswith(expected.split(":")[0] + ":")
    assert job_rows(initialised) == 0


def test_bad_override_exits_2(tmp_path, initialised, runner, tiny_model_dir):
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    result = runner.invoke(cli, ["submit", str(path), "--set", "prolora.r=-1"])
    assert result.exit_code == 2
    assert "prolora.r: r=-1 is invalid: must be a positive integer" in result.stderr
    assert job_rows(initialised) == 0


def test_dry_run_shows_the_sweep_and_writes_nothing(tmp_path, initialised, runner,
                                                    tiny_model_dir):
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    result = runner.invoke(cli, ["submit", str(path), "--dry-run", "--json",
                                 "--set", "sweep.prolora.r=[2, 4]", "--set", "resources.gpus=0.5"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["spec"]["prolora"]["r"] for r in rows] == [2, 4]
    assert rows[0]["ray_options"] == {"num_gpus": 0.5, "num_cpus": 1.0}
    assert job_rows(initialised) == 0


def test_embedded_submit_ls_show_logs_wait(tmp_path, initialised, runner, tiny_model_dir,
                                           ray_local):
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=2)
    result = runner.invoke(cli, ["submit", str(path), "--json",
                                 "--set", "sweep.train.seed=[0, 1]"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    out = json.loads(result.stdout)
    assert out["mode"] == "embedded" and len(out["job_ids"]) == 2
    assert set(out["states"].values()) == {"SUCCEEDED"}

    listed = json.loads(runner.invoke(cli, ["jobs", "ls", "--json"]).stdout)
    assert {j["id"] for j in listed} == set(out["job_ids"])
    assert all(j["adapter_id"] and j["attempt"] == 1 for j in listed)
    job_id = out["job_ids"][0]
    shown = json.loads(runner.invoke(cli, ["jobs", "show", job_id[:12], "--json"]).stdout)
    assert shown["id"] == job_id and shown["state"] == "SUCCEEDED" and shown["node"]
    log = runner.invoke(cli, ["jobs", "logs", job_id, "--follow"])
    assert log.exit_code == 0 and "step 2/2" in log.stdout and "publishing adapter" in log.stdout
    waited = runner.invoke(cli, ["jobs", "wait", *out["job_ids"]])
    assert waited.exit_code == 0 and waited.stdout.count("SUCCEEDED") == 2
    adapters = json.loads(runner.invoke(cli, ["ls", "tag:test", "--json"]).stdout)
    assert {a["id"] for a in adapters} == {j["adapter_id"] for j in listed}
    assert runner.invoke(cli, ["jobs", "cancel", job_id]).stdout.strip().endswith(
        "already SUCCEEDED")
    by_sweep = json.loads(runner.invoke(cli, ["jobs", "ls", "--sweep", out["sweep_id"][:8],
                                              "--json"]).stdout)
    assert {j["id"] for j in by_sweep} == set(out["job_ids"])  # a sweep id prefix is enough

    # a person's submit: the same inputs upload nothing (and say nothing), no Ray banner,
    # and the end shows each job's adapter and metric, and the sweep
    again = runner.invoke(cli, ["submit", str(path), "--set", "alias=tiny@latest"])
    assert again.exit_code == 0, again.output
    assert "uploaded" not in again.stderr and "Token authentication" not in again.stderr
    [alias] = json.loads(runner.invoke(cli, ["alias", "ls", "--json"]).stdout)
    assert alias["adapter_id"] in again.stdout and "exact_match=" in again.stdout
    assert "1 succeeded" in again.stdout.splitlines()[-1]


def test_a_sweep_cannot_set_one_alias_and_embedded_cannot_skip_waiting(tmp_path, initialised,
                                                                       runner, tiny_model_dir):
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir,
                          extra="alias: tiny@best\nsweep: {train.seed: [0, 1]}\n")
    result = runner.invoke(cli, ["submit", str(path), "--dry-run"])
    assert result.exit_code == 2 and "alias: a sweep makes 2 jobs" in result.stderr
    plain = write_tiny_job(tmp_path / "one", model_dir=tiny_model_dir)
    result = runner.invoke(cli, ["submit", str(plain), "--no-wait"])
    assert result.exit_code == 2 and "--no-wait needs a cluster" in result.stderr
    assert job_rows(initialised) == 0


def test_dry_run_checks_targets_and_data_against_what_the_spec_names(tmp_path, initialised,
                                                                   runner, tiny_model_dir):
    """The base's config is enough to know its module names; the data files' rows are read."""
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    path.write_text(path.read_text().replace("[q_proj, v_proj]", "[query, value]"))
    result = runner.invoke(cli, ["submit", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("zoo: error: prolora.target_modules:") and "q_proj, up_proj" in line
    ok = write_tiny_job(tmp_path / "ok", model_dir=tiny_model_dir)
    (tmp_path / "ok" / "train.jsonl").write_text('{"prompt": "k1 ="}\n')
    result = runner.invoke(cli, ["submit", str(ok), "--dry-run"])
    assert result.exit_code == 2 and "data.train:" in result.stderr
    assert "missing column 'completion'" in result.stderr
    assert job_rows(initialised) == 0


def test_credentials_in_a_ray_address_are_never_printed(tmp_path, initialised, runner,
                                                        tiny_model_dir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir)
    result = runner.invoke(cli, ["submit", str(path), "--address",
                                 f"http://admin:hunter2@127.0.0.1:{port}"],
                           env={"ZOO_CATALOG_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/x",
                                "ZOO_STORE_URL": "s3://bucket/prefix"})
    assert result.exit_code != 0
    assert "hunter2" not in result.output and "admin:***@" in result.output, result.output
    assert job_rows(initialised) == 0


@pytest.mark.parametrize("url, forwarded", [
    ("postgresql+psycopg://zoo:secret@db:5432/zoo", "postgresql+psycopg://zoo@db:5432/zoo"),
    ("postgresql://zoo@db/zoo?sslmode=require&sslpassword=k&password=p",
     "postgresql://zoo@db/zoo?sslmode=require"),
    ("sqlite:////var/zoo/catalog.db", "sqlite:////var/zoo/catalog.db"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
])
def test_what_may_be_forwarded_has_no_secret(url, forwarded):
    """The URLs a submission hands to Ray (task arguments, runtime_env) lose every secret;
    a worker completes them from its own settings when they name the same target."""
    from zoo.settings import same_target, strip_credentials

    assert strip_credentials(url) == forwarded
    assert same_target(url, forwarded)


def test_a_worker_completes_credentials_from_its_own_settings(monkeypatch, zoo_home):
    from zoo.settings import with_local_credentials

    mine = "postgresql+psycopg://zoo:workers-own@db:5432/zoo"
    monkeypatch.setenv("ZOO_CATALOG_URL", mine)
    assert with_local_credentials("postgresql+psycopg://zoo@db:5432/zoo", "catalog_url") == mine
    other = "postgresql+psycopg://zoo@elsewhere:5432/zoo"
    assert with_local_credentials(other, "catalog_url") == other  # not its database: as given
