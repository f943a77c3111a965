"""The replica's adapter bank: verified fetch on first use, LRU by digest, faults stay local."""

from __future__ import annotations

import threading

import pytest
import torch
from servekit import LLAMA_TARGETS, mixed_adapters, tiny_llama

import zoo
from zoo.adapter_bank import AdapterBank, AdapterKey, plain_lora
from zoo.errors import ConfigError, IntegrityError
from zoo.storage.blobstore import open_store


@pytest.fixture(scope="module")
def model_and_adapters():
    model = tiny_llama()
    return model, mixed_adapters(model, 4, targets=LLAMA_TARGETS, seed=4)


@pytest.fixture
def stocked(tmp_path, model_and_adapters):
    model, adapters = model_and_adapters
    store = open_store(str(tmp_path / "store"))
    keys = []
    for i, a in enumerate(adapters):
        data = a.to_bytes()
        store.put_bytes(a.digest, data)
        keys.append(AdapterKey(f"id{i}", f"name{i}", a.digest, len(data)))
    return store, keys


def logits_of(model, adapter, ids):
    zoo.attach(model, adapter)
    try:
        with torch.no_grad():
            return model(input_ids=ids).logits
    finally:
        zoo.detach(model)


def test_expanded_adapter_gives_the_same_outputs(model_and_adapters):
    model, adapters = model_and_adapters
    ids = torch.tensor([[1, 5, 9, 12, 30]])
    for a in adapters:
        plain = plain_lora(a)
        assert plain.config.unshared_r == plain.config.r and plain.config.share_a == 1
        torch.testing.assert_close(logits_of(model, plain, ids), logits_of(model, a, ids),
                                   atol=1e-5, rtol=1e-5)


def test_lru_by_digest(stocked):
    store, keys = stocked
    bank = AdapterBank(store, capacity=2)
    first = bank.get(keys[0])
    assert bank.get(keys[0]) is first and bank.loads == 1  # a hit loads nothing
    bank.get(keys[1])
    bank.get(keys[0])  # keys[0] is now the most recent
    bank.get(keys[2])  # evicts keys[1], the least recently used
    assert keys[0].digest in bank and keys[2].digest in bank and keys[1].digest not in bank
    assert len(bank) == 2 and bank.loads == 3
    bank.get(keys[1])
    assert bank.loads == 4 and keys[0].digest not in bank
    assert first.tensors  # a request still holding an evicted adapter keeps using it


def test_a_moved_alias_loads_the_new_digest(stocked):
    store, keys = stocked
    bank = AdapterBank(store, capacity=4)
    old = bank.get(AdapterKey("idA", "x", keys[0].digest))
    new = bank.get(AdapterKey("idB", "x", keys[1].digest))  # same name, new digest
    assert old is not new and bank.loads == 2


def test_corrupt_blob_errors_only_its_adapter(stocked, tmp_path):
    store, keys = stocked
    path = store.path_for(keys[2].digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    bank = AdapterBank(store, capacity=4, cache_dir=tmp_path / "cache")
    with pytest.raises(IntegrityError, match="id2"):
        bank.get(keys[2])
    assert keys[2].digest not in bank
    assert bank.get(keys[0]) is not None and bank.get(keys[1]) is not None
    assert not list((tmp_path / "cache").glob("*.incomplete"))  # nothing half-written


def test_concurrent_first_use_loads_once(stocked):
    store, keys = stocked
    bank = AdapterBank(store, capacity=4)
    got = []
    threads = [threading.Thread(target=lambda: got.append(bank.get(keys[3]))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bank.loads == 1 and all(g is got[0] for g in got)


@pytest.mark.parametrize("bad", [0, -1, True, "3"])
def test_bad_capacity_is_refused(tmp_path, bad):
    with pytest.raises(ConfigError, match="max_adapters"):
        AdapterBank(open_store(str(tmp_path / "s")), capacity=bad)
