"""Single-process PRoLoRA training: the function Ray workers call, usable on its own.

Recipe (docs/prolora.md defaults): AdamW, linear warmup then linear decay to 0, gradient clipping,
gradient accumulation, bf16 autocast on CUDA (fp32 adapter weights), fp32 on CPU.

Determinism: everything random is seeded from ``options.seed`` — the head and adapter init
(torch's global RNG, seeded right before loading/attaching), the data order (one
``torch.Generator`` per epoch, derived from the seed) and dropout (the global RNG, saved in
checkpoints). On CPU, the same inputs give the same adapter bytes, and a run resumed from a
checkpoint gives the same adapter as an uninterrupted one.

Checkpoints are ``torch.save`` blobs holding only tensors, numbers and strings (loaded back with
``weights_only=True``, so never an arbitrary unpickle): the trainable parameters by name, the
AdamW state, the RNG state, the step, the loss history and a signature of the job (data
fingerprint, config, options) that a resume must match.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from zoo.config import PRoLoRAConfig
from zoo.datasets import (
    ClsData,
    Encoded,
    check_task,
    collate,
    encode_causal_lm,
    encode_seq_cls,
    load_causal_lm,
    load_seq_cls,
    pad_id,
)
from zoo.errors import ConfigError, TrainingStopped
from zoo.train_options import TrainOptions

CHECKPOINT_FORMAT = "zoo.train-checkpoint/1"


@dataclass
class TrainResult:
    adapter: Any  # zoo.Adapter
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: int = 0


# ---------------------------------------------------------------------------------------------
# pieces


def _seed_all(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def epoch_order(num_examples: int, seed: int, epoch: int) -> Any:
    """The example order of one epoch: a permutation from a generator seeded by (seed, epoch)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=gen)


class Batches:
    """Micro-batch ``k`` of the whole run, computable from ``k`` alone (so resume is exact)."""

    def __init__(self, encoded: Encoded, batch_size: int, seed: int, pad_token_id: int) -> None:
        self.encoded, self.batch_size, self.seed, self.pad = encoded, batch_size, seed, pad_token_id
        self.per_epoch = math.ceil(len(encoded) / batch_size)
        self._order: tuple[int, Any] | None = None

    def __call__(self, k: int) -> dict[str, Any]:
        epoch, pos = divmod(k, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.encoded), self.seed, epoch))
        idx = self._order[1][pos * self.batch_size : (pos + 1) * self.batch_size].tolist()
        return collate(self.encoded, idx, self.pad)

    def epoch_of(self, k: int) -> float:
        return k / self.per_epoch


def compute_loss(model: Any, task: str, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy: over examples (seq-cls) or completion tokens (causal-lm), in fp32."""
    import torch.nn.functional as F

    from zoo.evaluate import causal_lm_loss

    labels = batch.pop("labels")
    out = model(**batch)
    if task == "seq-cls":
        return F.cross_entropy(out.logits.float(), labels)  # (B, C) vs (B,)
    loss_sum, count, _ = causal_lm_loss(out.logits, labels)
    return loss_sum / count.clamp(min=1)


def _signature(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_checkpoint(*, named: dict[str, Any], optimizer: Any, step: int, losses: list[float],
                    signature: str) -> bytes:
    import torch

    blob = {
        "format": CHECKPOINT_FORMAT, "signature": signature, "step": step, "losses": losses,
        "params": {n: p.detach().to("cpu").clone() for n, p in named.items()},
        "optimizer": optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def load_checkpoint(data: bytes, *, named: dict[str, Any], optimizer: Any,
                    signature: str) -> tuple[int, list[float]]:
    """Restore params, optimizer and RNG from ``data``; returns (step, losses)."""
    import torch

    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the same user error
        raise ConfigError(f"resume checkpoint is not readable: {type(exc).__name__}: {exc}") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError("resume checkpoint is not a zoo training checkpoint")
    if blob["signature"] != signature:
        raise ConfigError("resume checkpoint belongs to a different job (data, config or options "
                          "differ); refusing to resume from it")
    if set(blob["params"]) != set(named):
        raise ConfigError("resume checkpoint holds different trainable parameters than the model")
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(blob["params"][name])
    optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng_cpu"])
    if blob["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["rng_cuda"])
    return int(blob["step"]), [float(x) for x in blob["losses"]]


def _digest_for(base_model: str, model: Any) -> str:
    from zoo.base_models import local_model_dir
    from zoo.digest import base_model_digest

    local = local_model_dir(base_model)
    return base_model_digest(local if local is not None else model)


def _prepare_data(task: str, train_path: str, eval_path: str | None) -> tuple[Any, list[str]]:
    """Parse the training file early: bad data fails before any model is loaded."""
    if task == "seq-cls":
        parsed = load_seq_cls(train_path)
        if eval_path is not None:
            load_seq_cls(eval_path, label_names=parsed.label_names)  # labels must be known
        return parsed, parsed.label_names
    parsed = load_causal_lm(train_path)
    if eval_path is not None:
        load_causal_lm(eval_path)
    return parsed, []


def _encode(task: str, parsed: Any, tokenizer: Any, max_length: int) -> Encoded:
    if isinstance(parsed, ClsData):
        return encode_seq_cls(parsed, tokenizer, max_length)
    return encode_causal_lm(parsed, tokenizer, max_length)


def _obtain_base(base_model: str, task: str, label_names: list[str], device: str | None,
                 model: Any, tokenizer: Any) -> tuple[Any, Any, Any]:
    """(model, tokenizer, DeviceChoice): load the base, or check and adopt a given one."""
    import torch

    from zoo.base_models import load_base, load_tokenizer
    from zoo.device import choose_device, select_device

    if model is None:
        choice = select_device(device)
        model, tokenizer = load_base(base_model, task, label_names=label_names or None,
                                     dtype=choice.base_dtype, device=choice.device,
                                     tokenizer=tokenizer)
        return model, tokenizer, choice
    dev = next(model.parameters()).device
    bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    choice = choose_device(prefer=dev.type, cuda_available=dev.type == "cuda",
                           bf16_supported=bf16, assigned_gpu_ids=None)
    if task == "seq-cls" and getattr(model.config, "num_labels", None) != len(label_names):
        raise ConfigError(f"the given model has {model.config.num_labels} labels but the data "
                          f"has {len(label_names)} ({', '.join(label_names)})")
    return model, tokenizer if tokenizer is not None else load_tokenizer(base_model), choice


def _accumulate(model: Any, task: str, batches: Batches, step: int, grad_accum: int,
                choice: Any, run_device: str) -> float:
    """Forward/backward the micro-batches of one optimizer step; returns the step's loss."""
    from zoo.evaluate import autocast_context, model_inputs

    step_loss = 0.0
    for micro in range(grad_accum):
        batch = {k: v.to(run_device) for k, v in batches(step * grad_accum + micro).items()}
        with autocast_context(choice.device, choice.autocast_dtype):
            loss = compute_loss(model, task, model_inputs(model, batch)) / grad_accum
        loss.backward()
        step_loss += loss.item()
    return step_loss


# ---------------------------------------------------------------------------------------------
# the entry point


def train_adapter(
    *, base_model: str, task: str, train_path: str, eval_path: str | None,
    prolora: PRoLoRAConfig, options: TrainOptions, device: str | None = None,
    model: Any = None, tokenizer: Any = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: Callable[[bytes, int], None] | None = None, resume_from: bytes | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a PRoLoRA adapter on ``train_path`` and return it with its metrics.

    ``model``/``tokenizer``: an already loaded base (a worker reusing it across jobs); the
    adapter is attached to it and detached at the end, leaving it as it was. ``checkpoint`` is
    called with (blob, step) every ``options.checkpoint_every`` steps; ``resume_from`` takes
    such a blob. ``should_stop`` is polled before each step; True raises TrainingStopped.
    """
    import zoo

    check_task(task)
    parsed, label_names = _prepare_data(task, train_path, eval_path)
    started = time.monotonic()
    _seed_all(options.seed)
    model, tokenizer, choice = _obtain_base(base_model, task, label_names, device, model,
                                            tokenizer)
    digest = _digest_for(base_model, model)
    run = _Run(model, tokenizer, task, options, choice, label_names, eval_path, started)
    encoded = _encode(task, parsed, tokenizer, options.max_length)
    signature = _signature(task=task, base=digest, data=parsed.fingerprint,
                           prolora=asdict(prolora), options={
                               k: v for k, v in asdict(options).items()
                               if k not in ("checkpoint_every", "eval_batch_size", "eval_before")})

    _seed_all(options.seed)  # adapter init independent of how the base was obtained
    zoo.attach(model, prolora)
    try:
        total = options.total_steps(len(encoded))
        losses, baseline = run.optimise(encoded, total, signature, resume_from=resume_from,
                                        progress=progress, checkpoint=checkpoint,
                                        should_stop=should_stop)
        metrics = {**_metrics(losses, total, options, len(encoded), started), **baseline,
                   **run.evaluate("eval_")}
        extra: dict[str, Any] = {"seed": options.seed, "dataset_fingerprint": parsed.fingerprint,
                                 "train": _options_record(options, total)}
        if label_names:
            extra["labels"] = list(label_names)
        adapter = zoo.extract(model, base_model=base_model, base_model_digest=digest, task=task,
                              extra=extra)
        metrics["adapter_params"] = adapter.num_params
        metrics["saved_params"] = adapter.num_saved_params
        metrics["train_seconds"] = time.monotonic() - started
        return TrainResult(adapter=adapter, metrics=metrics, steps=total)
    finally:
        zoo.detach(model)
        model.eval()


@dataclass
class _Run:
    """One training run's fixed parts: the model (adapter attached), data handling, device."""

    model: Any
    tokenizer: Any
    task: str
    options: TrainOptions
    choice: Any  # zoo.device.DeviceChoice
    label_names: list[str]
    eval_path: str | None
    started: float

    def evaluate(self, prefix: str) -> dict[str, Any]:
        """The eval set's metrics under ``prefix`` (nothing without an eval set)."""
        from zoo.evaluate import evaluate_adapter

        if self.eval_path is None:
            return {}
        self.model.eval()
        ev = evaluate_adapter(self.model, self.tokenizer, self.task, self.eval_path,
                              self.options.eval_batch_size, max_length=self.options.max_length,
                              label_names=self.label_names or None,
                              autocast_dtype=self.choice.autocast_dtype)
        return {f"{prefix}{k}": v for k, v in ev.items() if k != "fingerprint"}

    def optimise(self, encoded: Encoded, total: int, signature: str, *,
                 resume_from: bytes | None, progress: Callable[[dict[str, Any]], None] | None,
                 checkpoint: Callable[[bytes, int], None] | None,
                 should_stop: Callable[[], bool] | None) -> tuple[list[float], dict[str, Any]]:
        """AdamW steps ``start..total`` (resumed from a checkpoint blob when given); returns
        the loss of every step and the "before" metrics (``eval_before``)."""
        import torch

        options, model = self.options, self.model
        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        optimizer = torch.optim.AdamW(list(named.values()), lr=options.lr,
                                      weight_decay=options.weight_decay)
        start, losses = 0, []
        if resume_from is not None:
            start, losses = load_checkpoint(resume_from, named=named, optimizer=optimizer,
                                            signature=signature)
        # B = 0 at init, so the "before" is the frozen base (with the fresh head of seq-cls)
        baseline = self.evaluate("baseline_") if options.eval_before and start == 0 else {}
        batches = Batches(encoded, options.batch_size, options.seed, pad_id(self.tokenizer))
        run_device = str(next(model.parameters()).device)
        model.train()
        for step in range(start, total):
            if should_stop is not None and should_stop():
                raise TrainingStopped(f"training stopped on request at step {step} of {total}")
            lr = options.lr_at(step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            step_loss = _accumulate(model, self.task, batches, step, options.grad_accum,
                                    self.choice, run_device)
            if not math.isfinite(step_loss):
                raise ConfigError(f"training diverged: loss is {step_loss} at step {step + 1}; "
                                  "lower train.lr")
            torch.nn.utils.clip_grad_norm_(list(named.values()), options.max_grad_norm)
            optimizer.step()
            losses.append(step_loss)
            if progress is not None:
                progress({"step": step + 1, "max_steps": total, "loss": step_loss, "lr": lr,
                          "epoch": batches.epoch_of((step + 1) * options.grad_accum),
                          "elapsed_s": time.monotonic() - self.started})
            every = options.checkpoint_every
            if checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < total:
                checkpoint(save_checkpoint(named=named, optimizer=optimizer, step=step + 1,
                                           losses=losses, signature=signature), step + 1)
        model.eval()
        return losses, baseline


def _metrics(losses: list[float], total: int, options: TrainOptions, n: int,
             started: float) -> dict[str, Any]:
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "train_loss": sum(tail) / len(tail),  # mean over the last 10% of steps
        "train_loss_first": losses[0],
        "train_loss_mean": sum(losses) / len(losses),
        "steps": total, "examples": n,
        "epochs": total * options.grad_accum * options.batch_size / n,
    }


def _options_record(options: TrainOptions, total: int) -> dict[str, Any]:
    keep = ("lr", "batch_size", "grad_accum", "max_length", "weight_decay", "max_grad_norm")
    return {"steps": total, **{k: getattr(options, k) for k in keep}}

