"""Adapter bytes on disk: the zoo's compact PRoLoRA file vs PEFT's own LoRA safetensors.

Issue 2, acceptance 6(b): the byte ratio (zoo file / PEFT ``adapter_model.safetensors``) must be
within 1% of the trainable-parameter ratio, i.e. the file stores the compact tensors, not the
expanded rank-r LoRA the authors' code saved. Both are written for real, side by side, from the
same Llama-style model, all seven projections, fp32 adapter tensors, at two sizes: the bench
model (hidden 512, 4 layers) and one layer with LLaMA-2-7B's shapes (hidden 4096, intermediate
11008; base weights in bf16 to save memory). The zoo file's only overhead is its JSON header
(~120 bytes per module), so the gap to the parameter ratio shrinks as layers get wider.

    python bench/adapter_size_bench.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

import zoo

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ROWS = [  # (label, PRoLoRA r, u, m=n, PEFT LoRA rank of the same rank r)
    ("PRoLoRA r=8 u=1 m=n=7", 8, 1, 7),
    ("PRoLoRA r=8 u=1 m=n=2", 8, 1, 2),
    ("PRoLoRA r=16 u=0 m=n=2", 16, 0, 2),
    ("PRoLoRA r=8 u=8 (=LoRA)", 8, 8, 1),
]


SIZES = {  # name: (hidden, intermediate, layers, heads, base dtype)
    "hidden 512, 4 layers (bench model)": (512, 1376, 4, 8, torch.float32),
    "LLaMA-2-7B shapes, 1 layer": (4096, 11008, 1, 32, torch.bfloat16),
}


def base(size: str) -> LlamaForCausalLM:
    hidden, inter, layers, heads, dtype = SIZES[size]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=hidden, intermediate_size=inter,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads)
    return LlamaForCausalLM(cfg).to(dtype).eval()


def peft_bytes(size: str, r: int, tmp: Path) -> tuple[int, int]:
    model = get_peft_model(base(size), LoraConfig(r=r, lora_alpha=16, target_modules=TARGETS))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = tmp / f"peft_r{r}"
    model.save_pretrained(out)
    return (out / "adapter_model.safetensors").stat().st_size, params


def zoo_bytes(size: str, r: int, u: int, share: int, tmp: Path) -> tuple[int, int]:
    model = zoo.attach(base(size), zoo.PRoLoRAConfig(r=r, unshared_r=u, share_a=share, share_b=share,
                                                 alpha=16, target_modules=TARGETS))
    adapter = zoo.extract(model, base_model="bench/llama-512x4", task="causal-lm")
    path = tmp / f"zoo_r{r}_u{u}_m{share}.safetensors"
    adapter.save(path)
    return path.stat().st_size, adapter.num_params


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("Llama-style bases, targets: all 7 projections, fp32 adapter tensors; "
              "diff = (byte ratio - param ratio) / param ratio")
        for size in SIZES:
            print(f"\n{size}")
            print(f"{'adapter':<26}{'params':>11}{'bytes':>12}{'PEFT r':>7}{'PEFT params':>12}"
                  f"{'PEFT bytes':>12}{'param ratio':>12}{'byte ratio':>11}{'diff':>8}")
            worst = 0.0
            for label, r, u, share in ROWS:
                zb, zp = zoo_bytes(size, r, u, share, tmp)
                pb, pp = peft_bytes(size, r, tmp)
                pr, br = zp / pp, zb / pb
                diff = (br - pr) / pr
                worst = max(worst, abs(diff))
                print(f"{label:<26}{zp:>11,}{zb:>12,}{r:>7}{pp:>12,}{pb:>12,}{pr:>12.4f}"
                      f"{br:>11.4f}{100 * diff:>7.2f}%")
            verdict = "PASS" if worst <= 0.01 else "MISS"
            print(f"worst |diff| = {100 * worst:.2f}% (target <= 1%): {verdict}")


if __name__ == "__main__":
    main()
