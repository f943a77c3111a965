"""The catalog API: add, resolve, tag, alias, list — functions over a Session.

The caller owns the transaction (``with catalog.transaction() as s:`` or ``catalog.run(fn)``),
so one logical change — e.g. publish = adapter row + tags + aliases + job update — commits
atomically. Every input is validated before the first write. A page of adapters loads its
tags, aliases and eval results in ONE extra query (``load_extras``), never one query per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    bindparam,
    cast,
    delete,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session, joinedload, make_transient_to_detached, object_session
from sqlalchemy.orm.attributes import set_committed_value

from zoo.errors import (
    AdapterFormatError,
    AmbiguousRefError,
    ConflictError,
    InvalidNameError,
    NotFoundError,
)
from zoo.names import (
    ID_ALPHABET,
    ID_LENGTH,
    normalize_id_ref,
    parse_name_alias,
    parse_tag,
    parse_tags,
    validate_digest,
    validate_name,
)
from zoo.storage.prepared import Prepared
from zoo.storage.query import after_condition, compile_query, order_by, parse_sort
from zoo.storage.tables import (
    AdapterRow,
    AliasRow,
    BaseModelRow,
    EvalRow,
    TagRow,
    new_id,
    utcnow,
)

__all__ = [
    "AdapterRow", "Page", "add_adapter", "resolve_ref", "resolve_many", "add_tags",
    "remove_tags", "set_alias", "remove_alias", "list_aliases", "referenced_digests",
    "list_adapters", "iter_adapters", "adapter_to_dict", "load_extras", "LOADERS",
    "AdapterWrite", "plan_adapter", "insert_adapter", "add_planned", "insert_eval_results",
]

# Explicit loaders (relationships are lazy="raise"): the base model rides along in the page
# query; tags, aliases and eval results of a whole page come in ONE more query (load_extras).
LOADERS = (joinedload(AdapterRow.base_model),)
_EXTRAS = "_zoo_extras"
_INT_FIELDS = ("r", "unshared_r", "share_a", "share_b", "stride_a", "stride_b")


# ----------------------------------------------------------------------------------- helpers
def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert(dialect: str, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The typed catalog columns of an adapter config, validated (field named on error)."""
    if not isinstance(config, dict):
        raise AdapterFormatError(f"adapter config must be a mapping, got {type(config).__name__}")

    def need(key: str, kinds: tuple[type, ...]) -> Any:
        if key not in config:
            raise AdapterFormatError(f"adapter config lacks required field {key!r}")
        value = config[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise AdapterFormatError(f"adapter config field {key}={value!r} must be {names}")
        return value

    cols: dict[str, Any] = {k: need(k, (int,)) for k in _INT_FIELDS}
    cols["task"] = need("task", (str,))
    cols["rotation"] = need("rotation", (bool,))
    cols["init"] = need("init", (str,))
    cols["alpha"] = float(need("alpha", (int, float)))
    cols["dtype"] = need("dtype", (str,))
    cols["base_model"] = need("base_model", (str,))
    digest = config.get("base_model_digest")
    if digest is not None and not isinstance(digest, str):
        raise AdapterFormatError(f"adapter config field base_model_digest={digest!r} must be str")
    cols["base_model_digest"] = digest
    if not cols["base_model"] or len(cols["base_model"]) > 512:
        raise AdapterFormatError("adapter config field base_model must be 1..512 characters")
    return cols


def config_params(config: dict[str, Any]) -> int:
    """Trainable parameters = elements of the A/B tensors, from ``config["modules"]``."""
    from zoo.config import trainable_params

    modules = config.get("modules")
    if not isinstance(modules, dict):
        raise AdapterFormatError("adapter config field 'modules' must be a mapping")
    total = 0
    for path, spec in modules.items():
        try:
            total += trainable_params(
                int(spec["in_features"]), int(spec["out_features"]), r=config["r"],
                unshared_r=config["unshared_r"], share_a=config["share_a"],
                share_b=config["share_b"])
        except (KeyError, TypeError, ValueError):
            raise AdapterFormatError(
                f"adapter config module {path!r} needs integer in_features and out_features"
            ) from None
    return total


_BASE = BaseModelRow.__table__
_BASE_ID = {  # publishing runs these for every adapter: Prepared, executed on the DBAPI
    False: Prepared(select(_BASE.c.id).where(_BASE.c.name == bindparam("name"),
                                             _BASE.c.digest == bindparam("digest"))),
    True: Prepared(select(_BASE.c.id).where(_BASE.c.name == bindparam("name"),
                                            _BASE.c.digest.is_(None))),
}


def _base_model_id(connection: Any, name: str, digest: str | None) -> int:
    """Get or create; a concurrent creator wins the unique index and we read its row.

    Prepared statements and ``ON CONFLICT DO NOTHING``: no savepoint, no flush."""
    params = {"name": name, "digest": digest}
    found = _BASE_ID[digest is None].first(connection, params)
    if found is None:
        _statement(connection.dialect.name, "base").rowcount(connection, params)
        found = _BASE_ID[digest is None].first(connection, params)
        if found is None:
            raise ConflictError(f"base model {name!r} vanished while being registered; retry")
    return int(found[0])


def _as_loaded(session: Session, obj: Any) -> Any:
    """Put an object whose row was just written with Core into the session, as if loaded."""
    make_transient_to_detached(obj)
    return session.merge(obj, load=False)


def _loaded(session: Session, adapter_id: str) -> AdapterRow:
    stmt = (select(AdapterRow).where(AdapterRow.id == adapter_id).options(*LOADERS)
            .execution_options(populate_existing=True))
    row = session.scalars(stmt).unique().one()
    load_extras(session, [row])
    return row


@dataclass
class Extras:
    """What a listing shows besides the adapter row: tags, aliases, eval results."""

    tags: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    evals: list[tuple[int, str, str, float | None]] = field(default_factory=list)


def _extras_statement() -> Any:
    """Tags, aliases and eval results of a set of adapters (``:ids``), as one UNION ALL.

    Built once with an expanding parameter, so its compiled form is cached and reused."""
    ids = bindparam("ids", expanding=True)
    nul_f, nul_i = cast(null(), Float), cast(null(), Integer)
    return union_all(
        select(literal("t", String).label("k"), TagRow.adapter_id.label("aid"),
               TagRow.key.label("a"), TagRow.value.label("b"), nul_f.label("v"),
               nul_i.label("n")).where(TagRow.adapter_id.in_(ids)),
        select(literal("a", String), AliasRow.adapter_id, AliasRow.name, AliasRow.alias,
               nul_f, nul_i).where(AliasRow.adapter_id.in_(ids)),
        select(literal("e", String), EvalRow.adapter_id, EvalRow.dataset_name,
               EvalRow.metric, EvalRow.value, EvalRow.id)
        .where(EvalRow.adapter_id.in_(ids)),
    )


_EXTRAS_STMT = _extras_statement()


def load_extras(session: Session, rows: Sequence[AdapterRow], chunk: int = 500) -> None:
    """Attach tags, aliases and eval results to ``rows`` with one UNION ALL query per chunk
    (one round trip for a page, instead of one per relationship or per row)."""
    by_id: dict[str, Extras] = {r.id: Extras() for r in rows}
    ids = list(by_id)
    for lo in range(0, len(ids), chunk):
        result = session.execute(_EXTRAS_STMT, {"ids": ids[lo:lo + chunk]})
        for kind, aid, a, b, value, n in result:
            extra = by_id[aid]
            if kind == "t":
                extra.tags.append(f"{a}={b}" if b else a)
            elif kind == "a":
                extra.aliases.append(f"{a}@{b}")
            else:
                extra.evals.append((n, a, b, value))
    for row in rows:
        extra = by_id[row.id]
        extra.tags.sort()
        extra.aliases.sort()
        extra.evals.sort()
        setattr(row, _EXTRAS, extra)


def _alias_upsert(stmt: Any) -> Any:
    return stmt.on_conflict_do_update(
        index_elements=["name", "alias"],
        set_={"adapter_id": stmt.excluded.adapter_id, "updated_at": stmt.excluded.updated_at})


_WRITES: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "adapter": (AdapterRow.__table__, lambda stmt: stmt.on_conflict_do_nothing()),
    "base": (BaseModelRow.__table__, lambda stmt: stmt.on_conflict_do_nothing()),
    "tags": (TagRow.__table__, lambda stmt: stmt.on_conflict_do_nothing()),
    "alias": (AliasRow.__table__, _alias_upsert),
}
_STATEMENTS: dict[tuple[str, str], Prepared] = {}


def _statement(dialect: str, kind: str) -> Prepared:
    """The dialect's INSERT … ON CONFLICT for ``kind``, built once per process and run as
    :class:`Prepared` (every publish runs these)."""
    key = (dialect, kind)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        table, on_conflict = _WRITES[kind]
        stmt = _STATEMENTS[key] = Prepared(on_conflict(_insert(dialect, table)))
    return stmt


def _insert_tags(connection: Any, adapter_id: str, tags: Sequence[Any]) -> None:
    if tags:
        rows = [{"adapter_id": adapter_id, "key": t.key, "value": t.value} for t in tags]
        _statement(connection.dialect.name, "tags").execute_many(connection, rows)


def _upsert_alias(connection: Any, name: str, alias: str, adapter_id: str) -> None:
    _statement(connection.dialect.name, "alias").rowcount(connection, {
        "name": name, "alias": alias, "adapter_id": adapter_id, "updated_at": utcnow()})


def _check_alias_name(name: str, alias_name: str, alias: str) -> None:
    if alias_name != name:
        raise InvalidNameError(
            f"alias {alias_name}@{alias} must point to an adapter named {alias_name!r}, "
            f"not {name!r}"
        )


# ------------------------------------------------------------------------------------- writes
@dataclass(frozen=True)
class AdapterWrite:
    """A validated adapter row to insert, with its base model, tags and aliases."""

    values: dict[str, Any]  # the adapters row, as it will be written
    base_name: str
    base_digest: str | None
    tags: list[Any]
    aliases: list[tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object of the row once written (as :func:`adapter_to_dict`)."""
        out = {k: self.values[k] for k in _COLUMNS_OUT}
        out.update(base_model=self.base_name, base_model_digest=self.base_digest,
                   tags=sorted({str(t) for t in self.tags}),
                   aliases=[f"{n}@{a}" for n, a in self.aliases], metrics={},
                   metrics_by_dataset={}, created_at=self.values["created_at"].isoformat(),
                   config=json.loads(self.values["config"]))
        return out


def plan_adapter(
    *,
    digest: str,
    size: int,
    config: dict[str, Any],
    name: str,
    job_id: str | None = None,
    dataset_fingerprint: str | None = None,
    tags: Iterable[str] = (),
    aliases: Iterable[str] = (),
    params: int | None = None,
    created_at: datetime | None = None,
) -> AdapterWrite:
    """Validate everything an adapter row needs, before any write (field named on error)."""
    name = validate_name(name)
    digest = validate_digest(digest)
    tag_list = parse_tags(list(tags))
    alias_list = sorted({parse_name_alias(a, default_name=name) for a in aliases})
    for alias_name, alias in alias_list:
        _check_alias_name(name, alias_name, alias)
    cols = _config_columns(config)
    if params is None:
        params = config_params(config)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise AdapterFormatError(f"size={size!r} must be a non-negative integer")
    if isinstance(params, bool) or not isinstance(params, int) or params < 0:
        raise AdapterFormatError(f"params={params!r} must be a non-negative integer")
    if job_id is not None and (not isinstance(job_id, str) or not job_id or len(job_id) > 64):
        raise InvalidNameError(f"job id {job_id!r} must be 1..64 characters")
    if dataset_fingerprint is not None and (
        not isinstance(dataset_fingerprint, str) or len(dataset_fingerprint) > 128
    ):
        raise InvalidNameError("dataset fingerprint must be text of at most 128 characters")
    base_name, base_digest = cols.pop("base_model"), cols.pop("base_model_digest")
    created_at = (created_at or utcnow()).astimezone(timezone.utc)
    values = dict(
        id=new_id(int(created_at.timestamp() * 1000)),  # id order == creation order
        name=name, digest=digest, size=size, params=params,
        config=json.dumps(config, sort_keys=True, separators=(",", ":")),
        job_id=job_id, dataset_fingerprint=dataset_fingerprint,
        created_at=created_at, **cols,
    )
    return AdapterWrite(values, base_name, base_digest, tag_list, alias_list)


def insert_adapter(connection: Any, plan: AdapterWrite) -> int | None:
    """Write a planned adapter (base model, row, tags, aliases) on a SQLAlchemy or raw
    (``Catalog.run_raw``) connection; returns its base model id, or None when nothing was
    inserted because this job or these bytes under this name are already published.

    Insert first, look only on conflict: ``INSERT … ON CONFLICT DO NOTHING`` inserts nothing
    for a duplicate (an earlier attempt, or a concurrent publisher on PostgreSQL). No lookup
    before, no savepoint, no ORM flush."""
    base_id = _base_model_id(connection, plan.base_name, plan.base_digest)
    values = {**plan.values, "base_model_id": base_id}
    if _statement(connection.dialect.name, "adapter").rowcount(connection, values) != 1:
        return None
    _insert_tags(connection, values["id"], plan.tags)
    for alias_name, alias in plan.aliases:
        _upsert_alias(connection, alias_name, alias, values["id"])
    return base_id


_EVAL_INSERT = Prepared(EvalRow.__table__.insert())


def insert_eval_results(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Eval result rows (``adapter_id``, ``dataset_fingerprint``, ``dataset_name``,
    ``metric``, ``value``; optional ``n_examples``, ``elapsed_s``, ``error``) in one
    ``executemany``, on a SQLAlchemy or raw connection."""
    now = utcnow()
    full = [{"n_examples": 0, "elapsed_s": 0.0, "error": None, "created_at": now, **row}
            for row in rows]  # one statement shape for every row
    _EVAL_INSERT.execute_many(connection, full)


def add_adapter(session: Session, **fields: Any) -> AdapterRow:
    """Insert an adapter row (plus tags and ``NAME@ALIAS``/``ALIAS`` aliases); idempotent.

    ``fields`` are :func:`plan_adapter`'s. The same digest under the same name, or the same
    ``job_id`` with the same bytes, returns the existing adapter (adding the given tags and
    aliases). A ``job_id`` that already published different bytes is a ConflictError.
    Everything is validated before any write.
    """
    return add_planned(session, plan_adapter(**fields))


def add_planned(session: Session, plan: AdapterWrite) -> AdapterRow:
    """:func:`add_adapter` for an adapter :func:`plan_adapter` already validated."""
    values = plan.values
    base_id = insert_adapter(session.connection(), plan)
    if base_id is None:
        existing = _existing(session, values["name"], values["digest"], values["job_id"])
        if existing is None:
            raise ConflictError(f"adapter id {values['id']} collided; publish again")
        return _label_existing(session, existing, plan.tags, plan.aliases)
    # A new row's listing fields are exactly what was just written: no reload query.
    base = _as_loaded(session, BaseModelRow(id=base_id, name=plan.base_name,
                                         digest=plan.base_digest))
    row = _as_loaded(session, AdapterRow(**values, base_model_id=base_id))
    set_committed_value(row, "base_model", base)
    setattr(row, _EXTRAS, Extras(tags=sorted({str(t) for t in plan.tags}),
                                 aliases=[f"{n}@{a}" for n, a in plan.aliases]))
    return row


def _label_existing(session: Session, existing_id: str, tags: Sequence[Any],
                    aliases: Sequence[tuple[str, str]]) -> AdapterRow:
    """Idempotent publish: add the tags and aliases to the adapter already there."""
    connection = session.connection()
    _insert_tags(connection, existing_id, tags)
    for alias_name, alias in aliases:
        _upsert_alias(connection, alias_name, alias, existing_id)
    return _loaded(session, existing_id)


_ADAPTERS = AdapterRow.__table__
_FIND_DUPLICATE = (
    select(_ADAPTERS.c.id, _ADAPTERS.c.name, _ADAPTERS.c.digest, _ADAPTERS.c.job_id)
    .where(((_ADAPTERS.c.name == bindparam("name")) & (_ADAPTERS.c.digest == bindparam("digest")))
           | (_ADAPTERS.c.job_id == bindparam("job_id")))  # job_id NULL matches nothing
    .limit(2)
)


def _existing(session: Session, name: str, digest: str, job_id: str | None) -> str | None:
    """The id of the adapter this publish would duplicate: by job id (which must hold the same
    bytes), else by (name, digest). One indexed query for both."""
    params = {"name": name, "digest": digest, "job_id": job_id}
    rows = session.connection().execute(_FIND_DUPLICATE, params).all()
    by_job = next((r for r in rows if job_id is not None and r.job_id == job_id), None)
    if by_job is not None and (by_job.name, by_job.digest) != (name, digest):
        raise ConflictError(
            f"job {job_id} already published adapter {by_job.id} "
            f"({by_job.name}, sha256 {by_job.digest[:12]}); refusing a different one"
        )
    found = by_job or (rows[0] if rows else None)
    return None if found is None else found.id


def add_tags(session: Session, ref: str | AdapterRow, tags: Iterable[str]) -> AdapterRow:
    """Add tags (``label`` or ``key=value``); existing ones are kept, not duplicated."""
    tag_list = parse_tags(list(tags))
    if not tag_list:
        raise InvalidNameError("no tags given")
    adapter = _resolve_id(session, ref)
    _insert_tags(session.connection(), adapter, tag_list)
    return _loaded(session, adapter)


def remove_tags(session: Session, ref: str | AdapterRow, tags: Iterable[str]) -> AdapterRow:
    """Remove tags: ``key=value`` exactly; a bare ``key`` removes the label and every value."""
    tag_list = parse_tags(list(tags))
    if not tag_list:
        raise InvalidNameError("no tags given")
    adapter = _resolve_id(session, ref)
    for tag in tag_list:
        stmt = delete(TagRow).where(TagRow.adapter_id == adapter, TagRow.key == tag.key)
        if tag.value:
            stmt = stmt.where(TagRow.value == tag.value)
        session.execute(stmt)
    return _loaded(session, adapter)


def set_alias(session: Session, name_alias: str, ref: str | AdapterRow) -> AdapterRow:
    """Point ``NAME@ALIAS`` at the adapter ``ref`` (named NAME); moves it in one statement."""
    name, alias = parse_name_alias(name_alias)
    adapter = resolve_ref(session, ref) if isinstance(ref, str) else ref
    _check_alias_name(adapter.name, name, alias)
    _upsert_alias(session.connection(), name, alias, adapter.id)
    return _loaded(session, adapter.id)


def remove_alias(session: Session, name_alias: str) -> str:
    """Delete ``NAME@ALIAS``; returns the adapter id it pointed to."""
    name, alias = parse_name_alias(name_alias)
    row = session.execute(
        delete(AliasRow).where(AliasRow.name == name, AliasRow.alias == alias)
        .returning(AliasRow.adapter_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no alias {name}@{alias}")
    return str(row[0])


def list_aliases(session: Session, name: str | None = None) -> list[dict[str, Any]]:
    """Every alias (optionally of one name), sorted, as dicts."""
    stmt = select(AliasRow).order_by(AliasRow.name, AliasRow.alias)
    if name is not None:
        stmt = stmt.where(AliasRow.name == validate_name(name))
    return [
        {"name": a.name, "alias": a.alias, "ref": f"{a.name}@{a.alias}",
         "adapter_id": a.adapter_id, "updated_at": a.updated_at.isoformat()}
        for a in session.scalars(stmt)
    ]


# -------------------------------------------------------------------------------------- reads
def _resolve_id(session: Session, ref: str | AdapterRow) -> str:
    if isinstance(ref, AdapterRow):
        return ref.id
    return resolve_ref(session, ref, load=False).id


def resolve_ref(session: Session, ref: str, *, load: bool = True) -> AdapterRow:
    """An adapter id, a unique id prefix (>= 4 chars) or ``NAME@ALIAS`` -> the adapter."""
    if not isinstance(ref, str):
        raise NotFoundError(f"no adapter {ref!r}: a REF must be text")
    options = LOADERS if load else ()
    row = _resolve(session, ref, options)
    if load:
        load_extras(session, [row])
    return row


def _resolve(session: Session, ref: str, options: Sequence[Any]) -> AdapterRow:
    if "@" in ref:
        try:
            name, alias = parse_name_alias(ref)
        except InvalidNameError as exc:
            raise NotFoundError(f"no adapter {ref!r}: {exc}") from None
        stmt = (select(AdapterRow).join(AliasRow, AliasRow.adapter_id == AdapterRow.id)
                .where(AliasRow.name == name, AliasRow.alias == alias).options(*options))
        row = session.scalars(stmt).unique().first()
        if row is None:
            raise NotFoundError(f"no alias {name}@{alias}")
        return row
    text = normalize_id_ref(ref)
    if len(text) == ID_LENGTH:
        stmt = select(AdapterRow).where(AdapterRow.id == text)
    else:  # a prefix: an index range scan, at most 2 rows to tell unique from ambiguous
        stmt = select(AdapterRow).where(AdapterRow.id >= text, AdapterRow.id.startswith(text,
                                                                              autoescape=True))
        upper = _prefix_upper_bound(text)
        if upper is not None:
            stmt = stmt.where(AdapterRow.id < upper)
        stmt = stmt.order_by(AdapterRow.id).limit(2)
    rows = session.scalars(stmt.options(*options)).unique().all()
    if not rows:
        raise NotFoundError(f"no adapter with id or id prefix {text!r}")
    if len(rows) > 1:
        raise AmbiguousRefError(
            f"id prefix {text!r} matches several adapters ({rows[0].id}, {rows[1].id}, ...); "
            "give more characters"
        )
    return rows[0]


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest id-alphabet string above every id starting with ``prefix`` (None: no
    bound). Staying inside [0-9a-z] keeps the range right under any database collation."""
    chars = list(prefix)
    while chars:
        pos = ID_ALPHABET.index(chars[-1])
        if pos + 1 < len(ID_ALPHABET):
            chars[-1] = ID_ALPHABET[pos + 1]
            return "".join(chars)
        chars.pop()
    return None


def selection_query(tag: str | None, query: str | None) -> str:
    """One query text for "this tag AND this query" (empty when neither is given)."""
    return " ".join(p for p in (f"tag:{parse_tag(tag)}" if tag else "", query or "") if p)


def resolve_many(
    session: Session,
    refs: Iterable[str] = (),
    tag: str | None = None,
    query: str | None = None,
) -> list[AdapterRow]:
    """Refs (each must resolve) plus every adapter matching ``tag`` AND ``query``; deduped."""
    out: dict[str, AdapterRow] = {}
    for ref in refs:
        row = resolve_ref(session, ref)
        out.setdefault(row.id, row)
    text = selection_query(tag, query)
    if text:
        for row in iter_adapters(session, text, expunge=False):
            out.setdefault(row.id, row)
    return list(out.values())


def referenced_digests(session: Session) -> set[str]:
    """Every digest a catalog row references (gc must never delete these)."""
    return set(session.scalars(select(AdapterRow.digest).distinct()))


class Page(list):  # type: ignore[type-arg]
    """A list of adapters plus ``next_after``: pass it as ``after`` for the next page."""

    next_after: tuple[Any, str] | None = None


def list_adapters(
    session: Session,
    query: str | None = None,
    sort: str | None = "-created",
    limit: int | None = 50,
    after: tuple[Any, str] | None = None,
) -> Page:
    """One page of adapters matching ``query``, ordered by ``sort`` (keyset pagination)."""
    conds = compile_query(query, session)
    spec = parse_sort(sort)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidNameError(f"limit={limit!r} must be a positive integer")
    key = spec.expr.label("sort_key")
    stmt = select(AdapterRow, key).where(*conds).order_by(*order_by(spec)).options(*LOADERS)
    if after is not None:
        stmt = stmt.where(after_condition(spec, after[0], after[1]))
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = session.execute(stmt).unique().all()
    page = Page(r[0] for r in rows)
    load_extras(session, page)
    if rows and limit is not None and len(rows) == limit:
        page.next_after = (rows[-1][1], rows[-1][0].id)
    return page


def iter_adapters(
    session: Session,
    query: str | None = None,
    sort: str | None = "-created",
    *,
    page_size: int = 500,
    expunge: bool = True,
) -> Iterator[AdapterRow]:
    """Stream every match page by page in constant memory (rows are expunged after use)."""
    after = None
    while True:
        page = list_adapters(session, query, sort, page_size, after)
        yield from page
        if expunge:
            for row in page:
                session.expunge(row)
        if page.next_after is None:
            return
        after = page.next_after


# ------------------------------------------------------------------------------------- output
def _metrics(evals: Sequence[tuple[int, str, str, float | None]],
             ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Latest value (highest eval row id) per metric, and per dataset and metric."""
    latest: dict[str, Any] = {}
    by_dataset: dict[str, dict[str, Any]] = {}
    for _id, dataset, metric, value in sorted(evals):
        latest[metric] = value
        by_dataset.setdefault(dataset, {})[metric] = value
    return dict(sorted(latest.items())), by_dataset


_COLUMNS_OUT = ("id", "name", "digest", "size", "task", "r", "unshared_r", "share_a", "share_b",
                "stride_a", "stride_b", "rotation", "init", "alpha", "dtype", "params",
                "created_at", "job_id", "dataset_fingerprint")


def adapter_to_dict(row: AdapterRow, *, config: bool = True) -> dict[str, Any]:
    """The ``--json`` object of an adapter (loaded by resolve_ref/list_adapters/add_*).

    ``config=False`` leaves out the full config (listings: smaller output, less parsing).
    """
    extra = getattr(row, _EXTRAS, None)
    if extra is None:  # a row loaded some other way: fetch its extras now (one query)
        session = object_session(row)
        if session is None:
            raise ValueError(f"adapter {row.id} is detached and was loaded without its tags")
        load_extras(session, [row])
        extra = getattr(row, _EXTRAS)
    metrics, by_dataset = _metrics(extra.evals)
    # Loaded column values straight from the instance dict (no descriptor per attribute).
    loaded = row.__dict__
    out = {k: loaded[k] if k in loaded else getattr(row, k) for k in _COLUMNS_OUT}
    base = row.base_model
    out.update(
        base_model=base.name, base_model_digest=base.digest, tags=list(extra.tags),
        aliases=list(extra.aliases), metrics=metrics, metrics_by_dataset=by_dataset,
        created_at=out["created_at"].isoformat(),
    )
    if config:
        out["config"] = json.loads(row.config)
    return out
