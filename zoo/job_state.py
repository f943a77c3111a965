"""The states of a training job and the moves between them: the one definition of the idea.

    PENDING ──► RUNNING ──► SUCCEEDED        (only inside the publish transaction)
       │           │ ▲  └──► FAILED           (error text = the reason)
       │           └─┘ retry: attempt + 1     (Ray re-ran the task after the worker died)
       └───────────┴──────► CANCELLED

The catalog (``zoo.storage.jobs``) writes them with guarded UPDATEs, the workers and the CLI
read them; torch-, Ray- and SQLAlchemy-free so that ``zoo jobs`` can name them instantly.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """A job's state; compares equal to its name (``JobState.RUNNING == "RUNNING"``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset({JobState.PENDING, JobState.RUNNING})
