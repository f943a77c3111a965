"""The driver of a Ray job submitted by ``zoo submit --address``: runs one submission's jobs.

Started by Ray's job server as ``python -m zoo.workers.driver --sweep SWEEP_ID``. Catalog and
store URLs come from the cluster's own environment (``ZOO_CATALOG_URL``/``ZOO_STORE_URL``, as
docker-compose sets them) or, when unset there, from the submitter (forwarded without
passwords: secrets such as ``PGPASSWORD`` and AWS keys belong to the cluster's environment).
"""

from __future__ import annotations

import argparse
import os
import sys


def _url(name: str) -> str:
    value = os.environ.get(f"ZOO_{name}") or os.environ.get(f"ZOO_FORWARDED_{name}")
    if not value:
        raise SystemExit(f"zoo driver: neither ZOO_{name} nor ZOO_FORWARDED_{name} is set")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo.workers.driver")
    parser.add_argument("--sweep", required=True, help="the submission (sweep) id")
    args = parser.parse_args(argv)
    from zoo.settings import adopt_forwarded_endpoint

    adopt_forwarded_endpoint()

    from zoo.storage import jobs
    from zoo.storage.db import open_catalog
    from zoo.workers.cluster import connect
    from zoo.workers.submit import run_jobs

    catalog_url, store_url = _url("CATALOG_URL"), _url("STORE_URL")
    catalog = open_catalog(catalog_url)
    views = [v for v in jobs.list_jobs(catalog, sweep_id=args.sweep) if not v.terminal]
    if not views:
        print(f"zoo driver: no active jobs of submission {args.sweep} in {catalog.redacted_url}"
              " (does the cluster's ZOO_CATALOG_URL name the submitter's catalog?)")
        return 1
    connect("auto")
    print(f"zoo driver: running {len(views)} job(s) of submission {args.sweep}", flush=True)
    states = run_jobs(catalog, [v.id for v in reversed(views)], catalog_url=catalog_url,
                      store_url=store_url,
                      on_done=lambda j, s: print(f"zoo driver: job {j} {s}", flush=True))
    failed = [j for j, s in states.items() if s != jobs.SUCCEEDED]
    print(f"zoo driver: {len(states) - len(failed)} succeeded, {len(failed)} not", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
