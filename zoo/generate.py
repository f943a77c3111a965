"""Text generation for a batch of requests that each name their own adapter (or the bare base).

Why: a server for thousands of adapters cannot run one model per adapter, and splitting every
batch per adapter (PEFT's ``generate(adapter_names=...)``) pays the base model once per
adapter. Here every decoding step is ONE forward of the base model for all rows, and each row
adds its own low-rank update through :class:`zoo.multi_adapter.MultiAdapterModel`::

    logits[n, t] = f(x[n, :t]; W0 + B_k(n) A_k(n))        k(n) = the adapter of request n

Prompts of different lengths are LEFT padded (so every row's next token sits in the last
column), masked, and given position ids that count only real tokens, so a padded row computes
what it would compute alone. The prompt is run once, then one token per step with the key/value
cache (the multi-adapter layer is position-agnostic: it maps (N, T, h) to (N, T, o) for any T).

Each request samples with its own settings: greedy (``temperature == 0``) or temperature +
nucleus (``top_p``) sampling from a per-request ``torch.Generator`` (``seed``), so a row's
tokens do not depend on who shares its batch. A row ends at EOS, at ``max_tokens`` or when its
decoded text contains one of its ``stop`` strings (cut before it, as OpenAI does).

Domain code only: no Ray, no HTTP (``zoo.workers.serve`` wraps it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from zoo.errors import ConfigError

if TYPE_CHECKING:
    from zoo.adapter import Adapter

MAX_TOKENS_LIMIT = 4096
MAX_STOPS = 4


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded (the OpenAI completion fields of the same names)."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or not (
                1 <= self.max_tokens <= MAX_TOKENS_LIMIT):
            raise ConfigError(f"max_tokens={self.max_tokens!r} is invalid: must be an integer "
                              f"1..{MAX_TOKENS_LIMIT}", field="max_tokens")
        if not isinstance(self.temperature, int | float) or not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature={self.temperature!r} is invalid: must be 0..2",
                              field="temperature")
        if not isinstance(self.top_p, int | float) or not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p={self.top_p!r} is invalid: must be in (0, 1]", field="top_p")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed={self.seed!r} is invalid: must be an integer", field="seed")
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
            raise ConfigError(f"stop={self.stop!r} is invalid: at most {MAX_STOPS} non-empty "
                              "strings", field="stop")
        object.__setattr__(self, "stop", stops)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenRequest:
    """One prompt (token ids, BOS included if the model wants one) under one adapter."""

    prompt_ids: Sequence[int]
    adapter: Adapter | None = None  # None: the base model alone
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Completion:
    """What one request produced; ``logits`` (one (V,) tensor per step) only when asked."""

    token_ids: list[int]
    text: str | None
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    logits: list[torch.Tensor] | None = None


def generate(model: Any, requests: Sequence[GenRequest], *, tokenizer: Any = None,
             mode: str = "bmm", return_logits: bool = False,
             on_token: Callable[[int, int], None] | None = None) -> list[Completion]:
    """Decode every request in ONE batch (one forward per step); results in request order.

    ``tokenizer`` decodes texts and is needed for ``stop`` strings; EOS/PAD come from the
    model's generation config (or the tokenizer). ``on_token(i, token_id)`` is called as
    request ``i`` gets each token (EOS excluded), for streaming.
    """
    if not requests:
        return []
    if any(not r.prompt_ids for r in requests):
        raise ConfigError("a prompt must hold at least one token")
    if tokenizer is None and any(r.params.stop for r in requests):
        raise ConfigError("stop strings need a tokenizer to decode the completion")
    order = sorted(range(len(requests)), key=lambda i: _slot_key(requests[i]))
    batch = [requests[i] for i in order]  # rows of one adapter adjacent: contiguous segments
    sink = None if on_token is None else (lambda row, token: on_token(order[row], token))
    adapters, slots = _bank_plan(batch)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if adapters:
                from zoo.multi_adapter import MultiAdapterModel

                with MultiAdapterModel(model, adapters, mode=mode) as multi, multi.rows(slots):
                    done = _decode(model, batch, tokenizer, return_logits, sink)
            else:
                done = _decode(model, batch, tokenizer, return_logits, sink)
    finally:
        model.train(was_training)
    out: list[Completion | None] = [None] * len(requests)
    for row, i in enumerate(order):
        out[i] = done[row]
    return [c for c in out if c is not None]


def _slot_key(request: GenRequest) -> int:
    """Rows of the same adapter object share a slot (identity: no hashing of the weights)."""
    return -1 if request.adapter is None else id(request.adapter)


def _bank_plan(batch: Sequence[GenRequest]) -> tuple[list[Adapter], list[int]]:
    """Distinct adapters of the batch (plus a zero adapter for base rows) and each row's slot."""
    adapters: list[Adapter] = []
    index: dict[int, int] = {}
    for r in batch:
        if r.adapter is not None and id(r.adapter) not in index:
            index[id(r.adapter)] = len(adapters)
            adapters.append(r.adapter)
    if not adapters:
        return [], []
    if any(r.adapter is None for r in batch):
        index[-1] = len(adapters)
        adapters.append(zero_like(adapters[0]))  # adds exact zeros: the base's own output
    return adapters, [index[_slot_key(r)] for r in batch]


def zero_like(adapter: Adapter) -> Adapter:
    """An adapter of the same shapes whose update is exactly zero (a base row in a bank)."""
    from zoo.adapter import Adapter

    return Adapter(adapter.config, {k: torch.zeros_like(v) for k, v in adapter.tensors.items()})


def _special_ids(model: Any, tokenizer: Any) -> tuple[set[int], int]:
    cfg = getattr(model, "generation_config", None) or model.config
    eos = getattr(cfg, "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = tokenizer.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list | tuple) else ({eos} if eos is not None else set())
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    if pad is None:
        pad = next(iter(eos_ids), 0)
    return eos_ids, int(pad)


def _left_pad(batch: Sequence[GenRequest], pad: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r.prompt_ids) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (N, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (N, T)
    for n, r in enumerate(batch):
        ids[n, width - len(r.prompt_ids):] = torch.tensor(list(r.prompt_ids), dtype=torch.long)
        mask[n, width - len(r.prompt_ids):] = 1
    return ids.to(device), mask.to(device)


class _Row:
    """Decoding state of one row: its sampler, its tokens, whether and why it ended."""

    def __init__(self, request: GenRequest, device: torch.device, keep_logits: bool) -> None:
        self.params = request.params
        self.tokens: list[int] = []
        self.logits: list[torch.Tensor] | None = [] if keep_logits else None
        self.finish: str | None = None
        self.text: str | None = None
        seed = request.params.seed if request.params.seed is not None else random.getrandbits(63)
        self.generator = None if request.params.greedy else torch.Generator(device).manual_seed(seed)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this row's (V,) logits."""
        if self.logits is not None:
            self.logits.append(logits.detach().float().cpu())
        if self.params.greedy:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / self.params.temperature, dim=-1)  # (V,)
        if self.params.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            beyond = sorted_p.cumsum(0) - sorted_p > self.params.top_p  # the nucleus ends here
            sorted_p = sorted_p.masked_fill(beyond, 0.0)
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def add(self, token: int, eos: set[int], tokenizer: Any) -> None:
        if token in eos:
            self.finish = "stop"
            return
        self.tokens.append(token)
        if self.params.stop:
            text = tokenizer.decode(self.tokens, skip_special_tokens=True)
            cuts = [text.index(s) for s in self.params.stop if s in text]
            if cuts:
                self.text, self.finish = text[:min(cuts)], "stop"
                return
        if len(self.tokens) >= self.params.max_tokens:
            self.finish = "length"


def _cache_argument(model: Any) -> str:
    """``cache`` (transformers 5) or ``past_key_values`` (older): the KV cache keyword."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _decode(model: Any, batch: Sequence[GenRequest], tokenizer: Any, keep_logits: bool,
            sink: Callable[[int, int], None] | None) -> list[Completion]:
    device = next(model.parameters()).device
    eos, pad = _special_ids(model, tokenizer)
    ids, mask = _left_pad(batch, pad, device)  # (N, T), (N, T)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (N, T): real tokens count from 0
    rows = [_Row(r, device, keep_logits) for r in batch]
    cache_arg = _cache_argument(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    while True:
        last = out.logits[:, -1, :]  # (N, V)
        step = []
        for n, row in enumerate(rows):
            if row.finish is None:
                count = len(row.tokens)
                row.add(row.choose(last[n]), eos, tokenizer)
                if sink is not None and len(row.tokens) > count:
                    sink(n, row.tokens[-1])
            step.append(row.tokens[-1] if row.finish is None else pad)
        if all(row.finish is not None for row in rows):
            break
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)  # (N, T+1)
        positions = positions[:, -1:] + 1  # (N, 1)
        out = model(input_ids=torch.tensor(step, device=device).unsqueeze(1), attention_mask=mask,
                    position_ids=positions, use_cache=True, **{cache_arg: _cache_of(out)})
    done = []
    for r, row in zip(batch, rows, strict=True):
        text = row.text
        if text is None and tokenizer is not None:
            text = tokenizer.decode(row.tokens, skip_special_tokens=True)
        done.append(Completion(row.tokens, text, row.finish or "length", len(r.prompt_ids),
                               row.logits))
    return done


__all__ = ["Completion", "GenRequest", "SamplingParams", "generate", "zero_like"]
