"""Benchmark: serving a request stream over many adapters — zoo's batched generation vs the base
model alone vs PEFT's mixed-batch ``generate(adapter_names=...)``, on the same prompts.

    python bench/serve_bench.py [--adapters 100] [--requests 64] [--batch 16] [--tokens 16]

What is measured (IN-PROCESS, the batched path a ``zoo serve`` replica runs; no HTTP, no Ray:
the HTTP endpoint adds the same per-request overhead to every system and is not timed here):

1. ``base alone``  — the limit: :func:`zoo.generate.generate` with no adapter, same batches.
2. ``zoo serve``   — :func:`zoo.generate.generate` with each request's own adapter, taken from
   a warm :class:`zoo.adapter_bank.AdapterBank` (expanded adapters in memory, as a replica
   holds them); the per-batch bank of the batch's adapters is built inside the timing.
3. ``PEFT mixed``  — every adapter loaded into one ``PeftModel`` (``load_adapter``, not timed),
   then ``generate(input_ids, attention_mask, adapter_names=[...])`` on the same batches
   (left padded, greedy, same number of new tokens).

Two streams: requests over ``--adapters`` distinct adapters (round-robin, shuffled) and over
ONE adapter. Requests arrive together and are served in batches of ``--batch`` in arrival
order; a request's latency is the wall time of the batch that carried it (service time, no
queueing). Tokens/s counts generated tokens per CPU-second of this process (a shared host does
not inflate it; wall figures are printed too). Greedy outputs of zoo and PEFT are compared
token by token and the agreement is printed.

``--http`` measures the HTTP endpoint instead: a real ``zoo serve`` deployment (local Ray
Serve, one replica, SQLite catalog, local store) answering the same prompts as text through
``POST /v1/completions``, ``--batch`` clients at a time, over the adapters by ``name@alias`` and
over the base's own name; wall-clock only (latency includes queueing at the replica).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TARGET_SETS = (("q_proj", "v_proj"), TARGETS[:4], TARGETS)


def build_base(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden,
                      intermediate_size=args.hidden * 2, num_hidden_layers=args.layers,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = None  # every request makes exactly --tokens tokens
    return model


def build_adapters(model, n: int):
    from zoo.config import PRoLoRAConfig
    from zoo.testing import random_adapter

    rng = random.Random(0)
    out = []
    for i in range(n):
        r = rng.choice([4, 8, 16])
        cfg = PRoLoRAConfig(r=r, unshared_r=rng.randint(0, r), share_a=rng.choice([1, 2, 4]),
                            share_b=rng.choice([1, 2, 4]), alpha=16.0,
                            target_modules=rng.choice(TARGET_SETS))
        out.append(random_adapter(model, cfg, base_model="bench-llama", seed=i, scale=0.1))
    return out


def make_stream(n_requests: int, n_adapters: int, vocab: int, seed: int = 1):
    rng = random.Random(seed)
    slots = [i % n_adapters for i in range(n_requests)]
    rng.shuffle(slots)
    prompts = [[1] + [rng.randrange(3, vocab) for _ in range(rng.randint(8, 40))]
               for _ in range(n_requests)]
    return list(zip(prompts, slots, strict=True))


def batches(stream, size):
    return [stream[i:i + size] for i in range(0, len(stream), size)]


class Run:
    """One pass over a stream: wall and CPU seconds, per-request service times, outputs."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.latencies: list[float] = []
        self.cpu_latencies: list[float] = []
        self.outputs: list[list[int]] = []

    def batch(self, size: int, fn) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        self.outputs += fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        self.wall, self.cpu = self.wall + wall, self.cpu + cpu
        self.latencies += [wall] * size
        self.cpu_latencies += [cpu] * size


def run_zoo(model, stream, bank_adapters, args, *, base_only: bool = False) -> Run:
    from zoo.generate import GenRequest, SamplingParams, generate

    params = SamplingParams(max_tokens=args.tokens)
    run = Run()
    for batch in batches(stream, args.batch):
        reqs = [GenRequest(p, None if base_only else bank_adapters[s], params) for p, s in batch]
        run.batch(len(batch), lambda reqs=reqs: [c.token_ids for c in generate(model, reqs)])
    return run


def build_peft(model, adapters, tmp: Path):
    from peft import PeftModel

    from zoo.peft_io import export_peft

    peft_model = None
    for i, adapter in enumerate(adapters):
        folder = export_peft(adapter, tmp / f"a{i}")
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=f"a{i}")
        else:
            peft_model.load_adapter(str(folder), adapter_name=f"a{i}")
    return peft_model.eval()


def run_peft(peft_model, stream, args) -> Run:
    run = Run()
    for batch in batches(stream, args.batch):
        run.batch(len(batch), lambda batch=batch: peft_batch(peft_model, batch, args))
    return run


def peft_batch(peft_model, batch, args) -> list[list[int]]:
    width = max(len(p) for p, _ in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for n, (p, _) in enumerate(batch):
        ids[n, width - len(p):] = torch.tensor(p)
        mask[n, width - len(p):] = 1
    with torch.no_grad():
        out = peft_model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                  max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                  adapter_names=[f"a{s}" for _, s in batch], pad_token_id=0)
    return [row[width:].tolist() for row in out]


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(name, run: Run, n_tokens, base: Run | None = None) -> float:
    """Tokens per CPU-second (what a busy shared host does not inflate) and per wall second."""
    tps = n_tokens / run.cpu
    ratio = f"{tps / (n_tokens / base.cpu):5.2f}x base" if base else "  (limit)  "
    print(f"  {name:<11} {tps:8.1f} tok/cpu-s {ratio}  p50 {pct(run.cpu_latencies, 0.5) * 1000:7.1f}"
          f" p99 {pct(run.cpu_latencies, 0.99) * 1000:7.1f} cpu-ms | wall {n_tokens / run.wall:7.1f}"
          f" tok/s p50 {pct(run.latencies, 0.5) * 1000:7.1f} p99 "
          f"{pct(run.latencies, 0.99) * 1000:7.1f} ms")
    return tps


def save_with_tokenizer(model, path: Path) -> Path:
    """The base saved as a user's model directory, with a word-level tokenizer: ``w<i>`` is
    token ``i`` (so a prompt's ids survive the trip through text)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, model.config.vocab_size)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    model.save_pretrained(path)
    PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", bos_token="<s>",
                            unk_token="<unk>").save_pretrained(path)
    return path


def http_bench(model, adapters, args) -> None:
    """The endpoint: a real deployment on local Ray Serve, clients over HTTP."""
    import concurrent.futures as cf
    import socket

    import httpx

    from zoo.adapter import Adapter
    from zoo.digest import base_model_digest
    from zoo.storage.bases import register_location
    from zoo.storage.binding import bind
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.publish import publish
    from zoo.workers.cluster import connect
    from zoo.workers.serve import ServeConfig, build_app

    tmp = Path(tempfile.mkdtemp(prefix="zoo-serve-bench-"))
    catalog_url, store_url = f"sqlite:///{tmp / 'catalog.db'}", str(tmp / "store")
    init_catalog(catalog_url)
    catalog, store = open_catalog(catalog_url), open_store(store_url)
    bind(catalog, store)
    base_dir = save_with_tokenizer(model, tmp / "bench-llama")
    register_location(catalog, store, "bench-llama", str(base_dir))
    digest = base_model_digest(base_dir)
    for i, a in enumerate(adapters):
        a = Adapter(a.config.with_base("bench-llama", digest), a.tensors)
        publish(catalog, store, a.to_bytes(), name=f"a{i}", aliases=[f"a{i}@prod"])
    catalog.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connect(None)  # before Ray is imported: it reads RAY_AUTH_MODE on import
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ServeConfig(base="bench-llama", catalog_url=catalog_url, store_url=store_url,
                         max_adapters=len(adapters), max_batch_size=args.batch,
                         batch_wait_s=0.05, device="cpu", home=str(tmp / "home"))
    serve.run(build_app(config, num_cpus=1), name="zoo-bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1/completions"
    client = httpx.Client(timeout=600)

    def ask(model_name: str, prompt: list[int]) -> float:
        t0 = time.perf_counter()
        resp = client.post(url, json={"model": model_name, "prompt": " ".join(f"w{t}" for t in prompt[1:]),
                                      "max_tokens": args.tokens, "temperature": 0})
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["completion_tokens"] == args.tokens
        return time.perf_counter() - t0

    print(f"HTTP endpoint (zoo serve on local Ray Serve, 1 replica, {args.batch} clients, "
          f"wall clock, latency includes queueing):")
    try:
        for label, n_distinct in ((f"{len(adapters)} adapters", len(adapters)), ("1 adapter", 1)):
            stream = make_stream(args.requests, n_distinct, args.vocab)
            for name, use_base in (("base alone", True), ("zoo serve", False)):
                names = ["bench-llama" if use_base else f"a{s}@prod" for _, s in stream]
                with cf.ThreadPoolExecutor(args.batch) as pool:
                    list(pool.map(ask, names[:args.batch], [p for p, _ in stream[:args.batch]]))  # warm
                    t0 = time.perf_counter()
                    lat = list(pool.map(ask, names, [p for p, _ in stream]))
                    wall = time.perf_counter() - t0
                print(f"  {label:<13} {name:<11} {args.requests * args.tokens / wall:7.1f} tok/s  "
                      f"p50 {pct(lat, 0.5) * 1000:7.1f} ms  p99 {pct(lat, 0.99) * 1000:7.1f} ms")
    finally:
        serve.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", type=int, default=100)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: CPU time then equals busy time)")
    parser.add_argument("--repeat", type=int, default=2, help="passes per system (best kept)")
    parser.add_argument("--http", action="store_true",
                        help="measure the HTTP endpoint of a real deployment instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from zoo.adapter_bank import plain_lora

    model = build_base(args)
    adapters = build_adapters(model, args.adapters)
    if args.http:
        http_bench(model, adapters, args)
        return
    bank = [plain_lora(a) for a in adapters]  # a warm replica bank: expanded once, on load
    with tempfile.TemporaryDirectory() as tmp:
        peft_base = build_base(args)
        t0 = time.perf_counter()
        peft_model = build_peft(peft_base, adapters, Path(tmp))
        peft_load = time.perf_counter() - t0
    print(f"base: Llama hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; "
          f"{args.adapters} adapters (r 4/8/16, mixed sharing and targets); "
          f"{args.requests} requests, batch {args.batch}, {args.tokens} new tokens each, "
          f"prompts 9-41 tokens; torch threads {torch.get_num_threads()}; "
          f"PEFT load of all adapters {peft_load:.1f} s (not timed below)")
    run_zoo(model, make_stream(args.batch, 1, args.vocab, seed=9), bank, args)  # warm-up
    for label, n_distinct in ((f"{args.adapters} adapters", args.adapters), ("1 adapter", 1)):
        stream = make_stream(args.requests, n_distinct, args.vocab)
        n_tokens = args.requests * args.tokens
        best: dict[str, Run] = {}
        for _ in range(args.repeat):  # interleaved; the fastest pass of each system counts
            for name in ("base alone", "zoo serve", "PEFT mixed"):
                if name == "PEFT mixed":
                    run = run_peft(peft_model, stream, args)
                else:
                    run = run_zoo(model, stream, bank, args, base_only=name == "base alone")
                if name not in best or run.cpu < best[name].cpu:
                    best[name] = run
        print(f"stream over {label}:")
        report("base alone", best["base alone"], n_tokens)
        zoo_tps = report("zoo serve", best["zoo serve"], n_tokens, best["base alone"])
        peft_tps = report("PEFT mixed", best["PEFT mixed"], n_tokens, best["base alone"])
        zoo_out, peft_out = best["zoo serve"].outputs, best["PEFT mixed"].outputs
        same = sum(a == b for a, b in zip(zoo_out, peft_out, strict=True))
        print(f"  zoo / PEFT: {zoo_tps / peft_tps:.2f}x tokens per CPU-second; greedy outputs "
              f"identical for {same}/{len(zoo_out)} requests")


if __name__ == "__main__":
    main()
