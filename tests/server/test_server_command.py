"""`zoo server` as its users start it (a subprocess on a loopback port): it serves, and neither
a token secret nor the catalog's database password shows up in what it prints or answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import sqlalchemy as sa

from tests.conftest import free_port


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_zoo_server_serves_and_keeps_secrets_out_of_output(pg_url, tmp_path):
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.tokens import create

    password = "pw-never-shown-91"  # the test server trusts local connections, so any works
    url = sa.engine.make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    init_catalog(url)
    with open_catalog(url) as catalog:
        _, secret = create(catalog, "ops", scope="admin")
    port = free_port()
    env = {**os.environ, "ZOO_CATALOG_URL": url, "ZOO_STORE_URL": str(tmp_path / "store")}
    env.pop("ZOO_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli.main", "server", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _get(base + "/healthz")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        answers = [_get(base + path, token) for path, token in [
            ("/api/v1/adapters", secret), ("/api/v1/adapters", secret + "x"),
            ("/api/v1/adapters/nope@prod", secret), ("/api/v1/tokens", secret),
            ("/api/v1/audit", secret), ("/api/v1/adapters?q=r%3C%3C3", secret),
            ("/api/v1/adapters", None)]]
        assert [status for status, _ in answers] == [200, 401, 404, 200, 200, 400, 401]
        assert json.loads(answers[3][1])[0]["name"] == "ops"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    everything = out + err + "".join(body for _, body in answers)
    assert "zoo server on http://127.0.0.1" in err
    assert password not in everything and secret not in everything
