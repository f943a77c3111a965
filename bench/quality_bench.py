"""A small quality table in the spirit of the PRoLoRA paper (issue 2, acceptance 6(c)).

Four methods, three seeds each, on three learnable tasks, all trained by the same loop
(``zoo.train.train_adapter``; LoRA is the zoo layer with u = r, m = n = 1, which equals PEFT's
LoRA exactly — acceptance 2 — so only the parametrisation differs between rows):

- LoRA r=2, LoRA r=8;
- PRoLoRA at the LoRA-r=2 budget: r=8, u=1, m=n=7;
- PRoLoRA at the LoRA-r=8 budget: r=16, u=0, m=n=2.

Tasks (small on purpose: the whole table runs in < 15 minutes on 2 CPU cores):

1. ``sentiment``: the shipped review-sentiment set on the pretrained MiniLM (seq-cls, q/v
   targets + a fresh head trained in every run; 40 steps, so it measures how fast each
   method learns; eval accuracy on 300 held-out reviews).
2. ``lookup``: a frozen random tiny Llama (hidden 64, 2 layers, all seven projections) learns a
   150-entry key -> value table (causal-lm; eval exact match and completion loss on the same keys —
   a capacity test, where rank should matter).
3. ``negation``: a frozen random tiny BERT (hidden 64, 2 layers, q/v targets + head) classifies
   "the X is (not) ADJ", optionally after "... but": the polarity of the last clause's adjective,
   flipped by "not" (held-out accuracy).

    python bench/quality_bench.py [--tasks sentiment,lookup,negation] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning on busy cores

import torch  # noqa: E402

import zoo  # noqa: E402
from zoo.train import TrainOptions, train_adapter

METHODS = {  # name: (r, u, m=n)
    "LoRA r=2": (2, 2, 1),
    "LoRA r=8": (8, 8, 1),
    "PRoLoRA r=8 u=1 m=n=7 (LoRA-r2 budget)": (8, 1, 7),
    "PRoLoRA r=16 u=0 m=n=2 (LoRA-r8 budget)": (16, 0, 2),
}
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Task:
    name: str
    task: str
    metric: str  # key in metrics, higher is better
    targets: list[str]
    modules_to_save: tuple[str, ...]
    options: TrainOptions
    setup: Callable[[Path], tuple[Any, Any, str, str, str]]  # -> model, tok, base, train, eval
    reset_head: Callable[[Any, int], None] | None = None
    threads: int | None = None  # tiny models: 1 thread is fastest


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _word_tokenizer(words: list[str], bert: bool) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + words)}, "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]",
                                       unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 4)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="<s>", eos_token="</s>")


def setup_sentiment(tmp: Path) -> tuple[Any, Any, str, str, str]:
    from zoo.base_models import load_base
    from zoo.demo import EVAL, TRAIN, minilm_path

    torch.manual_seed(0)
    model, tok = load_base(minilm_path(), "seq-cls", label_names=["negative", "positive"])
    subset = tmp / "sentiment_eval_300.jsonl"  # 300 of the 500 held-out reviews, for time
    subset.write_text("".join(EVAL.read_text().splitlines(keepends=True)[:300]))
    return model, tok, str(minilm_path()), str(TRAIN), str(subset)


def reset_classifier(model: Any, seed: int) -> None:
    torch.manual_seed(10_000 + seed)
    model.classifier.reset_parameters()


def setup_lookup(tmp: Path) -> tuple[Any, Any, str, str, str]:
    from transformers import LlamaConfig, LlamaForCausalLM

    keys, values = [f"k{i}" for i in range(150)], [f"v{i}" for i in range(30)]
    tok = _word_tokenizer(["the", "of", "is", *keys, *values], bert=False)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      pad_token_id=0, bos_token_id=4, eos_token_id=5, tie_word_embeddings=False,
                      initializer_range=0.2)  # large enough that a frozen head can be confident
    model = LlamaForCausalLM(cfg).eval()
    rng = random.Random(0)
    table = {k: rng.choice(values) for k in keys}
    rows = [{"prompt": f"the value of {k} is", "completion": v} for k, v in table.items()]
    train = _write(tmp / "lookup.jsonl", rows * 8)
    return model, tok, "bench/tiny-llama-64x2", train, _write(tmp / "lookup_eval.jsonl", rows)


def setup_negation(tmp: Path) -> tuple[Any, Any, str, str, str]:
    from transformers import BertConfig, BertForSequenceClassification

    pos = ["good", "great", "fine", "nice", "superb", "lovely", "solid", "fresh"]
    neg = ["bad", "awful", "poor", "sad", "dull", "broken", "stale", "weak"]
    nouns = ["movie", "food", "day", "room", "book", "song", "game", "car"]
    tok = _word_tokenizer(["the", "is", "not", "but", *pos, *neg, *nouns], bert=True)

    def clause(rng: random.Random, positive: bool) -> str:
        negated = rng.random() < 0.4
        adj = rng.choice(pos if positive != negated else neg)
        return f"the {rng.choice(nouns)} is {'not ' if negated else ''}{adj}"

    def rows(n: int, seed: int) -> list[dict]:
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            positive = rng.random() < 0.5
            text = clause(rng, positive)
            if rng.random() < 0.5:  # "A but B": B decides
                text = f"{clause(rng, rng.random() < 0.5)} but {text}"
            out.append({"text": text, "label": "pos" if positive else "neg"})
        return out

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                     num_labels=2, pad_token_id=0, initializer_range=0.1,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg).eval()
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    return (model, tok, "bench/tiny-bert-64x2", _write(tmp / "neg.jsonl", rows(512, 0)),
            _write(tmp / "neg_eval.jsonl", rows(256, 1)))


TASKS = {
    "sentiment": Task("sentiment (MiniLM)", "seq-cls", "eval_accuracy", ["query", "value"],
                      ("classifier",), TrainOptions(max_steps=40, lr=5e-3, batch_size=16,
                                                    max_length=48, warmup_ratio=0.06),
                      setup_sentiment, reset_classifier),
    "lookup": Task("lookup (tiny Llama)", "causal-lm", "eval_exact_match", LLAMA_TARGETS, (),
                   TrainOptions(max_steps=100, lr=1e-2, batch_size=32, max_length=16),
                   setup_lookup, threads=1),
    "negation": Task("negation (tiny BERT)", "seq-cls", "eval_accuracy", ["query", "value"],
                     ("classifier",), TrainOptions(max_steps=80, lr=1e-2, batch_size=32,
                                                   max_length=16),
                     setup_negation, reset_classifier, threads=1),
}


def run_task(task: Task, seeds: int, tmp: Path) -> list[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(task.threads or threads)
    try:
        return _run_task(task, seeds, tmp)
    finally:
        torch.set_num_threads(threads)


def _run_task(task: Task, seeds: int, tmp: Path) -> list[str]:
    model, tok, base, train, evaluation = task.setup(tmp)
    lines = [f"\n{task.name}: {task.metric} (higher is better) and eval loss, "
             f"mean ± std over {seeds} seeds, {task.options.max_steps} steps"]
    lines.append(f"  {'method':<42}{'adapter params':>15}{task.metric:>22}{'eval_loss':>20}")
    for name, (r, u, share) in METHODS.items():
        cfg = zoo.PRoLoRAConfig(r=r, unshared_r=u, share_a=share, share_b=share, alpha=2 * r,
                                target_modules=task.targets, modules_to_save=task.modules_to_save)
        scores, losses, params = [], [], 0
        for seed in range(seeds):
            if task.reset_head is not None:
                task.reset_head(model, seed)
            opts = replace(task.options, seed=seed)
            result = train_adapter(base_model=base, task=task.task, train_path=train,
                                   eval_path=evaluation, prolora=cfg, options=opts, model=model,
                                   tokenizer=tok)
            scores.append(result.metrics[task.metric])
            losses.append(result.metrics["eval_loss"])
            params = result.adapter.num_params
        sd = statistics.stdev if seeds > 1 else (lambda _: 0.0)
        lines.append(f"  {name:<42}{params:>15,}{statistics.mean(scores):>14.3f} ± "
                     f"{sd(scores):.3f}{statistics.mean(losses):>12.3f} ± {sd(losses):.3f}")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    started = time.monotonic()
    out: list[str] = []
    with tempfile.TemporaryDirectory() as d:
        for key in args.tasks.split(","):
            print(f"running {key} ...", flush=True)
            out += run_task(TASKS[key], args.seeds, Path(d))
    print("\n".join(["", "=" * 100, "quality table (alpha = 2r for every method)", *out,
                     f"\ntotal {time.monotonic() - started:.0f}s, {torch.get_num_threads()} threads"]))


if __name__ == "__main__":
    main()
