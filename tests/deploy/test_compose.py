"""docker-compose.yml validated offline against the Compose Specification JSON schema.

No Docker engine exists in CI, so this is what we can check without one: the file parses,
interpolates, conforms to the schema, and is wired the way docs/jobs.md says.

``compose-spec.json`` is vendored verbatim from the docker-compose 1.29.2 wheel on PyPI
(``compose/config/compose_spec.json``, Apache-2.0), the Compose Specification schema of 2021.
Newer Compose accepts a superset; this file uses nothing added after it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        current = env.get(name)
        if op in (":-", "-"):
            return current if current else (arg or "")
        if op in (":?", "?"):
            if not current:
                raise KeyError(f"{name}: {arg}")
            return current
        return current or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return interpolate(raw, {"RAY_AUTH_TOKEN": "t" * 64, "ZOO_S3_SECRET_KEY": "s" * 40})


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_conforms_to_the_compose_spec(compose, validator):
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_catches_mistakes(compose, validator):
    broken = copy.deepcopy(compose)
    broken["services"]["ray-head"]["prots"] = ["8265:8265"]
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"] = "gpu"
    assert not validator.is_valid(broken)


def test_auth_token_and_store_secret_are_required():
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    with pytest.raises(KeyError, match="RAY_AUTH_TOKEN"):
        interpolate(raw, {"ZOO_S3_SECRET_KEY": "s" * 40})
    with pytest.raises(KeyError, match="ZOO_S3_SECRET_KEY"):
        interpolate(raw, {"RAY_AUTH_TOKEN": "t" * 64})


def test_services_are_wired(compose):
    services = compose["services"]
    assert {"postgres", "seaweedfs", "ray-head", "ray-gpu-worker"} <= set(services)
    assert not any("minio" in name for name in services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    head, worker = services["ray-head"], services["ray-gpu-worker"]
    assert "--head" in head["command"] and any("8265" in p for p in head["ports"])
    assert any(c.startswith("--address=ray-head:") for c in worker["command"])
    flag = next(c for c in worker["command"] if c.startswith("--resources="))
    assert json.loads(flag.split("=", 1)[1]) == {"zoo_worker": 8}
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    for svc in (head, worker):
        env = svc["environment"]
        assert env["ZOO_CATALOG_URL"].startswith("postgresql+psycopg://")
        assert env["ZOO_CATALOG_URL"].endswith("@postgres:5432/zoo")
        assert env["ZOO_STORE_URL"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"]
    _check_seaweedfs(services, head["environment"])


def _check_seaweedfs(services: dict[str, Any], zoo_env: dict[str, str]) -> None:
    """The store: SeaweedFS's official image, all in one process, the zoo's bucket created at
    start, the zoo's key pair as its identity, no telemetry, only the S3 port published."""
    store = services["seaweedfs"]
    assert store["image"].startswith("chrislusf/seaweedfs:")
    command = store["command"]
    assert command[0] == "mini" and "-master.telemetry=false" in command
    bucket = zoo_env["ZOO_STORE_URL"].removeprefix("s3://").split("/")[0]
    assert f"-bucket={bucket}" in command and "-s3.autoCreateBucket=false" in command
    assert store["environment"]["AWS_ACCESS_KEY_ID"] == zoo_env["AWS_ACCESS_KEY_ID"]
    assert store["environment"]["AWS_SECRET_ACCESS_KEY"] == zoo_env["AWS_SECRET_ACCESS_KEY"]
    assert store["ports"] == ["127.0.0.1:8333:8333"]
    assert "8333/healthz" in " ".join(store["healthcheck"]["test"])
    assert services["ray-head"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"


def test_team_server_is_a_service(compose):
    """`zoo server` over the same catalog and store as the cluster, on loopback, health-checked."""
    services = compose["services"]
    server = services["zoo-server"]
    assert server["command"][:2] == ["zoo", "server"] and "--workers" in server["command"]
    assert server["ports"] == ["127.0.0.1:8750:8750"]
    env, head_env = server["environment"], services["ray-head"]["environment"]
    for key in ("ZOO_CATALOG_URL", "ZOO_STORE_URL", "AWS_ENDPOINT_URL", "RAY_AUTH_TOKEN"):
        assert env[key] == head_env[key], key
    assert env["RAY_ADDRESS"] == "http://ray-head:8265"
    assert "/healthz" in " ".join(server["healthcheck"]["test"])
    assert server["depends_on"]["zoo-init"]["condition"] == "service_completed_successfully"


def test_dockerfile_installs_the_cli():
    import tomllib

    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11" in text
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in set(package_dirs["package-dir"].values()):  # every folder a package maps
        assert f"COPY {folder} ./{folder}" in text, folder
    assert "server,serve]" in text  # `zoo server` and `zoo serve` need their extras
    assert "zoo --version" in text
