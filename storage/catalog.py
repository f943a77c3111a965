"""The adapter catalog: add, resolve, tag, alias, list — functions over a Session.

The caller owns the transaction (``catalog.run(fn)``), so one logical change — e.g. publish =
base model + adapter row + tags + aliases + job update — commits atomically. Every input is
validated before the first write. A page of adapters loads its tags, aliases and eval results in
ONE extra query (``load_extras``), never one query per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
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
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, joinedload, make_transient_to_detached, object_session
from sqlalchemy.orm.attributes import set_committed_value

from zoo.adapter_config import AdapterConfig
from zoo.errors import AdapterFormatError, AmbiguousRefError, ConflictError, InvalidNameError, NotFoundError
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
from zoo.storage import audit
from zoo.storage.query import after_condition, compile_query, order_by, parse_sort
from zoo.storage.sql import insert_ignoring_conflicts, upsert
from zoo.storage.tables import (
    AdapterRow,
    AliasRow,
    BaseModelRow,
    EvalRow,
    JobRow,
    TagRow,
    dataset_label,
    new_id,
    utcnow,
)

__all__ = [
    "AdapterWrite", "Extras", "LOADERS", "Page", "add_adapter", "add_planned", "add_tags",
    "adapter_to_dict", "adapters_by_id", "count_adapters", "insert_adapter", "iter_adapters",
    "list_adapters", "list_aliases",
    "load_extras", "plan_adapter", "referenced_digest", "referenced_digests", "remove_adapters",
    "remove_alias",
    "remove_tags",
    "resolve_many", "resolve_ref", "selection_query", "set_alias",
]

# Explicit loaders (relationships are lazy="raise"): the base model rides along in the page
# query; tags, aliases and eval results of a whole page come in ONE more query (load_extras).
LOADERS = (joinedload(AdapterRow.base_model),)
_EXTRAS = "_zoo_extras"
MAX_PAGE = 100_000
_COLUMNS_OUT = ("id", "name", "digest", "size", "task", "r", "unshared_r", "share_a", "share_b",
                "stride_a", "stride_b", "rotation", "init", "alpha", "dtype", "params",
                "created_at", "job_id", "dataset_fingerprint")


@dataclass
class Extras:
    """What a listing shows besides the adapter row: tags, aliases, eval results."""

    tags: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    # (eval row id, dataset label, metric, value)
    evals: list[tuple[int, str, str, float | None]] = field(default_factory=list)


def _extras_statement() -> Any:
    """Tags, aliases and eval results of a set of adapters (``:ids``), as one UNION ALL.

    Built once with an expanding parameter, so its compiled form is cached and reused."""
    ids = bindparam("ids", expanding=True)
    nul_f, nul_i, nul_s = cast(null(), Float), cast(null(), Integer), cast(null(), String)
    return union_all(
        select(literal("t", String).label("k"), TagRow.adapter_id.label("aid"),
               TagRow.key.label("a"), TagRow.value.label("b"), nul_s.label("c"),
               nul_f.label("v"), nul_i.label("n")).where(TagRow.adapter_id.in_(ids)),
        select(literal("a", String), AliasRow.adapter_id, AliasRow.name, AliasRow.alias,
               nul_s, nul_f, nul_i).where(AliasRow.adapter_id.in_(ids)),
        select(literal("e", String), EvalRow.adapter_id, EvalRow.dataset_name,
               EvalRow.metric, EvalRow.dataset_fingerprint, EvalRow.value, EvalRow.id)
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
        for kind, aid, a, b, c, value, n in result:
            extra = by_id[aid]
            if kind == "t":
                extra.tags.append(f"{a}={b}" if b else a)
            elif kind == "a":
                extra.aliases.append(f"{a}@{b}")
            else:
                extra.evals.append((n, dataset_label(a, c), b, value))
    for row in rows:
        extra = by_id[row.id]
        extra.tags.sort()
        extra.aliases.sort()
        extra.evals.sort()
        setattr(row, _EXTRAS, extra)


# ------------------------------------------------------------------------------------- writes
@dataclass(frozen=True)
class AdapterWrite:
    """A validated adapter row to insert, with its tags and aliases (the base is resolved in
    the transaction: :func:`zoo.storage.bases.base_for_adapter`)."""

    values: dict[str, Any]  # the adapters row, as it will be written (base_model_id aside)
    config: AdapterConfig
    tags: list[Any]
    aliases: list[tuple[str, str]]


def plan_adapter(
    *,
    digest: str,
    size: int,
    config: AdapterConfig | dict[str, Any],
    name: str,
    job_id: str | None = None,
    dataset_fingerprint: str | None = None,
    tags: Iterable[str] = (),
    aliases: Iterable[str] = (),
    created_at: datetime | None = None,
) -> AdapterWrite:
    """Validate everything an adapter row needs, before any write (field named on error)."""
    if not isinstance(config, AdapterConfig):
        config = AdapterConfig.from_dict(config, source="adapter config")
    name = validate_name(name)
    digest = validate_digest(digest)
    tag_list = parse_tags(list(tags))
    alias_list = sorted({parse_name_alias(a, default_name=name) for a in aliases})
    for alias_name, alias in alias_list:
        _check_alias_name(name, alias_name, alias)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise AdapterFormatError(f"size={size!r} must be a non-negative integer")
    if job_id is not None and (not isinstance(job_id, str) or not job_id or len(job_id) > 64):
        raise InvalidNameError(f"job id {job_id!r} must be 1..64 characters")
    if dataset_fingerprint is not None and (
        not isinstance(dataset_fingerprint, str) or len(dataset_fingerprint) > 128
    ):
        raise InvalidNameError("dataset fingerprint must be text of at most 128 characters")
    created_at = (created_at or utcnow()).astimezone(timezone.utc)
    c = config
    values = dict(
        id=new_id(int(created_at.timestamp() * 1000)),  # id order == creation order
        name=name, digest=digest, size=size, params=c.params, config=c.to_json(),
        job_id=job_id, dataset_fingerprint=dataset_fingerprint, created_at=created_at,
        task=c.task, r=c.r, unshared_r=c.unshared_r, share_a=c.share_a, share_b=c.share_b,
        stride_a=c.stride_a, stride_b=c.stride_b, rotation=c.rotation, init=c.init,
        alpha=float(c.alpha), dtype=c.dtype,
    )
    return AdapterWrite(values, config, tag_list, alias_list)


def insert_adapter(session: Session, plan: AdapterWrite, base_id: int) -> bool:
    """Write a planned adapter row with its tags and aliases; False when nothing was inserted
    because this job or these bytes under this name are already published.

    Insert first, look only on conflict: ``INSERT … ON CONFLICT DO NOTHING`` inserts nothing
    for a duplicate (an earlier attempt, or a concurrent publisher on PostgreSQL)."""
    values = {**plan.values, "base_model_id": base_id}
    if insert_ignoring_conflicts(session, AdapterRow, [values]) != 1:
        return False
    _label(session, values["id"], plan.tags, plan.aliases)
    return True


def _label(session: Session, adapter_id: str, tags: Sequence[Any],
           aliases: Sequence[tuple[str, str]]) -> None:
    if tags:
        insert_ignoring_conflicts(session, TagRow, [
            {"adapter_id": adapter_id, "key": t.key, "value": t.value} for t in tags])
    for alias_name, alias in aliases:
        _upsert_alias(session, alias_name, alias, adapter_id)


def _upsert_alias(session: Session, name: str, alias: str, adapter_id: str) -> None:
    upsert(session, AliasRow, {"name": name, "alias": alias, "adapter_id": adapter_id,
                               "updated_at": utcnow()},
           key=("name", "alias"), update=("adapter_id", "updated_at"))


def _check_alias_name(name: str, alias_name: str, alias: str) -> None:
    if alias_name != name:
        raise InvalidNameError(
            f"alias {alias_name}@{alias} must point to an adapter named {alias_name!r}, "
            f"not {name!r}"
        )


def add_adapter(session: Session, *, base_location: str | None = None, base: str | None = None,
                **fields: Any) -> AdapterRow:
    """Insert an adapter row (plus tags and ``NAME@ALIAS``/``ALIAS`` aliases); idempotent.

    ``fields`` are :func:`plan_adapter`'s; ``base``/``base_location`` are
    :func:`zoo.storage.bases.base_for_adapter`'s. The same digest under the same name, or the
    same ``job_id`` with the same bytes, returns the existing adapter (adding the given tags and
    aliases). A ``job_id`` that already published different bytes is a ConflictError.
    """
    return add_planned(session, plan_adapter(**fields), base=base, base_location=base_location)


def add_planned(session: Session, plan: AdapterWrite, *, base: str | None = None,
                base_location: str | None = None) -> AdapterRow:
    """:func:`add_adapter` for an adapter :func:`plan_adapter` already validated."""
    from zoo.storage.bases import base_for_adapter

    values = plan.values
    base_row = base_for_adapter(session, plan.config, explicit=base, location=base_location)
    if not insert_adapter(session, plan, base_row.id):
        existing = _existing(session, values["name"], values["digest"], values["job_id"])
        if existing is None:
            raise ConflictError(f"adapter id {values['id']} collided; publish again")
        _label(session, existing, plan.tags, plan.aliases)
        _audit_publish(session, plan, existing, new=False)
        return _loaded(session, existing)
    _audit_publish(session, plan, values["id"], new=True)
    # A new row's listing fields are exactly what was just written: no reload query.
    base = BaseModelRow(id=base_row.id, name=base_row.name, digest=base_row.digest,
                        location=base_row.location)
    make_transient_to_detached(base)
    make_transient_to_detached(row := AdapterRow(**values, base_model_id=base_row.id))
    row = session.merge(row, load=False)
    set_committed_value(row, "base_model", session.merge(base, load=False))
    setattr(row, _EXTRAS, Extras(tags=sorted({str(t) for t in plan.tags}),
                                 aliases=[f"{n}@{a}" for n, a in plan.aliases]))
    return row


def _audit_publish(session: Session, plan: AdapterWrite, adapter_id: str, *, new: bool) -> None:
    """The audit rows of a publish, in ONE insert: the push (or the tags a re-push added) and
    each alias it moved."""
    name = plan.values["name"]
    rows = [audit.entry("alias.set", f"{n}@{a}", after=adapter_id)
            for n, a in plan.aliases]
    if new:
        rows.insert(0, audit.entry("push", f"{name} {adapter_id}", after={
            "id": adapter_id, "name": name, "digest": plan.values["digest"],
            "tags": sorted(str(t) for t in plan.tags), "job_id": plan.values["job_id"]}))
    elif plan.tags:
        rows.insert(0, audit.entry("tag", f"{name} {adapter_id}",
                                   after=sorted(str(t) for t in plan.tags)))
    audit.record_many(session, rows)


def _tag_list(session: Session, adapter_id: str) -> list[str]:
    return sorted(str(k) if not v else f"{k}={v}" for k, v in session.execute(
        select(TagRow.key, TagRow.value).where(TagRow.adapter_id == adapter_id)))


def _loaded(session: Session, adapter_id: str) -> AdapterRow:
    stmt = (select(AdapterRow).where(AdapterRow.id == adapter_id).options(*LOADERS)
            .execution_options(populate_existing=True))
    row = session.scalars(stmt).unique().one()
    load_extras(session, [row])
    return row


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
    rows = session.execute(_FIND_DUPLICATE, params).all()
    by_job = next((r for r in rows if job_id is not None and r.job_id == job_id), None)
    if by_job is not None and (by_job.name, by_job.digest) != (name, digest):
        raise ConflictError(
            f"job {job_id} already published adapter {by_job.id} "
            f"({by_job.name}, sha256 {by_job.digest[:12]}); refusing a different one"
        )
    found = by_job or (rows[0] if rows else None)
    return None if found is None else found.id


def published_by_job(session: Session, job_id: str) -> AdapterRow | None:
    """The adapter a job published, if any (a retried job never publishes twice)."""
    found = session.scalars(select(AdapterRow.id).where(AdapterRow.job_id == job_id)).first()
    return None if found is None else resolve_ref(session, found)


def add_tags(session: Session, ref: str | AdapterRow, tags: Iterable[str]) -> AdapterRow:
    """Add tags (``label`` or ``key=value``); existing ones are kept, not duplicated."""
    tag_list = parse_tags(list(tags))
    if not tag_list:
        raise InvalidNameError("no tags given")
    adapter = _resolve_id(session, ref)
    before = _tag_list(session, adapter)
    _label(session, adapter, tag_list, ())
    row = _loaded(session, adapter)
    audit.record(session, "tag", f"{row.name} {adapter}", before=before,
                 after=list(getattr(row, _EXTRAS).tags))
    return row


def remove_tags(session: Session, ref: str | AdapterRow, tags: Iterable[str]) -> AdapterRow:
    """Remove tags: ``key=value`` exactly; a bare ``key`` removes the label and every value."""
    tag_list = parse_tags(list(tags))
    if not tag_list:
        raise InvalidNameError("no tags given")
    adapter = _resolve_id(session, ref)
    before = _tag_list(session, adapter)
    for tag in tag_list:
        stmt = delete(TagRow).where(TagRow.adapter_id == adapter, TagRow.key == tag.key)
        if tag.value:
            stmt = stmt.where(TagRow.value == tag.value)
        session.execute(stmt)
    row = _loaded(session, adapter)
    audit.record(session, "untag", f"{row.name} {adapter}", before=before,
                 after=list(getattr(row, _EXTRAS).tags))
    return row


def set_alias(session: Session, name_alias: str, ref: str | AdapterRow) -> AdapterRow:
    """Point ``NAME@ALIAS`` at the adapter ``ref`` (named NAME); moves it in one statement."""
    name, alias = parse_name_alias(name_alias)
    adapter = resolve_ref(session, ref) if isinstance(ref, str) else ref
    _check_alias_name(adapter.name, name, alias)
    before = session.scalar(select(AliasRow.adapter_id).where(AliasRow.name == name,
                                                              AliasRow.alias == alias))
    _upsert_alias(session, name, alias, adapter.id)
    audit.record(session, "alias.set", f"{name}@{alias}", before=before, after=adapter.id)
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
    audit.record(session, "alias.rm", f"{name}@{alias}", before=str(row[0]))
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


def remove_adapters(session: Session, refs: Iterable[str], *, force: bool = False,
                    ) -> list[dict[str, Any]]:
    """Delete adapters from the catalog (their tags, aliases and eval results go with them;
    a job that produced one keeps its row, no longer pointing at it). The blob stays in the
    store until ``gc``. Refused while an alias points at an adapter, unless ``force``.

    Returns what was removed (``id``, ``name``, ``digest``, the ``aliases`` that went)."""
    rows = {row.id: row for row in (resolve_ref(session, ref) for ref in refs)}
    if not rows:
        raise InvalidNameError("no adapters given")
    removed = [{"id": r.id, "name": r.name, "digest": r.digest,
                "aliases": list(getattr(r, _EXTRAS).aliases)} for r in rows.values()]
    pinned = [d for d in removed if d["aliases"]]
    if pinned and not force:
        shown = ", ".join(f"{d['id']} ({' '.join(d['aliases'])})" for d in pinned[:3])
        raise ConflictError(f"aliases point at {shown}; move or remove them first "
                            "(`zoo alias rm`), or pass --force")
    ids = list(rows)
    session.execute(update(JobRow).where(JobRow.adapter_id.in_(ids)).values(adapter_id=None))
    for table in (TagRow, AliasRow, EvalRow):  # explicit: SQLite enforces no cascade unasked
        session.execute(delete(table).where(table.adapter_id.in_(ids)))
    session.execute(delete(AdapterRow).where(AdapterRow.id.in_(ids)))
    audit.record_many(session, [audit.entry("rm", f"{d['name']} {d['id']}", before=d)
                                for d in removed]
                      + [audit.entry("alias.rm", a, before=d["id"])
                         for d in removed for a in d["aliases"]])
    return removed


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
            raise NotFoundError(f"no alias {name}@{alias}{_did_you_mean(session, name, alias)}")
        return row
    text = normalize_id_ref(ref)
    if len(text) == ID_LENGTH:
        stmt = select(AdapterRow).where(AdapterRow.id == text)
    else:  # a prefix: an index range scan, at most 2 rows to tell unique from ambiguous
        stmt = select(AdapterRow).where(AdapterRow.id >= text,
                                        AdapterRow.id.startswith(text, autoescape=True))
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


def _did_you_mean(session: Session, name: str, alias: str) -> str:
    """`` (did you mean sentiment@prod?)`` for the closest existing alias, if one is close."""
    import difflib

    known = [f"{n}@{a}" for n, a in session.execute(
        select(AliasRow.name, AliasRow.alias).order_by(AliasRow.name).limit(5000))]
    close = difflib.get_close_matches(f"{name}@{alias}", known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


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


def referenced_digest(session: Session, digest: str) -> bool:
    """Whether an adapter row references this blob (the server serves no other blob)."""
    return session.scalar(select(AdapterRow.id).where(AdapterRow.digest == digest).limit(1)
                          ) is not None


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
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_PAGE):
        raise InvalidNameError(f"limit={limit!r} must be an integer in 1..{MAX_PAGE} "
                               "(stream everything with iter_adapters / `zoo ls --all`)")
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


def adapters_by_id(session: Session, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The listing entries (``adapter_to_dict``, no config) of these adapter ids."""
    out: dict[str, dict[str, Any]] = {}
    for lo in range(0, len(ids), 500):
        stmt = (select(AdapterRow).where(AdapterRow.id.in_(list(ids[lo:lo + 500])))
                .options(*LOADERS))
        rows = list(session.scalars(stmt).unique())
        load_extras(session, rows)
        out.update({r.id: adapter_to_dict(r, config=False) for r in rows})
    return out


def count_adapters(session: Session, query: str | None = None) -> int:
    """How many adapters match ``query`` (what a listing cut by its limit leaves out)."""
    stmt = select(func.count()).select_from(AdapterRow).where(*compile_query(query, session))
    return int(session.execute(stmt).scalar_one())


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
    """Latest value (highest eval row id) per metric, and per dataset (``name@fingerprint12``:
    two files with the same name are two datasets) and metric."""
    latest: dict[str, Any] = {}
    by_dataset: dict[str, dict[str, Any]] = {}
    for _id, dataset, metric, value in sorted(evals):
        latest[metric] = value
        by_dataset.setdefault(dataset, {})[metric] = value
    return dict(sorted(latest.items())), by_dataset


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
    base: BaseModelRow = row.base_model
    out.update(
        base_model=base.name, base_model_digest=base.digest, tags=list(extra.tags),
        aliases=list(extra.aliases), metrics=metrics, metrics_by_dataset=by_dataset,
        created_at=out["created_at"].isoformat(),
    )
    if config:
        out["config"] = json.loads(row.config)
    return out

