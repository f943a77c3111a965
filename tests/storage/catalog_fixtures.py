"""Plain helpers for the catalog tests (imported explicitly; fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
from typing import Any


def adapter_config(*, r: int = 8, u: int = 1, share_a: int = 2, share_b: int = 2,
                   base_model: str = "tiny-gpt2", task: str = "seq-cls", hidden: int = 32,
                   layers: int = 2) -> dict[str, Any]:
    modules = {
        f"h.{i}.attn.c_attn": {"in_features": hidden, "out_features": 3 * hidden,
                               "kind": "conv1d"}
        for i in range(layers)
    }
    return {
        "base_model": base_model, "base_model_digest": None, "task": task, "r": r,
        "unshared_r": u, "share_a": share_a, "share_b": share_b,
        "stride_a": max((r - u) // share_a, 1), "stride_b": max((r - u) // share_b, 1),
        "rotation": True, "init": "rectified", "alpha": 2.0 * r, "dropout": 0.0,
        "dtype": "float32", "modules": modules, "modules_to_save": [],
    }


def fake_digest(seed: object) -> str:
    return hashlib.sha256(repr(seed).encode()).hexdigest()


def snapshot(catalog) -> dict[str, list]:
    """Every row of every catalog table, for 'nothing changed' assertions."""
    import sqlalchemy as sa

    out = {}
    with catalog.engine.connect() as conn:
        for table in ("base_models", "adapters", "tags", "aliases", "jobs", "eval_results"):
            out[table] = sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {table}"))),
                                key=repr)
    return out
