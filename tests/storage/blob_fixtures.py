"""Helpers and fixtures for the blob-store, publish and pull tests (imported explicitly).

``make_adapter_bytes`` writes a valid zoo adapter file (ADAPTER_FORMAT.md v1) with the canonical
writer, torch-free, so store and protocol tests do not need a model.
"""

from __future__ import annotations

import array
import hashlib
import random
from pathlib import Path

import pytest

from zoo.adapter_meta import FORMAT, FORMAT_VERSION, canonical_config_json, expected_shapes
from zoo.safetensors_io import RawTensor, encode


def adapter_config(*, r: int = 4, u: int = 1, hidden: int = 32, layers: int = 2,
                   base_model: str = "tiny-base", task: str = "causal-lm") -> dict:
    modules = {
        f"model.layers.{i}.self_attn.{p}": {"in_features": hidden, "out_features": hidden,
                                           "kind": "linear"}
        for i in range(layers) for p in ("q_proj", "v_proj")
    }
    return {
        "base_model": base_model, "base_model_digest": None, "task": task, "r": r,
        "unshared_r": u, "share_a": 2, "share_b": 2, "stride_a": 1, "stride_b": 1,
        "rotation": True, "init": "rectified", "alpha": 2 * r, "dropout": 0.0,
        "dtype": "float32", "modules": modules, "modules_to_save": [],
    }


def make_adapter_bytes(seed: int = 0, **kwargs) -> bytes:
    """A valid adapter file with seeded random float tensors (distinct seed, distinct bytes)."""
    config = adapter_config(**kwargs)
    rng = random.Random(seed)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        n = 1
        for d in shape:
            n *= d
        data = array.array("f", (rng.uniform(-0.1, 0.1) for _ in range(n))).tobytes()
        tensors[name] = RawTensor("F32", shape, data)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "config": canonical_config_json(config)}
    return encode(tensors, meta)


def write_adapter(path: Path, seed: int = 0, **kwargs) -> tuple[Path, str]:
    """Write an adapter file; return (path, sha256)."""
    data = make_adapter_bytes(seed, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def s3_store_url(bucket: str, prefix: str = "zoo") -> str:
    return f"s3://{bucket}/{prefix}"


@pytest.fixture
def s3_env(s3_server: str, monkeypatch) -> str:
    """Point boto3 (and subprocesses) at the test S3 server the standard way."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path) -> str:
    """A store URL for each backend: a local directory and a fresh bucket on the S3 server."""
    if request.param == "local":
        return str(tmp_path / "blobs-store")
    request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("s3_bucket")
    return s3_store_url(bucket)
