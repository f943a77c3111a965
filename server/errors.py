"""Errors as JSON: ``{"error": <ZooError class>, "exit_code": n, "message": ...}``.

The same typed errors the CLI maps to exit codes travel over HTTP, so the remote CLI raises the
very error the embedded one would (same message, same exit code). Messages are the errors' own
one-line texts: they never hold a token secret or a database password (URLs are redacted where
errors are made).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from zoo import errors as zerr

# Most specific first: the first class an error is an instance of decides its HTTP status.
STATUS: tuple[tuple[type[zerr.ZooError], int], ...] = (
    (zerr.ForbiddenError, 403),
    (zerr.AuthError, 401),
    (zerr.NotFoundError, 404),
    (zerr.AmbiguousRefError, 409),
    (zerr.ConflictError, 409),
    (zerr.JobError, 409),
    (zerr.ConfigError, 400),
    (zerr.QuerySyntaxError, 400),
    (zerr.AdapterFormatError, 400),
    (zerr.AdapterMismatchError, 400),
    (zerr.StoreError, 502),
    (zerr.SchemaVersionError, 503),
    (zerr.CatalogBusyError, 503),
)
ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422)


class ErrorBody(BaseModel):
    """Every error response of the API."""

    error: str
    exit_code: int
    message: str


def status_of(exc: zerr.ZooError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, name: str, exit_code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": name, "exit_code": exit_code, "message": message},
                        status_code=status, headers=headers)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into :class:`ErrorBody` responses."""

    @app.exception_handler(zerr.ZooError)
    async def zoo_error(_request: Request, exc: zerr.ZooError) -> JSONResponse:
        return error_response(status_of(exc), type(exc).__name__, exc.exit_code, _one_line(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "ConfigError", zerr.ConfigError.exit_code,
                              f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = "NotFoundError" if exc.status_code == 404 else "ZooError"
        code = zerr.NotFoundError.exit_code if exc.status_code == 404 else 1
        return error_response(exc.status_code, name, code, str(exc.detail))

