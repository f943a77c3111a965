"""Helpers and fixtures for the blob-store, publish and pull tests (imported explicitly).

``make_adapter_bytes`` writes a valid zoo adapter file (docs/adapter-format.md, version 1) with the canonical
writer, torch-free, so store and protocol tests do not need a model.
"""

from __future__ import annotations

import array
import hashlib
import random
from pathlib import Path

import pytest

from zoo.adapter_config import AdapterConfig
from zoo.adapter_meta import file_metadata
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
    config = AdapterConfig.from_dict(adapter_config(**kwargs))
    rng = random.Random(seed)
    tensors = {}
    for name, shape in config.expected_shapes().items():
        n = 1
        for d in shape:
            n *= d
        data = array.array("f", (rng.uniform(-0.1, 0.1) for _ in range(n))).tobytes()
        tensors[name] = RawTensor("F32", shape, data)
    return encode(tensors, file_metadata(config))


def write_adapter(path: Path, seed: int = 0, **kwargs) -> tuple[Path, str]:
    """Write an adapter file; return (path, sha256)."""
    data = make_adapter_bytes(seed, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_blob(store, digest: str, dest: Path, *, size: int | None = None) -> tuple[str, int]:
    """A store's ``read_into`` into a plain new file at ``dest``: the store's own behaviour,
    without the verified fetch around it."""
    with open(dest, "w+b") as out:
        return store.read_into(digest, out, size=size)


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


class Backend:
    """A catalog + store pair, with the URLs a subprocess or the CLI needs."""

    def __init__(self, kind: str, catalog_url: str, store_url: str) -> None:
        from zoo.storage.binding import bind
        from zoo.storage.blobstore import open_store
        from zoo.storage.db import init_catalog, open_catalog

        self.kind = kind
        self.catalog_url = catalog_url
        self.store_url = store_url
        init_catalog(catalog_url)
        self.catalog = open_catalog(catalog_url)
        self.store = open_store(store_url)
        bind(self.catalog, self.store)  # what `zoo init` does

    def env(self) -> dict[str, str]:
        """Environment for a subprocess / CliRunner pointing at this backend."""
        return {"ZOO_CATALOG_URL": self.catalog_url, "ZOO_STORE_URL": self.store_url}

    def counts(self) -> dict[str, int]:
        """Row count of every catalog table: "the catalog is unchanged" compares these."""
        from sqlalchemy import func, select

        from zoo.storage.tables import Base

        with self.catalog.transaction(readonly=True) as session:
            return {t.name: session.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in Base.metadata.sorted_tables}

    def adapter_rows(self) -> list[tuple[str, str, str]]:
        """(id, name, digest) of every adapter row."""
        from sqlalchemy import select

        from zoo.storage.tables import AdapterRow

        with self.catalog.transaction(readonly=True) as session:
            return [tuple(r) for r in session.execute(
                select(AdapterRow.id, AdapterRow.name, AdapterRow.digest).order_by(AdapterRow.id))]

    def blob_digests(self) -> set[str]:
        return {b.digest for b in self.store.list_blobs()}


@pytest.fixture(params=["sqlite-local", "pg-s3"])
def backend(request, tmp_path):
    """SQLite + local directory store, and PostgreSQL + S3 (SeaweedFS)."""
    if request.param == "sqlite-local":
        b = Backend(request.param, f"sqlite:///{tmp_path / 'catalog.db'}",
                    str(tmp_path / "store"))
    else:
        pg = request.getfixturevalue("pg_url")
        request.getfixturevalue("s3_env")
        bucket = request.getfixturevalue("s3_bucket")
        b = Backend(request.param, pg, s3_store_url(bucket))
    try:
        yield b
    finally:
        b.catalog.close()


@pytest.fixture(scope="module")
def module_sqlite_backend(tmp_path_factory):
    """One SQLite + local backend per module, for tests that must leave it unchanged."""
    tmp = tmp_path_factory.mktemp("zoo-module")
    b = Backend("sqlite-local", f"sqlite:///{tmp / 'catalog.db'}", str(tmp / "store"))
    try:
        yield b
    finally:
        b.catalog.close()


@pytest.fixture
def sqlite_backend(tmp_path):
    b = Backend("sqlite-local", f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "store"))
    try:
        yield b
    finally:
        b.catalog.close()


def real_adapter(path: Path, seed: int = 0, *, base_dir: Path | None = None) -> tuple[Path, str]:
    """A real adapter: tiny Llama (saved to ``base_dir`` when given), attach, perturb, extract."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import zoo
    from zoo.config import PRoLoRAConfig

    torch.manual_seed(1234)  # the same base for every seed
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)).eval()
    base_name = "tiny-llama"
    if base_dir is not None:
        model.save_pretrained(base_dir)
        base_name = str(base_dir)
    zoo.attach(model, PRoLoRAConfig(r=4, unshared_r=1, share_a=2, share_b=2, alpha=8.0))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    digest = None
    if base_dir is not None:
        from zoo.digest import base_model_digest

        digest = base_model_digest(base_dir)  # as training records it
    adapter = zoo.extract(model, base_model=base_name, base_model_digest=digest,
                          task="causal-lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = adapter.save(path)
    return path, digest
