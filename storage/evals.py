"""Evaluation results in the catalog: what to evaluate, what was, and the ranking.

``zoo eval`` (``zoo.workers.eval_pool``) asks here which adapters a selection covers, with the
registered base each must be evaluated on (``zoo.storage.bases``), skips those already
evaluated on the same dataset fingerprint, and writes one row per metric (or one ``error`` row)
per adapter. ``zoo leaderboard`` reads the latest row per adapter back, ranked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zoo.batch_eval import LOWER_IS_BETTER
from zoo.errors import AmbiguousRefError, ConfigError, NotFoundError
from zoo.files import sha256_file
from zoo.storage import audit
from zoo.storage.bases import BaseLocation
from zoo.storage.db import Catalog
from zoo.storage.query import DATASET_PREFIX, DATASET_PREFIX_MIN, compile_query
from zoo.storage.tables import AdapterRow, BaseModelRow, EvalRow, dataset_label, utcnow
from zoo.untrusted import clip

ERROR_METRIC = "error"


@dataclass(frozen=True)
class EvalItem:
    """One adapter to evaluate, as the catalog describes it, with its registered base (None
    when the base has no registered location: the adapter becomes an error row)."""

    id: str
    name: str
    digest: str
    size: int
    task: str
    labels: tuple[str, ...] | None = None
    base_name: str = ""
    base: BaseLocation | None = None

    @property
    def group(self) -> tuple[Any, ...]:
        """Adapters that share one loaded base: the same registered base, task and labels."""
        base = (self.base.location, self.base.digest) if self.base else self.base_name
        return (base, self.task, self.labels)


def select_items(catalog: Catalog, query: str) -> list[EvalItem]:
    """Adapters matching ``query`` with what grouping and fetching need (one light query)."""
    stmt = (select(AdapterRow.id, AdapterRow.name, AdapterRow.digest, AdapterRow.size,
                   AdapterRow.task, AdapterRow.config, BaseModelRow.name, BaseModelRow.digest,
                   BaseModelRow.location)
            .join(BaseModelRow, AdapterRow.base_model_id == BaseModelRow.id)
            .where(*compile_query(query)).order_by(AdapterRow.created_at, AdapterRow.id))

    def run(session: Session) -> list[EvalItem]:
        items = []
        for id_, name, digest, size, task, config, base, base_digest, where in session.execute(stmt):
            labels = json.loads(config).get("labels")
            items.append(EvalItem(
                id_, name, digest, int(size), task,
                tuple(map(str, labels)) if isinstance(labels, list) else None, base,
                BaseLocation(base, base_digest, where) if where else None))
        return items

    return catalog.run(run, readonly=True)


def already_evaluated(catalog: Catalog, fingerprint: str, ids: Sequence[str]) -> set[str]:
    """Ids with a successful result on this dataset fingerprint (error rows do not count)."""
    def run(session: Session) -> set[str]:
        done: set[str] = set()
        for i in range(0, len(ids), 500):
            stmt = (select(EvalRow.adapter_id).distinct()
                    .where(EvalRow.dataset_fingerprint == fingerprint, EvalRow.error.is_(None),
                           EvalRow.adapter_id.in_(list(ids[i:i + 500]))))
            done.update(session.scalars(stmt))
        return done

    return catalog.run(run, readonly=True)


def insert_eval_results(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Eval result rows (``adapter_id``, ``dataset_fingerprint``, ``dataset_name``, ``metric``,
    ``value``; optional ``n_examples``, ``elapsed_s``, ``error``) in one ``executemany``."""
    if not rows:
        return
    now = utcnow()
    session.connection().execute(EvalRow.__table__.insert(), [
        {"n_examples": 0, "elapsed_s": 0.0, "error": None, "created_at": now, **row}
        for row in rows])


def write_results(catalog: Catalog, results: Sequence[dict[str, Any]], *, fingerprint: str,
                  dataset_name: str) -> None:
    """One transaction: a row per metric, or one ``error`` row, for each adapter's result
    (``{id, metrics, examples, elapsed_s, error}``)."""
    rows = []
    for res in results:
        common = dict(adapter_id=res["id"], dataset_fingerprint=fingerprint,
                      dataset_name=dataset_name[:256], n_examples=res["examples"],
                      elapsed_s=float(res["elapsed_s"]))
        if res["error"]:
            rows.append(dict(metric=ERROR_METRIC, value=None, error=res["error"], **common))
        else:
            rows.extend(dict(metric=m, value=float(v), **common)
                        for m, v in sorted(res["metrics"].items()))
    def run(session: Session) -> None:
        insert_eval_results(session, rows)
        audit.record(session, "eval", dataset_label(dataset_name[:256], fingerprint), after={
            "adapters": len(results), "errors": sum(bool(r["error"]) for r in results)})

    catalog.run(run)


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as the catalog knows it: its content digest, and the name it was run under."""

    fingerprint: str
    name: str

    @property
    def label(self) -> str:
        return dataset_label(self.name, self.fingerprint)


def resolve_dataset(catalog: Catalog, text: str) -> DatasetRef:
    """A ``--dataset`` argument: a data file (identified by its content: it is hashed), or a
    sha256 / unique prefix of at least 8 hex characters (what `zoo eval` prints) among the
    datasets with results. Never a file name: two files may share one."""
    path = Path(text).expanduser()
    if path.is_file():
        return DatasetRef(sha256_file(path)[0], path.name)
    if not DATASET_PREFIX.fullmatch(text):
        raise NotFoundError(f"no dataset {clip(text, 80)!r}: give the data file (it is known by "
                            f"its content) or its sha256 (at least {DATASET_PREFIX_MIN} hex "
                            "characters, as `zoo eval` prints it)")
    stmt = (select(EvalRow.dataset_fingerprint, func.min(EvalRow.dataset_name))
            .where(EvalRow.dataset_fingerprint.startswith(text, autoescape=True))
            .group_by(EvalRow.dataset_fingerprint).limit(3))
    found = catalog.run(lambda s: [DatasetRef(*row) for row in s.execute(stmt)], readonly=True)
    if not found:
        raise NotFoundError(f"no results for a dataset with sha256 {text}…")
    if len(found) > 1:
        shown = ", ".join(d.label for d in found)
        raise AmbiguousRefError(f"sha256 prefix {text} matches several datasets ({shown}); "
                                "give more characters")
    return found[0]


def leaderboard(catalog: Catalog, *, dataset: str, metric: str, query: str | None = None,
                top: int | None = 20) -> list[dict[str, Any]]:
    """Adapters ranked by their latest ``metric`` on ``dataset`` (best first).

    Lower is better for loss/perplexity, higher for everything else. Each row carries the
    trainable parameter count and the config fields a plot colours by.
    """
    if metric == ERROR_METRIC:
        raise ConfigError("metric 'error' is not rankable; choose e.g. loss or accuracy")
    ref = resolve_dataset(catalog, dataset)
    latest = (select(func.max(EvalRow.id).label("id"))
              .where(EvalRow.metric == metric, EvalRow.dataset_fingerprint == ref.fingerprint,
                     EvalRow.error.is_(None))
              .group_by(EvalRow.adapter_id).subquery())
    order = EvalRow.value.asc() if metric in LOWER_IS_BETTER else EvalRow.value.desc()
    stmt = (select(AdapterRow, EvalRow).join(EvalRow, EvalRow.adapter_id == AdapterRow.id)
            .where(EvalRow.id.in_(select(latest.c.id)), *compile_query(query or None))
            .order_by(order, AdapterRow.id))
    if top:
        stmt = stmt.limit(top)

    def run(session: Session) -> list[dict[str, Any]]:
        return [{"rank": rank, "id": ad.id, "name": ad.name, "metric": metric,
                 "value": res.value, "params": ad.params, "r": ad.r,
                 "unshared_r": ad.unshared_r, "share_a": ad.share_a, "share_b": ad.share_b,
                 "task": ad.task, "examples": res.n_examples,
                 "dataset": dataset_label(res.dataset_name, res.dataset_fingerprint),
                 "dataset_sha256": res.dataset_fingerprint}
                for rank, (ad, res) in enumerate(session.execute(stmt).all(), start=1)]

    out = catalog.run(run, readonly=True)
    if not out:
        raise NotFoundError(f"no {metric!r} results for dataset {ref.label}"
                            + (f" among adapters matching {query!r}" if query else ""))
    return out
