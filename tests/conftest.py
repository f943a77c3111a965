"""Session-wide fixtures shared by every test area: offline mode, PostgreSQL, an S3 server, Ray.

Area-specific fixtures live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of a reachable PostgreSQL maintenance database, or skip with the reason."""
    url = os.environ.get("ZOO_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        if os.environ.get("ZOO_REQUIRE_PG"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {url}: {type(exc).__name__}: {exc}")
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"zoo_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server_url).set(database=name).render_as_string(
        hide_password=False
    )
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 protocol server (moto) over HTTP on a free loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_DEFAULT_REGION")}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield url
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh bucket on the S3 server; returns its name."""
    import boto3

    name = f"zoo-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the whole test session (~5 s to start), shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _no_shared_home(tmp_path_factory, monkeypatch) -> None:
    """No test reads or writes the real ~/.zoo: ZOO_HOME defaults to a fresh directory
    (``zoo_home`` below also clears the catalog/store overrides)."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path_factory.mktemp("default_zoo_home")))


@pytest.fixture
def zoo_home(tmp_path, monkeypatch) -> str:
    """An isolated ZOO_HOME with no catalog/store overrides from the environment."""
    home = tmp_path / "zoo_home"
    home.mkdir()
    monkeypatch.setenv("ZOO_HOME", str(home))
    for var in ("ZOO_CATALOG_URL", "ZOO_STORE_URL", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return str(home)
