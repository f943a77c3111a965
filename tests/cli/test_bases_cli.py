"""``zoo base add|ls`` on both backends, and what a pushed adapter's base resolves to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import real_adapter  # noqa: E402

from zoo.cli.main import cli  # noqa: E402

backend = bf.backend
s3_env = bf.s3_env


def zoo(b, *args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args), env=b.env())
    assert result.exit_code == code, result.output
    return result


def test_base_add_ls_and_push_links_by_digest(backend, tmp_path):
    from zoo.digest import base_model_digest

    native, _ = real_adapter(tmp_path / "a.safetensors", seed=1, base_dir=tmp_path / "base")
    digest = base_model_digest(tmp_path / "base")
    # pushed before the base is registered: a row named as the file says, no location
    adapter_id = zoo(backend, "push", str(native), "--name", "early").stdout.strip()
    [row] = json.loads(zoo(backend, "base", "ls", "--json").stdout)
    assert row["digest"] == digest and row["location"] is None and row["adapter_count"] == 1
    assert "not registered" in zoo(backend, "base", "ls").stdout

    added = json.loads(zoo(backend, "base", "add", "tiny-llama", str(tmp_path / "base"),
                           "--json").stdout)
    assert added["digest"] == digest and added["location"] == str(tmp_path / "base")
    rows = json.loads(zoo(backend, "base", "ls", "--json").stdout)
    assert [(r["name"], r["adapter_count"]) for r in rows] == [("tiny-llama", 1)]  # moved
    [entry] = json.loads(zoo(backend, "audit", "--verb", "base.add", "--json").stdout)
    assert entry["target"] == "base:tiny-llama" and entry["after"]["digest"] == digest

    # pushed after: linked to the registered base by digest, whatever the file calls it
    other, _ = real_adapter(tmp_path / "b.safetensors", seed=2, base_dir=tmp_path / "base")
    later = zoo(backend, "push", str(other), "--name", "later").stdout.strip()
    shown = json.loads(zoo(backend, "show", later, "--json").stdout)
    assert shown["base_model"] == "tiny-llama" and shown["base_model_digest"] == digest
    assert json.loads(zoo(backend, "show", adapter_id, "--json").stdout)["base_model"] \
        == "tiny-llama"


def test_base_errors_are_one_line(backend, tmp_path):
    result = zoo(backend, "base", "add", "x", str(tmp_path / "missing"), code=4)
    assert result.stderr.count("\n") == 1 and "not a directory" in result.stderr
    native, _ = real_adapter(tmp_path / "a.safetensors", seed=3)
    result = zoo(backend, "push", str(native), "--name", "n", "--base", "nobody", code=4)
    assert "no registered base model 'nobody'" in result.stderr
    assert backend.adapter_rows() == []
