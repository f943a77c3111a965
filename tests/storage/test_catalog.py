"""Catalog API on SQLite and PostgreSQL: add, idempotency, refs, tags, aliases, output."""

from __future__ import annotations

from datetime import datetime

import pytest
from catalog_fixtures import adapter_config, fake_digest

from zoo.errors import AmbiguousRefError, ConflictError, InvalidNameError, NotFoundError
from zoo.storage import catalog as api
from zoo.storage.tables import AdapterRow, new_id

JSON_KEYS = {"id", "name", "digest", "size", "base_model", "task", "r", "unshared_r", "share_a",
             "share_b", "params", "tags", "aliases", "metrics", "created_at", "job_id",
             "dataset_fingerprint", "base_model_digest"}


def test_add_and_show_roundtrip(catalog, add):
    aid = add("sentiment", tags=["prod", "team=nlp"], aliases=["prod"], r=8, u=2,
              job_id="job-1", dataset_fingerprint="ds-abc")
    with catalog.transaction(readonly=True) as s:
        d = api.adapter_to_dict(api.resolve_ref(s, aid))
    assert set(d) >= JSON_KEYS
    assert d["id"] == aid and len(aid) == 26
    assert d["name"] == "sentiment" and d["base_model"] == "tiny-gpt2" and d["task"] == "seq-cls"
    assert (d["r"], d["unshared_r"], d["share_a"], d["share_b"]) == (8, 2, 2, 2)
    # 2 layers of Conv1D 32 -> 96: u(h+o) + r_s(ceil(h/2) + ceil(o/2)) per layer
    assert d["params"] == 2 * (2 * (32 + 96) + 6 * (16 + 48))
    assert d["tags"] == ["prod", "team=nlp"] and d["aliases"] == ["sentiment@prod"]
    assert d["job_id"] == "job-1" and d["dataset_fingerprint"] == "ds-abc"
    assert datetime.fromisoformat(d["created_at"]).tzinfo is not None
    assert d["config"]["modules"]


def test_same_digest_same_name_is_idempotent(catalog, add):
    first = add("a", seed="same", tags=["x"])
    again = add("a", seed="same", tags=["y"])
    other_name = add("b", seed="same")
    assert first == again != other_name
    with catalog.transaction(readonly=True) as s:
        assert api.adapter_to_dict(api.resolve_ref(s, first))["tags"] == ["x", "y"]
        assert s.query(AdapterRow).count() == 2


def test_job_publishes_at_most_one_adapter(catalog, add):
    aid = add("a", seed=1, job_id="job-7")
    assert add("a", seed=1, job_id="job-7") == aid
    with pytest.raises(ConflictError, match="job-7"):
        add("a", seed=2, job_id="job-7")


def test_params_column_is_the_configs_count(catalog):
    """One home for the count: the catalog column is AdapterConfig.params, never a caller's."""
    from zoo.adapter_config import AdapterConfig

    with catalog.transaction() as s:
        row = api.add_adapter(s, digest=fake_digest(1), size=1, config=adapter_config(), name="p")
        assert row.params == AdapterConfig.from_dict(adapter_config()).params > 0


def test_resolve_id_prefix_and_alias(catalog, add):
    a = add("m", aliases=["prod"])
    b = add("m")
    with catalog.transaction(readonly=True) as s:
        assert api.resolve_ref(s, a).id == a
        assert api.resolve_ref(s, a.upper()).id == a
        assert api.resolve_ref(s, "m@prod").id == a
        common = next(i for i in range(26) if a[i] != b[i])
        assert api.resolve_ref(s, a[: max(common + 1, 4)]).id == a
        if common >= 4:
            with pytest.raises(AmbiguousRefError):
                api.resolve_ref(s, a[:4])
        for bad in ("zzzz", "m@nope", "nope@prod", "abc", "../etc", "x" * 10_000, ""):
            with pytest.raises(NotFoundError):
                api.resolve_ref(s, bad)


def test_ambiguous_prefix(catalog):
    # Two ids minted in the same millisecond share their 10-char time prefix.
    ids = [new_id(1_700_000_000_000), new_id(1_700_000_000_000)]
    with catalog.transaction() as s:
        for i, ident in enumerate(ids):
            row = api.add_adapter(s, digest=fake_digest(i), size=1, config=adapter_config(),
                                  name=f"n{i}")
            row.id = ident
    with catalog.transaction(readonly=True) as s, pytest.raises(AmbiguousRefError, match="several"):
        api.resolve_ref(s, ids[0][:8])


def test_tags_add_remove(catalog, add):
    aid = add("t", tags=["prod"])
    with catalog.transaction() as s:
        row = api.add_tags(s, aid, ["team=nlp", "team=vision", "prod", "stage=beta"])
        assert api.adapter_to_dict(row)["tags"] == ["prod", "stage=beta", "team=nlp",
                                                    "team=vision"]
    with catalog.transaction() as s:
        row = api.remove_tags(s, aid, ["team", "stage=beta"])
        assert api.adapter_to_dict(row)["tags"] == ["prod"]


def test_alias_moves_and_is_unique(catalog, add):
    a, b = add("m"), add("m")
    with catalog.transaction() as s:
        api.set_alias(s, "m@prod", a)
    with catalog.transaction() as s:
        api.set_alias(s, "m@prod", b)
    with catalog.transaction(readonly=True) as s:
        assert api.resolve_ref(s, "m@prod").id == b
        assert [x["ref"] for x in api.list_aliases(s)] == ["m@prod"]
        assert api.adapter_to_dict(api.resolve_ref(s, a))["aliases"] == []
    with catalog.transaction() as s:
        assert api.remove_alias(s, "m@prod") == b
    with catalog.transaction() as s, pytest.raises(NotFoundError):
        api.remove_alias(s, "m@prod")


def test_alias_must_name_the_adapter(catalog, add):
    aid = add("m")
    with catalog.transaction() as s, pytest.raises(InvalidNameError, match="named 'other'"):
        api.set_alias(s, "other@prod", aid)


def test_resolve_many_refs_tag_query(catalog, add):
    a = add("x", tags=["prod"], r=4)
    b = add("y", tags=["prod"], r=16)
    c = add("z", r=4)
    with catalog.transaction(readonly=True) as s:
        assert {r.id for r in api.resolve_many(s, tag="prod")} == {a, b}
        assert {r.id for r in api.resolve_many(s, query="r<=4")} == {a, c}
        assert {r.id for r in api.resolve_many(s, tag="prod", query="r<=4")} == {a}
        assert [r.id for r in api.resolve_many(s, refs=[c, c, a])] == [c, a]
        with pytest.raises(NotFoundError):
            api.resolve_many(s, refs=[a, "nope@x"])


def test_referenced_digests(catalog, add):
    add("a", seed=1)
    add("b", seed=2)
    add("c", seed=1)
    with catalog.transaction(readonly=True) as s:
        assert api.referenced_digests(s) == {fake_digest(1), fake_digest(2)}


def test_base_model_rows_are_shared(catalog, add):
    import sqlalchemy as sa

    add("a", base_model="gpt2")
    add("b", base_model="gpt2")
    add("c", base_model="llama")
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM base_models")).scalar() == 2


def test_metrics_latest_wins(catalog, add):
    from zoo.storage.tables import EvalRow

    aid = add("m")
    with catalog.transaction() as s:
        for value in (0.5, 0.7):
            s.add(EvalRow(adapter_id=aid, dataset_fingerprint="a" * 64, dataset_name="sst2",
                             metric="accuracy", value=value, n_examples=10, elapsed_s=0.1))
        s.add(EvalRow(adapter_id=aid, dataset_fingerprint="b" * 64, dataset_name="sst2",
                         metric="accuracy", value=0.9, n_examples=10, elapsed_s=0.1))
    with catalog.transaction(readonly=True) as s:
        d = api.adapter_to_dict(api.resolve_ref(s, aid))
    assert d["metrics"] == {"accuracy": 0.9}
    # two files named sst2 are two datasets: shown as name@sha256-prefix
    assert d["metrics_by_dataset"] == {"sst2@aaaaaaaaaaaa": {"accuracy": 0.7},
                                       "sst2@bbbbbbbbbbbb": {"accuracy": 0.9}}


def test_transaction_rolls_back_on_error(catalog, add):
    with pytest.raises(RuntimeError), catalog.transaction() as s:
        api.add_adapter(s, digest=fake_digest(9), size=1, config=adapter_config(), name="gone")
        raise RuntimeError("boom")
    with catalog.transaction(readonly=True) as s:
        assert api.list_adapters(s) == []


def test_prefix_upper_bound_stays_in_the_id_alphabet():
    from zoo.storage.catalog import _prefix_upper_bound

    assert _prefix_upper_bound("01m8") == "01m9"
    assert _prefix_upper_bound("01m9") == "01ma"
    assert _prefix_upper_bound("01mz") == "01n"
    assert _prefix_upper_bound("zzzz") is None


def test_base_model_without_digest_is_unique_per_name(catalog):
    import sqlalchemy as sa

    from zoo.storage.tables import BaseModelRow

    with catalog.transaction() as s:
        s.add(BaseModelRow(name="m", digest=None))
    with pytest.raises(sa.exc.IntegrityError), catalog.transaction() as s:
        s.add(BaseModelRow(name="m", digest=None))
    with catalog.transaction() as s:
        s.add(BaseModelRow(name="m", digest="d" * 64))  # a fingerprinted one is another row
