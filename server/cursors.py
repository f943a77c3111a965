"""Keyset positions as opaque, URL-safe text: ``(sort key value, adapter id)`` and back.

``zoo.storage.catalog.list_adapters`` pages by keyset (``after=(value, id)``): the next page
starts strictly after the last row shown, so page 2,000 costs what page 1 does (no OFFSET). The
API's ``after``/``next`` and the web catalog's page links carry the same position in the same
form; each caller turns a token it did not write into its own error.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any


def encode(after: tuple[Any, str]) -> str:
    """The token of a ``next_after`` pair (a datetime keeps its type and zone)."""
    value, last_id = after
    tagged = {"t": "dt", "v": value.isoformat()} if isinstance(value, datetime) else {"v": value}
    raw = json.dumps({**tagged, "id": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[Any, str]:
    """A token back into ``(value, id)``; ValueError for anything :func:`encode` did not write."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value = datetime.fromisoformat(data["v"]) if data.get("t") == "dt" else data["v"]
        last_id = data["id"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError("not a page cursor") from None
    if not isinstance(last_id, str) or isinstance(value, (dict, list)):
        raise ValueError("not a page cursor")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("not a page cursor")
    return value, last_id
