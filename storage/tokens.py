"""API tokens of the team server: create (the secret is shown once), list, revoke, authenticate.

Only the sha256 of a secret is stored. A secret is ``zoo_`` + 32 random bytes (urlsafe base64),
so its hash is a safe lookup key: the row is found by the hash's unique index, and the stored
hash is then compared with ``hmac.compare_digest`` so no byte-by-byte timing escapes either.
Revoked and expired tokens authenticate as nothing.

Scopes nest: ``read`` browses and pulls; ``write`` also pushes, tags, moves aliases, submits
jobs and starts evals; ``admin`` also manages tokens and runs gc. A ``prefix`` limits a token's
writes to adapter names (and their aliases) that start with it; a prefixed token never gets
the admin verbs, which name no adapter (it could otherwise mint itself an unprefixed token).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from zoo.errors import ConfigError, ConflictError, ForbiddenError, NotFoundError
from zoo.names import validate_name
from zoo.storage import audit
from zoo.storage.db import Catalog
from zoo.storage.tables import TokenRow, utcnow

SCOPES = ("read", "write", "admin")
SECRET_PREFIX = "zoo_"


@dataclass(frozen=True)
class Token:
    """A token as the server sees it (never its secret)."""

    name: str
    scope: str
    prefix: str | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def may(self, scope: str, adapter_name: str | None = None) -> bool:
        """Whether this token may do something needing ``scope`` (to ``adapter_name``)."""
        if SCOPES.index(self.scope) < SCOPES.index(scope):
            return False
        if scope == "read" or self.prefix is None:
            return True
        return adapter_name is not None and adapter_name.startswith(self.prefix)

    def check(self, scope: str, adapter_name: str | None = None) -> None:
        """:meth:`may`, or an AuthError that says what was refused and why."""
        if self.may(scope, adapter_name):
            return
        if SCOPES.index(self.scope) < SCOPES.index(scope):
            raise ForbiddenError(f"token {self.name!r} has scope {self.scope}; this needs {scope}")
        what = f"adapter name {adapter_name!r}" if adapter_name else "this (it names no adapter)"
        raise ForbiddenError(f"token {self.name!r} may write only names starting with "
                        f"{self.prefix!r}, not {what}")

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {"name": self.name, "scope": self.scope, "prefix": self.prefix,
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "revoked_at": iso(self.revoked_at),
                "active": self.revoked_at is None and (self.expires_at is None
                                                       or self.expires_at > utcnow())}


def _token(row: TokenRow) -> Token:
    return Token(row.name, row.scope, row.prefix, row.created_at, row.expires_at, row.revoked_at)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create(catalog: Catalog, name: str, *, scope: str, prefix: str | None = None,
           expires_s: float | None = None) -> tuple[Token, str]:
    """A new token; returns it and its secret, which is stored nowhere (show it once)."""
    name = validate_name(name, "token name")
    if scope not in SCOPES:
        raise ConfigError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if prefix is not None:
        prefix = validate_name(prefix, "prefix")
    if expires_s is not None and expires_s <= 0:
        raise ConfigError("--expires must be a positive duration")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = TokenRow(name=name, secret_sha256=hash_secret(secret), scope=scope, prefix=prefix,
                   created_at=now,
                   expires_at=None if expires_s is None else now + timedelta(seconds=expires_s))

    def run(session: Any) -> Token:
        if session.scalar(select(TokenRow.id).where(TokenRow.name == name)) is not None:
            raise ConflictError(f"a token named {name!r} exists; revoke it or pick another name")
        session.add(row)
        session.flush()
        token = _token(row)
        audit.record(session, "token.create", f"token:{name}",
                     after={"scope": scope, "prefix": prefix,
                            "expires_at": token.to_dict()["expires_at"]})
        return token

    try:
        return catalog.run(run), secret
    except SQLIntegrityError:  # a concurrent create of the same name
        raise ConflictError(f"a token named {name!r} exists; revoke it or pick another name"
                            ) from None


def list_tokens(catalog: Catalog) -> list[Token]:
    """Every token, revoked and expired ones included, by name."""
    return catalog.run(lambda s: [_token(r) for r in s.scalars(select(TokenRow)
                                                                .order_by(TokenRow.name))],
                       readonly=True)


def revoke(catalog: Catalog, name: str) -> Token:
    """Revoke a token for good (a revoked token stays listed, marked, and can never return)."""

    def run(session: Any) -> Token:
        row = session.scalar(select(TokenRow).where(TokenRow.name == name))
        if row is None:
            raise NotFoundError(f"no token named {name!r}")
        if row.revoked_at is None:
            now = utcnow()
            session.execute(update(TokenRow).where(TokenRow.id == row.id)
                            .values(revoked_at=now))
            row.revoked_at = now
            audit.record(session, "token.revoke", f"token:{name}", before={"scope": row.scope})
        return _token(row)

    return catalog.run(run)


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header value (None for another scheme)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def authenticate(catalog: Catalog, secret: str | None) -> Token | None:
    """The live token whose secret this is; None for an unknown, revoked or expired one."""
    if not secret or not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    digest = hash_secret(secret)
    row = catalog.run(lambda s: s.scalar(select(TokenRow)
                                         .where(TokenRow.secret_sha256 == digest)),
                      readonly=True)
    if row is None or not hmac.compare_digest(row.secret_sha256, digest):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return _token(row)
