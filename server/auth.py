"""Who is asking: a token from the ``Authorization: Bearer`` header, or from the web pages'
session cookie, checked against the catalog on every request.

``authenticate_request(request) -> Token`` is the one check (401 when there is no live token);
``require(scope)`` is the FastAPI dependency that also checks the scope (403). Writes to a
named adapter check the token's name prefix where the name is known (``Token.check``). A
secret is never logged, echoed or put in an error.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zoo.errors import AuthError
from zoo.storage.tokens import Token, authenticate, bearer_secret

SESSION_COOKIE = "zoo_session"
_bearer = HTTPBearer(auto_error=False, description="A token from `zoo token create`.")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_secret(request: Request) -> str | None:
    """The secret a request carries: the Bearer header first, else the session cookie, which
    counts for reads only (a browser attaches cookies to cross-site posts too: a change must
    carry its token in a header no other site can set)."""
    header = request.headers.get("authorization")
    if header:
        return bearer_secret(header)
    if request.method not in SAFE_METHODS:
        return None
    return request.cookies.get(SESSION_COOKIE) or None


def authenticate_request(request: Request) -> Token:
    """The live token of this request, or AuthError (HTTP 401)."""
    secret = request_secret(request)
    if not secret:
        raise AuthError("no token: send `Authorization: Bearer <token>` (see `zoo token create`)")
    token = authenticate(request.app.state.catalog, secret)
    if token is None:
        raise AuthError("token refused: unknown, revoked or expired")
    return token


def require(scope: str) -> Callable[..., Token]:
    """A dependency: the request's token, which must hold ``scope`` (read < write < admin)."""

    def dependency(request: Request,
                   _credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Token:
        token = authenticate_request(request)
        # the admin verbs name no adapter: a prefixed token never gets them
        token.check(scope, None if scope == "admin" else token.prefix)
        return token

    return dependency
