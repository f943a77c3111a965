"""Base models get a location (the registry), and the catalog a small key/value table that
holds its identity and the store it is bound to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("base_models") as batch:
        batch.add_column(sa.Column("location", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_base_models_digest", "base_models", ["digest"], unique=False)
    op.create_table(
        "catalog_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_catalog_meta")),
    )


def downgrade() -> None:
    op.drop_table("catalog_meta")
    op.drop_index("ix_base_models_digest", table_name="base_models")
    with op.batch_alter_table("base_models") as batch:
        batch.drop_column("registered_at")
        batch.drop_column("location")
