"""The job state machine: guarded transitions, no write past a terminal state."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.workers.conftest import write_tiny_job
from zoo.errors import JobError, NotFoundError
from zoo.jobspec import load_specs
from zoo.storage import jobs


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "model").mkdir()
    return load_specs(write_tiny_job(tmp_path), overrides=["sweep.train.seed=[0, 1, 2]"])


def test_create_and_read(catalog, specs):
    ids = jobs.create_jobs(catalog, specs)
    assert len(ids) == 3
    views = jobs.list_jobs(catalog)
    assert {v.id for v in views} == set(ids)
    assert {v.state for v in views} == {"PENDING"}
    assert len({v.sweep_id for v in views}) == 1 and views[0].sweep_id
    job = jobs.get_job(catalog, ids[0][:20])
    assert job.id == ids[0] and job.max_retries == 1
    assert job.job_spec() == specs[0]
    with pytest.raises(NotFoundError):
        jobs.get_job(catalog, "nope")


def test_lifecycle_and_terminal_states_are_final(catalog, specs):
    job_id = jobs.create_jobs(catalog, specs[:1])[0]
    assert jobs.start_attempt(catalog, job_id, node="n1", pid=123)[1] == 1
    assert jobs.heartbeat(catalog, job_id, 1) == "RUNNING"
    assert jobs.set_checkpoint(catalog, job_id, 1, "sha256:ab")
    # a retry after a worker death: attempt 2, checkpoint kept
    assert jobs.start_attempt(catalog, job_id, node="n2", pid=456)[1] == 2
    view = jobs.get_job(catalog, job_id)
    assert (view.state, view.attempt, view.node, view.checkpoint_uri) == (
        "RUNNING", 2, "n2", "sha256:ab")
    # the superseded attempt can no longer write
    assert not jobs.set_checkpoint(catalog, job_id, 1, "sha256:cd")
    assert jobs.mark_cancelled(catalog, job_id)
    assert jobs.heartbeat(catalog, job_id, 2) == "CANCELLED"
    assert not jobs.mark_failed(catalog, job_id, "late failure")
    assert jobs.start_attempt(catalog, job_id)[1] is None
    with pytest.raises(JobError, match="CANCELLED"), catalog.transaction() as session:
        jobs.succeed_in_transaction(session, job_id, 2, "adapter")
    view = jobs.get_job(catalog, job_id)
    assert view.state == "CANCELLED" and view.error == "cancelled by user"


def test_failed_keeps_reason_and_wins_over_cancel(catalog, specs):
    job_id = jobs.create_jobs(catalog, specs[:1])[0]
    jobs.start_attempt(catalog, job_id)
    assert jobs.mark_failed(catalog, job_id, "boom\nsecond line", attempt=1)
    assert not jobs.mark_cancelled(catalog, job_id)
    view = jobs.get_job(catalog, job_id)
    assert view.state == "FAILED" and view.error == "boom second line" and view.finished_at


def test_stale_running_jobs_are_reaped(catalog, specs):
    ids = jobs.create_jobs(catalog, specs)
    for job_id in ids[:2]:
        jobs.start_attempt(catalog, job_id)
    from zoo.storage.tables import JobRow

    old = jobs.utcnow() - timedelta(hours=1)
    with catalog.transaction() as session:
        session.execute(sa.update(JobRow).where(JobRow.id == ids[0]).values(heartbeat_at=old))
    assert jobs.reap_stale(catalog, stale_after_s=60) == [ids[0]]
    states = {v.id: v.state for v in jobs.list_jobs(catalog)}
    assert states == {ids[0]: "FAILED", ids[1]: "RUNNING", ids[2]: "PENDING"}
    assert "no heartbeat" in jobs.get_job(catalog, ids[0]).error
    assert [v.id for v in jobs.list_jobs(catalog, state="pending")] == [ids[2]]
