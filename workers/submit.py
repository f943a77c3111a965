"""Submitting jobs: validate → stage inputs → job rows → Ray.

Two modes, one library call (:func:`submit`), which the CLI and scripts use alike:

- **embedded** (no ``--address``/``RAY_ADDRESS``): start a local Ray in this process, launch one
  task per job and wait, with a progress display.
- **cluster**: hand the whole submission to the cluster through Ray's job submission API; the
  job's driver (``python -m zoo.workers.driver``) runs :func:`run_jobs` there. Returns at once
  with the job ids. The catalog and store must then be shared services (PostgreSQL, S3):
  a SQLite file or a directory on this machine is not reachable from the cluster.

Nothing is written until the spec is valid and its inputs are uploaded: a bad spec creates no
job row.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError
from zoo.jobspec import JobSpec
from zoo.settings import endpoint_env, redact_url, strip_credentials
from zoo.storage import jobs, staging
from zoo.storage.db import Catalog
from zoo.untrusted import clip

Echo = Callable[[str], None]


@dataclass
class SubmitResult:
    """What a submission did: the job ids, and their final states when it waited."""

    job_ids: list[str]
    sweep_id: str
    mode: str  # "embedded" | "cluster"
    submission_id: str | None = None
    states: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.states) and all(s == jobs.SUCCEEDED for s in self.states.values())


def _require_shared(catalog_url: str, store_url: str) -> None:
    if catalog_url.startswith("sqlite"):
        raise ConfigError("cluster mode needs a catalog the cluster can reach "
                          f"(postgresql+psycopg://…), not {catalog_url.split('?')[0]}")
    if not store_url.startswith("s3://"):
        raise ConfigError(f"cluster mode needs an object store the cluster can reach (s3://…), "
                          f"not {store_url}")


def submit(specs: Sequence[JobSpec], *, catalog_url: str, store_url: str,
           address: str | None = None, wait: bool = True, progress: bool = False,
           echo: Echo | None = None) -> SubmitResult:
    """Submit validated specs; see the module docstring for the two modes."""
    from zoo.preflight import check_specs
    from zoo.storage.db import open_catalog
    from zoo.storage.tables import new_id

    check_specs(specs)  # targets against the base's architecture, data fields: before any write
    say = echo or (lambda _msg: None)
    client = None
    if address:  # reach (and authenticate to) the cluster before writing anything
        _require_shared(catalog_url, store_url)
        from zoo.workers.cluster import job_client

        client = job_client(address)
    catalog = open_catalog(catalog_url)
    try:
        staged = staging.stage_inputs(
            list(specs), store_url,
            on_upload=lambda path, n: say(f"uploaded {path} ({n / 1e6:.1f} MB) to the store"))
        sweep_id = new_id()
        job_ids = jobs.create_jobs(catalog, staged, sweep_id=sweep_id)
        if client is not None:
            submission_id = _submit_to_cluster(client, address, sweep_id, catalog_url,
                                               store_url, staged)
            jobs.set_ray_refs(catalog, {j: f"ray-job:{submission_id}" for j in job_ids})
            result = SubmitResult(job_ids, sweep_id, "cluster", submission_id)
            if wait:
                result.states = wait_jobs(catalog, job_ids, address=address)
            return result
        from zoo.workers.cluster import connect

        connect(None)
        states = run_jobs(catalog, job_ids, catalog_url=catalog_url, store_url=store_url,
                          progress=progress, wait=wait, specs=staged)
        return SubmitResult(job_ids, sweep_id, "embedded", states=states)
    finally:
        catalog.close()


def _submit_to_cluster(client: Any, address: str, sweep_id: str, catalog_url: str,
                       store_url: str, specs: Sequence[JobSpec]) -> str:
    python = os.environ.get("ZOO_DRIVER_PYTHON", "python")
    entrypoint = " ".join([python, "-m", "zoo.workers.driver", "--sweep", shlex.quote(sweep_id)])
    env = {"ZOO_FORWARDED_CATALOG_URL": strip_credentials(catalog_url),
           "ZOO_FORWARDED_STORE_URL": strip_credentials(store_url)}
    env.update(endpoint_env())
    try:
        return client.submit_job(
            entrypoint=entrypoint, submission_id=f"zoo-{sweep_id.lower()}",
            runtime_env={"env_vars": env}, entrypoint_num_cpus=0,
            metadata={"zoo_sweep_id": sweep_id, "zoo_jobs": str(len(specs))},
        )
    except Exception as exc:  # noqa: BLE001 - the job rows exist: mark them, then report
        from zoo.storage.db import open_catalog

        with open_catalog(catalog_url) as catalog:
            for view in jobs.list_jobs(catalog, sweep_id=sweep_id):
                jobs.mark_failed(catalog, view.id, f"submission to {redact_url(address)} failed")
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"Ray job submission to {redact_url(address)} failed: "
                          f"{clip(text.replace(address, redact_url(address)))}") from None


# ---------------------------------------------------------------- launching -----------------


def _death_reason(exc: BaseException, view: jobs.JobView) -> str:
    text = " ".join(str(exc).split())[:300]
    return (f"worker died on attempt {view.attempt} and retries are exhausted "
            f"({view.max_retries} allowed): {type(exc).__name__}: {text}")


def run_jobs(catalog: Catalog, job_ids: Sequence[str], *, catalog_url: str, store_url: str,
             progress: bool = False, wait: bool = True,
             on_done: Callable[[str, str], None] | None = None,
             specs: Sequence[JobSpec] | None = None) -> dict[str, str]:
    """Launch one Ray task per job (with its resources and retries) and wait for all.

    Ray retries a task whose worker died (up to the spec's ``retries``); when that runs out,
    or a task is cancelled, the job row is finalised here. Returns job id → final state.
    ``specs`` (aligned with ``job_ids``) spares reading them back from the catalog.
    """
    import ray

    from zoo.workers.train_task import ray_options, remote_train_task

    task = remote_train_task()
    refs: dict[Any, str] = {}
    if specs is None:
        views = {v.id: v for v in jobs.list_jobs(catalog, ids=job_ids)}
        specs = [views[job_id].job_spec() for job_id in job_ids]
    for job_id, spec in zip(job_ids, specs, strict=True):
        # no credentials in task arguments: workers complete them from their own settings
        ref = task.options(**ray_options(spec)).remote(job_id, strip_credentials(catalog_url),
                                                        strip_credentials(store_url))
        refs[ref] = job_id
    jobs.set_ray_refs(catalog, {j: f"ray-task:{r.hex()}" for r, j in refs.items()})
    if not wait:
        return {}
    states: dict[str, str] = {}
    display = _Progress(len(refs)) if progress else None
    pending = list(refs)
    try:
        while pending:
            # Wake once a second (or when all are done), not once per finished task: on a
            # busy node every wake-up of this loop takes CPU from the workers.
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            if display:
                display.update(catalog, job_ids, states)
            for ref, state in _finalise_all(catalog, done, refs):
                job_id = refs[ref]
                states[job_id] = state
                if on_done:
                    on_done(job_id, state)
    except KeyboardInterrupt:
        for ref in pending:
            jobs.mark_cancelled(catalog, refs[ref], "cancelled: the submitting process was "
                                "interrupted")
            ray.cancel(ref, force=True)
        raise
    finally:
        if display:
            display.close(catalog, job_ids, states)
    return states


def _finalise_all(catalog: Catalog, done: Sequence[Any], refs: dict[Any, str],
                  ) -> list[tuple[Any, str]]:
    """Final states of finished tasks: one ``ray.get`` for the batch when all succeeded (the
    common case), the careful per-task path when any raised."""
    import ray

    try:
        results = ray.get(list(done))
    except ray.exceptions.RayError:
        return [(ref, _finalise(catalog, ref, refs[ref])) for ref in done]
    finished = []
    for ref, result in zip(done, results, strict=True):
        state = str(result["state"])
        if state not in jobs.TERMINAL:
            state = _finalise(catalog, ref, refs[ref])
        finished.append((ref, state))
    return finished


def _finalise(catalog: Catalog, ref: Any, job_id: str) -> str:
    import ray

    try:
        result = ray.get(ref)
        if result["state"] in jobs.TERMINAL:
            return str(result["state"])
    except ray.exceptions.TaskCancelledError:
        jobs.mark_cancelled(catalog, job_id)
    except ray.exceptions.RayTaskError as exc:  # run_job raised a BaseException
        jobs.mark_failed(catalog, job_id, f"{type(exc.cause).__name__}: {exc.cause}")
    except ray.exceptions.RayError as exc:  # worker/node/owner died, retries exhausted
        view = jobs.get_job(catalog, job_id)
        jobs.mark_failed(catalog, job_id, _death_reason(exc, view))
    return jobs.get_job(catalog, job_id).state


class _Progress:
    """A rich progress bar: done/total with counts per state."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]jobs"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.description}"), TimeElapsedColumn(),
                            transient=False)
        self.task = self.bar.add_task("", total=total)
        self.bar.start()
        self.last = 0.0

    def update(self, catalog: Catalog, job_ids: Sequence[str], states: dict[str, str]) -> None:
        if time.monotonic() - self.last < 1.0:
            return
        self.last = time.monotonic()
        running = sum(1 for v in jobs.list_jobs(catalog, ids=job_ids) if v.state == jobs.RUNNING)
        counts = {s: list(states.values()).count(s) for s in jobs.TERMINAL}
        text = f"running {running}  " + "  ".join(f"{k.lower()} {v}" for k, v in counts.items())
        self.bar.update(self.task, completed=len(states), description=text)

    def close(self, catalog: Catalog, job_ids: Sequence[str], states: dict[str, str]) -> None:
        self.last = 0.0
        self.update(catalog, job_ids, states)
        self.bar.stop()


def reconcile_with_ray(catalog: Catalog, views: Sequence[jobs.JobView], address: str) -> None:
    """Fail active jobs whose Ray job (the driver of their submission) has ended.

    A driver that crashed before launching its tasks leaves PENDING rows nobody will run.
    """
    by_submission: dict[str, list[jobs.JobView]] = {}
    for view in views:
        if not view.terminal and (view.ray_ref or "").startswith("ray-job:"):
            by_submission.setdefault(view.ray_ref.split(":", 1)[1], []).append(view)
    if not by_submission:
        return
    from zoo.workers.cluster import job_client

    client = job_client(address)
    for submission_id, group in by_submission.items():
        info = client.get_job_info(submission_id)
        status = str(getattr(info.status, "value", info.status))
        if status in ("FAILED", "STOPPED", "SUCCEEDED"):
            message = " ".join(str(info.message or "").split())[:300]
            for view in group:
                jobs.mark_failed(catalog, view.id, f"its Ray job {submission_id} ended "
                                 f"({status}) without finishing it: {message}")


def wait_jobs(catalog: Catalog, job_ids: Sequence[str], *, timeout: float | None = None,
              poll_s: float = 1.0, address: str | None = None) -> dict[str, str]:
    """Poll the catalog until every job is terminal (reaping dead workers' jobs).

    With ``address`` (cluster mode), jobs whose Ray job ended are failed too.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    checked = 0.0
    while True:
        jobs.reap_stale(catalog)
        views = jobs.list_jobs(catalog, ids=job_ids)
        if address and time.monotonic() - checked > 10 * poll_s:
            checked = time.monotonic()
            reconcile_with_ray(catalog, views, address)
            views = jobs.list_jobs(catalog, ids=job_ids)
        states = {v.id: v.state for v in views}
        if all(v.terminal for v in views):
            return states
        if deadline is not None and time.monotonic() > deadline:
            return states
        time.sleep(poll_s)


__all__ = ["SubmitResult", "reconcile_with_ray", "run_jobs", "submit", "wait_jobs"]
