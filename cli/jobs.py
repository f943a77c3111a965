"""Placeholder: commands are added by the issue that owns this module."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
