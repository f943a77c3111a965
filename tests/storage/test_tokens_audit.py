"""The token and audit rules at the storage layer, on SQLite and PostgreSQL: hashes only,
scopes nest, a prefix limits writes (and admin verbs), revoked/expired tokens authenticate as
nothing, and an audit row commits or vanishes with its change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from zoo.errors import ConfigError, ConflictError, ForbiddenError, InvalidNameError, NotFoundError
from zoo.storage import audit, tokens
from zoo.storage.catalog import add_tags, set_alias
from zoo.storage.tables import AuditRow, TokenRow, utcnow


def test_secret_is_stored_only_as_its_hash(catalog):
    token, secret = tokens.create(catalog, "ci", scope="read")
    with catalog.transaction(readonly=True) as s:
        stored = s.scalar(select(TokenRow.secret_sha256))
        dumped = repr(s.execute(select(TokenRow)).all()) + repr(s.execute(select(AuditRow)).all())
    assert stored == tokens.hash_secret(secret) and secret not in dumped
    assert tokens.authenticate(catalog, secret) == token
    for wrong in (None, "", secret[:-1], secret + "x", "zoo_" + "a" * 43, secret.upper()):
        assert tokens.authenticate(catalog, wrong) is None
    with pytest.raises(ConflictError):
        tokens.create(catalog, "ci", scope="read")
    with pytest.raises(ConfigError):
        tokens.create(catalog, "x", scope="root")
    with pytest.raises(InvalidNameError):
        tokens.create(catalog, "../x", scope="read")


def test_scopes_nest_and_a_prefix_limits_writes():
    now = utcnow()
    read, write, admin = (tokens.Token(n, n, None, now) for n in ("read", "write", "admin"))
    team = tokens.Token("t", "admin", "team-b.", now)
    assert read.may("read") and not read.may("write", "x") and not read.may("admin")
    assert write.may("write", "any") and not write.may("admin")
    assert admin.may("admin") and admin.may("write", "any")
    assert team.may("read") and team.may("write", "team-b.x") and team.may("write", "team-b.")
    assert not team.may("write", "team-a.x") and not team.may("write", "team-bx")
    assert not team.may("write", None) and not team.may("admin")  # no admin verbs: no name
    with pytest.raises(ForbiddenError, match="starting with 'team-b.'"):
        team.check("write", "team-a.x")
    with pytest.raises(ForbiddenError, match="has scope read"):
        read.check("write", "x")


def test_revoked_and_expired_authenticate_as_nothing(catalog):
    _, gone = tokens.create(catalog, "gone", scope="write")
    _, old = tokens.create(catalog, "old", scope="write", expires_s=60)
    assert tokens.revoke(catalog, "gone").revoked_at is not None
    tokens.revoke(catalog, "gone")  # again: still revoked, audited once
    assert tokens.authenticate(catalog, gone) is None
    assert tokens.authenticate(catalog, old) is not None
    with catalog.transaction() as s:
        s.execute(update(TokenRow).where(TokenRow.name == "old")
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert tokens.authenticate(catalog, old) is None
    with pytest.raises(NotFoundError):
        tokens.revoke(catalog, "never")
    verbs = catalog.run(lambda s: [r["verb"] for r in audit.query(s)], readonly=True)
    assert verbs == ["token.create", "token.create", "token.revoke"]


def test_an_audit_row_commits_or_vanishes_with_its_change(catalog, add):
    adapter_id = add("sent")
    other = add("other")

    def count(session) -> int:
        return session.scalar(select(func.count()).select_from(AuditRow))

    before = catalog.run(count, readonly=True)
    with pytest.raises(RuntimeError), catalog.transaction() as s:
        add_tags(s, adapter_id, ["prod"])
        assert count(s) == before + 1  # written inside the change's transaction
        raise RuntimeError("the change fails after its statements ran")
    with pytest.raises(InvalidNameError):
        catalog.run(lambda s: set_alias(s, "sent@prod", other))  # other's name is not sent
    assert catalog.run(count, readonly=True) == before
    with audit.acting_as("ci-bot"):
        catalog.run(lambda s: set_alias(s, "sent@prod", adapter_id))
    catalog.run(lambda s: set_alias(s, "sent@prod", adapter_id))
    moves = catalog.run(lambda s: audit.alias_history(s, "sent@prod"), readonly=True)
    assert [(m["actor"], m["before"], m["after"]) for m in moves] == [
        ("ci-bot", None, adapter_id), (audit.local_actor(), adapter_id, adapter_id)]
