"""Reading text that anyone could have written: bounded size, bounded nesting, bounded errors.

Adapter headers, job specs and config files come from users and from other machines. A parser
given a hostile input must fail fast with ONE short line, never run out of memory (YAML alias
"billion laughs"), recurse until Python gives up (a JSON value nested 100k deep), or echo
megabytes back into an error message. Every reader of such text goes through here.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
MAX_ERROR_CHARS = 300
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


class UntrustedInputError(ValueError):
    """A bound was exceeded or the text is malformed; callers re-raise their own typed error."""


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """One line of at most ``limit`` characters (what an error message may quote)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + f"… ({len(line)} chars)"


def json_depth(text: str) -> int:
    """The deepest bracket nesting outside strings (regex passes run in C: cheap for large
    honest inputs, bounded for hostile ones)."""
    depth = deepest = 0
    for ch in _BRACKETS.findall(_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def load_json(text: str | bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with a size cap and a nesting cap; UntrustedInputError otherwise."""
    if len(text) > max_bytes:
        raise UntrustedInputError(f"is {len(text)} bytes; at most {max_bytes}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UntrustedInputError("is not UTF-8 text") from None
    if json_depth(text) > max_depth:
        raise UntrustedInputError(f"is nested more than {max_depth} levels deep")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UntrustedInputError(f"is not valid JSON ({clip(str(exc), 120)})") from None


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
    if _depth(data) > max_depth:
        raise UntrustedInputError(f"is nested more than {max_depth} levels deep")
    return data


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth of parsed YAML (aliases are refused, so the tree is as big as the text)."""
    if level > MAX_DEPTH * 4:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
