"""Benchmark: batched multi-adapter evaluation vs the base model alone vs PEFT, same rows.

    python bench/eval_bench.py [--adapters 1000] [--examples 32] [--peft-adapters 1000]

One run, four measurements on the SAME tokenised rows (N adapters × E examples) of a small
Llama-style base on CPU:

1. ``base alone``  — the physical limit of this design: the base model without adapters on the
   same row plan (same batches, same batch size) as (2).
2. ``zoo batched`` — ``zoo.batch_eval.evaluate_many``: adapters read from their files, groups
   of ``batch_size`` adapters stacked, rows of many adapters per forward. Load time included.
3. ``PEFT naive``  — for each adapter: ``PeftModel.from_pretrained`` from its PEFT export,
   evaluate its E examples (batch size B), ``unload()``. Load time included.
4. ``PEFT mixed``  — PEFT's own mixed-batch path: every adapter loaded with ``load_adapter``,
   then ``forward(..., adapter_names=[...])`` over the same row plan as (2). Load included.

PEFT baselines may run on a subset (``--peft-adapters``); their rows/s are per row, so the
ratios stay comparable, and the output says when a subset was used. Also times the ``loop``
mode of the multi-adapter layer against the default ``bmm`` on ``--mode-adapters`` adapters.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import string
import tempfile
import time
from pathlib import Path

import torch

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "one", "two", "three", "yes",
         "no", "tree", "river", "stone", "light", "quick", "slow", "north", "south"]
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TARGET_SETS = (("q_proj", "v_proj"), TARGETS[:4], TARGETS)  # the usual choices


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for ch in string.ascii_letters + string.digits + " .,:;!?'-":
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def build_base(args, vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=args.hidden,
                      intermediate_size=args.hidden * 2, num_hidden_layers=args.layers,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def write_data(path: Path, n: int, seq: int) -> None:
    import json

    rng = random.Random(0)
    with path.open("w") as fh:
        for _ in range(n):
            length = rng.randint(seq // 2, seq - 2)
            text = ""
            while len(text) < length:
                text += rng.choice(WORDS) + " "
            cut = len(text[:length]) * 2 // 3
            fh.write(json.dumps({"prompt": text[:cut], "completion": text[cut:length]}) + "\n")


def random_adapter(model, rng: random.Random, seed: int):
    """A random-weight adapter with a varied config, built directly from its tensor shapes."""
    from zoo.config import PRoLoRAConfig
    from zoo.testing import random_adapter as build

    r = rng.choice([4, 8, 16])
    cfg = PRoLoRAConfig(r=r, unshared_r=rng.randint(0, r), share_a=rng.choice([1, 2, 4]),
                        share_b=rng.choice([1, 2, 4]), alpha=16.0,
                        target_modules=rng.choice(TARGET_SETS))
    return build(model, cfg, base_model="bench-llama", seed=seed, scale=0.1)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_zoo(model, tok, data, files, batch_size, mode="bmm"):
    from zoo.adapter import Adapter
    from zoo.batch_eval import evaluate_many

    adapters = [Adapter.load(f) for f in files]  # load time included
    res = evaluate_many(model, tok, data, adapters, batch_size=batch_size, mode=mode)
    assert all(r.error is None for r in res), [r.error for r in res if r.error][:3]
    return res


def run_base(model, tok, data, n_adapters, batch_size):
    from zoo.batch_eval import run_group
    from zoo.datasets import pad_id

    run_group(model, data, n_adapters, lambda slots: contextlib.nullcontext(),
              batch_size=batch_size, pad=pad_id(tok), autocast=contextlib.nullcontext())


def run_zoo_loop(model, tok, data, files, batch_size):
    return run_zoo(model, tok, data, files, batch_size, mode="loop")


def run_base_n(model, tok, data, n_adapters, batch_size):
    return run_base(model, tok, data, n_adapters, batch_size)


def run_peft_naive(model, tok, data, peft_dirs, batch_size):
    """Load each PEFT export from disk, evaluate its examples, unload."""
    from peft import PeftModel

    from zoo.batch_eval import score_rows
    from zoo.datasets import collate, pad_id

    for d in peft_dirs:
        peft_model = PeftModel.from_pretrained(model, d)
        with torch.no_grad():
            for s in range(0, len(data.encoded), batch_size):
                idx = list(range(s, min(s + batch_size, len(data.encoded))))
                batch = collate(data.encoded, idx, pad_id(tok))
                labels = batch.pop("labels")
                score_rows("causal-lm", peft_model(**batch).logits, labels)
        model = peft_model.unload()
    return model


def run_peft_mixed(model, tok, data, peft_dirs, batch_size):
    """PEFT's mixed batches: load_adapter each, forward(adapter_names=...) on our row plan."""
    from peft import PeftModel

    from zoo.batch_eval import row_plan, score_rows
    from zoo.datasets import collate, pad_id

    peft_model = PeftModel.from_pretrained(model, peft_dirs[0], adapter_name="a0")
    for k, d in enumerate(peft_dirs[1:], start=1):
        peft_model.load_adapter(d, adapter_name=f"a{k}")
    with torch.no_grad():
        for rows in row_plan(len(peft_dirs), data.order, batch_size):
            batch = collate(data.encoded, [ex for _, ex in rows], pad_id(tok))
            labels = batch.pop("labels")
            names = [f"a{k}" for k, _ in rows]
            score_rows("causal-lm", peft_model(**batch, adapter_names=names).logits, labels)
    return peft_model.unload()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", type=int, default=1000)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--peft-adapters", type=int, default=100)
    ap.add_argument("--mode-adapters", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=200, help="adapters per interleaved round")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the 2 cores here are shared with other work)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from zoo.batch_eval import load_dataset

    tok = char_tokenizer()
    model = build_base(args, len(tok))
    work = Path(tempfile.mkdtemp(prefix="zoo-eval-bench-"))
    try:
        data_path = work / "eval.jsonl"
        write_data(data_path, args.examples, args.seq)
        data = load_dataset("causal-lm", data_path, tok, max_length=args.seq)
        lengths = [len(x) for x in data.encoded.input_ids]
        rng = random.Random(1)
        files: list[Path] = []
        peft_of: dict[int, str] = {}  # adapter index -> PEFT export (an evenly spread subset)
        every = max(args.adapters // max(args.peft_adapters, 1), 1)
        for i in range(args.adapters):
            adapter = random_adapter(model, rng, seed=i)
            files.append(work / f"a{i}.safetensors")
            adapter.save(files[-1])
            if i % every == 0 and len(peft_of) < args.peft_adapters:
                peft_of[i] = str(adapter.to_peft(work / f"peft{i}"))
        print(f"setup: Llama hidden={args.hidden} layers={args.layers} "
              f"intermediate={args.hidden * 2} vocab={len(tok)}, {args.examples} examples of "
              f"{min(lengths)}-{max(lengths)} tokens, {args.adapters} adapters (r 4/8/16, mixed "
              f"unshared_r/shares, 3 target sets), batch size {args.batch_size}, "
              f"{torch.get_num_threads()} torch thread(s), CPU", flush=True)

        run_base(model, tok, data, args.batch_size, args.batch_size)  # warm-up
        # Interleaved chunk by chunk, rotating the order, so that load from other processes
        # on a shared machine hits every method alike; times are summed per method.
        secs = dict.fromkeys(("base alone (limit)", "zoo batched", "PEFT naive loop",
                              "PEFT mixed batch", "bmm", "loop"), 0.0)
        counts = dict.fromkeys(secs, 0)
        rounds = max(1, -(-args.adapters // args.chunk))
        mode_per_round = max(1, min(args.mode_adapters, args.adapters) // rounds)
        for n in range(rounds):
            ids = list(range(n * args.chunk, min((n + 1) * args.chunk, args.adapters)))
            chunk_files = [files[i] for i in ids]
            peft_dirs = [peft_of[i] for i in ids if i in peft_of]
            mode_files = chunk_files[:mode_per_round]
            jobs = [  # (method, adapters, runner, what it runs on)
                ("base alone (limit)", len(ids), run_base_n, len(chunk_files)),
                ("zoo batched", len(ids), run_zoo, chunk_files),
                ("bmm", len(mode_files), run_zoo, mode_files),
                ("loop", len(mode_files), run_zoo_loop, mode_files),
            ]
            if peft_dirs:
                jobs += [("PEFT naive loop", len(peft_dirs), run_peft_naive, peft_dirs),
                         ("PEFT mixed batch", len(peft_dirs), run_peft_mixed, peft_dirs)]
            for name, n_adapters, runner, what in jobs[n % len(jobs):] + jobs[:n % len(jobs)]:
                t, out = timed(lambda r=runner, w=what, m=model: r(m, tok, data, w, args.batch_size))
                secs[name] += t
                counts[name] += n_adapters * args.examples
                if name.startswith("PEFT"):
                    model = out  # unload() hands the plain base back
            print(f"  ... {ids[-1] + 1}/{args.adapters} adapters, {sum(secs.values()):.0f} s",
                  flush=True)
        t_bmm, t_loop = secs.pop("bmm"), secs.pop("loop")
        n_mode = counts.pop("bmm")
        counts.pop("loop")
        rows = counts
        rate = {k: rows[k] / secs[k] for k in rows}
        print(f"{'method':<22}{'rows':>8}{'seconds':>10}{'rows/s':>10}")
        for k in rate:
            print(f"{k:<22}{rows[k]:>8}{secs[k]:>10.2f}{rate[k]:>10.1f}")
        if len(peft_of) < args.adapters:
            print(f"note: PEFT baselines ran on a subset of {len(peft_of)} adapters (every "
                  f"{every}th); "
                  "rows/s are per row, so the ratios compare like with like")
        zoo_rate = rate["zoo batched"]
        print(f"zoo / base alone       = {zoo_rate / rate['base alone (limit)']:.2f}x (target >= 0.6)")
        print(f"zoo / PEFT naive loop  = {zoo_rate / rate['PEFT naive loop']:.2f}x (target >= 2.5)")
        print(f"zoo / PEFT mixed batch = {zoo_rate / rate['PEFT mixed batch']:.2f}x")
        print(f"PEFT naive / base      = {rate['PEFT naive loop'] / rate['base alone (limit)']:.2f}x")
        print(f"multi-adapter layer mode on {n_mode // args.examples} adapters: "
              f"bmm {n_mode / t_bmm:.1f} rows/s, "
              f"loop {n_mode / t_loop:.1f} rows/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
