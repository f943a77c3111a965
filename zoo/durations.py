"""Durations as people type them (``90``, ``30s``, ``15m``, ``1h``, ``7d``, ``2w``)."""

from __future__ import annotations

import re

from zoo.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str | float | int) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d``, ``2w`` → seconds (at most a century)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if not m:
            raise ConfigError(f"duration {text!r} is not like 30s, 15m, 1h, 7d or 2w")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 <= seconds <= MAX_SECONDS:
        raise ConfigError(f"duration {text!r} must be between 0 and 100 years")
    return seconds
