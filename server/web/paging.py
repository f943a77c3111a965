"""The catalog page's keyset cursors: :mod:`zoo.server.cursors`, with the page's own error for
a token it did not write (shown under the query box)."""

from __future__ import annotations

from typing import Any

from zoo.errors import QuerySyntaxError
from zoo.server import cursors

MAX_TOKEN = 2048


def encode(after: tuple[Any, str]) -> str:
    """The URL-safe token of a ``next_after`` pair."""
    return cursors.encode(after)


def decode(token: str | None) -> tuple[Any, str] | None:
    """A token back into ``(value, id)``; QuerySyntaxError for anything we did not write."""
    if not token:
        return None
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError
        return cursors.decode(token)
    except ValueError:
        raise QuerySyntaxError("bad page cursor; start again from the first page") from None
