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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, NotFoundError, ZooError
from zoo.settings import endpoint_env
from zoo.storage.db import Catalog
from zoo.storage.evals import EvalItem, already_evaluated, select_items, write_results

DEFAULT_CHUNK = 64


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
        """The JSON of `zoo eval --json`; the dataset is named as in `zoo leaderboard --json`."""
        out = {k: getattr(self, k) for k in ("dataset", "total", "evaluated", "errors",
                                             "skipped", "retried_chunks", "elapsed_s",
                                             "error_messages")}
        return {**out, "dataset_sha256": self.fingerprint}


ProgressFn = Callable[[int, int, int], None]  # (done, total, errors)


# ------------------------------------------------------------------------------ worker side
class EvalWorker:
    """Holds one base model at a time and evaluates chunks of adapters on it.

    Failures stay with their adapter: a blob that does not verify, a file that does not load,
    an adapter that does not fit the base, or one that breaks a batched forward is an error
    row for that adapter only; a base that cannot be loaded errors its group."""

    def __init__(self, store_url: str, dataset: bytes, dataset_name: str, *,
                 batch_size: int = 32, max_examples: int | None = None, max_length: int = 128,
                 metrics: Sequence[str] | None = None, device: str | None = None,
                 home: str | None = None, threads: int | None = None) -> None:
        from zoo.files import write_atomic
        from zoo.settings import adopt_forwarded_endpoint, resolve_settings
        from zoo.storage.blobstore import open_store

        if threads:
            import torch

            torch.set_num_threads(threads)
        adopt_forwarded_endpoint()
        self.store = open_store(store_url)
        self.store_url, self.home = store_url, home
        root = Path(home or resolve_settings().home) / "cache"
        self.adapter_cache = root / "adapters"
        fingerprint = hashlib.sha256(dataset).hexdigest()
        self.data_path = root / "eval-data" / f"{fingerprint}{Path(dataset_name).suffix or '.jsonl'}"
        if not self.data_path.is_file():
            write_atomic(self.data_path, dataset, fsync=False)
        self.options = dict(batch_size=batch_size, metrics=metrics)
        self.max_examples, self.max_length, self.device = max_examples, max_length, device
        self.group: Any = None
        self.loaded: tuple[Any, Any, Any, Any] | None = None  # model, tokenizer, choice, dataset

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, group: Any, items: list[EvalItem]) -> list[dict[str, Any]]:
        """Result dicts ``{id, metrics, examples, elapsed_s, error}`` for every item."""
        out: dict[str, dict[str, Any]] = {}
        by_head: dict[tuple[str, ...], dict[str, Any]] = {}
        for item in items:
            try:
                adapter = self._adapter(item)
            except (ZooError, OSError, ValueError) as exc:
                out[item.id] = _error(item.id, exc)
                continue
            # a seq-cls base is loaded with a head of the adapters' classes: adapters whose
            # heads differ (no recorded labels, other sizes) never share one, so one cannot
            # make the others misfit
            by_head.setdefault(tuple(adapter.label_names() or ()), {})[item.id] = adapter
        for head, adapters in by_head.items():
            try:
                loaded = self._load((group, head), items[0], next(iter(adapters.values())))
            except (ZooError, OSError, ValueError) as exc:
                out.update({i: _error(i, exc) for i in adapters})
            else:
                out.update(self._score(loaded, adapters))
        return [out[item.id] for item in items]

    def _adapter(self, item: EvalItem) -> Any:
        """The adapter, fetched verified into this node's cache (or found there intact)."""
        from zoo.adapter import Adapter
        from zoo.storage.fetch import fetch_cached

        path = fetch_cached(self.store, item.digest, self.adapter_cache / f"{item.digest}.safetensors",
                            size=item.size, what=f"adapter {item.id} ({item.name})")
        return Adapter.load(path)

    def _score(self, loaded: tuple[Any, Any, Any, Any],
               adapters: dict[str, Any]) -> dict[str, dict[str, Any]]:
        from zoo.batch_eval import evaluate_many

        model, tokenizer, choice, dataset = loaded
        ids = list(adapters)
        results = evaluate_many(model, tokenizer, dataset, list(adapters.values()),
                                autocast_dtype=choice.autocast_dtype, **self.options)
        return {ids[r.index]: {"id": ids[r.index], "metrics": r.metrics, "examples": r.examples,
                               "elapsed_s": r.elapsed_s, "error": r.error} for r in results}

    def _load(self, group: Any, item: EvalItem, first: Any) -> tuple[Any, Any, Any, Any]:
        """The group's base, from its REGISTERED location (digest checked), and the dataset
        tokenised for it; kept while the next chunk is of the same group."""
        if self.loaded is None or self.group != group:
            from zoo.batch_eval import load_base_for, load_dataset
            from zoo.storage.bases import load_base_dir

            self.loaded = None
            if item.base is None:
                raise NotFoundError(f"base model {item.base_name!r} has no registered "
                                    f"location; run `zoo base add {item.base_name} LOCATION`")
            base_dir = load_base_dir(item.base, self.store_url, home=self.home)
            model, tokenizer, choice = load_base_for(first, base_dir, device=self.device)
            dataset = load_dataset(item.task, self.data_path, tokenizer,
                                   max_length=self.max_length, max_examples=self.max_examples,
                                   label_names=first.label_names())
            self.loaded, self.group = (model, tokenizer, choice, dataset), group
        return self.loaded


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
        raise NotFoundError(f"dataset {uri!r} not found (a local file or s3://bucket/key)")
    return path.read_bytes(), uri.rstrip("/").rsplit("/", 1)[-1]


def check_dataset(uri: str, store_url: str, tasks: set[str]) -> None:
    """Every row of the dataset has the fields each task needs: checked before Ray starts,
    and the error names the user's file (not a worker's cache copy)."""
    from zoo.datasets import load_causal_lm, load_seq_cls
    from zoo.errors import DataError
    from zoo.storage.staging import fetch_data

    path = fetch_data(uri, store_url) if uri.startswith("s3://") else uri
    for task in sorted(tasks):
        try:
            load_seq_cls(path) if task == "seq-cls" else load_causal_lm(path)
        except DataError as exc:
            raise DataError(str(exc).replace(str(path), uri) + f" (for {task} adapters)") from None


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

    def __init__(self, catalog: Catalog, store_url: str, *, dataset: str, query: str,
                 metrics: Sequence[str] | None = None, batch_size: int = 32,
                 max_examples: int | None = None, max_length: int = 128, force: bool = False,
                 chunk_size: int = DEFAULT_CHUNK, max_actors: int | None = None,
                 device: str | None = None, max_retries: int = 3,
                 worker_home: str | None = None, address: str | None = None) -> None:
        if batch_size < 1 or chunk_size < 1:
            raise ConfigError("batch_size and chunk_size must be >= 1")
        self.catalog, self.store_url, self.query = catalog, store_url, query
        self.dataset_uri = dataset
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
        if items:
            check_dataset(self.dataset_uri, self.store_url, {i.task for i in items})
        return plan_chunks(items, self.chunk_size)

    def _schedule(self, queue: list[tuple[Any, list[EvalItem]]], summary: EvalSummary,
                  progress: ProgressFn | None) -> None:
        """One chunk in flight per actor; ``ray.wait`` for the next result; requeue on death."""
        import ray

        n_actors, each = pool_size(ray.available_resources() or ray.cluster_resources(),
                                   len(queue), self.max_actors)
        data_ref = ray.put(self.data)
        endpoint = endpoint_env()  # actors started by an earlier Ray may lack it
        actor_cls = ray.remote(max_restarts=0, max_task_retries=0, **each,
                               **({"runtime_env": {"env_vars": endpoint}} if endpoint else {})
                               )(EvalWorker)

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
                in_flight[actor.evaluate.remote(group, members)] = (actor, n)

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


def run_eval(catalog: Catalog, store_url: str, *, dataset: str, query: str,
             address: str | None = None, progress: ProgressFn | None = None,
             **options: Any) -> EvalSummary:
    """One evaluation; Ray is connected (embedded: started in this process) only if needed."""
    return EvalPool(catalog, store_url, dataset=dataset, query=query, address=address,
                    **options).run(progress)
