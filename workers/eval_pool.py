"""``zoo eval`` on Ray: a pool of actors, each holding one base model, streams adapters through it.

Driver (this process): resolve the selection in the catalog, skip adapters already evaluated on
the same dataset fingerprint (unless ``force``), group the rest by base model, cut the groups
into chunks and hand one chunk at a time to each actor (``ray.wait``, no ``ray.get`` loop).
Results come back per chunk and are written to ``eval_results`` in ONE transaction per chunk,
so an adapter's result set is written exactly once: a chunk whose actor died is written by
nobody and is requeued to another actor (a replacement actor is started in its place).

Actor (:class:`EvalWorker`, plain Python wrapped by ``ray.remote``): one per GPU, or one per
CPU slot. It loads a base model once per group (CUDA + bf16 when it was given a GPU, see
``zoo.device``), pulls each adapter from the object store into ``$ZOO_HOME/cache/adapters``
(temp file → sha256 check → rename; a blob that does not hash to its digest is an error row,
not a crash), and scores the chunk with :func:`zoo.batch_eval.evaluate_many`.

The dataset travels as bytes in the object store of Ray (``ray.put`` once): no shared
filesystem between driver and workers is assumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, IntegrityError, NotFoundError, ZooError

ERROR_METRIC = "error"
DEFAULT_CHUNK = 64


@dataclass(frozen=True)
class EvalItem:
    """One adapter to evaluate, as the catalog describes it."""

    id: str
    name: str
    digest: str
    size: int
    base_model: str
    task: str
    labels: tuple[str, ...] | None = None
    # where a zoo job found its base (``zoo-model:sha256:…`` staged by `zoo submit`, or
    # s3://…): the name in the adapter is then only a display name, loadable nowhere
    base_location: str | None = None

    @property
    def group(self) -> tuple[str, str, tuple[str, ...] | None]:
        """Adapters that share one loaded base: the same base (by location when known: two
        staged directories may share a display name), task and head labels."""
        return (self.base_location or self.base_model, self.task, self.labels)


@dataclass
class EvalSummary:
    dataset: str
    fingerprint: str
    total: int = 0
    evaluated: int = 0
    errors: int = 0
    skipped: int = 0
    retried_chunks: int = 0
    elapsed_s: float = 0.0
    error_messages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("dataset", "fingerprint", "total", "evaluated",
                                              "errors", "skipped", "retried_chunks", "elapsed_s",
                                              "error_messages")}


ProgressFn = Callable[[int, int, int], None]  # (done, total, errors)


# ------------------------------------------------------------------------------ worker side
def fetch_adapter(store: Any, item: dict[str, Any], cache: Path) -> bytes:
    """The adapter's bytes, from the local cache or the store, verified against its digest."""
    final = cache / f"{item['digest']}.safetensors"
    if final.is_file():
        data = final.read_bytes()
        if hashlib.sha256(data).hexdigest() == item["digest"]:
            return data
        final.unlink(missing_ok=True)  # a damaged cache entry: fetch again
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{item['digest'][:16]}.", suffix=".incomplete", dir=cache)
    os.close(fd)
    try:
        try:
            digest, size = store.get_file(item["digest"], tmp)
        except NotFoundError:
            raise IntegrityError(f"adapter {item['id']}: blob sha256:{item['digest']} is "
                                 f"missing from the store") from None
        if digest != item["digest"] or size != item["size"]:
            raise IntegrityError(f"adapter {item['id']}: blob sha256:{item['digest']} failed "
                                 f"verification (got sha256:{digest[:12]}…, {size} bytes)")
        data = Path(tmp).read_bytes()
        os.replace(tmp, final)
        tmp = None
        return data
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


class EvalWorker:
    """Holds one base model at a time and evaluates chunks of adapters on it."""

    def __init__(self, store_url: str, dataset: bytes, dataset_name: str, *,
                 batch_size: int = 32, max_examples: int | None = None, max_length: int = 128,
                 metrics: Sequence[str] | None = None, device: str | None = None,
                 home: str | None = None, threads: int | None = None) -> None:
        from zoo.settings import resolve_settings
        from zoo.storage.blobstore import open_store

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.store = open_store(store_url)
        self.store_url, self.home = store_url, home
        root = Path(home or resolve_settings().home) / "cache"
        self.adapter_cache = root / "adapters"
        fingerprint = hashlib.sha256(dataset).hexdigest()
        data_dir = root / "eval-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_path = data_dir / f"{fingerprint}{Path(dataset_name).suffix or '.jsonl'}"
        if not self.data_path.is_file():
            fd, tmp = tempfile.mkstemp(dir=data_dir, suffix=".incomplete")
            with os.fdopen(fd, "wb") as fh:
                fh.write(dataset)
            os.replace(tmp, self.data_path)
        self.options = dict(batch_size=batch_size, metrics=metrics)
        self.max_examples, self.max_length, self.device = max_examples, max_length, device
        self.group: Any = None
        self.loaded: tuple[Any, Any, Any, Any] | None = None  # model, tokenizer, choice, dataset

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, group: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Result dicts ``{id, metrics, examples, elapsed_s, error}`` for every item."""
        from zoo.adapter import Adapter
        from zoo.batch_eval import evaluate_many

        out: dict[str, dict[str, Any]] = {}
        adapters, ids = [], []
        for item in items:
            try:
                data = fetch_adapter(self.store, item, self.adapter_cache)
                adapters.append(Adapter.from_bytes(data, source=f"adapter {item['id']}"))
                ids.append(item["id"])
            except (ZooError, OSError, ValueError) as exc:
                out[item["id"]] = _error(item["id"], exc)
        if adapters:
            try:
                model, tokenizer, choice, dataset = self._load(group, adapters[0])
            except (ZooError, OSError, ValueError) as exc:
                for i in ids:
                    out[i] = _error(i, exc)
            else:
                for res in evaluate_many(model, tokenizer, dataset, adapters,
                                         autocast_dtype=choice.autocast_dtype, **self.options):
                    out[ids[res.index]] = {"id": ids[res.index], "metrics": res.metrics,
                                           "examples": res.examples, "elapsed_s": res.elapsed_s,
                                           "error": res.error}
        return [out[item["id"]] for item in items]

    def _load(self, group: Any, first: Any) -> tuple[Any, Any, Any, Any]:
        if self.loaded is None or self.group != group:
            from zoo.batch_eval import label_names_for_adapter, load_base_for, load_dataset

            self.loaded = None
            model, tokenizer, choice = load_base_for(first, device=self.device,
                                                     base=self._base_path(group[0]))
            dataset = load_dataset(first.config["task"], self.data_path, tokenizer,
                                   max_length=self.max_length, max_examples=self.max_examples,
                                   label_names=label_names_for_adapter(first))
            self.loaded, self.group = (model, tokenizer, choice, dataset), group
        return self.loaded

    def _base_path(self, base: str) -> str | None:
        """A local directory for a job's staged or s3:// base (fetched into this node's cache
        once), None for a name the adapter's own ``base_model`` already resolves."""
        from zoo.storage.staging import fetch_model

        if not is_base_location(base):
            return None
        return fetch_model(base, self.store_url, home=self.home)[0]


def is_base_location(base: str) -> bool:
    """A base the worker must fetch: staged by `zoo submit` into the store, or on S3."""
    from zoo.storage.staging import MODEL_SCHEME

    return base.startswith((MODEL_SCHEME, "s3://"))


def _error(adapter_id: str, exc: BaseException) -> dict[str, Any]:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"id": adapter_id, "metrics": {}, "examples": 0, "elapsed_s": 0.0,
            "error": f"{type(exc).__name__}: {text}"}


# ------------------------------------------------------------------------------ driver side
def read_dataset(uri: str, store_url: str) -> tuple[bytes, str]:
    """(bytes, name) of a local path or ``s3://`` dataset."""
    from zoo.storage.staging import fetch_data

    path = Path(fetch_data(uri, store_url) if uri.startswith("s3://") else uri)
    if not path.is_file():
        raise ConfigError(f"dataset {uri!r} not found (a local file or s3://bucket/key)")
    return path.read_bytes(), uri.rstrip("/").rsplit("/", 1)[-1]


def select_items(catalog: Any, query: str) -> list[EvalItem]:
    """Adapters matching ``query`` with what grouping and pulling need (one light query)."""
    from sqlalchemy import select

    from zoo.storage.query import compile_query
    from zoo.storage.tables import AdapterRow, BaseModelRow, JobRow

    with catalog.transaction(readonly=True) as session:
        stmt = (select(AdapterRow.id, AdapterRow.name, AdapterRow.digest, AdapterRow.size, BaseModelRow.name,
                       AdapterRow.task, AdapterRow.config, JobRow.spec)
                .join(BaseModelRow, AdapterRow.base_model_id == BaseModelRow.id)
                .outerjoin(JobRow, JobRow.id == AdapterRow.job_id)
                .where(*compile_query(query)).order_by(AdapterRow.created_at, AdapterRow.id))
        items = []
        for id_, name, digest, size, base, task, config, spec in session.execute(stmt):
            cfg = json.loads(config)
            labels = cfg.get("label_names") or cfg.get("labels")
            location = json.loads(spec).get("base_model") if spec else None
            items.append(EvalItem(id_, name, digest, int(size), base, task,
                                  tuple(map(str, labels)) if isinstance(labels, list) else None,
                                  location if location and is_base_location(location) else None))
    return items


def already_evaluated(catalog: Any, fingerprint: str, ids: Sequence[str]) -> set[str]:
    """Ids with a successful result on this dataset fingerprint (error rows do not count)."""
    from sqlalchemy import select

    from zoo.storage.tables import EvalRow

    done: set[str] = set()
    with catalog.transaction(readonly=True) as session:
        for i in range(0, len(ids), 500):
            stmt = (select(EvalRow.adapter_id).distinct()
                    .where(EvalRow.dataset_fingerprint == fingerprint,
                           EvalRow.error.is_(None),
                           EvalRow.adapter_id.in_(list(ids[i:i + 500]))))
            done.update(session.scalars(stmt))
    return done


def write_results(catalog: Any, results: Sequence[dict[str, Any]], *, fingerprint: str,
                  dataset_name: str) -> None:
    """One transaction: a row per metric, or one ``error`` row, for each adapter."""
    from zoo.storage.catalog import insert_eval_results

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
    catalog.run_raw(lambda connection: insert_eval_results(connection, rows))


def plan_chunks(items: Sequence[EvalItem], chunk_size: int) -> list[tuple[Any, list[EvalItem]]]:
    """(group, items) chunks; a group's chunks are adjacent so actors rarely switch bases."""
    groups: dict[Any, list[EvalItem]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    return [(key, members[i:i + chunk_size]) for key, members in groups.items()
            for i in range(0, len(members), chunk_size)]


def pool_size(resources: dict[str, float], n_chunks: int,
              max_actors: int | None) -> tuple[int, dict[str, float]]:
    """(actors, per-actor resources): one per GPU when the cluster has GPUs, else per CPU."""
    gpus = int(resources.get("GPU", 0))
    if gpus > 0:
        n, each = gpus, {"num_gpus": 1, "num_cpus": 1}
    else:
        n, each = max(int(resources.get("CPU", 1)), 1), {"num_cpus": 1}
    n = min(n, n_chunks, max_actors or n)
    return max(n, 1), each


class EvalPool:
    """One ``zoo eval`` run: actors, a queue of chunks, retries when an actor dies."""

    def __init__(self, catalog: Any, store_url: str, *, dataset: str, query: str,
                 metrics: Sequence[str] | None = None, batch_size: int = 32,
                 max_examples: int | None = None, max_length: int = 128, force: bool = False,
                 chunk_size: int = DEFAULT_CHUNK, max_actors: int | None = None,
                 device: str | None = None, max_retries: int = 3,
                 worker_home: str | None = None, address: str | None = None) -> None:
        if batch_size < 1 or chunk_size < 1:
            raise ConfigError("batch_size and chunk_size must be >= 1")
        self.catalog, self.store_url, self.query = catalog, store_url, query
        self.data, self.dataset_name = read_dataset(dataset, store_url)
        self.fingerprint = hashlib.sha256(self.data).hexdigest()
        self.worker_kwargs = dict(batch_size=batch_size, max_examples=max_examples,
                                  max_length=max_length, metrics=metrics, device=device,
                                  home=worker_home)
        self.force, self.chunk_size, self.max_actors = force, chunk_size, max_actors
        self.max_retries, self.address = max_retries, address
        self.actors: list[Any] = []

    def run(self, progress: ProgressFn | None = None) -> EvalSummary:
        """Evaluate every selected adapter not yet evaluated; returns the counts."""
        start = time.perf_counter()
        summary = EvalSummary(self.dataset_name, self.fingerprint)
        queue = self._plan(summary)
        if progress is not None:
            progress(summary.skipped, summary.total, 0)
        if queue:
            from zoo.workers.cluster import connect

            connect(self.address)  # only now: nothing to do means no Ray at all
            self._schedule(queue, summary, progress)
        summary.elapsed_s = time.perf_counter() - start
        return summary

    def _plan(self, summary: EvalSummary) -> list[tuple[Any, list[EvalItem]]]:
        items = select_items(self.catalog, self.query)
        if not items:
            raise NotFoundError(f"no adapter matches {self.query!r}")
        summary.total = len(items)
        if not self.force:
            done = already_evaluated(self.catalog, self.fingerprint, [i.id for i in items])
            items = [i for i in items if i.id not in done]
            summary.skipped = summary.total - len(items)
        return plan_chunks(items, self.chunk_size)

    def _schedule(self, queue: list[tuple[Any, list[EvalItem]]], summary: EvalSummary,
                  progress: ProgressFn | None) -> None:
        """One chunk in flight per actor; ``ray.wait`` for the next result; requeue on death."""
        import ray

        n_actors, each = pool_size(ray.available_resources() or ray.cluster_resources(),
                                   len(queue), self.max_actors)
        data_ref = ray.put(self.data)
        actor_cls = ray.remote(max_restarts=0, max_task_retries=0, **each)(EvalWorker)

        def start_actor() -> Any:
            actor = actor_cls.remote(self.store_url, data_ref, self.dataset_name,
                                     threads=int(each.get("num_cpus", 1)), **self.worker_kwargs)
            self.actors.append(actor)
            return actor

        attempts: dict[int, int] = {}
        in_flight: dict[Any, tuple[Any, int]] = {}  # ref -> (actor, chunk number)
        chunks = dict(enumerate(queue))
        pending = list(chunks)

        def submit(actor: Any) -> None:
            if pending:
                n = pending.pop(0)
                group, members = chunks[n]
                in_flight[actor.evaluate.remote(group, [vars(m) for m in members])] = (actor, n)

        try:
            for _ in range(n_actors):
                submit(start_actor())
            while in_flight:
                [ref], _ = ray.wait(list(in_flight), num_returns=1)
                actor, n = in_flight.pop(ref)
                try:
                    results = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    self.actors.remove(actor)
                    attempts[n] = attempts.get(n, 0) + 1
                    if attempts[n] <= self.max_retries:
                        summary.retried_chunks += 1
                        pending.insert(0, n)  # a fresh actor takes it next
                        submit(start_actor())
                        continue
                    results = [_error(m.id, exc) for m in chunks[n][1]]
                except ray.exceptions.RayTaskError as exc:  # a bug in the chunk, not the actor
                    results = [_error(m.id, exc.cause or exc) for m in chunks[n][1]]
                self._record(results, summary)
                if actor in self.actors:
                    submit(actor)
                if progress is not None:
                    progress(summary.skipped + summary.evaluated + summary.errors, summary.total,
                             summary.errors)
        finally:
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []

    def _record(self, results: list[dict[str, Any]], summary: EvalSummary) -> None:
        """Write one chunk's results (one transaction), then count them."""
        write_results(self.catalog, results, fingerprint=self.fingerprint,
                      dataset_name=self.dataset_name)
        for res in results:
            if res["error"]:
                summary.errors += 1
                summary.error_messages[res["id"]] = res["error"]
            else:
                summary.evaluated += 1


def run_eval(catalog: Any, store_url: str, *, dataset: str, query: str,
             address: str | None = None, progress: ProgressFn | None = None,
             **options: Any) -> EvalSummary:
    """One evaluation; Ray is connected (embedded: started in this process) only if needed."""
    return EvalPool(catalog, store_url, dataset=dataset, query=query, address=address,
                    **options).run(progress)


# ------------------------------------------------------------------------------ reading back
LOWER_IS_BETTER = ("loss", "perplexity")


def dataset_keys(dataset: str) -> list[str]:
    """What ``--dataset`` may match: a name or fingerprint; a local file adds its fingerprint."""
    keys = [dataset, dataset.rstrip("/").rsplit("/", 1)[-1]]
    path = Path(dataset)
    if path.is_file():
        keys.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return list(dict.fromkeys(keys))


def leaderboard(catalog: Any, *, dataset: str, metric: str, query: str | None = None,
                top: int | None = 20) -> list[dict[str, Any]]:
    """Adapters ranked by their latest ``metric`` on ``dataset`` (best first).

    Lower is better for loss/perplexity, higher for everything else. Each row carries the
    trainable parameter count and the config fields a plot colours by.
    """
    from sqlalchemy import func, or_, select

    from zoo.storage.query import compile_query
    from zoo.storage.tables import AdapterRow, EvalRow

    if metric == ERROR_METRIC:
        raise ConfigError("metric 'error' is not rankable; choose e.g. loss or accuracy")
    keys = dataset_keys(dataset)
    where_ds = or_(EvalRow.dataset_name.in_(keys), EvalRow.dataset_fingerprint.in_(keys))
    latest = (select(func.max(EvalRow.id).label("id"))
              .where(EvalRow.metric == metric, where_ds, EvalRow.error.is_(None))
              .group_by(EvalRow.adapter_id).subquery())
    order = EvalRow.value.asc() if metric in LOWER_IS_BETTER else EvalRow.value.desc()
    stmt = (select(AdapterRow, EvalRow).join(EvalRow, EvalRow.adapter_id == AdapterRow.id)
            .where(EvalRow.id.in_(select(latest.c.id)), *compile_query(query or None))
            .order_by(order, AdapterRow.id))
    if top:
        stmt = stmt.limit(top)
    with catalog.transaction(readonly=True) as session:
        rows = session.execute(stmt).all()
        out = []
        for rank, (ad, res) in enumerate(rows, start=1):
            out.append({"rank": rank, "id": ad.id, "name": ad.name, "metric": metric,
                        "value": res.value, "params": ad.params, "r": ad.r,
                        "unshared_r": ad.unshared_r, "share_a": ad.share_a,
                        "share_b": ad.share_b, "task": ad.task, "examples": res.n_examples,
                        "dataset": res.dataset_name, "fingerprint": res.dataset_fingerprint})
    if not out:
        raise NotFoundError(f"no {metric!r} results for dataset {dataset!r}"
                            + (f" among adapters matching {query!r}" if query else ""))
    return out
