"""A replica's working set of adapters: up to N expanded adapters in memory, least recently
used out, each fetched verified from the store the first time a request names it.

Why keyed by digest: a name@alias is resolved to (id, digest) when a request arrives; the bank
only ever sees digests, so when the alias moves the next request loads the NEW digest, while a
request already holding the old adapter object keeps it until it finishes (eviction drops the
bank's reference, never the request's). Nothing can mix two versions in one request.

"Expanded": the compact PRoLoRA tensors are unfolded once, on load, into a plain LoRA of the
same rank (``u = r``, no sharing; :func:`plain_lora`), so building a batch's stacked bank
(:class:`zoo.multi_adapter.MultiAdapterModel`) is a copy, not a gather per request.

A blob that fails verification raises :class:`zoo.errors.IntegrityError` for that adapter
only and is not cached: the other adapters, and a later repaired blob, are unaffected.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ConfigError

if TYPE_CHECKING:
    from zoo.adapter import Adapter


@dataclass(frozen=True)
class AdapterKey:
    """What the catalog resolved a request's model name to: the blob to load, and who it is."""

    id: str
    name: str
    digest: str
    size: int | None = None

    @property
    def what(self) -> str:
        return f"adapter {self.id} ({self.name})"


def plain_lora(adapter: Adapter) -> Adapter:
    """The same update as a plain LoRA (u = r, share 1): A (r × h) and B (o × r) per module,
    saved modules kept. Scaling alpha / r is unchanged, so outputs are identical."""
    from zoo.adapter import Adapter
    from zoo.adapter_config import AdapterConfig

    c = adapter.config
    if c.unshared_r == c.r and c.share_a == 1 and c.share_b == 1:
        return adapter
    tensors = {k: v for k, v in adapter.tensors.items() if k.startswith("saved.")}
    for path, (a, b) in adapter.expand().items():
        tensors[f"{path}.A_unshared"] = a.contiguous()  # (r, h)
        tensors[f"{path}.B_unshared"] = b.contiguous()  # (o, r)
    data = {**c.to_dict(), "unshared_r": c.r, "share_a": 1, "share_b": 1, "stride_a": 1,
            "stride_b": 1}
    return Adapter(AdapterConfig.from_dict(data, source=f"expanded {c.base_model}"), tensors)


class AdapterBank:
    """LRU of up to ``capacity`` expanded adapters, fetched from ``store`` on first use.

    ``cache_dir``: where verified blobs land (shared by replicas on one node, re-hashed before
    reuse); default a private temp directory removed after loading.
    """

    def __init__(self, store: Any, *, capacity: int = 64,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"max_adapters={capacity!r} is invalid: must be an integer >= 1",
                              field="max_adapters")
        self.store = store
        self.capacity = capacity
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._items: OrderedDict[str, Adapter] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # blobs fetched and expanded (a test and a metric read it)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, digest: str) -> bool:
        return digest in self._items

    def get(self, key: AdapterKey) -> Adapter:
        """The expanded adapter of ``key.digest``: from memory, else fetched, verified, loaded."""
        with self._lock:
            hit = self._items.get(key.digest)
            if hit is not None:
                self._items.move_to_end(key.digest)
                return hit
            gate = self._loading.setdefault(key.digest, threading.Lock())
        with gate:  # one load per digest; other digests load concurrently
            with self._lock:
                hit = self._items.get(key.digest)
            try:
                if hit is None:
                    hit = self._load(key)  # a failure is this adapter's alone, not cached
            finally:
                with self._lock:
                    self._loading.pop(key.digest, None)
            with self._lock:
                self._items[key.digest] = hit
                self._items.move_to_end(key.digest)
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            return hit

    def _load(self, key: AdapterKey) -> Adapter:
        from zoo.adapter import Adapter
        from zoo.storage.fetch import fetch_cached, fetch_verified

        if self.cache_dir is not None:
            path = fetch_cached(self.store, key.digest, self.cache_dir / f"{key.digest}.safetensors",
                                size=key.size, what=key.what)
            adapter = Adapter.load(path)
        else:
            with tempfile.TemporaryDirectory(prefix="zoo-bank-") as tmp:
                path = fetch_verified(self.store, key.digest, Path(tmp) / "adapter.safetensors",
                                      size=key.size, what=key.what)
                adapter = Adapter.load(path)
        self.loads += 1
        return plain_lora(adapter)  # the bank's stacks take the model's dtype


__all__ = ["AdapterBank", "AdapterKey", "plain_lora"]
