"""adapter zoo: train, catalog, evaluate and ship compact PRoLoRA adapters.

The public API is imported lazily (PEP 562) so that ``import zoo.storage`` or the catalog CLI
never pays for importing torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "PRoLoRAConfig": "zoo.config",
    "attach": "zoo.surgery",
    "detach": "zoo.surgery",
    "extract": "zoo.surgery",
    "Adapter": "zoo.adapter",
    "ZooError": "zoo.errors",
    "load": "zoo.storage.shortcuts",  # zoo.load("name@alias") -> verified Adapter
    "publish": "zoo.storage.shortcuts",  # zoo.publish(adapter_or_path, name=...)
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from zoo.adapter import Adapter
    from zoo.config import PRoLoRAConfig
    from zoo.errors import ZooError
    from zoo.storage.shortcuts import load, publish
    from zoo.surgery import attach, detach, extract


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
