"""The catalog schema as SQLAlchemy 2 typed declarative models.

The schema is the code; Alembic revisions in ``zoo.storage.migrations`` create it (never
``create_all`` outside tests). Relationships are ``lazy="raise"`` so no query happens by
accident: loaders are explicit (``selectinload``) and batch a whole page.

JSON payloads (``adapters.config``, ``jobs.spec``) are stored as JSON *text* (``str``): the
writer decides the serialisation, and a dict assigned by mistake fails loudly at flush.
Timestamps are timezone-aware UTC on both SQLite and PostgreSQL (``UTCDateTime``).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    literal_column,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from zoo.job_state import JobState
from zoo.names import ID_ALPHABET

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(now_ms: int | None = None) -> str:
    """A 26-char ULID-style id: 48-bit ms timestamp + 80 random bits, Crockford base32.

    Lexicographic order is creation order (keyset pagination and sorting by id are by time).
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(ID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware UTC datetimes (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def dataset_label(name: str, fingerprint: str) -> str:
    """How a dataset is shown: its file name for people, its content digest for identity
    (``eval.jsonl@2fd6d209f54a``); two files sharing a name are two datasets."""
    return f"{name}@{fingerprint[:12]}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class BaseModelRow(Base):
    """A base model adapters apply to: a name, its fingerprint and, once registered, where it
    is loaded from. Eval and merged pulls load ONLY from ``location`` (never from a name an
    uploaded file carries) and check the digest of what they loaded."""

    __tablename__ = "base_models"
    __table_args__ = (
        UniqueConstraint("name", "digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str | None] = mapped_column(String(128), index=True)
    # Where the registered base is loaded from (a local directory, s3:// prefix, hub id, or a
    # zoo-model: manifest in the store); NULL until someone registers it (`zoo base add`).
    location: Mapped[str | None] = mapped_column(String(1024))
    registered_at: Mapped[datetime | None]


# NULLs are distinct in a unique constraint: this expression index also makes a digest-less
# base model unique per name (no dialect-specific options such as postgresql_where: those
# would load the PostgreSQL dialect on every SQLite-only CLI start).
Index("uq_base_models_name_nodigest", BaseModelRow.name,
      func.coalesce(BaseModelRow.digest, literal_column("''")), unique=True)


class AdapterRow(Base):
    """One published adapter file (its blob is ``sha256/<digest>`` in the object store)."""

    __tablename__ = "adapters"
    __table_args__ = (
        UniqueConstraint("name", "digest"),  # pushing the same bytes under one name is idempotent
        # Ids are time-ordered, so "newest first" is ORDER BY id DESC. Indexes end in id:
        # equality filters then walk rows already in that order and LIMIT 50 stops early
        # instead of sorting every match.
        Index("ix_adapters_created_at", "created_at"),
        Index("ix_adapters_task_id", "task", "id"),
        Index("ix_adapters_base_model_id_id", "base_model_id", "id"),
        Index("ix_adapters_base_model_id_task_id", "base_model_id", "task", "id"),
        # Sortable on the web catalog's page: (key, id) is exactly its ORDER BY, so a page at
        # any cursor is an index range scan even where thousands of adapters share one r.
        Index("ix_adapters_params_id", "params", "id"),
        Index("ix_adapters_r_id", "r", "id"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), index=True)
    digest: Mapped[str] = mapped_column(CHAR(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    task: Mapped[str] = mapped_column(String(64))
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"))
    r: Mapped[int] = mapped_column(Integer)
    unshared_r: Mapped[int] = mapped_column(Integer)
    share_a: Mapped[int] = mapped_column(Integer)
    share_b: Mapped[int] = mapped_column(Integer)
    stride_a: Mapped[int] = mapped_column(Integer)
    stride_b: Mapped[int] = mapped_column(Integer)
    rotation: Mapped[bool] = mapped_column(Boolean)
    init: Mapped[str] = mapped_column(String(32))
    alpha: Mapped[float] = mapped_column(Float)
    dtype: Mapped[str] = mapped_column(String(32))
    params: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(128), index=True)

    base_model: Mapped[BaseModelRow] = relationship(lazy="raise")
    tags: Mapped[list[TagRow]] = relationship(
        lazy="raise", cascade="all, delete-orphan", back_populates="adapter",
        order_by="(TagRow.key, TagRow.value)",
    )
    aliases: Mapped[list[AliasRow]] = relationship(
        lazy="raise", cascade="all, delete-orphan", back_populates="adapter",
        order_by="(AliasRow.name, AliasRow.alias)",
    )
    eval_results: Mapped[list[EvalRow]] = relationship(
        lazy="raise", back_populates="adapter", order_by="EvalRow.id"
    )


class TagRow(Base):
    """``label`` (value '') or ``key=value`` on one adapter."""

    __tablename__ = "tags"
    # (key, value, adapter_id): a tag filter reads matching adapter ids newest-first from the
    # index alone (ids are time-ordered) and merge-joins them with the adapters.
    __table_args__ = (Index("ix_tags_key_value", "key", "value", "adapter_id"),)

    adapter_id: Mapped[str] = mapped_column(
        ForeignKey("adapters.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), primary_key=True, default="")

    adapter: Mapped[AdapterRow] = relationship(lazy="raise", back_populates="tags")


class AliasRow(Base):
    """``name@alias`` -> exactly one adapter; moving it is one UPDATE."""

    __tablename__ = "aliases"
    __table_args__ = (Index("ix_aliases_adapter_id", "adapter_id"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(200), primary_key=True)
    adapter_id: Mapped[str] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    adapter: Mapped[AdapterRow] = relationship(lazy="raise", back_populates="aliases")


class JobRow(Base):
    """A training job; state transitions are written by ``zoo.workers``."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    sweep_id: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True, default=JobState.PENDING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String(256))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    ray_ref: Mapped[str | None] = mapped_column(String(256))
    submitted_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    log_uri: Mapped[str | None] = mapped_column(String(1024))
    # A finished attempt's whole log when it is small (the common case): one blob less per
    # job, and no store round trip before the SUCCEEDED commit. Otherwise log_uri names it.
    log_text: Mapped[str | None] = mapped_column(Text)
    checkpoint_uri: Mapped[str | None] = mapped_column(String(1024))
    adapter_id: Mapped[str | None] = mapped_column(ForeignKey("adapters.id"))

    adapter: Mapped[AdapterRow | None] = relationship(lazy="raise")


class EvalRow(Base):
    """One metric of one adapter on one dataset; the latest row (highest id) wins."""

    __tablename__ = "eval_results"
    __table_args__ = (
        Index("ix_eval_results_adapter_id_dataset_fingerprint_metric",
              "adapter_id", "dataset_fingerprint", "metric"),
        Index("ix_eval_results_metric_value", "metric", "value"),
        Index("ix_eval_results_adapter_id_metric_id", "adapter_id", "metric", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    adapter_id: Mapped[str] = mapped_column(
        ForeignKey("adapters.id", ondelete="CASCADE"), index=True
    )
    dataset_fingerprint: Mapped[str] = mapped_column(String(128))
    dataset_name: Mapped[str] = mapped_column(String(256))
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    n_examples: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    adapter: Mapped[AdapterRow] = relationship(lazy="raise", back_populates="eval_results")


class TokenRow(Base):
    """An API token of the team server: only the sha256 of its secret is stored.

    ``scope`` is read, write or admin; ``prefix`` (when set) limits the token's writes to
    adapter names, and their aliases, that start with it."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    secret_sha256: Mapped[str] = mapped_column(CHAR(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8))
    prefix: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditRow(Base):
    """One change to the catalog: when, who (a token name or ``local:<user>``), what.

    ``before``/``after`` are JSON text (or NULL). Written in the transaction of the change it
    records, so a change and its audit row commit or vanish together."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_target_id", "target", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    verb: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(512))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)


class CatalogMeta(Base):
    """Small facts about the catalog itself: its identity and the store it is bound to."""

    __tablename__ = "catalog_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
