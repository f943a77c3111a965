"""The REST API under ``/api/v1``: each endpoint checks the token, then makes the storage call
the direct client makes (``zoo.client.direct``), so both ways answer with the same values.

Changes run inside ``audit.acting_as(token.name)``: their audit rows name the token. Writes to
a named adapter check the token's name prefix against that name (an alias always names its
adapter's name, so ``NAME@ALIAS`` is checked by NAME without a lookup).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from zoo.errors import ConfigError, NotFoundError
from zoo.names import parse_name_alias, validate_digest
from zoo.server import cursors
from zoo.server.auth import require
from zoo.server.errors import ERROR_STATUSES, ErrorBody
from zoo.storage import audit
from zoo.storage.bases import MAX_LOCATION
from zoo.storage.tokens import Token

router = APIRouter(prefix="/api/v1",
                   responses={s: {"model": ErrorBody} for s in ERROR_STATUSES})
reader, writer, admin = require("read"), require("write"), require("admin")
MAX_UPLOAD_BYTES = 2 * 1024**3
PRESIGN_SECONDS = 900
Json = dict[str, Any]


class TagsBody(BaseModel):
    tags: list[str] = Field(min_length=1, max_length=100)


class AliasBody(BaseModel):
    ref: str = Field(min_length=1, max_length=300)


class PullBody(BaseModel):
    refs: list[str] = Field(default_factory=list, max_length=10_000)
    tag: str | None = None
    query: str | None = Field(default=None, max_length=10_000)


class TokenBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: str = Field(pattern="^(read|write|admin)$")
    prefix: str | None = Field(default=None, max_length=200)
    expires_s: float | None = Field(default=None, gt=0, le=100 * 365 * 86400)


class RemoveBody(BaseModel):
    refs: list[str] = Field(min_length=1, max_length=10_000)
    force: bool = False


def plain_json(body: Json) -> Response:
    """A body that is already plain JSON values (storage's dicts) as a response, skipping
    FastAPI's field-by-field re-encoding: 9 ms of a 50-row page, more than its query."""
    return Response(json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
                    media_type="application/json")


def catalog_of(request: Request) -> Any:
    return request.app.state.catalog


def store_of(request: Request) -> Any:
    return request.app.state.store()


def name_of(request: Request, ref: str) -> str:
    """The adapter name a ref means (``NAME@ALIAS`` names it; ids are looked up)."""
    if "@" in ref:
        try:
            return parse_name_alias(ref)[0]
        except ConfigError:
            raise NotFoundError(f"no adapter {ref!r}") from None
    from zoo.storage.catalog import resolve_ref

    return catalog_of(request).run(lambda s: resolve_ref(s, ref, load=False).name, readonly=True)


# ------------------------------------------------------------------------------ cursors
def encode_cursor(after: tuple[Any, str] | None) -> str | None:
    """A page's keyset position as an opaque, URL-safe text (:mod:`zoo.server.cursors`)."""
    return None if after is None else cursors.encode(after)


def decode_cursor(text: str | None) -> tuple[Any, str] | None:
    if not text:
        return None
    try:
        return cursors.decode(text)
    except ValueError:
        raise ConfigError("after: not a cursor this server returned") from None


# ----------------------------------------------------------------------------- adapters
@router.get("/adapters", summary="List adapters matching a query (keyset pages)")
def list_adapters(request: Request, q: str = Query("", max_length=10_000),
                  sort: str = Query("-created", max_length=200),
                  limit: int = Query(50, ge=1, le=100_000), after: str | None = None,
                  count: bool = Query(False, description="also count every match when the "
                                      "first page is full (a scan for a broad query)"),
                  _token: Token = Depends(reader)) -> Json:
    from zoo.storage.catalog import adapter_to_dict, count_adapters
    from zoo.storage.catalog import list_adapters as page_of

    position = decode_cursor(after)

    def run(session: Any) -> Json:
        page = page_of(session, q, sort, limit, position)
        rows = [adapter_to_dict(r, config=False) for r in page]
        full = count and len(rows) == limit and position is None
        total = count_adapters(session, q) if full else None
        return {"adapters": rows, "next": encode_cursor(page.next_after), "total": total}

    return plain_json(catalog_of(request).run(run, readonly=True))


@router.get("/adapters/{ref}", summary="One adapter by id, unique id prefix or NAME@ALIAS")
def show_adapter(request: Request, ref: str, _token: Token = Depends(reader)) -> Json:
    from zoo.storage.catalog import adapter_to_dict, resolve_ref

    return plain_json(catalog_of(request).run(lambda s: adapter_to_dict(resolve_ref(s, ref)),
                                              readonly=True))


def _tagging(request: Request, token: Token, ref: str, tags: list[str], fn_name: str) -> Json:
    from zoo.storage import catalog as api

    token.check("write", name_of(request, ref))
    fn = getattr(api, fn_name)
    with audit.acting_as(token.name):
        return catalog_of(request).run(lambda s: api.adapter_to_dict(fn(s, ref, tags)))


@router.post("/adapters/{ref}/tags", summary="Add tags to an adapter")
def tag_adapter(request: Request, ref: str, body: TagsBody,
                token: Token = Depends(writer)) -> Json:
    return _tagging(request, token, ref, body.tags, "add_tags")


@router.post("/adapters/{ref}/untag", summary="Remove tags from an adapter")
def untag_adapter(request: Request, ref: str, body: TagsBody,
                  token: Token = Depends(writer)) -> Json:
    return _tagging(request, token, ref, body.tags, "remove_tags")


@router.post("/adapters/remove", summary="Remove adapters from the catalog")
def remove_adapters(request: Request, body: RemoveBody, token: Token = Depends(writer),
                    ) -> list[Json]:
    from zoo.storage.catalog import remove_adapters as remove

    for ref in body.refs:
        token.check("write", name_of(request, ref))
    with audit.acting_as(token.name):
        return catalog_of(request).run(lambda s: remove(s, body.refs, force=body.force))


@router.post("/adapters", summary="Upload (push) an adapter file")
def push_adapter(request: Request, file: UploadFile = File(...),
                 name: str = Form(..., max_length=200), tags: list[str] = Form(default=[]),
                 aliases: list[str] = Form(default=[]), base: str | None = Form(default=None),
                 token: Token = Depends(writer)) -> Json:
    from zoo.errors import AdapterFormatError
    from zoo.storage.publish import publish

    token.check("write", name)
    for text in aliases:  # an alias names its adapter's name; refuse another team's early
        token.check("write", parse_name_alias(text, default_name=name)[0])
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise AdapterFormatError(f"upload is larger than {MAX_UPLOAD_BYTES} bytes")
    with audit.acting_as(token.name):
        result = publish(catalog_of(request), store_of(request), data, name=name, tags=tags,
                         aliases=aliases, base=base)
    return {**result.adapter, "uploaded": result.uploaded}


# ------------------------------------------------------------------------------ aliases
@router.get("/aliases", summary="List aliases (of one adapter name)")
def list_aliases(request: Request, name: str | None = Query(None, max_length=200),
                 _token: Token = Depends(reader)) -> list[Json]:
    from zoo.storage.catalog import list_aliases as aliases

    return catalog_of(request).run(lambda s: aliases(s, name), readonly=True)


@router.put("/aliases/{name_alias}", summary="Point NAME@ALIAS at an adapter (moves it)")
def set_alias(request: Request, name_alias: str, body: AliasBody,
              token: Token = Depends(writer)) -> Json:
    from zoo.storage.catalog import set_alias as point

    token.check("write", parse_name_alias(name_alias)[0])
    with audit.acting_as(token.name):
        adapter_id = catalog_of(request).run(lambda s: point(s, name_alias, body.ref).id)
    return {"alias": name_alias, "adapter_id": adapter_id}


@router.delete("/aliases/{name_alias}", summary="Remove NAME@ALIAS (the adapter stays)")
def remove_alias(request: Request, name_alias: str, token: Token = Depends(writer)) -> Json:
    from zoo.storage.catalog import remove_alias as remove

    token.check("write", parse_name_alias(name_alias)[0])
    with audit.acting_as(token.name):
        adapter_id = catalog_of(request).run(lambda s: remove(s, name_alias))
    return {"removed": name_alias, "adapter_id": adapter_id}


@router.get("/aliases/{name_alias}/history", summary="Every move of NAME@ALIAS")
def alias_history(request: Request, name_alias: str,
                  _token: Token = Depends(reader)) -> list[Json]:
    return catalog_of(request).run(lambda s: audit.alias_history(s, name_alias), readonly=True)


# ---------------------------------------------------------------------------- downloads
def _download(request: Request, item: Any) -> Json:
    from zoo.server.downloads import blob_url

    return {"id": item.id, "name": item.name, "digest": item.digest, "size": item.size,
            "url": blob_url(store_of(request), item.digest, PRESIGN_SECONDS)}


@router.post("/pull", summary="Resolve refs, a tag and a query to downloads")
def pull(request: Request, body: PullBody, _token: Token = Depends(reader)) -> Json:
    from zoo.storage.pull import resolve_items

    items = resolve_items(catalog_of(request), body.refs, tag=body.tag, query=body.query)
    return {"items": [_download(request, item) for item in items]}


@router.get("/adapters/{ref}/download", summary="Where to fetch an adapter's bytes, and their sha256")
def download(request: Request, ref: str, _token: Token = Depends(reader)) -> Json:
    from zoo.storage.pull import resolve_items

    (item,) = resolve_items(catalog_of(request), [ref])
    return _download(request, item)


@router.get("/blobs/{digest}", summary="An adapter's bytes (the client verifies the sha256)",
            response_class=FileResponse)
def blob(request: Request, digest: str, _token: Token = Depends(reader)) -> Any:
    from zoo.server.downloads import blob_response
    from zoo.storage.catalog import referenced_digest

    try:
        digest = validate_digest(digest)
    except ConfigError:
        raise NotFoundError(f"no blob {digest[:80]!r}") from None
    if not catalog_of(request).run(lambda s: referenced_digest(s, digest), readonly=True):
        raise NotFoundError(f"no adapter has blob sha256:{digest}")
    return blob_response(store_of(request), digest, PRESIGN_SECONDS)


# ------------------------------------------------------------------- bases, evaluation
@router.get("/bases", summary="Base models and how many adapters use each")
def bases(request: Request, _token: Token = Depends(reader)) -> list[Json]:
    from zoo.storage.bases import list_bases

    return [v.to_json() for v in catalog_of(request).run(list_bases, readonly=True)]


class BaseBody(BaseModel):
    name: str = Field(max_length=200)
    location: str = Field(max_length=MAX_LOCATION)


@router.post("/bases", summary="Register a base model at an s3:// location (admin)")
def add_base(request: Request, body: BaseBody, token: Token = Depends(admin)) -> Json:
    from zoo.storage.bases import register_location

    if not body.location.startswith("s3://"):  # never the server's own disk or hub cache
        raise ConfigError("through the server a base location must be an s3:// prefix; "
                          "register a local directory where the catalog is")
    with audit.acting_as(token.name):
        return register_location(catalog_of(request), store_of(request), body.name,
                                 body.location).to_json()


@router.get("/leaderboard", summary="Adapters ranked by a metric on a dataset")
def leaderboard(request: Request, dataset: str = Query(..., max_length=128),
                metric: str = Query(..., max_length=128),
                q: str | None = Query(None, max_length=10_000),
                limit: int = Query(20, ge=1, le=100_000),
                _token: Token = Depends(reader)) -> list[Json]:
    from zoo.storage.evals import leaderboard as rank

    return rank(catalog_of(request), dataset=dataset, metric=metric, query=q, top=limit)


@router.post("/evals", summary="Evaluate the matching adapters on a dataset (waits for it)")
def start_eval(request: Request, select: str = Form(..., max_length=10_000),
               file: UploadFile | None = File(default=None),
               dataset_uri: str | None = Form(default=None, max_length=1024),
               metrics: list[str] = Form(default=[]), batch_size: int = Form(32, ge=1, le=4096),
               max_examples: int | None = Form(default=None, ge=1), force: bool = Form(False),
               token: Token = Depends(writer)) -> Json:
    """The dataset is an uploaded file or an ``s3://`` URI, never a path on the server."""
    import tempfile
    from pathlib import Path

    from zoo.batch_eval import parse_metrics
    from zoo.names import validate_name
    from zoo.storage.evals import select_items
    from zoo.workers.eval_pool import run_eval

    if token.prefix is not None:  # every adapter it would write results for must be its own
        for item in select_items(catalog_of(request), select):
            token.check("write", item.name)
    wanted = parse_metrics(metrics) if metrics else None
    settings = request.app.state.settings
    with tempfile.TemporaryDirectory(prefix="zoo-eval-") as tmp:
        if (file is None) == (dataset_uri is None):
            raise ConfigError("give the dataset as a file upload or as dataset_uri, not both")
        if dataset_uri is not None:
            if not dataset_uri.startswith("s3://"):
                raise ConfigError("dataset_uri must be an s3:// URI (no paths on the server)")
            dataset = dataset_uri
        else:
            name = validate_name(Path(file.filename or "dataset.jsonl").name, "dataset file name")
            dataset = str(Path(tmp) / name)
            Path(dataset).write_bytes(file.file.read(MAX_UPLOAD_BYTES))
        with audit.acting_as(token.name):
            return run_eval(catalog_of(request), settings.store_url, dataset=dataset,
                            query=select, address=settings.ray_address, metrics=wanted,
                            batch_size=batch_size, max_examples=max_examples,
                            force=force).to_dict()


@router.get("/adapters/{ref}/evals", summary="An adapter's latest metrics per dataset")
def eval_results(request: Request, ref: str, _token: Token = Depends(reader)) -> Json:
    shown = show_adapter(request, ref, _token)
    return {"id": shown["id"], "metrics": shown["metrics"],
            "metrics_by_dataset": shown["metrics_by_dataset"]}


# ---------------------------------------------------------------------------------- jobs
@router.get("/jobs", summary="List jobs, newest first")
def list_jobs(request: Request, state: str | None = Query(None, max_length=16),
              sweep: str | None = Query(None, max_length=64),
              limit: int = Query(200, ge=1, le=100_000),
              _token: Token = Depends(reader)) -> list[Json]:
    from zoo.job_state import JobState
    from zoo.storage import jobs

    if state is not None and state.upper() not in {s.value for s in JobState}:
        raise ConfigError(f"state {state!r} is not one of {', '.join(s.value for s in JobState)}")
    jobs.reap_stale(catalog_of(request))  # as `zoo jobs ls` does: dead workers' jobs FAIL
    return [v.to_json() for v in jobs.list_jobs(catalog_of(request), state=state,
                                                sweep_id=sweep, limit=limit)]


class SubmitBody(BaseModel):
    spec: str = Field(min_length=1, max_length=1_000_000, description="The job spec, YAML.")
    overrides: list[str] = Field(default_factory=list, max_length=100)


def _shared_locations(specs: list[Any]) -> None:
    """Refuse a spec that names files on the server's disk: a token holder must not train on
    (and so copy into the store) whatever the server can read. Data must be s3:// URIs."""
    for spec in specs:
        for field, value in (("data.train", spec.data.train), ("data.eval", spec.data.eval),
                             ("base_model", spec.base_model)):
            if value and value.startswith("/"):
                raise ConfigError(f"{field}: {value!r} is a path on the server; through the "
                                  "server use s3:// URIs (data) and registered or hub bases")


@router.post("/jobs", summary="Submit the job(s) of a spec to the server's Ray cluster")
def submit_jobs(request: Request, body: SubmitBody, token: Token = Depends(writer)) -> Json:
    import tempfile

    from zoo.jobspec import load_specs

    settings = request.app.state.settings
    with tempfile.TemporaryDirectory(prefix="zoo-spec-") as empty:  # no relative paths resolve
        specs = load_specs(text=body.spec, overrides=body.overrides, base_dir=empty)
    for spec in specs:
        token.check("write", spec.name)
    _shared_locations(specs)
    if not settings.ray_address:
        raise ConfigError("this server has no Ray cluster (RAY_ADDRESS) to run jobs on")
    from zoo.workers.submit import submit

    with audit.acting_as(token.name):
        result = submit(specs, catalog_url=settings.catalog_url, store_url=settings.store_url,
                        address=settings.ray_address, wait=False)
    return {"mode": result.mode, "sweep_id": result.sweep_id,
            "submission_id": result.submission_id, "job_ids": result.job_ids,
            "states": result.states}


@router.get("/jobs/{job_id}", summary="One job by id or unique id prefix")
def show_job(request: Request, job_id: str, _token: Token = Depends(reader)) -> Json:
    from zoo.storage import jobs

    return jobs.get_job(catalog_of(request), job_id).to_json()


@router.get("/jobs/{job_id}/logs", summary="A job's log", response_class=PlainTextResponse)
def job_logs(request: Request, job_id: str, _token: Token = Depends(reader)) -> str:
    from zoo.workers.control import read_log

    _view, data = read_log(catalog_of(request), request.app.state.settings.store_url, job_id)
    return data.decode("utf-8", "replace")


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job")
def cancel_job(request: Request, job_id: str, token: Token = Depends(writer)) -> Json:
    from zoo.storage import jobs
    from zoo.workers.control import cancel_jobs

    view = jobs.get_job(catalog_of(request), job_id)
    token.check("write", view.name)
    with audit.acting_as(token.name):
        return cancel_jobs(catalog_of(request), [view.id], kill_local=False)


class GcBody(BaseModel):
    grace: str = Field(default="1h", max_length=32)
    dry_run: bool = False
    force: bool = False


@router.post("/gc", summary="Remove blobs and job artifacts no catalog row needs (admin)")
def collect_garbage(request: Request, body: GcBody, token: Token = Depends(admin)) -> Json:
    from zoo.storage.gc import gc

    with audit.acting_as(token.name):
        return gc(catalog_of(request), store_of(request), grace=body.grace,
                  dry_run=body.dry_run, force=body.force).to_dict()


class FsckBody(BaseModel):
    verify: bool = False
    workers: int = Field(default=16, ge=1, le=256)


@router.post("/fsck", summary="Check the store against the catalog (admin)")
def check_store(request: Request, body: FsckBody, _token: Token = Depends(admin)) -> Json:
    from zoo.storage.fsck import fsck

    return fsck(catalog_of(request), store_of(request), verify=body.verify,
                workers=body.workers).to_dict()


# ------------------------------------------------------------------------ tokens, audit
@router.get("/tokens", summary="List tokens (never their secrets)")
def list_tokens(request: Request, _token: Token = Depends(admin)) -> list[Json]:
    from zoo.storage.tokens import list_tokens as all_tokens

    return [t.to_dict() for t in all_tokens(catalog_of(request))]


@router.post("/tokens", summary="Create a token; the response holds its secret, once")
def create_token(request: Request, body: TokenBody, token: Token = Depends(admin)) -> Json:
    from zoo.storage.tokens import create

    with audit.acting_as(token.name):
        made, secret = create(catalog_of(request), body.name, scope=body.scope,
                              prefix=body.prefix, expires_s=body.expires_s)
    return {**made.to_dict(), "token": secret}


@router.delete("/tokens/{name}", summary="Revoke a token")
def revoke_token(request: Request, name: str, token: Token = Depends(admin)) -> Json:
    from zoo.storage.tokens import revoke

    with audit.acting_as(token.name):
        return revoke(catalog_of(request), name).to_dict()


@router.get("/audit", summary="The audit trail, oldest first")
def audit_trail(request: Request, since: str | None = Query(None, max_length=32),
                verb: str | None = Query(None, max_length=32),
                target: str | None = Query(None, max_length=512),
                limit: int = Query(1000, ge=1, le=audit.MAX_ROWS),
                _token: Token = Depends(reader)) -> list[Json]:
    from zoo.durations import parse_duration

    since_s = None if since is None else parse_duration(since)
    return catalog_of(request).run(lambda s: audit.query(s, since=since_s, verb=verb,
                                                         target=target, limit=limit),
                                   readonly=True)

