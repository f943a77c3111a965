"""The query language on SQLite and PostgreSQL: filters, sorting, keyset pagination, errors."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from zoo.errors import QuerySyntaxError
from zoo.storage import catalog as api
from zoo.storage.query import compile_query, tokenize
from zoo.storage.tables import EvalRow

FP = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("sst2", "imdb", "conll")}


@pytest.fixture
def zoo(catalog, add):
    """Six adapters with varied fields, tags and metrics; returns name -> id."""
    ids = {
        "sent-a": add("sentiment-a", r=4, u=1, tags=["prod", "team=nlp"], base_model="gpt2"),
        "sent-b": add("Sentiment-B", r=8, u=2, tags=["team=nlp"], base_model="gpt2"),
        "ner": add("ner", r=16, u=4, share_a=4, task="causal-lm", tags=["team=vision"], base_model="llama"),
        "tiny": add("tiny", r=2, u=0, tags=["prod"], base_model="llama", hidden=8),
        "wide": add("wide", r=8, u=1, share_b=4, base_model="gpt2", hidden=128),
        "odd": add("odd_one", r=1, u=1, base_model="gpt2"),
    }
    rows = [
        ("sent-a", "sst2", "accuracy", 0.95),
        ("sent-b", "sst2", "accuracy", 0.80),
        ("sent-b", "sst2", "accuracy", 0.92),  # latest wins
        ("ner", "conll", "f1", 0.7),
        ("tiny", "sst2", "accuracy", 0.5),
        ("tiny", "imdb", "accuracy", 0.97),
    ]
    with catalog.transaction() as s:
        for key, dataset, metric, value in rows:
            s.add(
                EvalRow(
                    adapter_id=ids[key],
                    dataset_fingerprint=FP[dataset],
                    dataset_name=dataset,
                    metric=metric,
                    value=value,
                    n_examples=10,
                    elapsed_s=0.1,
                )
            )
    return ids


def q(catalog, query, sort="-created", limit=None):
    with catalog.transaction(readonly=True) as s:
        return [r.id for r in api.list_adapters(s, query, sort, limit)]


def names(zoo, ids):
    inv = {v: k for k, v in zoo.items()}
    return sorted(inv[i] for i in ids)


FILTER_CASES = [
    ("name~sentiment", ["sent-a", "sent-b"]),
    ("name~SENTIMENT-b", ["sent-b"]),
    ("name=ner", ["ner"]),
    ("name~_", ["odd"]),  # LIKE wildcards are escaped
    ("name~%", []),
    ("base=gpt2", ["odd", "sent-a", "sent-b", "wide"]),
    ("base!=gpt2", ["ner", "tiny"]),
    ("task=causal-lm", ["ner"]),
    ("r<=4", ["odd", "sent-a", "tiny"]),
    ("r>8", ["ner"]),
    ("r!=8", ["ner", "odd", "sent-a", "tiny"]),
    ("share_a=4", ["ner"]),
    ("share_b=4", ["wide"]),
    ("unshared_r>=2", ["ner", "sent-b"]),
    ("tag:prod", ["sent-a", "tiny"]),
    ("tag:team", ["ner", "sent-a", "sent-b"]),
    ("tag:team=nlp", ["sent-a", "sent-b"]),
    ("tag:team=nlp tag:prod", ["sent-a"]),
    ("metrics.accuracy>=0.9", ["sent-a", "sent-b", "tiny"]),
    ("metrics.eb83a0472e4a.accuracy>=0.9", ["sent-a", "sent-b"]),  # a 12-char prefix
    (f"metrics.{FP['imdb']}.accuracy>0.9", ["tiny"]),  # the whole sha256
    ("metrics.eb83a047.accuracy<0.6", ["tiny"]),
    ("metrics.f1<0.8", ["ner"]),
    ("base=gpt2 r<=8 tag:team=nlp", ["sent-a", "sent-b"]),
    ("rotation=true", ["ner", "odd", "sent-a", "sent-b", "tiny", "wide"]),
    ("created>2000-01-01", ["ner", "odd", "sent-a", "sent-b", "tiny", "wide"]),
    ("created<2000-01-01", []),
    ('name~"x\'; DROP TABLE adapters;--"', []),
    ("name=a;DELETE_FROM_tags;--", []),
]


def test_filters(catalog, zoo):
    for query, expected in FILTER_CASES:  # one seeded catalog per backend for all cases
        assert names(zoo, q(catalog, query)) == expected, query


def test_params_filter(catalog, zoo):
    with catalog.transaction(readonly=True) as s:
        params = {r.id: r.params for r in api.list_adapters(s, limit=None)}
    cut = sorted(params.values())[3]
    assert set(q(catalog, f"params<{cut}")) == {i for i, p in params.items() if p < cut}


def test_created_today_and_iso(catalog, zoo):
    today = datetime.now(timezone.utc).date().isoformat()
    assert len(q(catalog, f"created={today}")) == 6
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert q(catalog, f"created>{later}") == []


def test_injection_changes_nothing(catalog, zoo, table_snapshot):
    before = table_snapshot()
    for query in (
        'name~"x\'; DROP TABLE adapters;--"',
        "tag:x' OR '1'='1",
        "name=1;DROP TABLE tags",
        'name~"%\' OR 1=1 --"',
    ):
        with contextlib.suppress(QuerySyntaxError):
            assert q(catalog, query) == []
    assert table_snapshot() == before


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("name~x r<<8", "bad term 'r<<8' at position 7"),
        ("r<=eight", "not an integer"),
        ("colour=red", "unknown field 'colour'; allowed: id, name"),
        ("r~8", "text fields only"),
        ("name", "was the rest cut by your shell?"),
        ('name~"open', "unterminated"),
        ("tag:../etc", "path traversal"),
        ("metrics.=3", "names no metric"),
        ("created>yesterday", "not a date"),
        ("alpha>nan", "not a finite number"),
        ("metrics.sst2.accuracy>0.5", "never by file name"),
        ("alpha<1e400", "not a finite number"),
        ("params<100000000000000000000", "out of range"),
        ("r=", "missing value"),
    ],
)
def test_syntax_errors_point_at_the_term(catalog, query, fragment):
    with pytest.raises(QuerySyntaxError) as info:
        compile_query(query)
    assert fragment in str(info.value)


def test_bad_sort_field(catalog):
    with catalog.transaction(readonly=True) as s, pytest.raises(QuerySyntaxError, match="sort"):
        api.list_adapters(s, None, "-colour")


def test_tokenize_quotes_and_positions():
    terms = tokenize('name~"two words"  r<=8')
    assert [(t.text, t.pos) for t in terms] == [("name~two words", 0), ("r<=8", 18)]


SORTS = [
    "r",
    "-r",
    "name",
    "-params",
    "created",
    "-created",
    "base",
    "metrics.accuracy",
    "-metrics.accuracy",
    "-metrics.eb83a047.accuracy",
    "-job",
]


def test_keyset_pages_equal_one_big_query(catalog, zoo):
    for sort in SORTS:
        _check_pages(catalog, zoo, sort)


def _check_pages(catalog, zoo, sort):
    full = q(catalog, None, sort)
    assert sorted(full) == sorted(zoo.values())
    pages, after = [], None
    with catalog.transaction(readonly=True) as s:
        while True:
            page = api.list_adapters(s, None, sort, 2, after)
            pages.extend(r.id for r in page)
            if page.next_after is None:
                break
            after = page.next_after
    assert pages == full, sort


def test_sort_by_metric_puts_missing_last(catalog, zoo):
    got = q(catalog, None, "-metrics.accuracy")
    inv = {v: k for k, v in zoo.items()}
    assert [inv[i] for i in got[:3]] == ["tiny", "sent-a", "sent-b"]  # 0.97 (imdb), 0.95, 0.92
    assert {inv[i] for i in got[3:]} == {"ner", "wide", "odd"}


def test_limit_and_iter_adapters(catalog, zoo):
    assert len(q(catalog, None, limit=4)) == 4
    with catalog.transaction(readonly=True) as s:
        streamed = [r.id for r in api.iter_adapters(s, "base=gpt2", "r", page_size=1)]
    assert streamed == q(catalog, "base=gpt2", "r")


def test_tag_filter_shapes_agree(catalog, zoo, monkeypatch):
    """Rare tags use IN, common ones a correlated EXISTS; both must select the same rows."""
    from zoo.storage import query

    queries = ["tag:prod", "tag:team", "tag:team=nlp", "base=gpt2 tag:team=nlp", "tag:nope"]
    rare = [q(catalog, x) for x in queries]
    monkeypatch.setattr(query, "RARE_TAG_ROWS", 0)  # every tag counts as common
    assert [q(catalog, x) for x in queries] == rare
    assert [names(zoo, x) for x in rare][:3] == [["sent-a", "tiny"], ["ner", "sent-a", "sent-b"],
                                                 ["sent-a", "sent-b"]]
