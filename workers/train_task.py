"""The train task: ``run_job(job_id, catalog_url, store_url)`` and its thin Ray wrapper.

One call is one ATTEMPT of one job, in a Ray worker process:

1. mark the job RUNNING (attempt + 1, node, pid); a terminal job (cancelled while queued,
   already published by an attempt that died after its commit) returns at once;
2. fetch inputs from the object store into the node cache (verified), load the base model (or
   reuse the one this process loaded for the previous job on the same base), pick CUDA/bf16
   when Ray assigned a GPU, else CPU;
3. train with ``zoo.train.train_adapter`` and the spec's ``train`` options, uploading a
   checkpoint every ``train.checkpoint_every`` steps; a retried attempt resumes from the last;
4. publish through ``zoo.storage.publish`` whose ``on_commit`` marks the job SUCCEEDED in the
   same transaction as the adapter row: published exactly once, however often retried. The
   base the job used is registered with the location it was loaded from.

Credentials never travel with the task: the URLs it is given have none, and the worker
completes them from its own environment or config file (``zoo.settings.with_local_credentials``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from typing import Any

from zoo.errors import ZooError
from zoo.jobspec import JobSpec
from zoo.settings import adopt_forwarded_endpoint, endpoint_env
from zoo.storage import jobs, staging
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog, Transaction
from zoo.workers.job_log import Heartbeat, JobLog
from zoo.workers.model_cache import assigned_gpu_ids, cached_base, choose_job_device, node_label

_catalogs: dict[str, Catalog] = {}
_stores: dict[str, BlobStore] = {}


def _store(url: str) -> BlobStore:
    """One adapter store (and S3 client pool) per worker process and URL."""
    if url not in _stores:
        from zoo.storage.blobstore import open_store

        _stores[url] = open_store(url)
    return _stores[url]


def _catalog(url: str) -> Catalog:
    """One catalog (engine + pool) per worker process and URL, with this machine's own
    credentials for it."""
    if url not in _catalogs:
        from zoo.settings import with_local_credentials
        from zoo.storage.db import open_catalog

        _catalogs[url] = open_catalog(with_local_credentials(url, "catalog_url"))
    return _catalogs[url]


def run_job(job_id: str, catalog_url: str, store_url: str) -> dict[str, Any]:
    """Run one attempt of a job to a terminal state; returns ``{job_id, state, adapter_id, …}``.

    Application errors mark the job FAILED (not retried: bad data stays bad). Only the death
    of the process (SIGKILL, OOM, a lost node) leads to a retry, which Ray performs.
    """
    adopt_forwarded_endpoint()
    catalog = _catalog(catalog_url)
    node = node_label()
    view, attempt = jobs.start_attempt(catalog, job_id, node=node, pid=os.getpid())
    if attempt is None:
        return _result(view)
    run = Attempt(catalog, store_url, view, attempt)
    run.log.write(f"job {job_id} attempt {attempt}/{view.max_retries + 1} started on "
                  f"{node} pid {os.getpid()}")
    run.beat.start()
    try:
        adapter_id = run.train_and_publish()
    except BaseException as exc:
        run.fail(exc)
        if not isinstance(exc, Exception):
            raise
        return _result(jobs.get_job(catalog, job_id))
    run.log.drop_previous()
    run.log.close()
    return {"job_id": job_id, "state": str(jobs.SUCCEEDED), "adapter_id": adapter_id,
            "attempt": attempt, "error": None}


def _result(view: jobs.JobView) -> dict[str, Any]:
    return {"job_id": view.id, "state": str(view.state), "adapter_id": view.adapter_id,
            "attempt": view.attempt, "error": view.error}


class Attempt:
    """One attempt of one job: its inputs, its log and heartbeat, its checkpoints."""

    def __init__(self, catalog: Catalog, store_url: str, view: jobs.JobView, attempt: int) -> None:
        self.catalog, self.store_url, self.view, self.attempt = catalog, store_url, view, attempt
        self.job_id = view.id
        self.spec: JobSpec = view.job_spec()
        self.artifacts = staging.open_artifacts(store_url)
        self.log = JobLog(self.job_id, self.artifacts, view.log_uri)
        self.beat = Heartbeat(catalog, self.job_id, attempt, self.log)
        self.last_checkpoint = view.checkpoint_uri

    def fail(self, exc: BaseException) -> None:
        """Record why this attempt failed: the log, then FAILED with the reason."""
        self.beat.stop()
        self.log.write("error: " + "".join(traceback.format_exception(exc)).rstrip())
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ZooError) else str(exc)
        jobs.mark_failed(self.catalog, self.job_id, f"attempt {self.attempt}: {reason}",
                         attempt=self.attempt)
        try:
            uri = self.log.upload()
            if uri:
                jobs.set_log_uri(self.catalog, self.job_id, uri)
                self.log.drop_previous()
        finally:
            self.log.close()
        if os.environ.get("ZOO_DEBUG_JOBS"):
            traceback.print_exc()

    def train_and_publish(self) -> str:
        from zoo.datasets import load_seq_cls
        from zoo.train import train_adapter

        spec = self.spec
        model_dir, base_name = staging.fetch_model(spec.base_model, self.store_url)
        train_path = staging.fetch_data(spec.data.train, self.store_url)
        eval_path = staging.fetch_data(spec.data.eval, self.store_url) if spec.data.eval else None
        choice = choose_job_device(assigned_gpu_ids())
        labels = tuple(load_seq_cls(train_path).label_names) if spec.task == "seq-cls" else ()
        model, tokenizer = cached_base(model_dir, spec.task, labels=labels, seed=spec.train.seed,
                                       device=choice.device, dtype=choice.base_dtype)
        self.log.write(f"device {choice.device} ({choice.autocast_dtype or 'float32'}), "
                       f"base {base_name}")
        result = train_adapter(
            base_model=model_dir, task=spec.task, train_path=train_path, eval_path=eval_path,
            prolora=spec.prolora, options=spec.train, model=model, tokenizer=tokenizer,
            progress=self.progress, checkpoint=self.checkpoint, resume_from=self.resume_state())
        self.log.write(f"trained {result.steps} steps: " + ", ".join(
            f"{k}={v:.4g}" for k, v in result.metrics.items() if isinstance(v, float)))
        # the cache path means nothing on another machine: the adapter names the base's
        # display name, and the registry records where it really lives (spec.base_model)
        adapter = type(result.adapter)(result.adapter.config.with_base(base_name),
                                       result.adapter.tensors)
        rows = _eval_rows(spec, eval_path, result.metrics) if eval_path else []
        return self.publish(adapter.to_bytes(), train_path, rows)

    def publish(self, blob: bytes, train_path: str, eval_rows: list[dict[str, Any]]) -> str:
        """The adapter row, its eval rows and SUCCEEDED, in the one publish transaction."""
        from zoo.storage.evals import insert_eval_results
        from zoo.storage.publish import publish

        self.beat.stop()  # from here the job's state changes only in the publish transaction
        self.log.write(f"publishing adapter sha256:{hashlib.sha256(blob).hexdigest()}")
        # The final log goes into the job's row with SUCCEEDED when it is small (no upload
        # before the commit); a long one is uploaded as a blob as the heartbeats did.
        log_text = self.log.final_text()
        log_uri = self.log.upload() if log_text is None else None

        def on_commit(session: Transaction, adapter_id: str) -> None:
            jobs.succeed_in_transaction(session, self.job_id, self.attempt, adapter_id,
                                        log_uri=log_uri, log_text=log_text)
            insert_eval_results(session, [{"adapter_id": adapter_id, **r} for r in eval_rows])

        spec = self.spec
        # This attempt is the job's current RUNNING one, and a job's adapter only ever commits
        # with its SUCCEEDED mark: none exists yet, so publish skips its pre-upload lookup
        # (the commit still re-checks the job id).
        published = publish(
            self.catalog, _store(self.store_url), blob, name=spec.name, tags=spec.tags,
            aliases=[spec.alias] if spec.alias else [], job_id=self.job_id,
            dataset_fingerprint=_data_digest(spec, train_path), on_commit=on_commit,
            job_running=True, base_location=spec.base_model)
        if self.last_checkpoint:
            self.artifacts.delete(staging.digest_of(self.last_checkpoint))
        if log_text is not None:
            self.log.drop_uploaded()  # a heartbeat's partial log, superseded by the row's
        return published.id

    def progress(self, info: dict[str, Any]) -> None:
        self.log.write(f"step {info['step']}/{info['max_steps']} loss {info['loss']:.4f} "
                       f"lr {info['lr']:.2e}")

    def checkpoint(self, blob: bytes, step: int) -> None:
        """Upload the trainer state and point the job at it (while this attempt is current)."""
        # The job id in front makes the blob this job's alone: two identical jobs would
        # otherwise share (and delete) one content-addressed checkpoint.
        uri = "sha256:" + staging.put_bytes(self.artifacts, _ckpt_header(self.job_id) + blob)
        self.log.write(f"checkpoint at step {step}")
        with self.log.sync_lock:
            log_uri = self.log.upload()  # a retry resumes the log from here too
            if not jobs.set_checkpoint(self.catalog, self.job_id, self.attempt, uri,
                                       log_uri=log_uri):
                return
            if log_uri:
                self.log.drop_previous()
        old, self.last_checkpoint = self.last_checkpoint, uri
        if old and old != uri:
            self.artifacts.delete(staging.digest_of(old))

    def resume_state(self) -> bytes | None:
        """The trainer state to resume from, or None (no checkpoint, or it is gone)."""
        uri = self.view.checkpoint_uri
        if not uri:
            return None
        try:
            data = staging.get_bytes(self.artifacts, staging.digest_of(uri))
        except ZooError as exc:
            self.log.write(f"checkpoint {uri[:19]}… unreadable ({exc}); starting from step 0")
            return None
        header = _ckpt_header(self.job_id)
        if not data.startswith(header):
            self.log.write(f"checkpoint {uri[:19]}… belongs to another job; starting from 0")
            return None
        self.log.write(f"resuming from checkpoint {uri[:19]}…")
        return data[len(header):]


def _ckpt_header(job_id: str) -> bytes:
    return b"zoo-job-checkpoint\0" + job_id.encode() + b"\0"


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
    """Task options for a job: its resources, Ray-level retries on worker death, a name, and
    the S3 endpoint this process uses (a worker started earlier may not have it)."""
    options = {**spec.resources.ray_options(), "max_retries": spec.retries,
               "retry_exceptions": False, "name": f"zoo:{spec.display_name}"[:120]}
    if endpoint := endpoint_env():
        options["runtime_env"] = {"env_vars": endpoint}
    return options


if __name__ == "__main__":  # manual debugging: python -m zoo.workers.train_task JOB CATALOG STORE
    print(run_job(*sys.argv[1:4]))
