"""``zoo serve`` on Ray Serve: one deployment per base model, OpenAI-compatible completions,
requests of MANY adapters batched together through :func:`zoo.generate.generate`.

Per replica (:class:`CompletionEngine`, plain Python; :class:`ZooServe` is the thin Ray Serve
wrapper):

- the base, loaded once from its REGISTERED location (digest checked), on CUDA + bf16 when the
  replica was given a GPU (``num_gpus``), else CPU fp32 (:func:`zoo.device.select_device`);
- a :class:`zoo.storage.serving.ServingTable` of the selection (adapters by id, ``name@alias``
  pointers), re-read every ``refresh_s`` by a background thread;
- an :class:`zoo.adapter_bank.AdapterBank` of up to ``max_adapters`` expanded adapters.

A request is resolved ONCE, on arrival: its model name → (id, digest) → the bank's adapter
object, which the request keeps until it is answered. An alias move is therefore visible to
the next request after a refresh, and no request ever mixes two versions. The response names
what it used in the ``x-zoo-adapter-id`` / ``x-zoo-adapter-digest`` headers (and the body).

Dynamic batching: ``serve.batch`` collects up to ``max_batch_size`` prompts (of any adapters)
for at most ``batch_wait_s``; one :func:`zoo.generate.generate` call decodes them together.
``stream: true`` sends a server-sent event per text delta as the batch decodes (tokens reach
the event loop through a queue), then the finish reasons and ``[DONE]``.
Failures stay with their request: an unknown model is a 404, a bad field a 400, an adapter
whose blob fails verification a 500 for the requests naming it only; a batch that fails is
decoded again request by request, so only the faulty request errors. The wire format (bodies,
errors, the event stream) is :mod:`zoo.workers.serve_openai`.

Replicas and their resources are Ray Serve's own settings (``num_replicas`` or
``autoscaling_config``, ``ray_actor_options.num_gpus``): :func:`build_app` takes them, and
:func:`app_builder` lets a Ray Serve config file (``serve deploy``) set them instead.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.

import asyncio
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.workers.serve_openai import Prepared, RequestError

DEFAULT_PORT = 8760
APP_NAME_PREFIX = "zoo-"


@dataclass(frozen=True)
class ServeConfig:
    """What one deployment serves and how (travels to every replica)."""

    base: str
    catalog_url: str
    store_url: str
    tag: str | None = None
    query: str | None = None
    max_adapters: int = 64
    refresh_s: float = 10.0
    max_batch_size: int = 16
    batch_wait_s: float = 0.01
    device: str | None = None
    home: str | None = None
    require_token: bool = False  # answer only holders of a live zoo token (`zoo token create`)

    def __post_init__(self) -> None:
        if isinstance(self.max_adapters, bool) or int(self.max_adapters) < 1:
            raise ConfigError(f"max_adapters={self.max_adapters!r} is invalid: must be >= 1",
                              field="max_adapters")
        if not 0 < float(self.refresh_s) <= 86400:
            raise ConfigError(f"refresh={self.refresh_s!r} is invalid: 0 < refresh <= 1 day",
                              field="refresh")
        if not 1 <= int(self.max_batch_size) <= 1024:
            raise ConfigError(f"max_batch_size={self.max_batch_size!r} is invalid: 1..1024",
                              field="max_batch_size")


class CompletionEngine:
    """One replica: the base model, the selection's table, the adapter bank, a refresher."""

    def __init__(self, config: ServeConfig) -> None:
        from zoo.adapter_bank import AdapterBank
        from zoo.base_models import load_base
        from zoo.device import select_device
        from zoo.settings import adopt_forwarded_endpoint, with_local_credentials
        from zoo.storage.bases import load_base_dir
        from zoo.storage.blobstore import open_store
        from zoo.storage.db import open_catalog
        from zoo.storage.serving import serving_table
        from zoo.storage.staging import cache_dir

        adopt_forwarded_endpoint()  # the S3 endpoint of the machine that deployed us
        self.config = config
        self.catalog = open_catalog(with_local_credentials(config.catalog_url, "catalog_url"))
        self.store = open_store(with_local_credentials(config.store_url, "store_url"))
        self.table = serving_table(self.catalog, config.base, tag=config.tag, query=config.query)
        base_dir = load_base_dir(self.table.base, config.store_url, home=config.home)
        self.choice = select_device(config.device)
        self.model, self.tokenizer = load_base(base_dir, "causal-lm", dtype=self.choice.base_dtype,
                                               device=self.choice.device)
        self.bank = AdapterBank(self.store, capacity=config.max_adapters,
                                cache_dir=Path(cache_dir(config.home)) / "adapters")
        self._gen_lock = threading.Lock()  # one generate at a time on this model
        self.largest_batch = 0  # rows in the largest batch decoded so far (/healthz shows it)
        self._stop = threading.Event()
        self.refreshed_at = time.monotonic()
        self._refresher = threading.Thread(target=self._refresh_loop, daemon=True,
                                           name="zoo-serve-refresh")
        self._refresher.start()

    # ---- the catalog view ---------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the selection and aliases (an alias move becomes visible here)."""
        from zoo.storage.serving import serving_table

        self.table = serving_table(self.catalog, self.config.base, tag=self.config.tag,
                                   query=self.config.query)
        self.refreshed_at = time.monotonic()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.refresh_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - keep serving the last good table
                continue

    def close(self) -> None:
        self._stop.set()
        self.catalog.close()

    def models(self, secret: str | None = None) -> dict[str, Any]:
        token = self.authorize(secret, None)
        prefix = token.prefix if token is not None else None
        return {"object": "list", "data": [m for m in self.table.models() if not prefix or not m[
            "adapter"] or (m.get("name") or m["id"].partition("@")[0]).startswith(prefix)]}

    def authorize(self, secret: str | None, adapter_name: str | None) -> Any:
        """With ``require_token``: the live token of a request (AuthError, HTTP 401, without
        one); a token with a name prefix is served only the adapters whose names carry it
        (ForbiddenError, 403), and the base. None when tokens are not required."""
        if not self.config.require_token:
            return None
        from zoo.errors import AuthError, ForbiddenError
        from zoo.storage.tokens import authenticate

        token = authenticate(self.catalog, secret)
        if token is None:
            raise AuthError("a live zoo token is required: send `Authorization: Bearer <token>`")
        if adapter_name is not None and token.prefix and not adapter_name.startswith(token.prefix):
            raise ForbiddenError(f"token {token.name!r} is served only adapters named "
                                 f"{token.prefix}…, not {adapter_name!r}")
        return token

    # ---- requests -----------------------------------------------------------------------
    def prepare(self, body: Any, secret: str | None = None) -> Prepared:
        """Validate an OpenAI completion body, resolve its model NOW (alias → digest) and check
        the request's token may use it."""
        from zoo.adapter_bank import AdapterKey
        from zoo.generate import SamplingParams

        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("'model' is required: a name@alias, an adapter id prefix or "
                               f"the base name {self.table.base.name!r}")
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or len(prompts) > 64 or not all(
                isinstance(p, str) and p for p in prompts):
            raise RequestError("'prompt' must be a non-empty string or a list of 1..64 of them")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list):
            raise RequestError("'stop' must be a string or a list of strings")
        try:
            params = SamplingParams(
                max_tokens=body.get("max_tokens", 16),
                temperature=body.get("temperature", 1.0),  # OpenAI's default; 0 is greedy
                top_p=body.get("top_p", 1.0), seed=body.get("seed"), stop=tuple(stop))
        except ConfigError as exc:
            raise RequestError(str(exc)) from None
        ids = [self._encode(p, params.max_tokens) for p in prompts]
        served = self.table.find(model)  # the alias is resolved here, once
        self.authorize(secret, served.name if served is not None else None)
        adapter = None
        if served is not None:
            adapter = self.bank.get(AdapterKey(served.id, served.name, served.digest, served.size))
        items = [(p, adapter, params) for p in ids]
        return Prepared(model, served.id if served else None, served.digest if served else None,
                        items, bool(body.get("stream", False)))

    def _encode(self, prompt: str, max_tokens: int) -> list[int]:
        ids = list(self.tokenizer(prompt)["input_ids"])
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(ids) + max_tokens > limit:
            raise RequestError(f"the prompt is {len(ids)} tokens and max_tokens {max_tokens}; "
                               f"this model takes at most {limit} in all")
        return ids

    def run(self, items: list[tuple[Any, ...]]) -> list[Any]:
        """Decode one batch of (prompt ids, adapter, params[, token sink]), mixed adapters, one
        generate; a sink (streaming) gets each of its request's tokens as it is decoded."""
        from zoo.generate import GenRequest, generate

        requests = [GenRequest(item[0], item[1], item[2]) for item in items]
        sinks = [item[3] if len(item) > 3 else None for item in items]

        def on_token(i: int, token: int) -> None:
            if sinks[i] is not None:
                sinks[i](token)

        with self._gen_lock:
            self.largest_batch = max(self.largest_batch, len(requests))
            try:
                return generate(self.model, requests, tokenizer=self.tokenizer,
                                on_token=on_token if any(sinks) else None)
            except Exception:  # noqa: BLE001 - find whose request it is: each alone
                return [self._alone(r) for r in requests]

    def _alone(self, request: Any) -> Any:
        """One request decoded by itself; its exception is its result (the others go on).
        Not streamed again: a stream's last event carries whatever it has not yet sent."""
        from zoo.generate import generate

        try:
            return generate(self.model, [request], tokenizer=self.tokenizer)[0]
        except Exception as exc:  # noqa: BLE001 - this request's failure, reported to it
            return exc


def _make_deployment() -> Any:
    """The Ray Serve deployment class (built on first use: importing this module needs no
    FastAPI or Ray Serve)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from ray import serve

    from zoo.storage.tokens import bearer_secret
    from zoo.workers.serve_openai import (
        completion_body,
        error_body,
        error_status,
        headers_of,
        stream_events,
    )

    api = FastAPI(title="adapter zoo", docs_url=None, redoc_url=None)

    @serve.deployment(max_ongoing_requests=256, health_check_period_s=2,
                      health_check_timeout_s=30)
    @serve.ingress(api)
    class ZooServe:
        def __init__(self, config: dict[str, Any]) -> None:
            self.engine = CompletionEngine(ServeConfig(**config))
            self.batched.set_max_batch_size(self.engine.config.max_batch_size)
            self.batched.set_batch_wait_timeout_s(self.engine.config.batch_wait_s)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
        async def batched(self, items: list[tuple[Any, ...]]) -> list[Any]:
            return await asyncio.to_thread(self.engine.run, items)

        @api.get("/v1/models")
        async def models(self, request: Request) -> Any:
            try:
                return await asyncio.to_thread(self.engine.models, bearer_secret(
                    request.headers.get("authorization")))
            except Exception as exc:  # noqa: BLE001 - a refused token is this request's answer
                return JSONResponse(error_body(exc), status_code=error_status(exc)[0])

        @api.get("/healthz")
        async def healthz(self) -> Any:
            return {"ok": True, "adapters_loaded": len(self.engine.bank),
                    "largest_batch": self.engine.largest_batch}

        @api.post("/v1/completions")
        async def completions(self, request: Request) -> Any:
            try:
                try:
                    body = await request.json()
                except ValueError:
                    raise RequestError("the request body is not JSON") from None
                secret = bearer_secret(request.headers.get("authorization"))
                prepared = await asyncio.to_thread(self.engine.prepare, body, secret)
                if prepared.stream:
                    return self._stream(prepared)
                done = await asyncio.gather(*(self.batched(item) for item in prepared.items))
                failed = [d for d in done if isinstance(d, BaseException)]
                if failed:
                    raise failed[0]
            except Exception as exc:  # noqa: BLE001 - every failure is this request's answer
                return JSONResponse(error_body(exc), status_code=error_status(exc)[0])
            return JSONResponse(completion_body(prepared, list(done)), headers=headers_of(prepared))

        def _stream(self, prepared: Prepared) -> Any:
            """Server-sent events, one chunk per text delta as the batch decodes."""
            return StreamingResponse(stream_events(prepared, self.engine.tokenizer, self.batched),
                                     media_type="text/event-stream", headers=headers_of(prepared))

        def check_health(self) -> None:
            if not self.engine._refresher.is_alive():
                raise RuntimeError("the catalog refresher stopped")

    return ZooServe


def app_name(base: str) -> str:
    return APP_NAME_PREFIX + "".join(c if c.isalnum() or c in "-_" else "-" for c in base)


def build_app(config: ServeConfig, *, num_replicas: int | None = 1,
              autoscaling: dict[str, Any] | None = None, num_gpus: float = 0.0,
              num_cpus: float = 1.0) -> Any:
    """The bound Ray Serve application for one base model (``serve.run`` it)."""
    from zoo.settings import endpoint_env

    actor: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    env = endpoint_env()  # replicas started elsewhere reach the same S3 endpoint
    if env:
        actor["runtime_env"] = {"env_vars": env}
    options: dict[str, Any] = {"ray_actor_options": actor}  # the deployment is "ZooServe"
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = num_replicas or 1
    return _make_deployment().options(**options).bind(asdict(config))


def app_builder(args: dict[str, Any]) -> Any:
    """For a Ray Serve config file: ``import_path: zoo.workers.serve:app_builder`` with
    ``args`` = the :class:`ServeConfig` fields; replicas and GPUs from the file's
    ``deployments`` section."""
    return build_app(ServeConfig(**args))


def check_selection(config: ServeConfig) -> int:
    """How many adapters the selection covers; NotFoundError for an unregistered base."""
    from zoo.storage.db import open_catalog
    from zoo.storage.serving import serving_table

    catalog = open_catalog(config.catalog_url)
    try:
        return len(serving_table(catalog, config.base, tag=config.tag, query=config.query).adapters)
    finally:
        catalog.close()


def forwarded(config: ServeConfig) -> ServeConfig:
    """The config as it may travel to replicas: URLs without passwords (each replica completes
    them from its own environment or config file, as training workers do)."""
    from dataclasses import replace

    from zoo.settings import strip_credentials

    return replace(config, catalog_url=strip_credentials(config.catalog_url),
                   store_url=strip_credentials(config.store_url))


def start(config: ServeConfig, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          address: str | None = None, **deployment: Any) -> str:
    """Deploy (embedded: a local Ray in this process; else the cluster at ``address``) and
    return the endpoint URL once the replicas answer."""
    from ray import serve

    from zoo.workers.cluster import connect

    connect(address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(forwarded(config), **deployment), name=app_name(config.base), route_prefix="/",
              blocking=False)
    return f"http://{host}:{port}"


def stop(base: str) -> None:
    """Remove the deployment of ``base`` (its replicas stop; the Serve proxy stays)."""
    from ray import serve

    serve.delete(app_name(base))


__all__ = ["CompletionEngine", "ServeConfig", "app_builder", "build_app", "check_selection",
           "start", "stop"]
