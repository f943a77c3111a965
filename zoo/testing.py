"""Tiny models built from configs, offline: for tests, benchmarks and examples.

Nothing here is downloaded. The key-value Llama learns prompts ``k3 =`` → `` v3`` within a few
steps, which is all a test of the job machinery needs from a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KV_WORDS = ("[PAD]", "[UNK]", "<s>", "</s>", "=", *[f"k{i}" for i in range(10)],
            *[f"v{i}" for i in range(10)])


def save_tiny_kv_llama(path: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny Llama-style causal LM (hidden 32, 2 layers) and its word-level tokenizer
    to ``path``, as a user's model directory would look; returns the path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(KV_WORDS)},
                                     unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]",
                                  bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(KV_WORDS), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, pad_token_id=0, bos_token_id=2,
                      eos_token_id=3, tie_word_embeddings=False)
    path = Path(path)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def random_adapter(model: Any, hyper: Any, *, base_model: str, seed: int, scale: float = 0.2,
                   task: str = "causal-lm", base_model_digest: str | None = None) -> Any:
    """An adapter with random weights of exactly the shapes ``zoo.extract`` would give for
    ``hyper`` (a PRoLoRAConfig) on ``model``, without attaching anything: fast, for building
    hundreds of varied adapters in tests and benchmarks."""
    import torch

    from zoo.adapter import Adapter
    from zoo.adapter_config import AdapterConfig
    from zoo.surgery import find_targets, module_shape

    modules = {path: module_shape(model, path) for path in find_targets(model, hyper)}
    config = AdapterConfig.build(hyper, base_model=base_model,
                                 base_model_digest=base_model_digest,
                                 task=task, dtype="float32", modules=modules,
                                 modules_to_save=())
    g = torch.Generator().manual_seed(seed)
    return Adapter(config, {k: torch.randn(shape, generator=g) * scale
                            for k, shape in config.expected_shapes().items()})


__all__ = ["KV_WORDS", "random_adapter", "save_tiny_kv_llama"]
