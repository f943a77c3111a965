"""The ASGI app of ``zoo server``: the REST API (and the web pages) over one catalog and store.

``create_app(settings)`` opens the catalog once (its connection pool serves every request) and
the store on first use. ``GET /healthz`` is the only endpoint without a token: even the OpenAPI
document (``/openapi.json``) needs a read token.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from zoo import __version__
from zoo.server import errors, web
from zoo.server.api import router
from zoo.server.auth import require
from zoo.settings import Settings
from zoo.storage.tokens import Token


def _lazy_store(settings: Settings) -> Callable[[], Any]:
    lock, box = threading.Lock(), []

    def store() -> Any:
        if not box:
            with lock:
                if not box:
                    from zoo.storage.blobstore import open_store

                    box.append(open_store(settings.store_url))
        return box[0]

    return store


def _error_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, with every 4xx answer described by ``ErrorBody`` (validation
    errors included: they are answered in the same shape)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                              description=app.description)
            for path in doc.get("paths", {}).values():
                for op in path.values():
                    for status, answer in op.get("responses", {}).items():
                        if status.startswith("4"):
                            answer["content"] = {"application/json": {"schema": {
                                "$ref": "#/components/schemas/ErrorBody"}}}
            doc.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
            doc.get("components", {}).get("schemas", {}).pop("ValidationError", None)
            app.openapi_schema = doc
        return app.openapi_schema

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    """The server app over the configured catalog and store (flags > env > file > defaults)."""
    from zoo.settings import resolve_settings
    from zoo.storage.db import open_catalog

    settings = settings or resolve_settings()
    catalog = open_catalog(settings.catalog_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            catalog.close()

    app = FastAPI(title="adapter zoo", version=__version__, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,  # served below, with a token
                  description="The zoo's catalog as a team service: scoped tokens, an audit "
                              "trail, verified downloads.")
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.store = _lazy_store(settings)
    errors.install(app)

    @app.get("/healthz", summary="Liveness (no token needed)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(router)
    app.include_router(web.router)  # the web catalog's pages
    app.openapi = _error_schemas(app)  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(_token: Token = Depends(require("read"))) -> JSONResponse:
        return JSONResponse(app.openapi())

    return app
