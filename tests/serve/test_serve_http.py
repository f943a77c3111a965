"""``zoo serve`` through HTTP on a real local Ray Serve: correctness against zoo.attach with
20 mixed adapters batched together, an alias move mid-stream, a corrupted blob, a killed
replica. One Serve application for the whole module, on the session's Ray."""

from __future__ import annotations

import concurrent.futures as cf
import random
import threading
import time

import httpx
import pytest
from servekit import LLAMA_TARGETS, attached_greedy, mixed_adapters

import zoo
from zoo.testing import KV_WORDS, save_tiny_kv_llama

N_ADAPTERS = 20
REFRESH_S = 1.0


class Served:
    def __init__(self, tmp) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from zoo.digest import base_model_digest
        from zoo.storage.bases import register_location
        from zoo.storage.binding import bind
        from zoo.storage.blobstore import open_store
        from zoo.storage.db import init_catalog, open_catalog
        from zoo.storage.publish import publish

        self.catalog_url = f"sqlite:///{tmp / 'catalog.db'}"
        self.store_url = str(tmp / "store")
        init_catalog(self.catalog_url)
        self.catalog = open_catalog(self.catalog_url)
        self.store = open_store(self.store_url)
        bind(self.catalog, self.store)
        base_dir = save_tiny_kv_llama(tmp / "kv-base")
        register_location(self.catalog, self.store, "kv-base", str(base_dir))
        self.model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(base_dir)
        digest = base_model_digest(base_dir)
        self.adapters = []
        for a in mixed_adapters(self.model, N_ADAPTERS + 3, targets=LLAMA_TARGETS, seed=7, scale=0.5):
            a = zoo.Adapter(a.config.with_base("kv-base", digest), a.tensors)
            self.adapters.append(a)
        self.ids = []
        for i, a in enumerate(self.adapters):
            alias = [f"ad{i}@prod"] if i < N_ADAPTERS else []
            name = f"ad{i}" if i < N_ADAPTERS else ("ad5" if i == N_ADAPTERS else f"extra{i}")
            self.ids.append(publish(self.catalog, self.store, a.to_bytes(), name=name,
                                    aliases=alias, tags=["serve"]).id)
        # an adapter made for ANOTHER base (hidden 48, not 32), linked to this one by mistake
        from servekit import tiny_llama

        alien = mixed_adapters(tiny_llama(), 1, targets=LLAMA_TARGETS, seed=8)[0]
        self.alien_id = publish(self.catalog, self.store, alien.to_bytes(), name="alien",
                                base="kv-base", tags=["serve"]).id
        self.home = str(tmp / "replica-home")

    def expected(self, i: int | None, prompt: str, max_tokens: int) -> str:
        ids = self.tokenizer(prompt)["input_ids"]
        adapter = None if i is None else self.adapters[i]
        tokens, _ = attached_greedy(self.model, adapter, ids, max_tokens, eos=3)
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


@pytest.fixture(scope="module")
def server(ray_local, tmp_path_factory):
    from ray import serve

    from tests.conftest import free_port
    from zoo.workers.serve import ServeConfig, build_app, stop

    served = Served(tmp_path_factory.mktemp("serve"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ServeConfig(base="kv-base", catalog_url=served.catalog_url,
                         store_url=served.store_url, tag="serve", max_adapters=8,
                         refresh_s=REFRESH_S, max_batch_size=32, batch_wait_s=0.3,
                         device="cpu", home=served.home)
    serve.run(build_app(config), name="zoo-kv-base", route_prefix="/", blocking=False)
    served.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(served.url + "/healthz", timeout=5).status_code == 200, 120)
    try:
        yield served
    finally:
        stop("kv-base")
        serve.shutdown()
        served.catalog.close()


def wait_until(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.3)


def complete(url: str, model: str, prompt, **extra):
    body = {"model": model, "prompt": prompt, "max_tokens": 5, "temperature": 0, **extra}
    return httpx.post(url + "/v1/completions", json=body, timeout=120)


def kv_prompt(rng: random.Random) -> str:
    words = [w for w in KV_WORDS if w.startswith(("k", "v"))]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))


def test_models_lists_aliases_ids_and_the_base(server):
    data = httpx.get(server.url + "/v1/models", timeout=30).json()["data"]
    names = {m["id"] for m in data}
    assert "kv-base" in names
    assert {f"ad{i}@prod" for i in range(N_ADAPTERS)} <= names
    assert set(server.ids) <= names


def test_mixed_batches_through_http_match_attach(server):
    rng = random.Random(0)
    jobs = [(i, kv_prompt(rng)) for i in range(N_ADAPTERS)] + [(None, kv_prompt(rng))]
    jobs += [(3, kv_prompt(rng)), (11, kv_prompt(rng))]

    def ask(job):
        i, prompt = job
        model = "kv-base" if i is None else (f"ad{i}@prod" if i % 2 else server.ids[i][:10])
        return complete(server.url, model, prompt)

    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        responses = list(pool.map(ask, jobs))
    for (i, prompt), resp in zip(jobs, responses, strict=True):
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["text"] == server.expected(i, prompt, 5), (i, prompt)
        want_id = "" if i is None else server.ids[i]
        assert resp.headers["x-zoo-adapter-id"] == want_id
        want_digest = "" if i is None else server.adapters[i].digest
        assert resp.headers["x-zoo-adapter-digest"] == want_digest
    health = httpx.get(server.url + "/healthz", timeout=30).json()
    assert health["largest_batch"] > 4  # requests of different adapters shared batches
    assert health["adapters_loaded"] <= 8  # --max-adapters bounds the bank


def test_prompt_list_stream_and_sampling(server):
    rng = random.Random(1)
    prompts = [kv_prompt(rng) for _ in range(3)]
    resp = complete(server.url, "ad2@prod", prompts)
    assert [c["text"] for c in resp.json()["choices"]] == [server.expected(2, p, 5) for p in prompts]
    streamed = complete(server.url, "ad2@prod", prompts[0], stream=True)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == server.expected(2, prompts[0], 5)
    assert sum(1 for c in chunks if c["choices"][0]["text"]) >= 2  # token by token, not at once
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    full = server.expected(2, prompts[1], 5)
    words = full.split()
    stop = words[min(2, len(words) - 1)]  # a word in the middle of the completion
    plain = complete(server.url, "ad2@prod", prompts[1], stop=[stop]).json()["choices"][0]
    assert plain["finish_reason"] == "stop" and plain["text"] == full[:full.index(stop)]
    cut = complete(server.url, "ad2@prod", prompts[1], stop=[stop], stream=True)
    parts = [json.loads(line[6:]) for line in cut.text.splitlines()
             if line.startswith("data: {")]
    assert "".join(p["choices"][0]["text"] for p in parts) == plain["text"]
    one = complete(server.url, "ad2@prod", prompts[0], temperature=1.0, seed=5, max_tokens=6)
    two = complete(server.url, "ad2@prod", prompts[0], temperature=1.0, seed=5, max_tokens=6)
    assert one.json()["choices"][0]["text"] == two.json()["choices"][0]["text"]


@pytest.mark.parametrize("body,status", [
    ({"model": "nope@prod", "prompt": "k1"}, 404),
    ({"model": "ad1@prod", "prompt": ""}, 400),
    ({"model": "ad1@prod", "prompt": "k1", "max_tokens": 0}, 400),
    ({"model": "ad1@prod", "prompt": "k1", "top_p": 2}, 400),
    ({"prompt": "k1"}, 400),
])
def test_bad_requests_get_one_clear_error(server, body, status):
    resp = httpx.post(server.url + "/v1/completions", json=body, timeout=30)
    assert resp.status_code == status
    assert resp.json()["error"]["message"]


def test_alias_move_during_a_stream(server):
    from zoo.storage.catalog import set_alias

    old_i, new_i = 5, N_ADAPTERS  # ad5@prod moves to adapter N (published, same selection)
    prompt = "k1 = v2 k3"
    by_digest = {server.adapters[old_i].digest: server.expected(old_i, prompt, 5),
                 server.adapters[new_i].digest: server.expected(new_i, prompt, 5)}
    assert len(set(by_digest.values())) == 2  # the two versions answer differently
    seen: list[tuple[float, int, str, str]] = []
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            resp = complete(server.url, "ad5@prod", prompt)
            text = resp.json()["choices"][0]["text"] if resp.status_code == 200 else resp.text
            seen.append((time.monotonic(), resp.status_code,
                         resp.headers.get("x-zoo-adapter-digest", ""), text))

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        with server.catalog.transaction() as session:  # the new version of ad5 becomes prod
            set_alias(session, "ad5@prod", server.ids[new_i])
        moved = time.monotonic()
        time.sleep(3 * REFRESH_S + 1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all(status == 200 for _, status, _, _ in seen)  # none fails
    assert all(by_digest[d] == text for _, _, d, text in seen)  # none mixes the two versions
    late = [d for at, _, d, _ in seen if at > moved + 2 * REFRESH_S + 0.5]
    assert late and set(late) == {server.adapters[new_i].digest}
    assert any(d == server.adapters[old_i].digest for _, _, d, _ in seen)
    with server.catalog.transaction() as session:
        set_alias(session, "ad5@prod", server.ids[old_i])


def test_corrupt_blob_errors_only_its_requests(server):
    i = N_ADAPTERS + 1  # never requested before: not in the bank
    path = server.store.path_for(server.adapters[i].digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    rng = random.Random(3)
    jobs = [(i, kv_prompt(rng)), (0, kv_prompt(rng)), (i, kv_prompt(rng)), (7, kv_prompt(rng))]
    with cf.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda j: complete(server.url, server.ids[j[0]], j[1]), jobs))
    for (j, prompt), resp in zip(jobs, responses, strict=True):
        if j == i:
            assert resp.status_code == 500
            assert "failed verification" in resp.json()["error"]["message"]
        else:
            assert resp.status_code == 200 and resp.json()["choices"][0]["text"] == \
                server.expected(j, prompt, 5)


def replica_names() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and "REPLICA" in a["name"] and "zoo-kv-base" in a["name"]}


def test_an_adapter_that_does_not_fit_errors_only_its_requests(server):
    rng = random.Random(5)
    jobs = [("alien", kv_prompt(rng)), (4, kv_prompt(rng)), (None, kv_prompt(rng))]

    def ask(job):
        who, prompt = job
        model = server.alien_id if who == "alien" else ("kv-base" if who is None else f"ad{who}@prod")
        return complete(server.url, model, prompt)

    with cf.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(ask, jobs))
    assert responses[0].status_code == 500
    assert "module" in responses[0].json()["error"]["message"]
    for (who, prompt), resp in zip(jobs[1:], responses[1:], strict=True):
        assert resp.status_code == 200 and resp.json()["choices"][0]["text"] == \
            server.expected(who, prompt, 5)


def test_killed_replica_is_replaced(server):
    import ray

    before = replica_names()
    assert len(before) == 1
    errors = []
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            try:
                complete(server.url, "ad1@prod", "k2 k3")
            except httpx.HTTPError as exc:  # a request in flight on the killed replica may fail
                errors.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        time.sleep(0.5)
        ray.kill(ray.get_actor(next(iter(before)), namespace="serve"), no_restart=True)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()

    def replaced() -> bool:
        names = replica_names()
        return bool(names) and not names & before and \
            complete(server.url, "ad1@prod", "k2 k3").status_code == 200

    wait_until(replaced, 120)
    rng = random.Random(4)
    for _ in range(3):
        prompt = kv_prompt(rng)
        resp = complete(server.url, "ad1@prod", prompt)
        assert resp.status_code == 200
        assert resp.json()["choices"][0]["text"] == server.expected(1, prompt, 5)
