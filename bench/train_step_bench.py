"""Train-step time: PRoLoRA vs PEFT LoRA of the same rank, measured side by side.

Issue 2, acceptance 6(a), target <= 1.10x. One train step = forward + backward + AdamW step on
the adapter parameters, on CPU, fp32. Model: Llama-style, hidden 512, intermediate 1376,
4 layers, 8 heads, vocabulary 8192; batch 8 x 128 tokens; adapters on ALL SEVEN projections
(q, k, v, o, gate, up, down), rank 8, alpha 16, dropout 0.05. Methods are interleaved
(A B C A B C ...) so that load from other processes hits them alike; the median is reported.

    python bench/train_step_bench.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

import zoo

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH, SEQ, VOCAB = 8, 128, 8192


def base() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=512, intermediate_size=1376,
                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8)
    return LlamaForCausalLM(cfg)


def methods() -> dict[str, torch.nn.Module]:
    return {
        "PEFT LoRA r=8": get_peft_model(base(), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                            target_modules=TARGETS)),
        "PRoLoRA r=8 u=1 m=n=7": zoo.attach(base(), zoo.PRoLoRAConfig(
            r=8, unshared_r=1, share_a=7, share_b=7, alpha=16, dropout=0.05,
            target_modules=TARGETS)),
        "PRoLoRA r=8 u=8 (no sharing)": zoo.attach(base(), zoo.PRoLoRAConfig(
            r=8, unshared_r=8, share_a=1, share_b=1, alpha=16, dropout=0.05,
            target_modules=TARGETS)),
    }


def step_fn(model: torch.nn.Module, ids: torch.Tensor):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step() -> float:
        started = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    return step, sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    steps = {name: step_fn(model, ids) for name, model in methods().items()}
    for _ in range(args.warmup):
        for step, _ in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.reps):
        for name, (step, _) in steps.items():
            times[name].append(step())
    ref = statistics.median(times["PEFT LoRA r=8"])
    print(f"Llama-style hidden 512 x 4 layers, vocab {VOCAB}, batch {BATCH} x seq {SEQ}, CPU fp32, "
          f"{torch.get_num_threads()} threads, all 7 projections, {args.reps} interleaved reps")
    print(f"{'method':<30}{'trainable':>11}{'median s':>10}{'min s':>8}{'ratio':>8}")
    for name, (_, params) in steps.items():
        med = statistics.median(times[name])
        print(f"{name:<30}{params:>11,}{med:>10.3f}{min(times[name]):>8.3f}{med / ref:>8.3f}")
    ratio = statistics.median(times["PRoLoRA r=8 u=1 m=n=7"]) / ref
    best = min(times["PRoLoRA r=8 u=1 m=n=7"]) / min(times["PEFT LoRA r=8"])
    print(f"ratio of the fastest steps (less sensitive to other load): {best:.3f}x")
    print(f"PRoLoRA (r=8, u=1, m=n=7) / PEFT LoRA (r=8) train-step time: {ratio:.3f}x "
          f"(target <= 1.10x): {'PASS' if ratio <= 1.10 else 'MISS'}")


if __name__ == "__main__":
    main()
