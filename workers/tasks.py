"""The train task: ``run_job(job_id, catalog_url, store_url)`` and its thin Ray wrapper.

One call is one ATTEMPT of one job, in a Ray worker process:

1. mark the job RUNNING (attempt + 1, node, pid); a terminal job (cancelled while queued,
   already published by an attempt that died after its commit) returns at once;
2. fetch inputs from the object store into the node cache, load the base model (or reuse the
   one this process loaded for the previous job on the same base), pick CUDA/bf16 when Ray
   assigned a GPU, else CPU;
3. train with ``zoo.train.train_adapter``, uploading a checkpoint every
   ``train.checkpoint_every`` steps; a retried attempt resumes from the last one;
4. publish through ``zoo.storage.publish`` whose ``on_commit`` marks the job SUCCEEDED in the
   same transaction as the adapter row: published exactly once, however often retried.

A heartbeat thread refreshes ``heartbeat_at``, uploads the log so far (``zoo jobs logs
--follow`` streams it from the store), and SIGKILLs this process when the job is no longer its
attempt's to run (cancelled): the training process is really gone, its GPU memory with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any

from zoo.errors import ZooError
from zoo.jobspec import JobSpec
from zoo.storage import jobs, staging

HEARTBEAT_S = float(os.environ.get("ZOO_HEARTBEAT_S", "5"))
MODEL_CACHE_SIZE = int(os.environ.get("ZOO_MODEL_CACHE_SIZE", "1"))

_catalogs: dict[str, Any] = {}
_stores: dict[str, Any] = {}
_models: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
MODEL_LOADS = {"count": 0}  # observable by tests: how often this process loaded a base


def _store(url: str) -> Any:
    """One adapter store (and S3 client pool) per worker process and URL."""
    if url not in _stores:
        from zoo.storage.blobstore import open_store

        _stores[url] = open_store(url)
    return _stores[url]


def _catalog(url: str) -> Any:
    """One catalog (engine + pool) per worker process and URL."""
    if url not in _catalogs:
        from zoo.storage.db import open_catalog

        _catalogs[url] = open_catalog(url)
    return _catalogs[url]


# ---------------------------------------------------------------- device and model cache ----


def node_label() -> str:
    """``host:<ray node id prefix>``: which machine, and which Ray node on it, ran an attempt.

    Cached once known inside Ray: a worker process never moves to another node.
    """
    if _NODE_LABEL:
        return _NODE_LABEL[0]
    host = socket.gethostname()
    ray = sys.modules.get("ray")  # not imported: not in Ray (and no import to pay for)
    try:
        if ray is not None and ray.is_initialized():
            _NODE_LABEL.append(f"{host}:{ray.get_runtime_context().get_node_id()[:12]}")
            return _NODE_LABEL[0]
    except Exception:  # noqa: BLE001 - outside Ray the host alone
        pass
    return host


_NODE_LABEL: list[str] = []


def assigned_gpu_ids() -> list[str] | None:
    """GPU ids Ray gave this task ([] for a CPU task); None outside Ray."""
    ray = sys.modules.get("ray")  # not imported: not in Ray
    try:
        if ray is None or not ray.is_initialized():
            return None
        return [str(i) for i in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None


def choose_job_device(gpu_ids: list[str] | None = None, *, cuda_available: bool | None = None,
                      bf16_supported: bool | None = None) -> Any:
    """CUDA (bf16 when supported) iff a GPU is assigned AND usable, else CPU."""
    from zoo.device import choose_device

    if cuda_available is None or bf16_supported is None:
        import torch

        cuda_available = torch.cuda.is_available()
        bf16_supported = bool(cuda_available and torch.cuda.is_bf16_supported())
    return choose_device(prefer=None, cuda_available=cuda_available,
                         bf16_supported=bf16_supported,
                         assigned_gpu_ids=gpu_ids if gpu_ids is not None else [])


def cached_base(model_dir: str, task: str, *, labels: tuple[str, ...], seed: int,
                device: str, dtype: str) -> tuple[Any, Any]:
    """The base model for a job, reused from this process's previous job when it matches.

    A seq-cls head is freshly initialised from the job's seed, so the seed is part of the key
    for seq-cls (a reused model must give the same adapter as a fresh load).
    """
    key = (model_dir, task, labels, seed if task == "seq-cls" else None, device, dtype)
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    while len(_models) >= max(MODEL_CACHE_SIZE, 1):
        _models.popitem(last=False)
        _free_device_memory()
    import random

    import torch

    from zoo.base_models import load_base

    random.seed(seed)
    torch.manual_seed(seed)  # as train_adapter seeds before loading: same head init
    model, tokenizer = load_base(model_dir, task, label_names=list(labels) or None,
                                 dtype=dtype, device=device)
    MODEL_LOADS["count"] += 1
    _models[key] = (model, tokenizer)
    return model, tokenizer


def _free_device_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# ---------------------------------------------------------------- log + heartbeat -----------


class JobLog:
    """An append-only log kept in memory, uploaded to the store as a blob on each heartbeat;
    a successful attempt's final log goes into the job's row instead when it is small.

    In memory rather than in a temp file: the lines of one attempt are small, and every write
    and upload then costs no file open (a short job writes ~10 lines).
    """

    def __init__(self, job_id: str, artifacts: Any, previous: str | None) -> None:
        self.job_id = job_id
        self.artifacts = artifacts
        self.data = bytearray()
        self.uri = previous
        self.uploaded_size = -1
        self.lock = threading.Lock()
        # held across upload → catalog update → delete of the old blob, so the heartbeat and
        # the checkpoint callback never delete the blob the catalog points at
        self.sync_lock = threading.Lock()
        self._old: str | None = None
        if previous:  # a retry: keep the earlier attempts' lines
            with contextlib.suppress(ZooError):
                self.data += staging.get_bytes(artifacts, staging.digest_of(previous))

    def write(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock:
            self.data += f"{stamp} {line.rstrip()}\n".encode()

    def upload(self) -> str | None:
        """Upload if changed; returns the new URI (or None when unchanged)."""
        with self.lock:
            data = bytes(self.data)
        if len(data) == self.uploaded_size:
            return None
        old = self.uri
        self.uri = "sha256:" + staging.put_bytes(self.artifacts, data)
        self.uploaded_size = len(data)
        self._old = old
        return self.uri

    def final_text(self) -> str | None:
        """The whole log, to keep in the job's row, when it is small enough (else None)."""
        with self.lock:
            if len(self.data) > jobs.MAX_LOG_TEXT:
                return None
            return self.data.decode("utf-8", "replace")

    def drop_uploaded(self) -> None:
        """Delete the uploaded log blob (the job's row now keeps the log itself)."""
        if self.uri:
            self.artifacts.delete(staging.digest_of(self.uri))
            self.uri = None

    def drop_previous(self) -> None:
        """Delete the superseded log blob (after the catalog points at the new one)."""
        old = self._old
        if old and old != self.uri:
            self.artifacts.delete(staging.digest_of(old))
        self._old = None

    def close(self) -> None:
        with self.lock:
            self.data = bytearray()


class Heartbeat:
    """The heartbeat of one attempt: refresh ``heartbeat_at``, ship the log, and kill this
    process once the job is no longer this attempt's to run (cancelled).

    Beats come from this process's one heartbeat thread (:class:`_Beater`), which outlives
    jobs: starting and stopping an attempt's heartbeat costs no thread start or join.
    """

    def __init__(self, catalog: Any, job_id: str, attempt: int, log: JobLog) -> None:
        self.catalog, self.job_id, self.attempt, self.log = catalog, job_id, attempt, log
        self.due = 0.0

    def beat(self) -> str:
        with self.log.sync_lock:
            uri = self.log.upload()
            state = jobs.heartbeat(self.catalog, self.job_id, self.attempt, log_uri=uri)
            if uri and state == jobs.RUNNING:
                self.log.drop_previous()
        return state

    def start(self) -> None:
        _beater().watch(self)

    def stop(self) -> None:
        """Stop beating; returns once no beat of this attempt is in progress."""
        _beater().unwatch(self)

    def stop_process(self, state: str) -> None:
        """The job is ``state`` now, not RUNNING: record why, then end this worker process."""
        self.log.write(f"job is {state}: stopping this worker (pid {os.getpid()})")
        try:
            with self.log.sync_lock:
                self.log.upload()
                jobs.set_log_uri(self.catalog, self.job_id, self.log.uri or "")
        finally:
            os.kill(os.getpid(), signal.SIGKILL)


class _Beater(threading.Thread):
    """This process's heartbeat thread: beats each watched attempt every ``HEARTBEAT_S``.

    A beat runs under the thread's lock, so ``unwatch`` returning means no beat of that
    attempt is running and none will start: from then on the job's state changes only in
    the caller's own transactions (the publish).
    """

    def __init__(self) -> None:
        super().__init__(name="zoo-heartbeat", daemon=True)
        self.cond = threading.Condition()
        self.watched: list[Heartbeat] = []

    def watch(self, beat: Heartbeat) -> None:
        # No notify, so starting a job costs no thread switch: the thread's current wait
        # began before now and lasts at most HEARTBEAT_S, so it wakes by this attempt's due
        # time and the first beat is still on time.
        with self.cond:
            beat.due = time.monotonic() + HEARTBEAT_S
            self.watched.append(beat)

    def unwatch(self, beat: Heartbeat) -> None:
        with self.cond:
            if beat in self.watched:
                self.watched.remove(beat)

    def run(self) -> None:
        with self.cond:
            while True:
                beat = min(self.watched, key=lambda b: b.due, default=None)
                delay = HEARTBEAT_S if beat is None else beat.due - time.monotonic()
                if beat is None or delay > 0:
                    self.cond.wait(min(delay, HEARTBEAT_S))
                    continue
                beat.due = time.monotonic() + HEARTBEAT_S
                try:
                    state = beat.beat()
                except Exception:  # noqa: BLE001 - a flaky catalog must not kill training
                    continue
                if state != jobs.RUNNING:
                    beat.stop_process(state)


_BEATER: list[_Beater] = []
_BEATER_LOCK = threading.Lock()
os.register_at_fork(after_in_child=_BEATER.clear)  # a forked child starts its own thread


def _beater() -> _Beater:
    with _BEATER_LOCK:
        if not _BEATER:
            _BEATER.append(_Beater())
            _BEATER[0].start()
        return _BEATER[0]


# ---------------------------------------------------------------- the attempt ---------------


def run_job(job_id: str, catalog_url: str, store_url: str) -> dict[str, Any]:
    """Run one attempt of a job to a terminal state; returns ``{job_id, state, adapter_id, …}``.

    Application errors mark the job FAILED (not retried: bad data stays bad). Only the death
    of the process (SIGKILL, OOM, a lost node) leads to a retry, which Ray performs.
    """
    forwarded = os.environ.get("ZOO_FORWARDED_AWS_ENDPOINT_URL")
    if forwarded and not os.environ.get("AWS_ENDPOINT_URL"):
        os.environ["AWS_ENDPOINT_URL"] = forwarded
    catalog = _catalog(catalog_url)
    node = node_label()
    view, attempt = jobs.start_attempt(catalog, job_id, node=node, pid=os.getpid())
    if attempt is None:
        return _result(view)
    artifacts = staging.open_artifacts(store_url)
    log = JobLog(job_id, artifacts, view.log_uri)
    log.write(f"job {job_id} attempt {attempt}/{view.max_retries + 1} started on "
              f"{node} pid {os.getpid()}")
    beat = Heartbeat(catalog, job_id, attempt, log)
    beat.start()
    try:
        adapter_id = _train_and_publish(catalog, store_url, artifacts, job_id, attempt,
                                        view, log, beat)
    except BaseException as exc:
        beat.stop()
        log.write("error: " + "".join(traceback.format_exception(exc)).rstrip())
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ZooError) else str(exc)
        jobs.mark_failed(catalog, job_id, f"attempt {attempt}: {reason}", attempt=attempt)
        _finish_log(catalog, job_id, log)
        if os.environ.get("ZOO_DEBUG_JOBS"):
            traceback.print_exc()
        if not isinstance(exc, Exception):
            raise
        return _result(jobs.get_job(catalog, job_id))
    log.drop_previous()
    log.close()
    return {"job_id": job_id, "state": jobs.SUCCEEDED, "adapter_id": adapter_id,
            "attempt": attempt, "error": None}


def _finish_log(catalog: Any, job_id: str, log: JobLog) -> None:
    try:
        uri = log.upload()
        if uri:
            jobs.set_log_uri(catalog, job_id, uri)
            log.drop_previous()
    finally:
        log.close()


def _result(view: jobs.JobView) -> dict[str, Any]:
    return {"job_id": view.id, "state": view.state, "adapter_id": view.adapter_id,
            "attempt": view.attempt, "error": view.error}


def _train_and_publish(catalog: Any, store_url: str, artifacts: Any, job_id: str,
                       attempt: int, view: jobs.JobView, log: JobLog, beat: Heartbeat) -> str:
    import zoo
    from zoo.datasets import load_seq_cls
    from zoo.storage.catalog import insert_eval_results
    from zoo.storage.publish import publish
    from zoo.train import train_adapter

    spec: JobSpec = view.job_spec()
    model_dir, base_name = staging.fetch_model(spec.base_model, store_url)
    train_path = staging.fetch_data(spec.data.train, store_url)
    eval_path = staging.fetch_data(spec.data.eval, store_url) if spec.data.eval else None
    choice = choose_job_device(assigned_gpu_ids())
    labels: tuple[str, ...] = ()
    if spec.task == "seq-cls":
        labels = tuple(load_seq_cls(train_path).label_names)
    model, tokenizer = cached_base(model_dir, spec.task, labels=labels, seed=spec.train.seed,
                                   device=choice.device, dtype=choice.base_dtype)
    log.write(f"device {choice.device} ({choice.autocast_dtype or 'float32'}), base {base_name}")

    resume = _load_checkpoint(artifacts, job_id, view.checkpoint_uri, log)
    last_ckpt = {"uri": view.checkpoint_uri}

    def checkpoint(blob: bytes, step: int) -> None:
        # The job id in front makes the blob this job's alone: two identical jobs would
        # otherwise share (and delete) one content-addressed checkpoint.
        uri = "sha256:" + staging.put_bytes(artifacts, _ckpt_header(job_id) + blob)
        log.write(f"checkpoint at step {step}")
        with log.sync_lock:
            log_uri = log.upload()  # a retry resumes the log from here too
            if not jobs.set_checkpoint(catalog, job_id, attempt, uri, log_uri=log_uri):
                return
            if log_uri:
                log.drop_previous()
        old, last_ckpt["uri"] = last_ckpt["uri"], uri
        if old and old != uri:
            artifacts.delete(staging.digest_of(old))

    def progress(info: dict[str, Any]) -> None:
        log.write(f"step {info['step']}/{info['max_steps']} loss {info['loss']:.4f} "
                  f"lr {info['lr']:.2e}")

    result = train_adapter(base_model=model_dir, task=spec.task, train_path=train_path,
                           eval_path=eval_path, prolora=spec.prolora, options=train_options(spec),
                           model=model, tokenizer=tokenizer, progress=progress,
                           checkpoint=checkpoint, resume_from=resume)
    config = dict(result.adapter.config)
    config["base_model"] = base_name  # the cache path means nothing on another machine
    adapter = zoo.Adapter(config, result.adapter.tensors)
    log.write(f"trained {result.steps} steps: " + ", ".join(
        f"{k}={v:.4g}" for k, v in result.metrics.items() if isinstance(v, float)))

    beat.stop()  # from here the job's state changes only in the publish transaction
    blob = adapter.to_bytes()
    log.write(f"publishing adapter sha256:{hashlib.sha256(blob).hexdigest()}")
    # The final log goes into the job's row with SUCCEEDED when it is small (no upload before
    # the commit); a long one is uploaded as a blob as the heartbeats did.
    log_text = log.final_text()
    log_uri = log.upload() if log_text is None else None

    def on_commit(connection: Any, adapter_id: str) -> None:
        jobs.succeed_in_transaction(connection, job_id, attempt, adapter_id, log_uri=log_uri,
                                    log_text=log_text)
        if eval_path is not None:
            insert_eval_results(connection, [{"adapter_id": adapter_id, **row} for row in
                                             _eval_rows(spec, eval_path, result.metrics)])

    # This attempt is the job's current RUNNING one (start_attempt), and a job's adapter only
    # ever commits together with its SUCCEEDED mark: none exists yet, so publish skips its
    # pre-upload lookup (add_adapter still re-checks the job id in the commit).
    published = publish(catalog, _store(store_url), blob, name=spec.name, tags=spec.tags,
                        aliases=[spec.alias] if spec.alias else [], job_id=job_id,
                        dataset_fingerprint=_data_digest(spec, train_path), on_commit=on_commit,
                        job_running=True)
    if last_ckpt["uri"]:
        artifacts.delete(staging.digest_of(last_ckpt["uri"]))
    if log_text is not None:
        log.drop_uploaded()  # a heartbeat's partial log, superseded by the row's
    return published.id


def train_options(spec: JobSpec) -> Any:
    """The ``zoo.train.TrainOptions`` of a job spec's ``train`` section."""
    from zoo.train import TrainOptions

    t = spec.train
    return TrainOptions(max_steps=t.max_steps, lr=t.lr, batch_size=t.batch_size,
                        max_length=t.max_length, seed=t.seed, weight_decay=t.weight_decay,
                        warmup_steps=t.warmup_steps, checkpoint_every=t.checkpoint_every,
                        eval_before=t.eval_before)


def _ckpt_header(job_id: str) -> bytes:
    return b"zoo-job-checkpoint\0" + job_id.encode() + b"\0"


def _load_checkpoint(artifacts: Any, job_id: str, uri: str | None, log: JobLog) -> bytes | None:
    """The trainer state to resume from, or None (no checkpoint, or it is gone: start over)."""
    if not uri:
        return None
    try:
        data = staging.get_bytes(artifacts, staging.digest_of(uri))
    except ZooError as exc:
        log.write(f"checkpoint {uri[:19]}… unreadable ({exc}); starting from step 0")
        return None
    header = _ckpt_header(job_id)
    if not data.startswith(header):
        log.write(f"checkpoint {uri[:19]}… belongs to another job; starting from step 0")
        return None
    log.write(f"resuming from checkpoint {uri[:19]}…")
    return data[len(header):]


def _eval_rows(spec: JobSpec, eval_path: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The training run's eval metrics as catalog eval results (``zoo ls metrics.accuracy>…``)."""
    from zoo.datasets import fingerprint

    uri = spec.data.eval or eval_path
    digest = staging.digest_of(uri) if uri.startswith(staging.BLOB_SCHEME) \
        else fingerprint(eval_path)
    examples = metrics.get("eval_examples") or metrics.get("eval_n") or 0
    return [{"dataset_fingerprint": digest, "dataset_name": staging.data_name(uri)[:256],
             "metric": key[len("eval_"):], "value": float(value), "n_examples": int(examples),
             "elapsed_s": 0.0}
            for key, value in sorted(metrics.items())
            if key.startswith("eval_") and isinstance(value, float)]


def _data_digest(spec: JobSpec, local_path: str) -> str:
    """sha256 of the training file: known from its content-addressed URI, else computed."""
    if spec.data.train.startswith(staging.BLOB_SCHEME):
        return staging.digest_of(spec.data.train)
    from zoo.datasets import fingerprint

    return fingerprint(local_path)


def remote_train_task() -> Any:
    """The Ray remote function (created lazily so importing this module needs no Ray)."""
    global _REMOTE
    if _REMOTE is None:
        import ray

        # max_calls=0: keep the worker process (and its cached base model) for the next job.
        _REMOTE = ray.remote(max_calls=0)(run_job)
    return _REMOTE


_REMOTE: Any = None


def ray_options(spec: JobSpec) -> dict[str, Any]:
    """Task options for a job: its resources, Ray-level retries on worker death, a name."""
    return {**spec.resources.ray_options(), "max_retries": spec.retries,
            "retry_exceptions": False, "name": f"zoo:{spec.display_name}"[:120]}


if __name__ == "__main__":  # manual debugging: python -m zoo.workers.tasks JOB CATALOG STORE
    print(run_job(*sys.argv[1:4]))
