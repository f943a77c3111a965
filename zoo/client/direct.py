"""The direct client: the catalog and the store themselves (embedded use, or the database owner).

Each method is the one library call a CLI verb used to make; the server's endpoints call the
same storage functions, so both ways give the same values. The catalog opens on first use and
storage modules load lazily (a catalog verb never imports boto3 unless the store is S3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from zoo.client.base import Json, ProgressFn


class DirectClient:
    """:class:`zoo.client.base.Client` over ``zoo.storage`` (and ``zoo.workers`` for jobs)."""

    def __init__(self, *, catalog_url: str | None = None, store_url: str | None = None,
                 workers: int = 8) -> None:
        from zoo.settings import resolve_settings

        self.settings = resolve_settings(catalog_url=catalog_url, store_url=store_url)
        self.workers = workers
        self._catalog: Any = None
        self._store: Any = None

    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            from zoo.storage.db import open_catalog

            self._catalog = open_catalog(self.settings.catalog_url)
        return self._catalog

    @property
    def store(self) -> Any:
        if self._store is None:
            from zoo.storage.blobstore import open_store

            self._store = open_store(self.settings.store_url, workers=self.workers)
        return self._store

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    # ------------------------------------------------------------------------- adapters
    def list_adapters(self, query: str, sort: str, limit: int,
                      count: bool = False) -> tuple[list[Json], int | None]:
        from zoo.storage.catalog import adapter_to_dict, count_adapters, list_adapters

        def page(session: Any) -> tuple[list[Json], int | None]:
            rows = [adapter_to_dict(r, config=False)
                    for r in list_adapters(session, query, sort, limit)]
            full = count and len(rows) == limit
            return rows, count_adapters(session, query) if full else None

        return self.catalog.run(page, readonly=True)

    def iter_adapters(self, query: str, sort: str) -> Iterator[Json]:
        from zoo.storage.catalog import adapter_to_dict, iter_adapters

        with self.catalog.transaction(readonly=True) as session:
            for row in iter_adapters(session, query, sort):
                yield adapter_to_dict(row, config=False)

    def show(self, ref: str) -> Json:
        from zoo.storage.catalog import adapter_to_dict, resolve_ref

        return self.catalog.run(lambda s: adapter_to_dict(resolve_ref(s, ref)), readonly=True)

    def tag(self, ref: str, tags: Sequence[str]) -> Json:
        from zoo.storage.catalog import adapter_to_dict, add_tags

        return self.catalog.run(lambda s: adapter_to_dict(add_tags(s, ref, tags)))

    def untag(self, ref: str, tags: Sequence[str]) -> Json:
        from zoo.storage.catalog import adapter_to_dict, remove_tags

        return self.catalog.run(lambda s: adapter_to_dict(remove_tags(s, ref, tags)))

    def alias_set(self, name_alias: str, ref: str) -> str:
        from zoo.storage.catalog import set_alias

        return self.catalog.run(lambda s: set_alias(s, name_alias, ref).id)

    def alias_rm(self, name_alias: str) -> str:
        from zoo.storage.catalog import remove_alias

        return self.catalog.run(lambda s: remove_alias(s, name_alias))

    def alias_ls(self, name: str | None) -> list[Json]:
        from zoo.storage.catalog import list_aliases

        return self.catalog.run(lambda s: list_aliases(s, name), readonly=True)

    def alias_log(self, name_alias: str) -> list[Json]:
        from zoo.storage.audit import alias_history

        return self.catalog.run(lambda s: alias_history(s, name_alias), readonly=True)

    def remove(self, refs: Sequence[str], force: bool) -> list[Json]:
        from zoo.storage.catalog import remove_adapters

        return self.catalog.run(lambda s: remove_adapters(s, refs, force=force))

    # ------------------------------------------------------------------------- transfer
    def push(self, path: str, *, name: str, tags: Sequence[str], aliases: Sequence[str],
             base: str | None) -> Json:
        from zoo.storage.publish import publish

        result = publish(self.catalog, self.store, path, name=name, tags=tags, aliases=aliases,
                         base=base)
        return {**result.adapter, "uploaded": result.uploaded}

    def pull(self, refs: Sequence[str], *, out_dir: str, tag: str | None, query: str | None,
             format: str, workers: int, progress: ProgressFn | None) -> Json:
        from zoo.storage.pull import pull

        return pull(self.catalog, self.store, refs, out_dir=out_dir, tag=tag, query=query,
                    format=format, workers=workers, progress=progress).to_dict()

    # ----------------------------------------------------------------------- evaluation
    def leaderboard(self, *, dataset: str, metric: str, query: str | None,
                    limit: int) -> list[Json]:
        from zoo.storage.evals import leaderboard

        return leaderboard(self.catalog, dataset=dataset, metric=metric, query=query, top=limit)

    def evaluate(self, *, query: str, dataset: str, metrics: Sequence[str] | None,
                 batch_size: int, max_examples: int | None, force: bool, address: str | None,
                 progress: ProgressFn | None) -> Json:
        from zoo.workers.cluster import shutdown_if_started
        from zoo.workers.eval_pool import run_eval

        try:
            return run_eval(self.catalog, self.settings.store_url, dataset=dataset, query=query,
                            address=address or self.settings.ray_address, metrics=metrics,
                            batch_size=batch_size, max_examples=max_examples, force=force,
                            progress=progress).to_dict()
        finally:
            shutdown_if_started()

    def bases(self) -> list[Json]:
        from zoo.storage.bases import list_bases

        return [v.to_json() for v in self.catalog.run(list_bases, readonly=True)]

    def base_add(self, name: str, location: str, *, upload: bool) -> Json:
        from zoo.storage.bases import register_location

        return register_location(self.catalog, self.store, name, location,
                                 upload=upload).to_json()

    def gc(self, *, grace: str, dry_run: bool, force: bool) -> Json:
        from zoo.storage.gc import gc

        return gc(self.catalog, self.store, grace=grace, dry_run=dry_run, force=force).to_dict()

    def fsck(self, *, verify: bool, workers: int) -> Json:
        from zoo.storage.fsck import fsck

        return fsck(self.catalog, self.store, verify=verify, workers=workers).to_dict()

    # --------------------------------------------------------------------- tokens, audit
    def token_create(self, name: str, *, scope: str, prefix: str | None,
                     expires_s: float | None) -> Json:
        from zoo.storage.tokens import create

        token, secret = create(self.catalog, name, scope=scope, prefix=prefix,
                               expires_s=expires_s)
        return {**token.to_dict(), "token": secret}

    def token_ls(self) -> list[Json]:
        from zoo.storage.tokens import list_tokens

        return [t.to_dict() for t in list_tokens(self.catalog)]

    def token_revoke(self, name: str) -> Json:
        from zoo.storage.tokens import revoke

        return revoke(self.catalog, name).to_dict()

    def audit(self, *, since_s: float | None, verb: str | None, target: str | None,
              limit: int) -> list[Json]:
        from zoo.storage.audit import query

        return self.catalog.run(lambda s: query(s, since=since_s, verb=verb, target=target,
                                                limit=limit), readonly=True)

    # ----------------------------------------------------------------------------- jobs
    def jobs_ls(self, *, state: str | None, sweep_id: str | None, limit: int) -> list[Json]:
        from zoo.storage import jobs

        jobs.reap_stale(self.catalog)
        return [v.to_json() for v in jobs.list_jobs(self.catalog, state=state,
                                                    sweep_id=sweep_id, limit=limit)]

    def job_show(self, job_id: str) -> Json:
        from zoo.storage import jobs

        return jobs.get_job(self.catalog, job_id).to_json()

    def job_cancel(self, job_ids: Sequence[str]) -> dict[str, str]:
        from zoo.workers.control import cancel_jobs

        return cancel_jobs(self.catalog, job_ids)

    def stream_log(self, job_id: str, write: Callable[[str], None], *, follow: bool) -> None:
        from zoo.workers.control import stream_log

        stream_log(self.catalog, self.settings.store_url, job_id, write, follow=follow)

    def wait_jobs(self, job_ids: Sequence[str], *, timeout: float | None) -> dict[str, str]:
        from zoo.storage import jobs
        from zoo.workers.submit import wait_jobs

        ids = [jobs.get_job(self.catalog, j).id for j in job_ids]
        return wait_jobs(self.catalog, ids, timeout=timeout, address=self.settings.ray_address)
