"""The base-model registry: which base models adapters apply to, and where each is loaded from.

An adapter file names its base in free text (``base_model``) with a fingerprint
(``base_model_digest``, zoo.digest). That text decides nothing: eval and merged pulls load a
base only from a REGISTERED location (a local directory, an ``s3://`` prefix, a hub id, or a
``zoo-model:`` manifest staged in the store by ``zoo submit``) and check that what they loaded
has the registered digest. So an uploaded file cannot make the zoo fetch an arbitrary model.

- ``zoo base add NAME LOCATION`` registers a location after computing its digest; adapters
  pushed earlier with the same digest (under a row named as their files say) move to it.
- A training job registers the base it used (its staged location) when it publishes, unless
  that checkpoint is registered already.
- A pushed adapter links to the registered base with its digest (whatever that base is called),
  else to a row named as the file says, without a location until someone registers one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from zoo.adapter_config import AdapterConfig
from zoo.errors import (
    AdapterMismatchError,
    AmbiguousRefError,
    ConfigError,
    ConflictError,
    IntegrityError,
    NotFoundError,
)
from zoo.names import validate_name
from zoo.storage import audit
from zoo.storage.blobstore import BlobStore
from zoo.storage.db import Catalog
from zoo.storage.sql import insert_ignoring_conflicts
from zoo.storage.tables import AdapterRow, BaseModelRow, utcnow

MAX_LOCATION = 1024


@dataclass(frozen=True)
class BaseView:
    """A registry row as plain data (``zoo base ls --json``)."""

    id: int
    name: str
    digest: str | None
    location: str | None
    registered_at: datetime | None
    adapters: int = 0

    def to_json(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["adapter_count"] = out.pop("adapters")  # "adapters" is a list wherever the zoo says it
        out["registered_at"] = self.registered_at.isoformat() if self.registered_at else None
        return out


def _view(row: BaseModelRow, adapters: int = 0) -> BaseView:
    return BaseView(row.id, row.name, row.digest, row.location, row.registered_at, adapters)


@dataclass(frozen=True)
class BaseRef:
    """The registry row a new adapter points at (what its listing shows of its base)."""

    id: int
    name: str
    digest: str | None
    location: str | None


_BASES = BaseModelRow.__table__
_BY_NAME_DIGEST = {  # built once: publish runs one of these for every adapter
    nodigest: select(_BASES.c.id, _BASES.c.name, _BASES.c.digest, _BASES.c.location).where(
        _BASES.c.name == bindparam("name"),
        _BASES.c.digest.is_(None) if nodigest else _BASES.c.digest == bindparam("digest"))
    for nodigest in (False, True)}
_LOCATED = (select(_BASES.c.id, _BASES.c.name, _BASES.c.digest, _BASES.c.location)
            .where(_BASES.c.digest == bindparam("digest"), _BASES.c.location.is_not(None))
            .order_by(_BASES.c.id).limit(1))


def get_or_create(session: Session, name: str, digest: str | None) -> BaseRef:
    """The row for (name, digest), created if absent; a concurrent creator wins the unique
    index and this reads its row."""
    stmt = _BY_NAME_DIGEST[digest is None]
    params = {"name": name, "digest": digest}
    found = session.connection().execute(stmt, params).first()
    if found is None:
        insert_ignoring_conflicts(session, BaseModelRow, [{"name": name, "digest": digest}])
        found = session.connection().execute(stmt, params).first()
        if found is None:
            raise ConflictError(f"base model {name!r} vanished while being registered; retry")
    return BaseRef(*found)


def base_for_adapter(session: Session, config: AdapterConfig, *, explicit: str | None = None,
                     location: str | None = None) -> BaseRef:
    """The registry row a new adapter references.

    ``explicit``: the name of a registered base (``zoo push --base``), which must agree with the
    adapter's digest when both have one. ``location``: where a training job found its base (the
    job registers it). Otherwise the located base with the adapter's digest, else a row named as
    the file says.
    """
    digest = config.base_model_digest
    if explicit is not None:
        row = find_base(session, explicit, digest=digest)
        if digest is not None and row.digest is not None and row.digest != digest:
            raise AdapterMismatchError(
                f"the adapter was trained on a base with digest {digest[:12]}…, but base "
                f"{row.name!r} has digest {row.digest[:12]}…")
        return BaseRef(row.id, row.name, row.digest, row.location)
    if digest is not None:  # the checkpoint is registered already: whatever its name
        located = session.connection().execute(_LOCATED, {"digest": digest}).first()
        if located is not None:
            return BaseRef(*located)
    ref = get_or_create(session, config.base_model, digest)
    if location is not None and ref.location is None:  # a job registers what it used
        _locate(session, ref.id, location)
        ref = BaseRef(ref.id, ref.name, ref.digest, location)
    return ref


def _locate(session: Session, base_id: int, location: str) -> None:
    if len(location) > MAX_LOCATION:
        raise ConflictError(f"base location is {len(location)} characters; at most {MAX_LOCATION}")
    session.execute(update(BaseModelRow).where(BaseModelRow.id == base_id)
                    .values(location=location, registered_at=utcnow()))


def register(session: Session, name: str, location: str, digest: str) -> BaseView:
    """``zoo base add``: record that ``location`` holds the base ``name`` with ``digest``.

    Unregistered rows with the same digest (adapters pushed before, naming the base their
    own way) name the same checkpoint: their adapters move to this row, and they go."""
    name = validate_name(name, "base name")
    ref = get_or_create(session, name, digest)
    _locate(session, ref.id, location)
    strays = select(BaseModelRow.id).where(BaseModelRow.digest == digest,
                                           BaseModelRow.location.is_(None),
                                           BaseModelRow.id != ref.id)
    session.execute(update(AdapterRow).where(AdapterRow.base_model_id.in_(strays))
                    .values(base_model_id=ref.id))
    session.execute(delete(BaseModelRow).where(BaseModelRow.digest == digest,
                                               BaseModelRow.location.is_(None),
                                               BaseModelRow.id != ref.id))
    return _view(session.get_one(BaseModelRow, ref.id), _count(session, ref.id))


def _count(session: Session, base_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(AdapterRow)
                              .where(AdapterRow.base_model_id == base_id)) or 0)


def find_base(session: Session, ref: str, *, digest: str | None = None) -> BaseModelRow:
    """A registered base by name (``NAME``, or ``NAME@DIGESTPREFIX`` when a name has several
    digests); NotFoundError / AmbiguousRefError otherwise."""
    name, _, prefix = ref.partition("@")
    stmt = select(BaseModelRow).where(BaseModelRow.name == name,
                                      BaseModelRow.location.is_not(None))
    rows = list(session.scalars(stmt.order_by(BaseModelRow.id)))
    if prefix:
        rows = [r for r in rows if (r.digest or "").startswith(prefix)]
    elif digest is not None and any(r.digest == digest for r in rows):
        rows = [r for r in rows if r.digest == digest]
    if not rows:
        raise NotFoundError(f"no registered base model {ref!r}; register it with "
                            "`zoo base add NAME LOCATION` (see `zoo base ls`)")
    if len(rows) > 1:
        shown = ", ".join(f"{r.name}@{(r.digest or '')[:12]}" for r in rows[:3])
        raise AmbiguousRefError(f"base model {ref!r} has several digests ({shown}); "
                                "name one as NAME@DIGESTPREFIX")
    return rows[0]


def list_bases(session: Session) -> list[BaseView]:
    """Every base row (registered or not) with how many adapters reference it."""
    counts = dict(session.execute(select(AdapterRow.base_model_id, func.count())
                                  .group_by(AdapterRow.base_model_id)).all())
    rows = session.scalars(select(BaseModelRow).order_by(BaseModelRow.name, BaseModelRow.id))
    return [_view(r, int(counts.get(r.id, 0))) for r in rows]


@dataclass(frozen=True)
class BaseLocation:
    """What a loader needs to find and check an adapter's base."""

    name: str
    digest: str | None
    location: str


def location_of(session: Session, adapter_id: str) -> BaseLocation:
    """The registered location of an adapter's base, or NotFoundError saying how to fix it."""
    row = session.execute(
        select(BaseModelRow).join(AdapterRow, AdapterRow.base_model_id == BaseModelRow.id)
        .where(AdapterRow.id == adapter_id)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no adapter {adapter_id!r}")
    if row.location is None:
        digest = f" (digest {row.digest[:12]}…)" if row.digest else ""
        raise NotFoundError(f"base model {row.name!r}{digest} of adapter {adapter_id} has no "
                            f"registered location; run `zoo base add {row.name} LOCATION`")
    return BaseLocation(row.name, row.digest, row.location)


def load_base_dir(base: BaseLocation, store_url: str, *, home: str | None = None) -> str:
    """A local directory holding the registered base (fetched into this node's cache when it
    lives in the store or on S3), whose digest is checked against the registry's."""
    from zoo.base_models import local_model_dir
    from zoo.digest import base_model_digest
    from zoo.storage.staging import fetch_model

    directory, _ = fetch_model(base.location, store_url, home=home)
    local = local_model_dir(directory)
    if local is None:
        raise NotFoundError(f"base model {base.name!r}: {base.location} is not a directory on "
                            "this machine and not in its Hugging Face cache")
    if base.digest is not None:
        got = base_model_digest(local)
        if got != base.digest:
            raise IntegrityError(f"base model {base.name!r} at {base.location} has digest "
                                 f"{got[:12]}…, but {base.digest[:12]}… is registered; refusing "
                                 "to use it")
    return str(local)


def register_location(catalog: Catalog, store: BlobStore, name: str, location: str, *,
                      upload: bool = False) -> BaseView:
    """``zoo base add``: compute the digest of what ``location`` holds and register it.

    A local directory is registered by its absolute path, or with ``upload`` copied into the
    store's job area (content-addressed, shared with ``zoo submit``'s staging) so that every
    machine can load it."""
    from zoo.base_models import local_model_dir
    from zoo.digest import base_model_digest
    from zoo.storage import staging

    validate_name(name, "base name")
    path = Path(location).expanduser()
    if "://" not in location and path.is_dir():  # s3://b/p is never a local "s3:" folder
        directory = path.resolve()
        location = (staging.MODEL_SCHEME + staging.upload_model_dir(
            staging.open_artifacts(store.url), directory)) if upload else str(directory)
    else:
        if upload:
            raise ConfigError(f"--upload needs a local model directory; {location!r} is not one")
        fetched, _ = staging.fetch_model(location, store.url)
        local = local_model_dir(fetched)
        if local is None:
            raise NotFoundError(f"base location {location!r} is not a directory, s3:// prefix "
                                "or a model in the local Hugging Face cache")
        directory = local
    digest = base_model_digest(directory)

    def add(session: Session) -> BaseView:
        view = register(session, name, location, digest)
        audit.record(session, "base.add", f"base:{view.name}",
                     after={"location": location, "digest": digest})
        return view

    return catalog.run(add)
