"""What a newcomer reaches for in the first hour: `zoo rm`, the one-line Python API, help that
teaches, shell-cut queries explained, tables that fit 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import write_adapter  # noqa: E402

from zoo.cli.main import cli  # noqa: E402

sqlite_backend = bf.sqlite_backend


def zoo(b, *args: str, code: int = 0, env: dict | None = None):
    result = CliRunner().invoke(cli, list(args), env={**b.env(), **(env or {})})
    assert result.exit_code == code, result.output
    return result


def test_rm_refuses_an_aliased_adapter_then_removes(sqlite_backend, tmp_path):
    b = sqlite_backend
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=70)
    adapter_id = zoo(b, "push", str(path), "--name", "old", "--alias", "old@prod",
                     "--tag", "t").stdout.strip()
    refused = zoo(b, "rm", adapter_id, code=9)
    assert "aliases point at" in refused.stderr and "--force" in refused.stderr
    assert b.counts()["adapters"] == 1
    out = zoo(b, "rm", "old@prod", "--force", "--json")
    assert [d["id"] for d in json.loads(out.stdout)] == [adapter_id]
    assert b.counts()["adapters"] == 0 and b.counts()["aliases"] == 0 and b.counts()["tags"] == 0
    assert digest in b.blob_digests()  # the bytes go at the next gc
    zoo(b, "show", adapter_id, code=4)


def test_load_and_publish_in_a_fresh_interpreter(sqlite_backend, tmp_path):
    """`import zoo` is all it takes: no internal imports (MLflow needs one line too)."""
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=71)
    code = (
        "import hashlib, sys, zoo\n"
        "entry = zoo.publish(sys.argv[1], name='py', tags=['from-python'], aliases=['prod'])\n"
        "adapter = zoo.load('py@prod')\n"
        "again = zoo.load(entry['id'][:10])\n"
        "assert hashlib.sha256(adapter.to_bytes()).hexdigest() == entry['digest']\n"
        "assert again.to_bytes() == adapter.to_bytes()\n"
        "print(entry['digest'], adapter.config.r)\n"
    )
    env = {**os.environ, **sqlite_backend.env(), "ZOO_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [digest, "4"]
    cached = list((tmp_path / "home" / "cache" / "adapters").iterdir())
    assert [p.name for p in cached] == [f"{digest}.safetensors"]  # cached like a pull
