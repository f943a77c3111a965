"""Catalog verbs through click's CliRunner: init, config, ls, show, tag, untag, alias."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoo.cli.main import cli


def _config(r: int = 8, task: str = "seq-cls") -> dict:
    return {
        "base_model": "tiny-gpt2", "base_model_digest": "b" * 64, "task": task, "r": r,
        "unshared_r": 1, "share_a": 2, "share_b": 2, "stride_a": 3, "stride_b": 3,
        "rotation": True, "init": "rectified", "alpha": 16, "dropout": 0.0, "dtype": "float32",
        "modules": {"h.0.attn.c_attn": {"in_features": 32, "out_features": 96,
                                        "kind": "conv1d"}},
        "modules_to_save": [],
    }


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(params=["sqlite", "pg"])
def cat_url(request, tmp_path, zoo_home) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def seeded(cat_url, runner) -> dict[str, str]:
    """An initialised catalog with three adapters; returns name -> id."""
    result = runner.invoke(cli, ["init", "--catalog", cat_url])
    assert result.exit_code == 0, result.output
    from zoo.storage.catalog import add_adapter
    from zoo.storage.db import open_catalog

    ids = {}
    with open_catalog(cat_url) as cat, cat.transaction() as s:
        for i, (name, r, tags) in enumerate([("sentiment", 4, ["prod", "team=nlp"]),
                                             ("sentiment", 8, ["team=nlp"]),
                                             ("ner", 16, [])]):
            row = add_adapter(s, digest=hashlib.sha256(bytes([i])).hexdigest(), size=100 + i,
                              config=_config(r), name=name, tags=tags, job_id=f"job-{i}")
            ids[f"{name}-{r}"] = row.id
    return ids


def dump(url: str) -> dict[str, list]:
    """Every row of every catalog table."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
                    for t in ("base_models", "adapters", "tags", "aliases", "eval_results")}
    finally:
        engine.dispose()


def run(runner, cat_url, *args, code=0):
    result = runner.invoke(cli, [*args, "--catalog", cat_url])
    assert result.exit_code == code, result.output
    return result


def test_ls_json_and_table(runner, cat_url, seeded):
    rows = json.loads(run(runner, cat_url, "ls", "--json", "r<=8", "--sort", "r").output)
    assert [r["id"] for r in rows] == [seeded["sentiment-4"], seeded["sentiment-8"]]
    for key in ("id", "name", "digest", "size", "base_model", "task", "r", "unshared_r",
                "share_a", "share_b", "params", "tags", "aliases", "metrics", "created_at"):
        assert key in rows[0]
    table = run(runner, cat_url, "ls", "tag:prod").output
    assert seeded["sentiment-4"] in table and "ner" not in table
    lines = run(runner, cat_url, "ls", "--all", "--json").output.splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(seeded.values())
    limited = json.loads(run(runner, cat_url, "ls", "--json", "--limit", "1").output)
    assert len(limited) == 1


def test_show_tag_untag_alias(runner, cat_url, seeded):
    aid = seeded["sentiment-8"]
    run(runner, cat_url, "tag", aid, "stage=beta", "fast")
    run(runner, cat_url, "untag", aid, "fast")
    run(runner, cat_url, "alias", "set", "sentiment@prod", seeded["sentiment-4"])
    run(runner, cat_url, "alias", "set", "sentiment@prod", aid[:12])  # moves it
    shown = json.loads(run(runner, cat_url, "show", "sentiment@prod", "--json").output)
    assert shown["id"] == aid
    assert shown["tags"] == ["stage=beta", "team=nlp"] and shown["aliases"] == ["sentiment@prod"]
    assert shown["job_id"] == "job-1" and shown["base_model_digest"] == "b" * 64
    human = run(runner, cat_url, "show", aid).output
    assert "lineage:" in human and "job-1" in human and "modules: 1 (h.0.attn.c_attn;" in human
    aliases = json.loads(run(runner, cat_url, "alias", "ls", "--json").output)
    assert [(a["ref"], a["adapter_id"]) for a in aliases] == [("sentiment@prod", aid)]
    run(runner, cat_url, "alias", "rm", "sentiment@prod")
    run(runner, cat_url, "alias", "rm", "sentiment@prod", code=4)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["show", "nope@prod"], 4, "no alias nope@prod"),
        (["show", "zzzz"], 4, "no adapter"),
        (["ls", "r<<8"], 2, "bad term 'r<<8' at position 0"),
        (["ls", "colour=red"], 2, "unknown field"),
        (["ls", 'name~"x\'; DROP TABLE adapters;--"'], 0, ""),
        (["tag", "nope@x", "prod"], 4, "no alias"),
        (["tag", "{first}", "../../etc"], 2, "path traversal"),
        (["tag", "{first}", "/abs"], 2, "absolute path"),
        (["alias", "set", "sentiment@" + "x" * 10_000, "{first}"], 2, "characters long"),
        (["alias", "set", "sentiment@\u202e", "{first}"], 2, "U+202E"),
        (["ls", "--sort", "-colour"], 2, "bad sort field"),
    ],
)
def test_bad_input_one_line_error_catalog_unchanged(runner, cat_url, seeded, args, code,
                                                   fragment):
    before = dump(cat_url)
    args = [a.replace("{first}", seeded["ner-16"]) for a in args]
    result = runner.invoke(cli, [*args, "--catalog", cat_url])
    assert result.exit_code == code, result.output
    if code:
        assert fragment in result.output and "Traceback" not in result.output
        assert result.output.count("zoo: error:") == 1
    assert dump(cat_url) == before


def test_uninitialised_and_newer_schema(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = runner.invoke(cli, ["ls", "--catalog", url])
    assert result.exit_code == 6 and "run `zoo init`" in result.output
    assert runner.invoke(cli, ["init", "--catalog", url]).exit_code == 0
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    for args in (["ls"], ["show", "x@y"], ["tag", "x@y", "t"], ["alias", "ls"]):
        result = runner.invoke(cli, [*args, "--catalog", url])
        assert result.exit_code == 6 and "newer zoo" in result.output, result.output


def test_config_resolution_and_redaction(runner, zoo_home, monkeypatch):
    from pathlib import Path

    Path(zoo_home, "config.toml").write_text(
        'store_url = "s3://bucket/prefix?aws_secret_access_key=abc"\n'
        'catalog_url = "postgresql+psycopg://u:hunter2@db/zoo"\n')
    view = json.loads(runner.invoke(cli, ["config", "--json"]).output)
    assert view["catalog_url"] == "postgresql+psycopg://u:***@db/zoo"
    assert "abc" not in view["store_url"] and view["sources"]["store_url"] == "file"
    monkeypatch.setenv("ZOO_CATALOG_URL", "sqlite:///env.db")
    view = json.loads(runner.invoke(cli, ["config", "--json"]).output)
    assert view["catalog_url"] == "sqlite:///env.db" and view["sources"]["catalog_url"] == "env"
    result = runner.invoke(cli, ["config", "--json", "--catalog", "sqlite:///flag.db"])
    assert json.loads(result.output)["catalog_url"] == "sqlite:///flag.db"
    Path(zoo_home, "config.toml").write_text("colour = 'red'\n")
    result = runner.invoke(cli, ["config"])
    assert result.exit_code == 2 and "unknown key(s) colour" in result.output


def test_settings_defaults_and_dir_store(zoo_home, monkeypatch, tmp_path):
    from zoo.settings import resolve_settings

    s = resolve_settings()
    assert s.catalog_url == f"sqlite:///{zoo_home}/catalog.db"
    assert s.store_url == f"file://{zoo_home}/store" and s.ray_address is None
    monkeypatch.setenv("ZOO_STORE_URL", str(tmp_path / "blobs"))
    assert resolve_settings().store_url == f"file://{tmp_path / 'blobs'}"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert resolve_settings().ray_address == "ray://head:10001"


def test_catalog_verbs_do_not_import_torch(tmp_path, zoo_home):
    """A fresh interpreter running `zoo init` + `zoo ls` never imports torch/transformers/ray."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from zoo.cli.main import cli\n"
        f"url = 'sqlite:///{tmp_path / 'imp.db'}'\n"
        "r = CliRunner()\n"
        "assert r.invoke(cli, ['init', '--catalog', url]).exit_code == 0\n"
        "for args in (['ls'], ['ls', '--json', 'tag:x'], ['alias', 'ls'], ['config']):\n"
        "    res = r.invoke(cli, [*args] + (['--catalog', url] if args != ['config'] else []))\n"
        "    assert res.exit_code == 0, res.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'ray', 'boto3') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_hostile_config_file_gives_one_short_line(runner, zoo_home):
    """A 340-byte config file used to make every command print an 80 MB error."""
    from pathlib import Path

    bomb = 'a: &a ["xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx"]\n' + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcde", "bcdef",
                                                                       strict=True))
    Path(zoo_home, "config.yaml").write_text(bomb)
    result = runner.invoke(cli, ["ls"])
    assert result.exit_code == 2
    assert len(result.output) < 400 and "aliases" in result.output, result.output[:500]
    Path(zoo_home, "config.yaml").write_text(f"{'k' * 100_000}: v\n")
    result = runner.invoke(cli, ["config"])
    assert result.exit_code == 2 and len(result.output) < 600, len(result.output)
