"""Session-wide fixtures shared by every test area: offline mode, PostgreSQL, an S3 server
(SeaweedFS), Ray.

Area-specific fixtures live in tests/<area>/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from seaweed import SeaweedServer, start_seaweed

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
def seaweed(tmp_path_factory) -> Iterator[SeaweedServer]:
    """A real S3 server (SeaweedFS, tests/seaweed.py) for the whole session, stopped by its
    process id at the end. It FAILS when it cannot start: a skipped S3 test proves nothing.

    The session's environment carries its one identity (AWS_ACCESS_KEY_ID/SECRET), as a
    developer's shell would; every other key is refused by the server.
    """
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.DEFAULT_SESSION = None  # a default session made earlier caches other keys
    try:
        yield server
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(seaweed: SeaweedServer) -> str:
    """The URL of the session's S3 server (SeaweedFS)."""
    return seaweed.url


@pytest.fixture
def s3_credentials(seaweed: SeaweedServer) -> dict[str, str]:
    """The server's identity as environment variables (a Ray node started by a test needs
    them in its own environment: credentials are never forwarded with a job)."""
    return {k: v for k, v in seaweed.env().items() if k != "AWS_ENDPOINT_URL"}


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A fresh bucket on the S3 server; returns its name. Deleted (with its objects) after the
    test, so the server's volumes do not fill up over a session."""
    name = f"zoo-{uuid.uuid4().hex[:10]}"
    client = seaweed.client()
    client.create_bucket(Bucket=name)
    yield name
    from botocore.exceptions import BotoCoreError, ClientError

    # SeaweedFS deletes a non-empty bucket as a whole; a test that removed it leaves nothing
    with contextlib.suppress(BotoCoreError, ClientError):
        client.delete_bucket(Bucket=name)


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
