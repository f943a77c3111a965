"""Where a page finds the catalog and the settings: the app the router is included in.

The app factory (``zoo.server.app.create_app``) opens one catalog for the process and keeps it,
with the resolved settings, on ``app.state``; pages read them here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from zoo.settings import Settings
from zoo.storage.db import Catalog


def catalog_of(request: Request) -> Catalog:
    """The app's open catalog."""
    return request.app.state.catalog


def settings_of(request: Request) -> Settings:
    """The app's resolved settings (the store URL job logs are read from)."""
    return request.app.state.settings


def read(request: Request, fn: Any) -> Any:
    """``fn(session)`` in one read-only transaction of the app's catalog."""
    return catalog_of(request).run(fn, readonly=True)
