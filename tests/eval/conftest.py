"""Fixtures for the eval tests: an embedded zoo (SQLite + local store) with published adapters."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from evalkit import LLAMA_TARGETS, char_tokenizer, tiny_llama, write_lm_data


def random_adapter(model: torch.nn.Module, base_model: str, rng: random.Random, seed: int,
                   digest: str | None = None):
    """A random-weight adapter of a varied config, built from the shapes ``extract`` would give."""
    from zoo.config import PRoLoRAConfig
    from zoo.testing import random_adapter as build

    r = rng.choice([2, 4, 8])
    cfg = PRoLoRAConfig(r=r, unshared_r=rng.randint(0, r), share_a=rng.choice([1, 2, 4]),
                        share_b=rng.choice([1, 2, 4]), alpha=rng.choice([8.0, 16.0]),
                        target_modules=rng.choice([LLAMA_TARGETS[:2], LLAMA_TARGETS[:4], LLAMA_TARGETS]))
    return build(model, cfg, base_model=base_model, seed=seed, base_model_digest=digest)


class Zoo:
    """An embedded zoo in a temp ZOO_HOME: catalog, store, a saved tiny base, a dataset."""

    def __init__(self, home: str, tmp: Path) -> None:
        from zoo.digest import base_model_digest
        from zoo.settings import resolve_settings
        from zoo.storage.bases import register_location
        from zoo.storage.binding import bind
        from zoo.storage.blobstore import open_store
        from zoo.storage.db import init_catalog, open_catalog

        self.settings = resolve_settings()
        init_catalog(self.settings.catalog_url)
        self.catalog = open_catalog(self.settings.catalog_url)
        self.store = open_store(self.settings.store_url)
        bind(self.catalog, self.store)  # as `zoo init` does
        self.base_dir = tmp / "tiny-llama"
        self.model = tiny_llama()
        self.model.save_pretrained(str(self.base_dir))
        char_tokenizer(self.base_dir)
        self.base_digest = base_model_digest(self.base_dir)
        register_location(self.catalog, self.store, "tiny-llama", str(self.base_dir))
        self.data = write_lm_data(tmp / "eval.jsonl", 6)
        self.tmp = tmp
        self.worker_home = str(tmp / "worker-home")

    def publish_random(self, n: int, *, seed: int = 0) -> list[str]:
        """Publish ``n`` random adapters; returns their catalog ids."""
        from zoo.storage.publish import publish

        rng = random.Random(seed)
        out = self.tmp / "adapters"
        out.mkdir(exist_ok=True)
        ids = []
        for i in range(n):
            path = out / f"a{seed}-{i}.safetensors"
            random_adapter(self.model, str(self.base_dir), rng, seed * 100_000 + i,
                           self.base_digest).save(path)
            ids.append(publish(self.catalog, self.store, path, name=f"rand-{seed}-{i}").id)
        return ids

    def flip_byte(self, adapter_id: str) -> None:
        """Corrupt one byte in the middle of an adapter's blob in the store."""
        from zoo.storage.catalog import resolve_ref

        with self.catalog.transaction(readonly=True) as session:
            digest = resolve_ref(session, adapter_id, load=False).digest
        path = Path(self.store.path_for(digest))
        data = bytearray(path.read_bytes())
        data[len(data) - 50] ^= 0xFF
        path.chmod(0o644)
        path.write_bytes(bytes(data))

    def results(self) -> list:
        from sqlalchemy import select

        from zoo.storage.tables import EvalRow

        with self.catalog.transaction(readonly=True) as session:
            return list(session.scalars(select(EvalRow).order_by(EvalRow.id)))


@pytest.fixture
def embedded_zoo(zoo_home, tmp_path):
    z = Zoo(zoo_home, tmp_path)
    yield z
    z.catalog.close()
