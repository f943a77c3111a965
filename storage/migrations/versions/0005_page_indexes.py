"""Indexes the web catalog's sorted pages walk: (params, id) and (r, id) replace (params) and
(r), so ORDER BY params, id (or r, id) LIMIT 50 from any keyset cursor reads 50 index entries
instead of sorting every adapter that shares a value. Range filters (``r<=8``) use them as
before. Revision 0005, after 0004 (2026-12-01)."""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_index("ix_adapters_params_id", "adapters", ["params", "id"], unique=False)
    op.create_index("ix_adapters_r_id", "adapters", ["r", "id"], unique=False)
    op.drop_index("ix_adapters_params", table_name="adapters")
    op.drop_index("ix_adapters_r", table_name="adapters")


def downgrade() -> None:
    op.create_index("ix_adapters_r", "adapters", ["r"], unique=False)
    op.create_index("ix_adapters_params", "adapters", ["params"], unique=False)
    op.drop_index("ix_adapters_r_id", table_name="adapters")
    op.drop_index("ix_adapters_params_id", table_name="adapters")
