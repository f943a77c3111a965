"""Keyset cursors for the catalog page: (sort key value, adapter id) as an opaque URL token.

``zoo.storage.catalog.list_adapters`` pages by keyset (``after=(value, id)``): the next page
starts strictly after the last row shown, so page 2,000 costs what page 1 does (no OFFSET).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from zoo.errors import QuerySyntaxError

_SCALARS = (str, int, float, bool, type(None))


def encode(after: tuple[Any, str]) -> str:
    """The URL-safe token of a ``next_after`` pair."""
    raw = json.dumps([after[0], after[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str | None) -> tuple[Any, str] | None:
    """A token back into ``(value, id)``; QuerySyntaxError for anything we did not write."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value, last_id = json.loads(raw)
    except (ValueError, TypeError):
        raise QuerySyntaxError("bad page cursor; start again from the first page") from None
    if not isinstance(last_id, str) or not isinstance(value, _SCALARS) or len(token) > 2048:
        raise QuerySyntaxError("bad page cursor; start again from the first page")
    return value, last_id
