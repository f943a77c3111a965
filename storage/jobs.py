"""Job rows in the catalog: one guarded UPDATE per transition, never past a terminal state.

The states and their moves are :class:`zoo.job_state.JobState`'s. Every write is
``UPDATE jobs SET … WHERE id = :id AND state IN (allowed sources)`` so two writers racing (a
worker finishing while a user cancels, a driver marking FAILED while a retry starts) cannot
overwrite each other: the loser's UPDATE matches no row and it learns the state from the
return value. Statements on the per-job path are built once at import, so SQLAlchemy's
compiled cache serves every job after the first.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from zoo.errors import AmbiguousRefError, JobError, NotFoundError
from zoo.job_state import ACTIVE, TERMINAL, JobState
from zoo.jobspec import JobSpec
from zoo.storage import audit
from zoo.storage.db import Catalog
from zoo.storage.tables import JobRow, new_id

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
STALE_AFTER_S = float(os.environ.get("ZOO_JOB_STALE_S", "120"))
MAX_ERROR_CHARS = 4000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class JobView:
    """A job row as plain data (what ``zoo jobs ls/show --json`` print)."""

    id: str
    sweep_id: str | None
    name: str
    state: JobState
    attempt: int
    max_retries: int
    node: str | None
    worker_pid: int | None
    ray_ref: str | None
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None
    log_uri: str | None
    checkpoint_uri: str | None
    adapter_id: str | None
    spec: dict[str, Any]

    @classmethod
    def of(cls, row: JobRow) -> JobView:
        import json

        return cls(
            id=row.id, sweep_id=row.sweep_id, name=row.name, state=JobState(row.state),
            attempt=row.attempt, max_retries=row.max_retries, node=row.node,
            worker_pid=row.worker_pid, ray_ref=row.ray_ref, submitted_at=row.submitted_at,
            started_at=row.started_at, finished_at=row.finished_at,
            heartbeat_at=row.heartbeat_at, error=row.error, log_uri=row.log_uri,
            checkpoint_uri=row.checkpoint_uri, adapter_id=row.adapter_id,
            spec=json.loads(row.spec),
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out

    def job_spec(self) -> JobSpec:
        return JobSpec.from_dict(self.spec)


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line[:MAX_ERROR_CHARS]


def _update(catalog: Catalog, job_id: str, sources: Sequence[str], values: dict[str, Any],
            *, extra: Any = None, audited: tuple[str, str, Any] | None = None) -> bool:
    """Guarded UPDATE; True when this call moved the row. ``audited`` (verb, target, after):
    an audit row written with the move, in its transaction."""
    cond = sa.and_(JobRow.id == job_id, JobRow.state.in_([str(s) for s in sources]))
    values = {k: str(v) if isinstance(v, JobState) else v for k, v in values.items()}
    if extra is not None:
        cond = sa.and_(cond, extra)

    def run(session: Session) -> bool:
        result = session.execute(sa.update(JobRow).where(cond).values(**values))
        if audited is not None and result.rowcount == 1:
            audit.record(session, audited[0], audited[1], after=audited[2])
        return result.rowcount == 1

    return bool(catalog.run(run))


# ---------------------------------------------------------------- creation / reads ----------


def create_jobs(catalog: Catalog, specs: Sequence[JobSpec], *, sweep_id: str | None = None,
                ) -> list[str]:
    """Insert one PENDING row per spec, all in ONE transaction; returns the job ids."""
    if not specs:
        raise JobError("no jobs to create")
    sweep_id = sweep_id or (new_id() if len(specs) > 1 else None)
    ids = [new_id() for _ in specs]

    def run(session: Session) -> None:
        audit.record_many(session, [audit.entry("submit", f"job:{job_id}", after={
            "name": spec.display_name[:200], "sweep_id": sweep_id})
            for job_id, spec in zip(ids, specs, strict=True)])
        session.execute(sa.insert(JobRow), [
            {"id": job_id, "sweep_id": sweep_id, "name": spec.display_name[:200],
             "spec": spec.to_json(), "state": PENDING.value, "attempt": 0,
             "max_retries": spec.retries, "submitted_at": utcnow()}
            for job_id, spec in zip(ids, specs, strict=True)
        ])

    catalog.run(run)
    return ids


def get_job(catalog: Catalog, job_id: str) -> JobView:
    """One job by id or unique id prefix (NotFoundError otherwise)."""
    def run(session: Session) -> JobView:
        row = session.get(JobRow, job_id)
        if row is None and 4 <= len(job_id) < 26:
            rows = session.scalars(sa.select(JobRow).where(JobRow.id.startswith(job_id)).limit(2)).all()
            if len(rows) == 1:
                row = rows[0]
            elif len(rows) > 1:
                raise AmbiguousRefError(f"job id prefix {job_id!r} matches several jobs")
        if row is None:
            raise NotFoundError(f"no job with id {job_id!r}")
        return JobView.of(row)

    return catalog.run(run, readonly=True)


def list_jobs(catalog: Catalog, *, state: str | None = None, sweep_id: str | None = None,
              ids: Iterable[str] | None = None, limit: int | None = None) -> list[JobView]:
    """Jobs, newest first, optionally by state / sweep / ids."""
    query = sa.select(JobRow).order_by(JobRow.id.desc())
    if state:
        query = query.where(JobRow.state == str(state).upper())
    if sweep_id:  # an id or a unique prefix of one
        query = query.where(JobRow.sweep_id.startswith(sweep_id.lower(), autoescape=True))
    if ids is not None:
        query = query.where(JobRow.id.in_(list(ids)))
    if limit:
        query = query.limit(limit)
    return catalog.run(lambda s: [JobView.of(r) for r in s.scalars(query)], readonly=True)


def set_ray_refs(catalog: Catalog, refs: dict[str, str]) -> None:
    """Remember how to find jobs in Ray (task ref hex or submission id), in ONE transaction."""
    if not refs:
        return

    table = JobRow.__table__
    stmt = (sa.update(table)  # one executemany: the write lock is held for one round trip
            .where(table.c.id == sa.bindparam("jid"),
                   sa.or_(*(table.c.state == state.value for state in ACTIVE)))
            .values(ray_ref=sa.bindparam("ref")))
    params = [{"jid": job_id, "ref": ref[:256]} for job_id, ref in refs.items()]

    def run(session: Session) -> None:
        session.connection().execute(stmt, params)

    catalog.run(run)


# ---------------------------------------------------------------- transitions ---------------


_JOBS = JobRow.__table__
_NOW = sa.bindparam("now", type_=_JOBS.c.heartbeat_at.type)
_ACTIVE_STATE = _JOBS.c.state.in_([state.value for state in ACTIVE])
_START = (
    sa.update(_JOBS).where(_JOBS.c.id == sa.bindparam("job"), _ACTIVE_STATE)
    .values(state=RUNNING.value, attempt=_JOBS.c.attempt + 1, node=sa.bindparam("at_node"),
            worker_pid=sa.bindparam("pid"), heartbeat_at=_NOW,
            started_at=sa.func.coalesce(_JOBS.c.started_at, _NOW))
    .returning(*_JOBS.c))
_LOG_TEXT = sa.bindparam("log_text", type_=sa.Text)
_SUCCEED = (
    sa.update(_JOBS)
    .where(_JOBS.c.id == sa.bindparam("job"), _JOBS.c.state == RUNNING.value,
           _JOBS.c.attempt == sa.bindparam("current"))
    .values(state=SUCCEEDED.value, adapter_id=sa.bindparam("adapter"), finished_at=_NOW, error=None,
            checkpoint_uri=None, log_text=_LOG_TEXT,
            # a log kept in the row replaces any uploaded one; else the newest upload wins
            log_uri=sa.case((_LOG_TEXT.is_not(None), sa.null()),
                            else_=sa.func.coalesce(sa.bindparam("log", type_=sa.String),
                                                   _JOBS.c.log_uri))))
MAX_LOG_TEXT = 256 * 1024  # bytes of final log kept in the row; a longer log stays a blob


def start_attempt(catalog: Catalog, job_id: str, *, node: str | None = None,
                  pid: int | None = None) -> tuple[JobView, int | None]:
    """Start (or restart) an attempt in ONE statement: (the job row now, attempt number).

    The attempt is None when the job is terminal. A job found RUNNING is a retry after the
    previous worker died: the attempt counter moves on and the checkpoint stays, so the new
    attempt resumes from it.
    """
    params = {"job": job_id, "at_node": node or socket.gethostname(),
              "pid": pid if pid is not None else os.getpid(), "now": utcnow()}
    row = catalog.run(lambda session: session.connection().execute(_START, params).first())
    if row is None:  # terminal (or unknown): nothing to run
        return get_job(catalog, job_id), None
    view = JobView.of(row)
    return view, view.attempt


def heartbeat(catalog: Catalog, job_id: str, attempt: int, *, log_uri: str | None = None) -> str:
    """Refresh the heartbeat of THIS attempt; returns the job's state (RUNNING unless stopped).

    A worker whose attempt is no longer current (cancelled, or superseded) learns it here.
    """
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if log_uri is not None:
        values["log_uri"] = log_uri
    if _update(catalog, job_id, (RUNNING,), values, extra=JobRow.attempt == attempt):
        return RUNNING
    return get_job(catalog, job_id).state


def set_checkpoint(catalog: Catalog, job_id: str, attempt: int, uri: str, *,
                   log_uri: str | None = None) -> bool:
    """Record the latest checkpoint (and log) of this attempt, while it is current and RUNNING."""
    values: dict[str, Any] = {"checkpoint_uri": uri, "heartbeat_at": utcnow()}
    if log_uri:
        values["log_uri"] = log_uri
    return _update(catalog, job_id, (RUNNING,), values, extra=JobRow.attempt == attempt)


def log_text(catalog: Catalog, job_id: str) -> str | None:
    """The final log kept in the job's row, or None (then ``log_uri`` names a blob)."""
    return catalog.run(lambda s: s.execute(sa.select(JobRow.log_text).where(JobRow.id == job_id))
                       .scalar(), readonly=True)


def set_log_uri(catalog: Catalog, job_id: str, uri: str) -> None:
    """Point at the latest uploaded log (allowed in any state: the final log lands after)."""
    _update(catalog, job_id, (*ACTIVE, *TERMINAL), {"log_uri": uri})


def succeed_in_transaction(session: Session, job_id: str, attempt: int, adapter_id: str, *,
                           log_uri: str | None = None, log_text: str | None = None) -> None:
    """Mark SUCCEEDED inside the publish transaction (its ``on_commit`` session), with the
    final log as an uploaded blob (``log_uri``) or kept in the row (``log_text``); raise,
    rolling it back, if this attempt is no longer the job's current RUNNING one."""
    moved = session.connection().execute(_SUCCEED, {
        "job": job_id, "current": attempt, "adapter": adapter_id, "now": utcnow(),
        "log": log_uri or None, "log_text": log_text}).rowcount
    if moved != 1:
        state = session.scalar(sa.select(JobRow.state).where(JobRow.id == job_id)) or "missing"
        raise JobError(f"job {job_id} is {state}, not running attempt {attempt}; "
                       "its adapter is not published")


def mark_failed(catalog: Catalog, job_id: str, reason: str, *, attempt: int | None = None) -> bool:
    """FAILED with the reason, unless the job already reached a terminal state."""
    extra = JobRow.attempt == attempt if attempt is not None else None
    return _update(catalog, job_id, ACTIVE,
                   {"state": FAILED, "error": _one_line(reason), "finished_at": utcnow()},
                   extra=extra)


def mark_cancelled(catalog: Catalog, job_id: str, reason: str = "cancelled by user") -> bool:
    """CANCELLED unless already terminal; True if this call cancelled it."""
    return _update(catalog, job_id, ACTIVE,
                   {"state": CANCELLED, "error": _one_line(reason), "finished_at": utcnow()},
                   audited=("cancel", f"job:{job_id}", {"reason": _one_line(reason)}))


def reap_stale(catalog: Catalog, *, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """RUNNING jobs whose heartbeat stopped (worker and driver both gone) → FAILED.

    Ray retries a task whose worker died while its driver lives; this catches the rest (the
    driver died too, the node vanished), so no job stays RUNNING forever.
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    stale = catalog.run(lambda s: list(s.scalars(
        sa.select(JobRow.id).where(JobRow.state == RUNNING.value,
                                   JobRow.heartbeat_at < cutoff))),
        readonly=True)
    reaped = []
    for job_id in stale:
        reason = f"worker lost: no heartbeat for more than {stale_after_s:.0f} s"
        if _update(catalog, job_id, (RUNNING,),
                   {"state": FAILED, "error": reason, "finished_at": utcnow()},
                   extra=JobRow.heartbeat_at < cutoff):
            reaped.append(job_id)
    return reaped


__all__ = [
    "ACTIVE", "CANCELLED", "FAILED", "JobState", "JobView", "PENDING", "RUNNING", "SUCCEEDED",
    "TERMINAL",
    "MAX_LOG_TEXT", "create_jobs", "get_job", "heartbeat", "list_jobs", "log_text",
    "mark_cancelled", "mark_failed",
    "reap_stale", "set_checkpoint", "set_log_uri",
    "set_ray_refs", "start_attempt", "succeed_in_transaction",
]
