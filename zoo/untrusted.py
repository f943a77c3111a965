"""Reading text that anyone could have written: bounded size, bounded nesting, bounded errors.

Adapter headers, job specs and config files come from users and from other machines. A parser
given a hostile input must fail fast with ONE short line, never run out of memory (YAML alias
"billion laughs"), recurse until Python gives up (a JSON value nested 100k deep), or echo
megabytes back into an error message. Every reader of such text goes through here.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
MAX_ERROR_CHARS = 300
_CONTAINERS = (dict, list)  # what json.loads and yaml.safe_load build for nested values


class UntrustedInputError(ValueError):
    """A bound was exceeded or the text is malformed; callers re-raise their own typed error."""


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """One line of at most ``limit`` characters (what an error message may quote)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + f"… ({len(line)} chars)"


def load_json(text: str | bytes, *, max_bytes: int, max_depth: int | None = MAX_DEPTH) -> Any:
    """``json.loads`` with a size cap and a nesting cap (``None``: the caller validates the
    shape strictly itself); UntrustedInputError otherwise, never a RecursionError."""
    if len(text) > max_bytes:
        raise UntrustedInputError(f"is {len(text)} bytes; at most {max_bytes}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UntrustedInputError("is not UTF-8 text") from None
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the C parser will go: far past any cap
        raise UntrustedInputError(f"is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as exc:
        raise UntrustedInputError(f"is not valid JSON ({clip(str(exc), 120)})") from None
    if max_depth is not None and too_deep(value, max_depth):
        raise UntrustedInputError(f"is nested more than {max_depth} levels deep")
    return value


def load_yaml(text: str, *, loader: Any, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """YAML with a size cap, NO aliases (``*ref``: the expansion bombs need them; a spec or a
    config file never does) and a nesting cap. ``loader`` is a SafeLoader (sub)class."""
    import yaml

    if len(text) > max_bytes:
        raise UntrustedInputError(f"is {len(text)} bytes; at most {max_bytes}")
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise UntrustedInputError(
                    f"line {mark.line + 1}, column {mark.column + 1}: YAML aliases (*name) are "
                    "not allowed; write the value out")
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UntrustedInputError(f"{where}malformed YAML: {clip(problem, 160)}") from None
    if too_deep(data, max_depth):
        raise UntrustedInputError(f"is nested more than {max_depth} levels deep")
    return data


def too_deep(value: Any, max_depth: int) -> bool:
    """Whether parsed JSON/YAML nests containers deeper than ``max_depth`` (iterative: only the
    containers are visited, and the walk stops at the first one too deep)."""
    if not isinstance(value, (dict, list)):
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) in _CONTAINERS:
                if depth + 1 > max_depth:
                    return True
                stack.append((child, depth + 1))
    return False
