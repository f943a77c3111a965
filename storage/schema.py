"""Schema versioning: Alembic config built in code, upgrade on ``zoo init``, refusal otherwise.

Every catalog open checks the stored revision against ``KNOWN_REVISIONS`` without importing
Alembic (a catalog verb stays fast); a test pins ``HEAD_REVISION`` to the single Alembic head.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zoo.errors import SchemaVersionError

# Oldest first; the last one is the head this code writes and reads.
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
HEAD_REVISION = KNOWN_REVISIONS[-1]
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None, url: str | None = None):  # noqa: ANN201
    """An Alembic ``Config`` pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: Connection) -> str | None:
    """The stored Alembic revision, or None when the catalog has never been initialised."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def check_revision(revision: str | None, where: str) -> None:
    """Refuse an uninitialised, older or newer catalog with a message saying what to do."""
    if revision == HEAD_REVISION:
        return
    if revision is None:
        raise SchemaVersionError(f"catalog {where} is not initialised; run `zoo init`")
    if revision in KNOWN_REVISIONS:
        raise SchemaVersionError(
            f"catalog {where} has schema revision {revision}, older than this code's "
            f"{HEAD_REVISION}; run `zoo init` to upgrade it"
        )
    raise SchemaVersionError(
        f"catalog {where} has schema revision {revision!r}, unknown to this code (newest known: "
        f"{HEAD_REVISION}); it was written by a newer zoo — upgrade the zoo package"
    )


def upgrade(connection: Connection, where: str = "") -> tuple[str | None, str]:
    """Bring the schema to head inside the caller's transaction; returns (before, after)."""
    before = current_revision(connection)
    if before is not None and before not in KNOWN_REVISIONS:
        check_revision(before, where)  # raises: never "upgrade" a newer schema
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
    return before, HEAD_REVISION
