"""The ``zoo ls`` query language, compiled to SQLAlchemy expressions with bound parameters only.

A query is whitespace-separated terms, all AND-ed::

    name~sentiment base=gpt2 task=seq-cls r<=8 share_a=2 params<100000
    tag:prod tag:team=nlp metrics.accuracy>=0.9 metrics.2fd6d209.f1<0.5 created>2026-01-01

``FIELD OP VALUE`` with OP one of ``= != < <= > >= ~`` (``~``: case-insensitive substring, text
fields only); ``tag:KEY`` (any value, or the plain label) and ``tag:KEY=VALUE``. A value may be
quoted with ``"`` or ``'`` to hold spaces. ``metrics.M`` is the adapter's latest result (highest
eval row id) for metric M on any dataset; ``metrics.D.M`` restricts to dataset D, named by its
content: the sha256 of the data file or a prefix of at least 8 hex characters (two files with
one name are two datasets). Values never reach SQL text: every one is a bound parameter, so
``name~"x'; DROP TABLE adapters;--"`` is just a (non-matching) substring.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from zoo.errors import InvalidNameError, QuerySyntaxError
from zoo.names import parse_tag
from zoo.storage.tables import AdapterRow, BaseModelRow, EvalRow, TagRow

OPS = ("!=", "<=", ">=", "=", "<", ">", "~")
_TERM = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<op>!=|<=|>=|=|<|>|~)(?P<value>.*)$",
                   re.DOTALL)
_MAX_QUERY = 4096
DATASET_PREFIX_MIN = 8
DATASET_PREFIX = re.compile(f"[0-9a-f]{{{DATASET_PREFIX_MIN},64}}")
INT_LIMIT = 2**63
RARE_TAG_ROWS = 200


@dataclass(frozen=True)
class Field:
    """A queryable/sortable field: its SQL column, value kind and nullability."""

    name: str
    column: Any
    kind: str  # str | int | float | bool | datetime
    nullable: bool = False


_COLUMNS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("id", AdapterRow.id, "str"),
        Field("name", AdapterRow.name, "str"),
        Field("digest", AdapterRow.digest, "str"),
        Field("task", AdapterRow.task, "str"),
        Field("r", AdapterRow.r, "int"),
        Field("unshared_r", AdapterRow.unshared_r, "int"),
        Field("share_a", AdapterRow.share_a, "int"),
        Field("share_b", AdapterRow.share_b, "int"),
        Field("stride_a", AdapterRow.stride_a, "int"),
        Field("stride_b", AdapterRow.stride_b, "int"),
        Field("params", AdapterRow.params, "int"),
        Field("size", AdapterRow.size, "int"),
        Field("alpha", AdapterRow.alpha, "float"),
        Field("dtype", AdapterRow.dtype, "str"),
        Field("init", AdapterRow.init, "str"),
        Field("rotation", AdapterRow.rotation, "bool"),
        Field("job", AdapterRow.job_id, "str", nullable=True),
        Field("dataset", AdapterRow.dataset_fingerprint, "str", nullable=True),
        Field("created", AdapterRow.created_at, "datetime"),
    )
}
# Fields on the base model: filtered through an IN on base_models, sorted by a scalar subquery.
_BASE_FIELDS = {"base": BaseModelRow.name, "base_digest": BaseModelRow.digest}
ALLOWED_FIELDS = (*_COLUMNS, *_BASE_FIELDS, "tag:KEY[=VALUE]", "metrics.METRIC",
                  "metrics.DATASET.METRIC")
SORT_FIELDS = (*_COLUMNS, *_BASE_FIELDS, "metrics.METRIC", "metrics.DATASET.METRIC")


@dataclass(frozen=True)
class Term:
    """One term as typed, with its offset in the query (for error messages)."""

    raw: str
    text: str  # quotes removed
    pos: int


def tokenize(query: str) -> list[Term]:
    """Split on whitespace outside quotes; ``"..."``/``'...'`` group a value with spaces."""
    terms: list[Term] = []
    i, n = 0, len(query)
    while i < n:
        if query[i].isspace():
            i += 1
            continue
        start, text = i, []
        while i < n and not query[i].isspace():
            ch = query[i]
            if ch in "\"'":
                end = query.find(ch, i + 1)
                if end < 0:
                    raise QuerySyntaxError(
                        f"bad term {query[start:]!r} at position {start}: unterminated {ch} quote"
                    )
                text.append(query[i + 1:end])
                i = end + 1
            else:
                text.append(ch)
                i += 1
        terms.append(Term(query[start:i], "".join(text), start))
    return terms


def _fail(term: Term, why: str) -> QuerySyntaxError:
    return QuerySyntaxError(f"bad term {term.raw!r} at position {term.pos}: {why}")


def _parse_value(term: Term, field: str, kind: str, text: str, op: str) -> Any:
    if kind == "str":
        return text
    if op == "~":
        raise _fail(term, f"operator ~ (substring) applies to text fields only, not {field}")
    if kind == "bool" and op not in ("=", "!="):
        raise _fail(term, f"{field} is true or false: use = or !=")
    parse = {"int": int, "float": _finite, "bool": _boolean, "datetime": _parse_time}[kind]
    try:
        value = parse(text)
    except ValueError:
        expected = {"int": "an integer", "float": "a finite number", "bool": "true or false",
                    "datetime": "a date or ISO time (2026-01-01, 2026-01-01T12:00:00Z)"}[kind]
        raise _fail(term, f"value {text!r} for {field} is not {expected}") from None
    return _in_range(term, field, value) if kind == "int" else value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # NaN compares false with everything; inf is no value
        raise ValueError(text)
    return value


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


def _in_range(term: Term, field: str, value: int) -> int:
    """An integer a 64-bit column can compare with (SQLite refuses anything larger)."""
    if not -INT_LIMIT <= value < INT_LIMIT:
        raise _fail(term, f"value {value} for {field} is out of range (at most 2^63 - 1)")
    return value


def _parse_time(text: str) -> datetime | date:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return date.fromisoformat(text)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "~":
        return column.icontains(value, autoescape=True)
    if isinstance(value, date) and not isinstance(value, datetime):
        day = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        nxt = day + timedelta(days=1)
        return {
            "=": and_(column >= day, column < nxt), "!=": or_(column < day, column >= nxt),
            "<": column < day, "<=": column < nxt, ">": column >= nxt, ">=": column >= day,
        }[op]
    import operator

    fn = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
          ">": operator.gt, ">=": operator.ge}[op]
    return fn(column, value)


def _metric_parts(term: Term | None, field: str) -> tuple[str | None, str]:
    rest = field[len("metrics."):]
    dataset, _, metric = rest.rpartition(".")
    why = None
    if not metric:
        why = f"{field!r} names no metric; use metrics.METRIC or metrics.DATASET.METRIC"
    elif dataset and not DATASET_PREFIX.fullmatch(dataset):
        why = (f"{dataset!r} is not a dataset: datasets are named by the sha256 of their "
               f"content (at least {DATASET_PREFIX_MIN} hex characters, as `zoo eval` prints "
               "it), never by file name")
    if why is None:
        return dataset or None, metric
    if term is None:
        raise QuerySyntaxError(f"bad sort field: {why}")
    raise _fail(term, why)


def _on_dataset(rows: Any, dataset: str) -> ColumnElement[bool]:
    return rows.dataset_fingerprint.startswith(dataset, autoescape=True)


def latest_metric(metric: str, dataset: str | None = None) -> Any:
    """Scalar subquery: the adapter's latest value of ``metric`` (optionally on the dataset
    whose fingerprint starts with ``dataset``)."""
    sub = select(EvalRow.value).where(EvalRow.adapter_id == AdapterRow.id,
                                      EvalRow.metric == metric)
    if dataset is not None:
        sub = sub.where(_on_dataset(EvalRow, dataset))
    return sub.order_by(EvalRow.id.desc()).limit(1).correlate(AdapterRow).scalar_subquery()


def _metric_filter(term: Term, field: str, op: str, text: str) -> ColumnElement[bool]:
    dataset, metric = _metric_parts(term, field)
    value = _parse_value(term, field, "float", text, op)
    # AdapterRow ids whose latest row for (metric[, dataset]) satisfies the comparison; the
    # (metric, value) index finds candidates, the (adapter_id, metric, id) index checks latest.
    e, later = aliased(EvalRow), aliased(EvalRow)
    newer = select(later.id).where(later.adapter_id == e.adapter_id, later.metric == e.metric,
                                   later.id > e.id)
    conds = [e.metric == metric, _compare(e.value, op, value)]
    if dataset is not None:
        newer = newer.where(_on_dataset(later, dataset))
        conds.append(_on_dataset(e, dataset))
    conds.append(~newer.exists())
    return AdapterRow.id.in_(select(e.adapter_id).where(*conds))


def _tag_filter(term: Term, session: Session | None) -> ColumnElement[bool]:
    """EXISTS per row for a common tag (an ordered index walk finds 50 matches early); an
    IN over the (key, value) index for a rare one (few rows to sort). On SQLite one bounded
    count decides, as its planner cannot see that trade-off behind ORDER BY ... LIMIT;
    PostgreSQL's planner weighs it from its statistics."""
    try:
        tag = parse_tag(term.text[len("tag:"):])
    except InvalidNameError as exc:
        raise _fail(term, str(exc)) from None
    cond = [TagRow.key == tag.key]
    if tag.value:
        cond.append(TagRow.value == tag.value)
    if session is not None and session.get_bind().dialect.name == "sqlite":
        probe = select(TagRow.adapter_id).where(*cond).limit(RARE_TAG_ROWS).subquery()
        if session.execute(select(func.count()).select_from(probe)).scalar_one() < RARE_TAG_ROWS:
            return AdapterRow.id.in_(select(TagRow.adapter_id).where(*cond))
    return select(TagRow.adapter_id).where(TagRow.adapter_id == AdapterRow.id, *cond) \
        .correlate(AdapterRow).exists()


def compile_term(term: Term, session: Session | None = None) -> ColumnElement[bool]:
    """One term -> a boolean SQL expression; QuerySyntaxError names the term and position.

    With a ``session``, a few tiny lookups pick the fastest equivalent shape (base model ids
    inlined, rare vs common tags); without one the expression is self-contained.
    """
    if term.text.startswith("tag:"):
        return _tag_filter(term, session)
    match = _TERM.match(term.text)
    if not match:
        if term.text in _COLUMNS or term.text in _BASE_FIELDS or term.text.startswith("metrics."):
            raise _fail(term, f"{term.text} has no operator and value: was the rest cut by your "
                              f"shell? Unquoted, {term.text}<=8 reads from a file named '=8' and "
                              f"{term.text}>8 writes to one named '8'; quote the query: "
                              f"zoo ls '{term.text}<=8'")
        raise _fail(term, f"expected FIELD OP VALUE with OP one of {' '.join(OPS)}, "
                          "or tag:KEY[=VALUE]")
    field, op, text = match["field"], match["op"], match["value"]
    if text == "" and op != "~":
        raise _fail(term, f"missing value after {field}{op}")
    if field.startswith("metrics."):
        return _metric_filter(term, field, op, text)
    if field in _BASE_FIELDS:
        ids = select(BaseModelRow.id).where(_compare(_BASE_FIELDS[field], op, text))
        if session is not None:  # a literal id list lets the (base_model_id, ...) indexes order
            return AdapterRow.base_model_id.in_(list(session.scalars(ids)))
        return AdapterRow.base_model_id.in_(ids)
    spec = _COLUMNS.get(field)
    if spec is None:
        raise _fail(term, f"unknown field {field!r}; allowed: {', '.join(ALLOWED_FIELDS)}")
    value = _parse_value(term, field, spec.kind, text, op)
    return _compare(spec.column, op, value)


def compile_query(query: str | None, session: Session | None = None) -> list[ColumnElement[bool]]:
    """The whole query -> a list of AND-ed conditions (empty for an empty query)."""
    if not query:
        return []
    if not isinstance(query, str):
        raise QuerySyntaxError(f"query must be text, got {type(query).__name__}")
    if len(query) > _MAX_QUERY:
        raise QuerySyntaxError(f"query is {len(query)} characters long; at most {_MAX_QUERY}")
    if "\x00" in query:
        raise QuerySyntaxError("query contains a NUL character")
    return [compile_term(t, session) for t in tokenize(query)]


@dataclass(frozen=True)
class Sort:
    """A sort key: the SQL expression, direction, and whether NULLs can appear."""

    field: str
    expr: Any
    descending: bool
    nullable: bool


def parse_sort(sort: str | None) -> Sort:
    """``FIELD`` or ``-FIELD`` (descending); default ``-created`` (newest first).

    ``created`` sorts by the id, which encodes the creation time to the millisecond."""
    text = (sort or "-created").strip()
    descending = text.startswith("-")
    field = text.lstrip("-+")
    if field.startswith("metrics."):
        dataset, metric = _metric_parts(None, field)
        return Sort(field, latest_metric(metric, dataset), descending, True)
    if field in _BASE_FIELDS:
        column = _BASE_FIELDS[field]
        expr = (select(column).where(BaseModelRow.id == AdapterRow.base_model_id)
                .correlate(AdapterRow).scalar_subquery())
        return Sort(field, expr, descending, field == "base_digest")
    if field == "created":  # ids are time-ordered (ULID-style): the pk index is the order
        return Sort(field, AdapterRow.id, descending, False)
    spec = _COLUMNS.get(field)
    if spec is None:
        raise QuerySyntaxError(f"bad sort field {field!r}; allowed: {', '.join(SORT_FIELDS)} "
                               "(prefix - for descending)")
    return Sort(field, spec.column, descending, spec.nullable)


def order_by(sort: Sort) -> list[Any]:
    """ORDER BY clauses: the key (NULLs last) then the id as a unique tie-breaker."""
    key = sort.expr.desc() if sort.descending else sort.expr.asc()
    if sort.nullable:
        key = key.nulls_last()
    if sort.expr is AdapterRow.id:
        return [key]
    tie = AdapterRow.id.desc() if sort.descending else AdapterRow.id.asc()
    return [key, tie]


def after_condition(sort: Sort, value: Any, last_id: str) -> ColumnElement[bool]:
    """Keyset: rows strictly after (value, last_id) in ``order_by(sort)`` order."""
    e, ident = sort.expr, AdapterRow.id
    tie = ident < last_id if sort.descending else ident > last_id
    if e is ident:
        return tie
    if value is None:  # already in the NULL tail
        return and_(e.is_(None), tie)
    beyond = e < value if sort.descending else e > value
    if not sort.nullable:  # a row-value comparison walks the (key, id) index directly
        pair, bound = tuple_(e, ident), tuple_(value, last_id)
        return pair < bound if sort.descending else pair > bound
    return or_(beyond, and_(e == value, tie), e.is_(None))
