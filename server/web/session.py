"""Signing in to the web catalog: a token becomes an HttpOnly cookie; CSRF tokens on forms.

The browser holds the token secret in an ``HttpOnly; SameSite=Lax`` cookie (never readable by
page scripts, not sent on cross-site POSTs) and every request authenticates it again through
the token store, so a revoked or expired token signs its sessions out at once and no session
state lives in the server (restarts and several workers need nothing shared).

CSRF: a form that changes something carries a hidden ``csrf`` field checked on POST. For a
signed-in browser it is an HMAC of the session's secret (per session, nothing to store); the
sign-in form, before any session exists, uses a random value that must match a cookie set with
the form (a forged cross-site sign-in cannot read or set that cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from zoo.server.auth import SESSION_COOKIE  # the API accepts the same cookie (its downloads)

LOGIN_CSRF_COOKIE = "zoo_login_csrf"
CSRF_FIELD = "csrf"
SESSION_MAX_AGE_S = 12 * 3600


class SignInRequired(Exception):
    """No valid session: the page redirects to the sign-in form (and back afterwards)."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Exception):
    """A POST without the form's CSRF token (a forged or stale form): 403, nothing changed."""


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: the token it signed in with (name, scope, prefix)."""

    token: Any
    secret: str

    @property
    def csrf(self) -> str:
        return csrf_for(self.secret)

    @property
    def who(self) -> str:
        return str(self.token.name)

    @property
    def rights(self) -> str:
        """What the token may do, as the header shows it: ``read``, ``write team-b.*``…"""
        prefix = f" {self.token.prefix}*" if self.token.prefix else ""
        return f"{self.token.scope}{prefix}"


def csrf_for(secret: str) -> str:
    """The session's CSRF token: HMAC-SHA256 of a fixed label keyed by the session secret."""
    return hmac.new(secret.encode(), b"zoo-web-csrf", hashlib.sha256).hexdigest()


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def check_csrf(expected: str | None, given: Any) -> None:
    """Refuse unless ``given`` equals ``expected`` (constant-time compare)."""
    if not expected or not isinstance(given, str) or not hmac.compare_digest(
            expected.encode(), given.encode()):
        raise CsrfRefused("the form's CSRF token is missing or wrong; reload the page and retry")


def authenticate(request: Request, secret: str) -> Any | None:
    """The token ``secret`` names if it is valid now (not revoked, not expired), else None."""
    from zoo.server.web.context import catalog_of
    from zoo.storage.tokens import authenticate as verify

    return verify(catalog_of(request), secret)


def current(request: Request) -> WebSession | None:
    """The request's session, or None when it has no cookie or its token is no longer valid."""
    secret = request.cookies.get(SESSION_COOKIE)
    token = authenticate(request, secret) if secret else None
    return None if token is None else WebSession(token, secret)


def require(request: Request) -> WebSession:
    """The session, or SignInRequired naming where to come back to."""
    session = current(request)
    if session is None:
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(url)
    request.state.web_session = session  # error pages still show who is signed in
    return session


def safe_next(url: str | None) -> str:
    """Where to go after signing in: a local path only (never another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url
