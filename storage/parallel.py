"""Parallel transfers: a thread pool that fails fast and reports progress.

Why threads: blob transfers are network/disk bound and botocore releases the GIL while waiting,
so one shared client plus N threads saturates the link; processes would only add start-up cost.
The first error cancels work not yet started and is re-raised once running work has finished,
so callers can clean up temp files knowing no thread still writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# progress(done_items, total_items, done_bytes); called once with done_items=0 before work starts
ProgressFn = Callable[[int, int, int], None]


def run_parallel(
    items: Sequence[T],
    fn: Callable[[T], R],
    *,
    workers: int = 8,
    progress: ProgressFn | None = None,
    size_of: Callable[[T, R], int] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` threads, results in input order.

    ``size_of(item, result)`` gives the bytes an item moved, for the progress callback.
    """
    total = len(items)
    if progress:
        progress(0, total, 0)
    if total == 0:
        return []
    workers = max(1, min(workers, total))
    if workers == 1:
        return _run_serial(items, fn, progress, size_of)
    lock = threading.Lock()
    counters = [0, 0]  # done items, done bytes

    def job(item: T) -> R:
        result = fn(item)
        if progress:
            nbytes = size_of(item, result) if size_of else 0
            with lock:
                counters[0] += 1
                counters[1] += nbytes
                progress(counters[0], total, counters[1])
        return result

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zoo-transfer") as pool:
        futures: list[Future[R]] = [pool.submit(job, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
        if failed:
            for f in pending:
                f.cancel()
            wait(futures)  # let running transfers finish before the caller cleans up
            raise failed[0].exception()  # type: ignore[misc]
    return [f.result() for f in futures]


def _run_serial(items: Sequence[T], fn: Callable[[T], R], progress: ProgressFn | None,
                size_of: Callable[[T, R], int] | None) -> list[R]:
    results: list[R] = []
    nbytes = 0
    for i, item in enumerate(items, 1):
        result = fn(item)
        results.append(result)
        if progress:
            nbytes += size_of(item, result) if size_of else 0
            progress(i, len(items), nbytes)
    return results
