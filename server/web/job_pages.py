"""The jobs pages: states and attempts one keyset page at a time, and one job with its log."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from zoo.errors import QuerySyntaxError
from zoo.job_state import JobState
from zoo.server.web import session as web
from zoo.server.web.context import catalog_of, read, settings_of
from zoo.server.web.render import Timer, WebRoute, page
from zoo.storage.browse import job_page, job_states

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
LOG_TAIL_BYTES = 256 * 1024


@router.get("/jobs")
def jobs_page(request: Request, state: str = "", before: str = "") -> Response:
    """Jobs newest first (optionally in one state), with a link to the next page."""
    session = web.require(request)
    state = state.upper()
    if state and state not in {s.value for s in JobState}:
        raise QuerySyntaxError(f"no job state {state!r}; one of "
                               f"{', '.join(s.value for s in JobState)}")
    timer = Timer()
    found, counts = timer(lambda: read(request, lambda s: (
        job_page(s, state=state or None, before=before or None, limit=PAGE_SIZE), job_states(s))))
    return page(request, "jobs.html", session=session, timer=timer, jobs=found.jobs,
                next_before=found.next_before, state=state, counts=counts,
                states=[s.value for s in JobState], before=before)


@router.get("/jobs/{job_id}")
def job_detail(request: Request, job_id: str) -> Response:
    """One job: its state, attempts, error, spec and log (the final one, or the latest shipped)."""
    from zoo.workers.control import read_log

    session = web.require(request)
    timer = Timer()
    view, data = timer(lambda: read_log(catalog_of(request), settings_of(request).store_url,
                                        job_id))
    clipped = len(data) > LOG_TAIL_BYTES
    log = data[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
    return page(request, "job.html", session=session, timer=timer, job=view, log=log,
                log_clipped=clipped, log_bytes=len(data))
