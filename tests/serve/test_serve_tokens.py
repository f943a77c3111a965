"""``zoo serve --require-token``: a replica answers only live zoo tokens, and a token with a name
prefix only for the adapters whose names carry it (and the base). The replica's own engine on
a real catalog and store, in process: the HTTP layer only maps these errors to 401/403."""

from __future__ import annotations

import pytest
from servekit import LLAMA_TARGETS, mixed_adapters

import zoo
from zoo.errors import AuthError, ForbiddenError
from zoo.testing import save_tiny_kv_llama
from zoo.workers.serve_openai import error_status


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from zoo.digest import base_model_digest
    from zoo.storage import tokens
    from zoo.storage.bases import register_location
    from zoo.storage.binding import bind
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.publish import publish
    from zoo.workers.serve import CompletionEngine, ServeConfig

    tmp = tmp_path_factory.mktemp("serve-tokens")
    catalog_url, store_url = f"sqlite:///{tmp / 'catalog.db'}", str(tmp / "store")
    init_catalog(catalog_url)
    catalog, store = open_catalog(catalog_url), open_store(store_url)
    bind(catalog, store)
    base_dir = save_tiny_kv_llama(tmp / "kv-base")
    register_location(catalog, store, "kv-base", str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    digest = base_model_digest(base_dir)
    for name, a in zip(["team-a.x", "team-b.y"],
                       mixed_adapters(model, 2, targets=LLAMA_TARGETS, seed=3), strict=True):
        publish(catalog, store, zoo.Adapter(a.config.with_base("kv-base", digest), a.tensors)
                .to_bytes(), name=name, aliases=[f"{name}@prod"])
    secrets = {name: tokens.create(catalog, name, scope=scope, prefix=prefix)[1]
               for name, scope, prefix in [("any", "read", None), ("b", "read", "team-b."),
                                           ("gone", "read", None)]}
    tokens.revoke(catalog, "gone")
    eng = CompletionEngine(ServeConfig(base="kv-base", catalog_url=catalog_url,
                                       store_url=store_url, device="cpu",
                                       home=str(tmp / "home"), require_token=True))
    try:
        yield eng, secrets
    finally:
        eng.close()
        catalog.close()


def body(model: str) -> dict:
    return {"model": model, "prompt": "k1 v2", "max_tokens": 2, "temperature": 0}


def test_no_bad_or_revoked_token_is_401(engine):
    eng, secrets = engine
    for secret in (None, "zoo_not-a-token", secrets["gone"]):
        with pytest.raises(AuthError) as err:
            eng.prepare(body("team-a.x@prod"), secret)
        assert not isinstance(err.value, ForbiddenError)
        assert error_status(err.value)[0] == 401
        with pytest.raises(AuthError):
            eng.models(secret)


def test_a_prefixed_token_gets_only_its_adapters_and_the_base(engine):
    eng, secrets = engine
    assert eng.prepare(body("team-b.y@prod"), secrets["b"]).adapter_id
    assert eng.prepare(body("kv-base"), secrets["b"]).adapter_id is None
    with pytest.raises(ForbiddenError) as err:
        eng.prepare(body("team-a.x@prod"), secrets["b"])
    assert error_status(err.value)[0] == 403 and secrets["b"] not in str(err.value)
    listed = {m["id"] for m in eng.models(secrets["b"])["data"]}
    assert "team-b.y@prod" in listed and "kv-base" in listed
    assert not any(m.startswith("team-a.") for m in listed)


def test_an_unprefixed_token_gets_every_adapter(engine):
    eng, secrets = engine
    for model in ("team-a.x@prod", "team-b.y@prod"):
        assert eng.prepare(body(model), secrets["any"]).adapter_id
    listed = {m["id"] for m in eng.models(secrets["any"])["data"]}
    assert {"team-a.x@prod", "team-b.y@prod", "kv-base"} <= listed
