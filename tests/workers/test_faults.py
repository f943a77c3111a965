"""Faults on a real local Ray: a SIGKILLed worker is retried and resumes; retries run out;
cancel kills the process. The training process's pid is read from the catalog."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.workers.conftest import write_tiny_job
from zoo.jobspec import load_specs
from zoo.storage import jobs, staging
from zoo.workers import control
from zoo.workers.submit import run_jobs

pytestmark = pytest.mark.usefixtures("ray_local")


def start(tmp_path, tiny_model_dir, local_zoo, catalog, *, retries: int, steps: int = 400):
    """Stage and launch one long-ish job in a background thread; returns (job_id, thread, out)."""
    spec_path = write_tiny_job(tmp_path / "spec", model_dir=tiny_model_dir, steps=steps,
                               retries=retries)
    specs = staging.stage_inputs(load_specs(spec_path, overrides=["train.checkpoint_every=5"]),
                                 local_zoo["store_url"])
    [job_id] = jobs.create_jobs(catalog, specs)
    out: dict[str, dict[str, str]] = {}
    thread = threading.Thread(target=lambda: out.setdefault("states", run_jobs(
        catalog, [job_id], catalog_url=local_zoo["catalog_url"],
        store_url=local_zoo["store_url"])), daemon=True)
    thread.start()
    return job_id, thread, out


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def running_with_checkpoint(catalog, job_id):
    view = jobs.get_job(catalog, job_id)
    return view if view.state == "RUNNING" and view.checkpoint_uri else None


def adapters_of(catalog, job_id) -> int:
    import sqlalchemy as sa

    from zoo.storage.tables import AdapterRow

    with catalog.transaction(readonly=True) as session:
        return session.execute(sa.select(sa.func.count()).select_from(AdapterRow)
                               .where(AdapterRow.job_id == job_id)).scalar()


def test_sigkill_mid_training_retries_and_resumes_from_checkpoint(tmp_path, tiny_model_dir,
                                                                   local_zoo, catalog):
    job_id, thread, out = start(tmp_path, tiny_model_dir, local_zoo, catalog, retries=2)
    view = wait_for(lambda: running_with_checkpoint(catalog, job_id), what="a checkpoint")
    os.kill(view.worker_pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert out["states"] == {job_id: "SUCCEEDED"}
    final = jobs.get_job(catalog, job_id)
    assert final.attempt == 2 and final.worker_pid != view.worker_pid
    assert adapters_of(catalog, job_id) == 1
    _, log = control.read_log(catalog, local_zoo["store_url"], job_id)
    text = log.decode()
    assert "attempt 1/3 started" in text and "attempt 2/3 started" in text
    resumed = text.split("attempt 2/3 started", 1)[1]
    assert "resuming from checkpoint" in resumed
    first_step = int(resumed.split("step ", 1)[1].split("/", 1)[0])
    assert first_step > 1, "the retry started from scratch instead of the checkpoint"


def test_sigkill_with_retries_exhausted_fails_with_the_reason(tmp_path, tiny_model_dir,
                                                              local_zoo, catalog):
    job_id, thread, out = start(tmp_path, tiny_model_dir, local_zoo, catalog, retries=0)
    view = wait_for(lambda: running_with_checkpoint(catalog, job_id), what="a checkpoint")
    os.kill(view.worker_pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert out["states"] == {job_id: "FAILED"}
    final = jobs.get_job(catalog, job_id)
    assert "worker died on attempt 1 and retries are exhausted (0 allowed)" in final.error
    assert adapters_of(catalog, job_id) == 0


def test_cancel_running_job_kills_the_process(tmp_path, tiny_model_dir, local_zoo, catalog):
    job_id, thread, out = start(tmp_path, tiny_model_dir, local_zoo, catalog, retries=1,
                                steps=5000)
    view = wait_for(lambda: running_with_checkpoint(catalog, job_id), what="a checkpoint")
    assert control.pid_alive(view.worker_pid)
    outcome = control.cancel_jobs(catalog, [job_id])
    assert outcome == {job_id: "cancelled"}
    assert not control.pid_alive(view.worker_pid)
    thread.join(timeout=300)
    assert out["states"] == {job_id: "CANCELLED"}
    final = jobs.get_job(catalog, job_id)
    assert final.state == "CANCELLED" and final.error == "cancelled by user"
    assert adapters_of(catalog, job_id) == 0
    assert control.cancel_jobs(catalog, [job_id]) == {job_id: "already CANCELLED"}


def test_cancel_from_another_machine_the_heartbeat_kills_the_worker(tmp_path, tiny_model_dir,
                                                                    local_zoo, catalog):
    job_id, thread, out = start(tmp_path, tiny_model_dir, local_zoo, catalog, retries=0,
                                steps=20000)
    view = wait_for(lambda: running_with_checkpoint(catalog, job_id), what="a checkpoint")
    assert control.cancel_jobs(catalog, [job_id], kill_local=False) == {job_id: "cancelled"}
    # nobody here kills it: the worker's heartbeat sees CANCELLED and ends its own process
    wait_for(lambda: not control.pid_alive(view.worker_pid), timeout=60,
             what="the worker to kill itself")
    thread.join(timeout=300)
    assert out["states"] == {job_id: "CANCELLED"}
    _, log = control.read_log(catalog, local_zoo["store_url"], job_id)
    assert "job is CANCELLED: stopping this worker" in log.decode()
