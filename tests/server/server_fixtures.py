"""Helpers and fixtures for the server tests (imported by name: a unique module name, unlike
``conftest``). A real team server for the tests: uvicorn on a free loopback port (in a thread) over a real
backend (SQLite + local store, PostgreSQL + S3), driven by the real CLI with ZOO_URL set."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402

from zoo.cli.main import cli  # noqa: E402

backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend
module_sqlite_backend = bf.module_sqlite_backend


class Served:
    """A running server over ``backend``, an admin token, and ways to call it."""

    def __init__(self, backend: Any, url: str) -> None:
        self.backend, self.url = backend, url
        self.admin = self.token("root", "admin")

    def token(self, name: str, scope: str, prefix: str | None = None,
              expires_s: float | None = None) -> str:
        """A new token's secret (made directly, as the database owner does)."""
        from zoo.storage.tokens import create

        return create(self.backend.catalog, name, scope=scope, prefix=prefix,
                      expires_s=expires_s)[1]

    def zoo(self, *args: str, token: str | None = None, remote: bool = True, ok: bool = True,
            env: dict[str, str | None] | None = None) -> Any:
        """Run the CLI: through the server with ``token`` (default: admin), or directly."""
        if remote:
            full = {"ZOO_URL": self.url, "ZOO_TOKEN": token or self.admin,
                    "ZOO_CATALOG_URL": None, "ZOO_STORE_URL": None}
        else:
            full = {**self.backend.env(), "ZOO_URL": None, "ZOO_TOKEN": None}
        full.update(env or {})
        result = CliRunner().invoke(cli, list(args), env=full, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, (args, result.output)
        return result

    def api(self, method: str, path: str, *, token: str | None = None,
            body: Any = None) -> tuple[int, Any]:
        """A raw API call: (status, decoded JSON body)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def run_server(backend: Any) -> Iterator[str]:
    import uvicorn

    from zoo.server.app import create_app
    from zoo.settings import resolve_settings

    app = create_app(resolve_settings(catalog_url=backend.catalog_url,
                                      store_url=backend.store_url))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def served(backend) -> Iterator[Served]:
    """A server over each backend (SQLite + local store, PostgreSQL + S3)."""
    for url in run_server(backend):
        yield Served(backend, url)


@pytest.fixture
def served_sqlite(sqlite_backend) -> Iterator[Served]:
    """A server over SQLite + a local store (the auth tests need one backend)."""
    for url in run_server(sqlite_backend):
        yield Served(sqlite_backend, url)


def push_direct(s: Served, tmp: Path, name: str, seed: int, *args: str) -> tuple[str, Path, str]:
    """Push an adapter file as the database owner; (id, file, sha256)."""
    path, digest = bf.write_adapter(tmp / f"{name}-{seed}.safetensors", seed=seed)
    out = s.zoo("push", str(path), "--name", name, "--json", *args, remote=False)
    return json.loads(out.stdout)["id"], path, digest
