"""Model surgery: attach a PRoLoRA config or a trained adapter to a model, extract, detach.

(``zoo.attach``, ``zoo.detach`` and ``zoo.extract`` are these functions; the module is not
named ``attach`` so that ``zoo.attach`` can only ever mean the function.)

Attach wraps each targeted host module as ``base_layer`` of a ``PRoLoRALinear`` (PEFT's
pattern), freezes everything else, and remembers what it changed so that ``detach`` restores the
model exactly: the original modules, ``requires_grad`` flags, and the weights of
``modules_to_save`` (e.g. a classification head that training replaces).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from zoo.config import PRoLoRAConfig
from zoo.errors import AdapterMismatchError, ConfigError
from zoo.prolora import PRoLoRALinear, host_features, host_kind

if TYPE_CHECKING:
    from zoo.adapter import Adapter
    from zoo.adapter_config import ModuleShape

STATE_ATTR = "_zoo_attachment"
PARTS = ("A_shared", "A_unshared", "B_shared", "B_unshared")


@dataclass
class Attachment:
    """What attach changed on a model, so that detach and extract can undo or read it."""

    config: PRoLoRAConfig
    layers: dict[str, PRoLoRALinear] = field(default_factory=dict)
    saved_originals: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    requires_grad: dict[str, bool] = field(default_factory=dict)


def attachment(model: nn.Module) -> Attachment:
    """The attachment record of a model, or a clear error if nothing is attached."""
    state = getattr(model, STATE_ATTR, None)
    if state is None:
        raise ConfigError("no PRoLoRA adapter is attached to this model (call zoo.attach first)")
    return state


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


def find_targets(model: nn.Module, config: PRoLoRAConfig) -> list[str]:
    """Paths of the Linear/Conv1D modules the config targets; errors if there are none."""
    targets = [
        name
        for name, module in model.named_modules()
        if name and config.matches(name) and host_kind(module) is not None
        and not isinstance(module, PRoLoRALinear)
    ]
    if not targets:
        candidates = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                             if host_kind(m) is not None})
        raise ConfigError(
            f"target_modules={config.target_modules!r} matched no Linear/Conv1D module; "
            f"candidates: {', '.join(candidates[:20])}"
        )
    return targets


def find_saved_modules(model: nn.Module, names: tuple[str, ...]) -> list[str]:
    """Resolve ``modules_to_save`` names (exact path or suffix) to module paths."""
    found: list[str] = []
    for wanted in names:
        hits = [n for n, _ in model.named_modules()
                if n and (n == wanted or n.endswith("." + wanted))]
        if not hits:
            raise ConfigError(f"modules_to_save entry {wanted!r} matches no module of the model")
        found.extend(h for h in hits if h not in found)
    return found


def attach(
    model: nn.Module,
    config_or_adapter: PRoLoRAConfig | Adapter,
    *,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Attach PRoLoRA in place and return the model: base frozen, adapter trainable.

    Given an ``Adapter``, its shapes are checked against the model and its weights loaded.
    """
    from zoo.adapter import Adapter

    if getattr(model, STATE_ATTR, None) is not None:
        raise ConfigError("a PRoLoRA adapter is already attached; call zoo.detach first")
    adapter = config_or_adapter if isinstance(config_or_adapter, Adapter) else None
    config = adapter.prolora_config() if adapter else config_or_adapter
    if not isinstance(config, PRoLoRAConfig):
        raise TypeError("attach expects a PRoLoRAConfig or a zoo.Adapter")
    if adapter is not None:
        adapter.check_fits(model)
        targets = list(adapter.config.modules)
        saved = list(adapter.config.modules_to_save)
        dtype = dtype or adapter.torch_dtype
    else:
        targets = find_targets(model, config)
        saved = find_saved_modules(model, config.modules_to_save)

    state = Attachment(config=config)
    state.requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    layers = {path: PRoLoRALinear(model.get_submodule(path), config, dtype=dtype)
              for path in targets}  # validates every layer before the model is touched
    for p in model.parameters():
        p.requires_grad_(False)
    for path, layer in layers.items():
        set_submodule(model, path, layer)
    state.layers = layers
    for path in saved:
        module = model.get_submodule(path)
        state.saved_originals[path] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        for p in module.parameters():
            p.requires_grad_(True)
    setattr(model, STATE_ATTR, state)
    if adapter is not None:
        adapter.load_weights_into(model)
    return model


def detach(model: nn.Module) -> nn.Module:
    """Remove the adapter and restore the base exactly (modules, weights, requires_grad)."""
    state = attachment(model)
    for path, layer in state.layers.items():
        layer.unmerge()
        set_submodule(model, path, layer.base_layer)
    for path, original in state.saved_originals.items():
        model.get_submodule(path).load_state_dict(original)
    for name, p in model.named_parameters():
        p.requires_grad_(state.requires_grad.get(name, p.requires_grad))
    delattr(model, STATE_ATTR)
    return model


def merge_and_unwrap(model: nn.Module) -> nn.Module:
    """Fold every adapted layer into its base weight and drop the wrappers: the plain model,
    with the saved modules keeping the adapter's weights (that is the merge)."""
    state = attachment(model)
    set_merged(model, True)
    for path, layer in state.layers.items():
        set_submodule(model, path, layer.base_layer)  # keeps the merged weight
    for name, p in model.named_parameters():
        p.requires_grad_(state.requires_grad.get(name, p.requires_grad))
    delattr(model, STATE_ATTR)
    return model


def set_merged(model: nn.Module, merged: bool) -> None:
    """Merge every adapted layer into its base weight (or unmerge them all)."""
    for layer in attachment(model).layers.values():
        layer.merge() if merged else layer.unmerge()


def infer_task(model: nn.Module) -> str:
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "seq-cls"
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "causal-lm"
    raise ConfigError(f"cannot infer the task of {name}; pass task='causal-lm' or 'seq-cls'")


def extract(
    model: nn.Module,
    *,
    base_model: str | None = None,
    base_model_digest: str | None = None,
    task: str | None = None,
    dtype: torch.dtype | None = None,
    extra: dict[str, Any] | None = None,
) -> Adapter:
    """The compact adapter (config + tensors) of an attached model, COPIED to CPU.

    Copies, never views: the adapter must not change when training goes on or on detach.
    """
    from zoo.adapter import Adapter, dtype_name
    from zoo.adapter_config import AdapterConfig, ModuleShape

    state = attachment(model)
    tensors: dict[str, torch.Tensor] = {}
    modules: dict[str, ModuleShape] = {}
    stored_dtype = dtype
    for path, layer in state.layers.items():
        modules[path] = ModuleShape(layer.in_features, layer.out_features, layer.kind)
        for part in PARTS:
            p = getattr(layer, part)
            if p is not None:
                stored_dtype = stored_dtype or p.dtype
                tensors[f"{path}.{part}"] = p.detach().to("cpu", stored_dtype, copy=True)
    for path in state.saved_originals:
        for key, value in model.get_submodule(path).state_dict().items():
            tensors[f"saved.{path}.{key}"] = value.detach().to("cpu", copy=True)
    if base_model is None:
        base_model = getattr(getattr(model, "config", None), "_name_or_path", "") or "unknown"
    config = AdapterConfig.build(
        state.config, base_model=base_model, base_model_digest=base_model_digest,
        task=task or infer_task(model), dtype=dtype_name(stored_dtype or torch.float32),
        modules=modules, modules_to_save=tuple(state.saved_originals), extra=extra)
    return Adapter(config, tensors)


def module_shape(model: nn.Module, path: str) -> ModuleShape | None:
    """The shape of a model's module as an adapter describes it, or None if unsupported/absent."""
    from zoo.adapter_config import ModuleShape

    try:
        module = model.get_submodule(path)
    except AttributeError:
        return None
    if isinstance(module, PRoLoRALinear):
        module = module.base_layer
    kind = host_kind(module)
    if kind is None:
        return None
    h, o = host_features(module)
    return ModuleShape(h, o, kind)


def mismatch(path: str, expected: ModuleShape, actual: ModuleShape | None) -> str:
    if actual is None:
        return f"module {path!r} does not exist (or is not Linear/Conv1D) in the base model"
    return (f"module {path!r}: adapter expects {expected.kind} {expected.in_features}→"
            f"{expected.out_features}, base has {actual.kind} "
            f"{actual.in_features}→{actual.out_features}")


def check_modules_fit(model: nn.Module, modules: Mapping[str, ModuleShape]) -> None:
    """Raise AdapterMismatchError naming the first module whose shape differs from the base."""
    for path, expected in modules.items():
        actual = module_shape(model, path)
        if actual != expected:
            raise AdapterMismatchError(mismatch(path, expected, actual))
