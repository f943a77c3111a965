"""Rendering pages: jinja2 templates (autoescaped), security headers, and one error path.

``WebRoute`` is the route class of every page: a view raises ``SignInRequired`` (redirect to
the sign-in form), ``CsrfRefused`` (403) or a ``ZooError`` (its message on an error page with
the matching HTTP status) and the route turns it into a page, so views hold no error plumbing
and the app needs no handler of ours. Every page also reports how long its catalog work and its
template took in a ``Server-Timing`` header (the browser's devtools show it; tests print it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from zoo.errors import (
    AmbiguousRefError,
    ConfigError,
    NotFoundError,
    QuerySyntaxError,
    ZooError,
)
from zoo.server.web.session import CsrfRefused, SignInRequired, WebSession

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# Pages load only our own files: no inline script or style, no framing by another site.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATUS = ((NotFoundError, 404), (AmbiguousRefError, 409), (QuerySyntaxError, 400),
           (ConfigError, 400))


def _url(path: str, **params: Any) -> str:
    """``path?k=v`` with the parameters that have a value (templates build links with it)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.globals.update(url=_url)
_env.filters["thousands"] = lambda n: "" if n is None else f"{n:,}"


class Timer:
    """Seconds spent in the catalog while building one page (for Server-Timing)."""

    def __init__(self) -> None:
        self.db_s = 0.0

    def __call__(self, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.db_s += time.perf_counter() - start


def page(request: Request, template: str, *, session: WebSession | None, status: int = 200,
         timer: Timer | None = None, **context: Any) -> HTMLResponse:
    """Render ``template`` with the session (who, CSRF token) and ``context``."""
    start = time.perf_counter()
    html = _env.get_template(template).render(
        request=request, session=session, path=request.url.path, **context)
    render_ms = (time.perf_counter() - start) * 1000
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    db_ms = (timer.db_s if timer else 0.0) * 1000
    response.headers["Server-Timing"] = f"db;dur={db_ms:.1f}, render;dur={render_ms:.1f}"
    return response


def error_page(request: Request, status: int, message: str,
               session: WebSession | None = None) -> HTMLResponse:
    return page(request, "error.html", session=session, status=status, message=message)


def _session(request: Request) -> WebSession | None:
    return getattr(request.state, "web_session", None)


class WebRoute(APIRoute):
    """A page route: sign-in redirects, CSRF refusals and zoo errors become pages."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return RedirectResponse(_url("/login", next=exc.next_url), status_code=303)
            except CsrfRefused as exc:
                return error_page(request, 403, str(exc), _session(request))
            except ZooError as exc:
                status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
                return error_page(request, status, str(exc), _session(request))

        return route
