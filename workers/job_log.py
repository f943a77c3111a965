"""One attempt's log and heartbeat, shipped through the store while the job trains.

The log is kept in memory and uploaded as a blob on each heartbeat (``zoo jobs logs --follow``
streams it from the store); a successful attempt's final log goes into the job's row instead
when it is small. The heartbeat refreshes ``heartbeat_at`` and SIGKILLs this process when the
job is no longer this attempt's to run (cancelled): the training process is really gone, its
GPU memory with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from zoo.errors import ZooError
from zoo.storage import jobs, staging
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog

HEARTBEAT_S = float(os.environ.get("ZOO_HEARTBEAT_S", "5"))


class JobLog:
    """An append-only log kept in memory, uploaded to the store as a blob on each heartbeat;
    a successful attempt's final log goes into the job's row instead when it is small.

    In memory rather than in a temp file: the lines of one attempt are small, and every write
    and upload then costs no file open (a short job writes ~10 lines).
    """

    def __init__(self, job_id: str, artifacts: BlobStore, previous: str | None) -> None:
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

    def __init__(self, catalog: Catalog, job_id: str, attempt: int, log: JobLog) -> None:
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
