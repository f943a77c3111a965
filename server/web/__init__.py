"""The web catalog: server-rendered pages over the same storage layer as the REST API.

Sign in with a token, browse and query the catalog, open an adapter, rank adapters on a
leaderboard with its picture, follow jobs. HTML from jinja2 templates (``server/templates``),
one small script and a stylesheet from ``server/static``; no build step. ``router`` holds every
page; the app factory includes it. Pages are left out of the OpenAPI document (they are not
the API).
"""

from __future__ import annotations

from fastapi import APIRouter

from zoo.server.web import auth_pages, board_pages, catalog_pages, job_pages, static

router = APIRouter(include_in_schema=False)
for _pages in (auth_pages, catalog_pages, board_pages, job_pages, static):
    router.include_router(_pages.router)

__all__ = ["router"]
