"""Operating on submitted jobs: cancel (the process really goes away) and logs (streamed).

Cancel needs no handle on the Ray task, so it works from any machine: it records CANCELLED
with a guarded UPDATE, then stops the training process two ways —

- on the worker's own node (``node`` equals this host), SIGKILL the recorded pid at once
  (after checking that the pid still is a Ray worker, never an unrelated process);
- everywhere, the job's heartbeat thread sees CANCELLED within ``ZOO_HEARTBEAT_S`` and
  SIGKILLs its own process.

A killed worker frees its GPU memory with it; if Ray retries the task, the new attempt sees the
terminal state and returns at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence

from zoo.storage import jobs, staging
from zoo.storage.db import Catalog


def pid_alive(pid: int) -> bool:
    """Whether a process exists (zombies count as gone)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except ImportError:  # pragma: no cover - psutil ships with ray[default]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied...
        return False


def _is_ray_worker(pid: int) -> bool:
    try:
        import psutil

        cmd = " ".join(psutil.Process(pid).cmdline())
    except Exception:  # noqa: BLE001
        return False
    return "ray" in cmd.lower() or "default_worker" in cmd or "zoo.workers" in cmd


def cancel_jobs(catalog: Catalog, job_ids: Sequence[str], *, wait_s: float = 30.0,
                kill_local: bool = True) -> dict[str, str]:
    """Cancel each job; returns job id → outcome text (``cancelled``, ``already SUCCEEDED``…).

    ``kill_local=False`` leaves the killing to the worker's heartbeat (what happens for a
    worker on another machine).
    """
    outcomes: dict[str, str] = {}
    to_watch: list[tuple[str, int]] = []
    here = socket.gethostname()
    for ref in job_ids:
        view = jobs.get_job(catalog, ref)
        if view.terminal:
            outcomes[view.id] = f"already {view.state}"
            continue
        if not jobs.mark_cancelled(catalog, view.id):
            outcomes[view.id] = f"already {jobs.get_job(catalog, view.id).state}"
            continue
        outcomes[view.id] = "cancelled"
        if kill_local and view.state == jobs.RUNNING and view.worker_pid \
                and (view.node or "").split(":")[0] == here and _is_ray_worker(view.worker_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(view.worker_pid, signal.SIGKILL)
            to_watch.append((view.id, view.worker_pid))
    deadline = time.monotonic() + wait_s
    for job_id, pid in to_watch:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            outcomes[job_id] = f"cancelled, but pid {pid} is still alive after {wait_s:.0f} s"
    return outcomes


def read_log(catalog: Catalog, store_url: str, job_id: str) -> tuple[jobs.JobView, bytes]:
    """The job and its log: the final one kept in its row, else the latest uploaded (empty
    before the first heartbeat)."""
    view = jobs.get_job(catalog, job_id)
    if view.terminal:
        text = jobs.log_text(catalog, view.id)
        if text is not None:
            return view, text.encode()
    if not view.log_uri:
        return view, b""
    store = staging.open_artifacts(store_url)
    return view, staging.get_bytes(store, staging.digest_of(view.log_uri))


def stream_log(catalog: Catalog, store_url: str, job_id: str, write: Callable[[str], None], *,
               follow: bool = False, poll_s: float = 1.0) -> jobs.JobView:
    """Write the log; with ``follow`` keep writing new lines until the job is terminal."""
    shown = 0
    while True:
        view, data = read_log(catalog, store_url, job_id)
        if len(data) > shown:
            write(data[shown:].decode("utf-8", "replace"))
            shown = len(data)
        if not follow or view.terminal:
            if follow and view.terminal:  # the final upload may land just after the state
                time.sleep(poll_s)
                view, data = read_log(catalog, store_url, view.id)
                if len(data) > shown:
                    write(data[shown:].decode("utf-8", "replace"))
            return view
        jobs.reap_stale(catalog)
        time.sleep(poll_s)


__all__ = ["cancel_jobs", "pid_alive", "read_log", "stream_log"]
