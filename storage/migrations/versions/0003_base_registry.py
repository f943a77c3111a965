"""Base models get a location (the registry) and the catalog a key/value table for its own
identity and the store it is bound to. Revision 0003, after 0002 (2026-12-01)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


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
