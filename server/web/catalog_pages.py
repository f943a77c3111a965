"""The catalog page (query box, sortable columns, keyset paging) and the adapter page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from zoo.errors import QuerySyntaxError, ZooError
from zoo.server.web import paging
from zoo.server.web import session as web
from zoo.server.web.context import catalog_of, read
from zoo.server.web.render import Timer, WebRoute, page
from zoo.storage import catalog as cat
from zoo.storage.audit import alias_history
from zoo.storage.db import Transaction
from zoo.storage.jobs import get_job

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
# Columns a header click sorts by: each has an index in the page's order (key, then id), so any
# page of a 100k-adapter catalog, forward or back, is an index range scan from its cursor, never
# a sort of the matches (tests/web/test_page_queries.py checks the plans on SQLite and PostgreSQL).
SORTABLE = ("created", "name", "task", "r", "params")
DEFAULT_SORT = "-created"


def _sort_links(sort: str) -> dict[str, str]:
    """For each sortable column, the sort a click on its header asks for (toggles direction)."""
    field, descending = sort.lstrip("-"), sort.startswith("-")
    out = {}
    for column in SORTABLE:
        if column == field:
            out[column] = column if descending else f"-{column}"
        else:
            out[column] = f"-{column}" if column == "created" else column
    return out


@router.get("/")
def home(request: Request) -> Response:
    web.require(request)
    return RedirectResponse("/adapters", status_code=303)


@router.get("/adapters")
def catalog_page(request: Request, q: str = "", sort: str = DEFAULT_SORT, after: str = "",
                 before: str = "") -> Response:
    """One page of adapters matching the query, in the chosen order, after (or before) a
    keyset cursor."""
    session = web.require(request)
    if sort.lstrip("-") not in SORTABLE:
        raise QuerySyntaxError(f"cannot sort the catalog page by {sort!r}; "
                               f"choose one of {', '.join(SORTABLE)} (prefix - for descending)")
    timer, error = Timer(), None
    view = Listing([], None, None, None)
    try:
        cursor, backward = paging.decode(before or after), bool(before)
        view = timer(lambda: read(request, lambda s: _page(s, q, sort, cursor, backward=backward)))
    except QuerySyntaxError as exc:  # shown under the query box, the query kept for editing
        error = str(exc)
    return page(request, "catalog.html", session=session, timer=timer,
                status=400 if error else 200, rows=view.rows, total=view.total, q=q, sort=sort,
                sort_links=_sort_links(sort), error=error, paged=bool(after or before),
                next_cursor=view.next_cursor, prev_cursor=view.prev_cursor)


@dataclass
class Listing:
    """A catalog page: its rows, the number of matches when known, and the cursors that lead
    to the pages after and before it (None where there is none)."""

    rows: list[dict[str, Any]]
    total: int | None
    next_cursor: str | None
    prev_cursor: str | None


def _key(row: dict[str, Any], sort: str) -> str:
    """The keyset cursor at ``row``: its sort key (the id for ``created``) and its id."""
    field = sort.lstrip("-")
    return paging.encode((row["id"] if field == "created" else row[field], row["id"]))


def _page(s: Transaction, q: str, sort: str, cursor: tuple[Any, str] | None, *,
          backward: bool = False) -> Listing:
    """The page after ``cursor`` (or, ``backward``, the page before it), the cursors around it,
    and the number of matches when it is cheap to know.

    One row more than a page is read to learn whether another page follows. Backward reads
    the reversed order from the cursor and turns the rows round. The catalog's size is one
    index count; the matches of a query are counted only when they fit on the first page
    (counting every match of a broad query visits each of 100k rows; paging needs no total)."""
    order = (sort[1:] if sort.startswith("-") else f"-{sort}") if backward else sort
    found = cat.list_adapters(s, q or None, order, PAGE_SIZE + 1, cursor)
    more = len(found) > PAGE_SIZE
    rows = [cat.adapter_to_dict(row, config=False) for row in found[:PAGE_SIZE]]
    if backward:
        rows.reverse()
    first_page = cursor is None or (backward and not more)
    next_cursor = _key(rows[-1], sort) if rows and (backward or more) else None
    prev_cursor = _key(rows[0], sort) if rows and not first_page else None
    if not q:
        total = cat.count_adapters(s, None)
    else:
        total = len(rows) if first_page and next_cursor is None else None
    return Listing(rows, total, next_cursor, prev_cursor)


@router.get("/adapters/{ref}")
def adapter_page(request: Request, ref: str) -> Response:
    """Everything about one adapter: config, size, base, lineage, metrics, labels, pulling."""
    session = web.require(request)
    timer = Timer()
    adapter = timer(lambda: read(request, lambda s: cat.adapter_to_dict(cat.resolve_ref(s, ref))))
    job = timer(lambda: _job(request, adapter.get("job_id")))
    history = timer(lambda: read(request, lambda s: _alias_history(s, adapter["aliases"])))
    return page(request, "adapter.html", session=session, timer=timer, a=adapter, job=job,
                history=history, config=adapter["config"],
                pull_command=f"zoo pull {adapter['id']} -o adapters/",
                download_url=f"/api/v1/blobs/{adapter['digest']}",
                download_name=f"{adapter['name']}-{adapter['id']}.safetensors")


def _job(request: Request, job_id: str | None) -> Any:
    """The job that trained the adapter, when the catalog still has its row."""
    if not job_id:
        return None
    try:
        return get_job(catalog_of(request), job_id)
    except ZooError:
        return None


def _alias_history(s: Transaction, aliases: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every move of each of the adapter's aliases (the audit trail), newest first."""
    return {ref: list(reversed(alias_history(s, ref))) for ref in aliases}
