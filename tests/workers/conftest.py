"""Fixtures for the Ray jobs tests: a catalog, a store, a tiny model and data on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def sqlite_catalog_url(tmp_path: Path) -> str:
    from zoo.storage.db import init_catalog

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    init_catalog(url)
    return url


@pytest.fixture
def catalog(sqlite_catalog_url: str):
    from zoo.storage.db import open_catalog

    cat = open_catalog(sqlite_catalog_url)
    yield cat
    cat.close()


def write_tiny_job(root: Path, *, name: str = "tiny", steps: int = 3, extra: str = "",
                   model_dir: Path | None = None, retries: int = 1) -> Path:
    """A spec for a tiny causal-lm job plus its data files; returns the spec path."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": f"k{i} =", "completion": f" v{i}"} for i in range(10)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    spec = root / "job.yaml"
    spec.write_text(
        f"name: {name}\n"
        f"base_model: {model_dir or root / 'model'}\n"
        "task: causal-lm\n"
        "data: {train: train.jsonl, eval: eval.jsonl}\n"
        "prolora: {r: 4, unshared_r: 1, share_a: 2, share_b: 2, alpha: 8,\n"
        "          target_modules: [q_proj, v_proj]}\n"
        f"train: {{max_steps: {steps}, lr: 1.0e-3, batch_size: 4, max_length: 16, seed: 0,\n"
        "        checkpoint_every: 1}\n"
        "resources: {cpus: 1}\n"
        f"retries: {retries}\n"
        "tags: [test]\n" + extra
    )
    return spec


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama-style causal LM with its tokenizer, saved like a user's model."""
    from zoo.testing import save_tiny_kv_llama

    return save_tiny_kv_llama(tmp_path_factory.mktemp("tiny_llama_workers"))


@pytest.fixture
def local_zoo(tmp_path: Path, zoo_home: str, sqlite_catalog_url: str) -> dict[str, str]:
    """Embedded-default URLs: a SQLite catalog and a local store under tmp, bound to each
    other as `zoo init` binds them."""
    from zoo.storage.binding import bind
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import open_catalog

    store = tmp_path / "store"
    store.mkdir()
    with open_catalog(sqlite_catalog_url) as catalog:
        bind(catalog, open_store(store.as_uri()))
    return {"catalog_url": sqlite_catalog_url, "store_url": store.as_uri(), "home": zoo_home}
