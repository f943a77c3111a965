"""Initial catalog schema: base models, adapters, tags, aliases, jobs, eval results.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_models")),
        sa.UniqueConstraint("name", "digest", name=op.f("uq_base_models_name_digest")),
    )
    op.create_index(
        "uq_base_models_name_nodigest",
        "base_models",
        ["name", sa.text("coalesce(digest, '')")],
        unique=True,
    )
    op.create_table(
        "adapters",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.CHAR(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("r", sa.Integer(), nullable=False),
        sa.Column("unshared_r", sa.Integer(), nullable=False),
        sa.Column("share_a", sa.Integer(), nullable=False),
        sa.Column("share_b", sa.Integer(), nullable=False),
        sa.Column("stride_a", sa.Integer(), nullable=False),
        sa.Column("stride_b", sa.Integer(), nullable=False),
        sa.Column("rotation", sa.Boolean(), nullable=False),
        sa.Column("init", sa.String(length=32), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("dtype", sa.String(length=32), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("dataset_fingerprint", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name=op.f("fk_adapters_base_model_id_base_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("job_id", name=op.f("uq_adapters_job_id")),
        sa.UniqueConstraint("name", "digest", name=op.f("uq_adapters_name_digest")),
    )
    op.create_index("ix_adapters_base_model_id_id", "adapters", ["base_model_id", "id"])
    op.create_index(
        "ix_adapters_base_model_id_task_id", "adapters", ["base_model_id", "task", "id"]
    )
    op.create_index("ix_adapters_created_at", "adapters", ["created_at"])
    op.create_index(
        op.f("ix_adapters_dataset_fingerprint"), "adapters", ["dataset_fingerprint"], unique=False
    )
    op.create_index(op.f("ix_adapters_digest"), "adapters", ["digest"], unique=False)
    op.create_index(op.f("ix_adapters_name"), "adapters", ["name"], unique=False)
    op.create_index("ix_adapters_params", "adapters", ["params"], unique=False)
    op.create_index("ix_adapters_r", "adapters", ["r"], unique=False)
    op.create_index("ix_adapters_task_id", "adapters", ["task", "id"])
    op.create_table(
        "aliases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=False),
        sa.Column("adapter_id", sa.String(length=26), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_aliases_adapter_id_adapters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_aliases")),
    )
    op.create_index("ix_aliases_adapter_id", "aliases", ["adapter_id"], unique=False)
    op.create_table(
        "eval_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("adapter_id", sa.String(length=26), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("dataset_name", sa.String(length=256), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"],
            ["adapters.id"],
            name=op.f("fk_eval_results_adapter_id_adapters"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_results")),
    )
    op.create_index(op.f("ix_eval_results_adapter_id"), "eval_results", ["adapter_id"], unique=False)
    op.create_index(
        "ix_eval_results_adapter_id_dataset_fingerprint_metric",
        "eval_results",
        ["adapter_id", "dataset_fingerprint", "metric"],
        unique=False,
    )
    op.create_index(
        "ix_eval_results_adapter_id_metric_id", "eval_results", ["adapter_id", "metric", "id"], unique=False
    )
    op.create_index("ix_eval_results_metric_value", "eval_results", ["metric", "value"], unique=False)
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("sweep_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=256), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("ray_ref", sa.String(length=256), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("log_uri", sa.String(length=1024), nullable=True),
        sa.Column("checkpoint_uri", sa.String(length=1024), nullable=True),
        sa.Column("adapter_id", sa.String(length=26), nullable=True),
        sa.ForeignKeyConstraint(["adapter_id"], ["adapters.id"], name=op.f("fk_jobs_adapter_id_adapters")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_state"), "jobs", ["state"], unique=False)
    op.create_index(op.f("ix_jobs_sweep_id"), "jobs", ["sweep_id"], unique=False)
    op.create_table(
        "tags",
        sa.Column("adapter_id", sa.String(length=26), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_tags_adapter_id_adapters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("adapter_id", "key", "value", name=op.f("pk_tags")),
    )
    op.create_index("ix_tags_key_value", "tags", ["key", "value", "adapter_id"])


def downgrade() -> None:
    op.drop_index("ix_tags_key_value", table_name="tags")
    op.drop_table("tags")
    op.drop_index(op.f("ix_jobs_sweep_id"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_state"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index("ix_eval_results_metric_value", table_name="eval_results")
    op.drop_index("ix_eval_results_adapter_id_metric_id", table_name="eval_results")
    op.drop_index("ix_eval_results_adapter_id_dataset_fingerprint_metric", table_name="eval_results")
    op.drop_index(op.f("ix_eval_results_adapter_id"), table_name="eval_results")
    op.drop_table("eval_results")
    op.drop_index("ix_aliases_adapter_id", table_name="aliases")
    op.drop_table("aliases")
    op.drop_index("ix_adapters_task_id", table_name="adapters")
    op.drop_index("ix_adapters_r", table_name="adapters")
    op.drop_index("ix_adapters_params", table_name="adapters")
    op.drop_index(op.f("ix_adapters_name"), table_name="adapters")
    op.drop_index(op.f("ix_adapters_digest"), table_name="adapters")
    op.drop_index(op.f("ix_adapters_dataset_fingerprint"), table_name="adapters")
    op.drop_index("ix_adapters_created_at", table_name="adapters")
    op.drop_index("ix_adapters_base_model_id_task_id", table_name="adapters")
    op.drop_index("ix_adapters_base_model_id_id", table_name="adapters")
    op.drop_table("adapters")
    op.drop_index("uq_base_models_name_nodigest", table_name="base_models")
    op.drop_table("base_models")
