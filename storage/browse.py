"""Reads the web catalog's pages need beyond the catalog API: picker choices, a page of jobs.

Listing, resolving, counting and ranking adapters are ``zoo.storage.catalog``'s and
``zoo.storage.evals``'s; this module holds only what a browser asks that the CLI never does —
which datasets and metrics have results (the leaderboard's pickers) and jobs one page at a time
by keyset (the jobs page), each one indexed query.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zoo.storage.evals import ERROR_METRIC
from zoo.storage.jobs import JobView
from zoo.storage.tables import EvalRow, JobRow, dataset_label

MAX_JOB_PAGE = 500


@dataclass(frozen=True)
class DatasetChoice:
    """A dataset with results: its content digest, a name it ran under, and its metrics."""

    fingerprint: str
    name: str
    metrics: tuple[str, ...]

    @property
    def label(self) -> str:
        return dataset_label(self.name, self.fingerprint)


def eval_datasets(session: Session) -> list[DatasetChoice]:
    """Every dataset with a successful result and the metrics measured on it, by label."""
    stmt = (select(EvalRow.dataset_fingerprint, EvalRow.metric, func.min(EvalRow.dataset_name))
            .where(EvalRow.metric != ERROR_METRIC, EvalRow.error.is_(None))
            .group_by(EvalRow.dataset_fingerprint, EvalRow.metric))
    names: dict[str, str] = {}
    metrics: dict[str, list[str]] = {}
    for fingerprint, metric, name in session.execute(stmt):
        names[fingerprint] = name
        metrics.setdefault(fingerprint, []).append(metric)
    out = [DatasetChoice(fp, names[fp], tuple(sorted(ms))) for fp, ms in metrics.items()]
    return sorted(out, key=lambda d: (d.label, d.fingerprint))


@dataclass
class JobPage:
    """Jobs newest first, and the id to pass as ``before`` for the next page (None: last)."""

    jobs: list[JobView]
    next_before: str | None


def job_page(session: Session, *, state: str | None = None, before: str | None = None,
             limit: int = 50) -> JobPage:
    """One page of jobs by id descending (ids are time-ordered), optionally in one state.

    Keyset on the primary key (``id < before``), never OFFSET: page 2,000 costs what page 1
    does. The ``state`` filter walks the state index."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_JOB_PAGE:
        raise ValueError(f"limit={limit!r} must be an integer in 1..{MAX_JOB_PAGE}")
    stmt = select(JobRow).order_by(JobRow.id.desc()).limit(limit + 1)
    if state:
        stmt = stmt.where(JobRow.state == state)
    if before:
        stmt = stmt.where(JobRow.id < before)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    views = [JobView.of(r) for r in rows[:limit]]
    return JobPage(views, views[-1].id if more else None)


def job_states(session: Session) -> dict[str, int]:
    """How many jobs are in each state (the jobs page's filter shows the counts)."""
    stmt = select(JobRow.state, func.count()).group_by(JobRow.state)
    return {state: int(n) for state, n in session.execute(stmt)}


__all__ = ["DatasetChoice", "JobPage", "eval_datasets", "job_page", "job_states"]
