"""The client interface every CLI verb is written against (MLflow's tracking client over a
REST store or a SQL store is the model). Every method returns plain JSON-ready values, the
same ones ``--json`` prints, so the two implementations agree by construction and the output
of a verb does not depend on how the catalog was reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

Json = dict[str, Any]
ProgressFn = Callable[[int, int, int], None]


class Client(Protocol):
    """What the CLI can ask of the zoo. Errors are the typed errors of ``zoo.errors``."""

    def list_adapters(self, query: str, sort: str, limit: int,
                      count: bool = False) -> tuple[list[Json], int | None]:
        """One page (no config) and, when ``count`` and the page is full, how many match in all
        (counting a broad query scans it, so only a table that prints the total asks)."""

    def iter_adapters(self, query: str, sort: str) -> Iterator[Json]:
        """Every match, streamed page by page."""

    def show(self, ref: str) -> Json: ...

    def tag(self, ref: str, tags: Sequence[str]) -> Json: ...

    def untag(self, ref: str, tags: Sequence[str]) -> Json: ...

    def alias_set(self, name_alias: str, ref: str) -> str:
        """Point the alias; returns the adapter id."""

    def alias_rm(self, name_alias: str) -> str:
        """Remove the alias; returns the adapter id it pointed to."""

    def alias_ls(self, name: str | None) -> list[Json]: ...

    def alias_log(self, name_alias: str) -> list[Json]: ...

    def remove(self, refs: Sequence[str], force: bool) -> list[Json]: ...

    def push(self, path: str, *, name: str, tags: Sequence[str], aliases: Sequence[str],
             base: str | None) -> Json:
        """The pushed adapter (``adapter_to_dict``) plus ``uploaded``."""

    def pull(self, refs: Sequence[str], *, out_dir: str, tag: str | None, query: str | None,
             format: str, workers: int, progress: ProgressFn | None) -> Json:
        """``PullResult.to_dict()``: every file verified by sha256 on this machine."""

    def leaderboard(self, *, dataset: str, metric: str, query: str | None,
                    limit: int) -> list[Json]: ...

    def bases(self) -> list[Json]: ...

    def base_add(self, name: str, location: str, *, upload: bool) -> Json:
        """Register ``location`` as the base ``name`` (``BaseView.to_json()``); via a server an
        unprefixed admin token and an ``s3://`` location only."""

    def evaluate(self, *, query: str, dataset: str, metrics: Sequence[str] | None,
                 batch_size: int, max_examples: int | None, force: bool, address: str | None,
                 progress: ProgressFn | None) -> Json:
        """Score the matching adapters on a dataset (a file or s3:// URI); the summary
        (``EvalSummary.to_dict()``). Results go to the catalog."""

    def gc(self, *, grace: str, dry_run: bool, force: bool) -> Json:
        """Remove what no catalog row needs (``GcReport.to_dict()``); admin only via a server."""

    def fsck(self, *, verify: bool, workers: int) -> Json:
        """Check the store against the catalog (``FsckReport.to_dict()``); admin only via a
        server."""

    def token_create(self, name: str, *, scope: str, prefix: str | None,
                     expires_s: float | None) -> Json:
        """The token's fields plus ``token``, its secret (shown once)."""

    def token_ls(self) -> list[Json]: ...

    def token_revoke(self, name: str) -> Json: ...

    def audit(self, *, since_s: float | None, verb: str | None, target: str | None,
              limit: int) -> list[Json]: ...

    def jobs_ls(self, *, state: str | None, sweep_id: str | None, limit: int) -> list[Json]: ...

    def job_show(self, job_id: str) -> Json: ...

    def job_cancel(self, job_ids: Sequence[str]) -> dict[str, str]: ...

    def stream_log(self, job_id: str, write: Callable[[str], None], *, follow: bool) -> None:
        """Write a job's log; with ``follow`` keep writing until the job ends."""

    def wait_jobs(self, job_ids: Sequence[str], *, timeout: float | None) -> dict[str, str]:
        """Wait until the jobs end (or ``timeout`` seconds); job id -> state."""

    def close(self) -> None: ...
