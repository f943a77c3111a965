"""Sign in (a token pasted into a form becomes the session cookie) and sign out."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from zoo.server.web import session as web
from zoo.server.web.render import WebRoute, page

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _form(request: Request, *, next_url: str, message: str | None = None,
          status: int = 200) -> Response:
    """The sign-in form with a fresh CSRF value, also set as a cookie it must match."""
    token = web.new_login_csrf()
    response = page(request, "login.html", session=None, status=status, csrf=token,
                    next_url=web.safe_next(next_url), message=message)
    response.set_cookie(web.LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/login")
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the URL's name
    return _form(request, next_url=next)


@router.post("/login")
def login(request: Request, token: str = Form(""), csrf: str = Form(""),
          next: str = Form("/")) -> Response:  # noqa: A002
    """Check the form's CSRF value against its cookie, then the token; set the session."""
    web.check_csrf(request.cookies.get(web.LOGIN_CSRF_COOKIE), csrf)
    secret = token.strip()
    if web.authenticate(request, secret) is None:
        return _form(request, next_url=next, status=401,
                     message="That token is not valid: unknown, revoked or expired.")
    response = RedirectResponse(web.safe_next(next), status_code=303)
    response.set_cookie(web.SESSION_COOKIE, secret, max_age=web.SESSION_MAX_AGE_S, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")
    response.delete_cookie(web.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    """Sign out: only with the session's CSRF token (a forged form cannot sign anyone out)."""
    current = web.current(request)
    if current is not None:
        web.check_csrf(current.csrf, csrf)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(web.SESSION_COOKIE, path="/")
    return response
