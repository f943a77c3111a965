"""Section 3: through a server, catalog verbs import neither SQLAlchemy, boto3, torch, Ray nor
an HTTP framework: a cold ``zoo ls`` is a process start plus one request (checked on the real
``zoo`` process, after the verb ran)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import push_direct

HEAVY = ("sqlalchemy", "boto3", "botocore", "torch", "transformers", "ray", "fastapi", "httpx",
         "pydantic", "uvicorn")
PROBE = ("import atexit, sys\n"
         "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sorted(m for m in {heavy}"
         " if m in sys.modules)) + '\\n'))\n"
         "from zoo.cli.main import main\n"
         "sys.argv = ['zoo'] + {args}\n"
         "main()\n")


def run_zoo(served, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ZOO_CATALOG_URL", "ZOO_STORE_URL", "AWS_ENDPOINT_URL")}
    env.update(ZOO_URL=served.url, ZOO_TOKEN=served.admin)
    code = PROBE.format(heavy=repr(HEAVY), args=repr(list(args)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES")][-1]
    return proc, line.split()[1:]


@pytest.mark.parametrize("args", [
    ("ls", "tag:prod", "--json"), ("show", "sent@prod", "--json"), ("tag", "sent@prod", "blue"),
    ("alias", "ls"), ("alias", "log", "sent@prod"), ("audit", "--json"), ("token", "ls"),
])
def test_catalog_verbs_through_the_server_stay_light(served_sqlite, tmp_path, args):
    adapter_id, _, _ = push_direct(served_sqlite, tmp_path, "sent", 1, "--tag", "prod",
                                   "--alias", "sent@prod")
    proc, loaded = run_zoo(served_sqlite, *args)
    assert proc.returncode == 0, proc.stderr
    assert loaded == [], f"zoo {' '.join(args)} imported {loaded}"
    if args[0] == "ls":
        assert [d["id"] for d in json.loads(proc.stdout)] == [adapter_id]


def test_the_probe_sees_heavy_imports_of_direct_use(served_sqlite, tmp_path):
    """The probe is not blind: the same verb without ZOO_URL loads SQLAlchemy."""
    env = {**os.environ, **served_sqlite.backend.env()}
    env.pop("ZOO_URL", None)
    code = PROBE.format(heavy=repr(HEAVY), args=repr(["ls", "--json"]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sqlalchemy" in proc.stderr.split("MODULES")[-1]
