"""The audit trail: one row per change, written in the transaction of the change itself.

Who acted is a context value, not a parameter threaded through every storage function: the team
server sets it to the token's name around each request (:func:`acting_as`), and embedded use
records ``local:<os user>``. A change and its audit row therefore commit together or not at all,
and every caller of the storage layer (CLI, server, workers) is audited the same way.

Verbs recorded: ``push``, ``tag``, ``untag``, ``alias.set``, ``alias.rm``, ``rm``, ``submit``,
``cancel``, ``eval``, ``token.create``, ``token.revoke``, ``gc``, ``base.add``.
``before``/``after`` hold JSON.
"""

from __future__ import annotations

import functools
import getpass
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from zoo.errors import ConfigError
from zoo.names import parse_name_alias
from zoo.storage.tables import AuditRow, utcnow

VERBS = ("push", "tag", "untag", "alias.set", "alias.rm", "rm", "submit", "cancel", "eval",
         "token.create", "token.revoke", "gc", "base.add")
ALIAS_VERBS = ("alias.set", "alias.rm")
MAX_ROWS = 10_000
_actor: ContextVar[str | None] = ContextVar("zoo_audit_actor", default=None)


@functools.cache
def local_actor() -> str:
    """``local:<os user>``: who changes the catalog with direct database access (looked up
    once per process: a job's publish writes an audit row)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's random uid)
        user = "unknown"
    return f"local:{user}"


def current_actor() -> str:
    return _actor.get() or local_actor()


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the changes made inside this block to ``actor`` (a token name)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def entry(verb: str, target: str, before: Any = None, after: Any = None) -> dict[str, Any]:
    """One audit row's values (for :func:`record_many`)."""
    return {"at": utcnow(), "actor": current_actor()[:200], "verb": verb, "target": target[:512],
            "before": None if before is None else json.dumps(before, default=str),
            "after": None if after is None else json.dumps(after, default=str)}


def record(session: Session, verb: str, target: str, before: Any = None, after: Any = None) -> None:
    """Write one audit row inside the caller's transaction."""
    record_many(session, [entry(verb, target, before, after)])


def record_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Several audit rows in ONE statement (a publish with aliases stays one extra insert)."""
    if rows:
        session.execute(insert(AuditRow), list(rows))


def to_dict(row: AuditRow) -> dict[str, Any]:
    """The ``--json`` / API object of an audit row."""
    return {"id": row.id, "at": row.at.isoformat(), "actor": row.actor, "verb": row.verb,
            "target": row.target,
            "before": None if row.before is None else json.loads(row.before),
            "after": None if row.after is None else json.loads(row.after)}


def query(session: Session, *, since: float | None = None, verb: str | None = None,
          target: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Audit rows, oldest first: newer than ``since`` seconds ago, of one verb, one target."""
    if verb is not None and verb not in VERBS:
        raise ConfigError(f"audit verb {verb!r} is not one of {', '.join(VERBS)}")
    if not 1 <= limit <= MAX_ROWS:
        raise ConfigError(f"limit={limit} must be in 1..{MAX_ROWS}")
    stmt = select(AuditRow)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= datetime.now(timezone.utc) - timedelta(seconds=since))
    if verb is not None:
        stmt = stmt.where(AuditRow.verb == verb)
    if target is not None:
        stmt = stmt.where(AuditRow.target == target)
    rows = session.scalars(stmt.order_by(AuditRow.id.desc()).limit(limit)).all()
    return [to_dict(r) for r in reversed(rows)]


def alias_history(session: Session, name_alias: str) -> list[dict[str, Any]]:
    """Every move of ``NAME@ALIAS``, oldest first: set (by ``zoo alias set`` or a push with
    ``--alias``) and removed, with the adapter it pointed at before and after, when, by whom."""
    name, alias = parse_name_alias(name_alias)
    ref = f"{name}@{alias}"
    stmt = (select(AuditRow).where(AuditRow.target == ref,
                                   or_(*(AuditRow.verb == v for v in ALIAS_VERBS)))
            .order_by(AuditRow.id))
    return [to_dict(r) for r in session.scalars(stmt)]
