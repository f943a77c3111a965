"""What the CLI prints: terminal-safe text, tables that fit the terminal, one JSON style.

Everything shown to a person passes :func:`safe`: catalog data (names, tags, metadata, error
texts) comes from other people, and a control character or an ANSI escape sequence inside it
must be shown, never obeyed by the terminal.

Tables never wrap a cell: each row is one line. When the terminal is narrower than the table,
the columns of least priority are dropped first, then the widest cells are cut with ``…``;
``--wide`` shows everything at full width. Piped output (no terminal, no ``COLUMNS``) is
never cut.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

GAP = "  "
ELLIPSIS = "…"


def safe(value: Any) -> str:
    """Text with every control or formatting character (ESC, newline, bidi overrides…) shown
    as a visible escape such as ``\\x1b`` instead of being sent to the terminal raw."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in ``…`` when something was cut."""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def terminal_width() -> int | None:
    """Columns to fit: ``COLUMNS`` when set, the terminal's width on a tty, else None."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


@dataclass(frozen=True)
class Column:
    """One table column: how to get a cell from a row, and how it may shrink.

    ``priority``: 0 is never dropped; larger numbers are dropped first when space runs out.
    ``min_width``: narrowest a truncatable cell gets; ``cut=False`` keeps cells whole (ids)."""

    header: str
    cell: Callable[[Any], Any]
    priority: int = 0
    min_width: int = 6
    cut: bool = True
    align: str = "<"


def table_lines(columns: Sequence[Column], rows: Sequence[Any], *, width: int | None,
                wide: bool = False) -> list[str]:
    """The lines of a table (header first) that fit ``width`` columns."""
    cells = [[safe(c.cell(row)) for c in columns] for row in rows]
    natural = [max([display_width(c.header)] + [display_width(r[i]) for r in cells])
               for i, c in enumerate(columns)]
    keep = list(range(len(columns)))
    widths = list(natural)
    if width is not None and not wide:
        keep, widths = _fit(columns, natural, width)
    lines = []
    for values in [[c.header for c in columns], *cells]:
        parts = [_pad(cut(values[i], widths[i]), widths[i], columns[i].align) for i in keep]
        lines.append(GAP.join(parts).rstrip())
    return lines


def _fit(columns: Sequence[Column], natural: list[int], width: int) -> tuple[list[int], list[int]]:
    """Which columns to show and how wide: drop low-priority columns, then shrink the widest
    truncatable ones, until the line fits."""
    keep = list(range(len(columns)))
    widths = list(natural)

    def floor(i: int) -> int:
        return min(natural[i], columns[i].min_width) if columns[i].cut else natural[i]

    def total(ws: Callable[[int], int]) -> int:
        return sum(ws(i) for i in keep) + len(GAP) * (len(keep) - 1)

    while len(keep) > 1 and total(floor) > width:
        worst = max(keep, key=lambda i: (columns[i].priority, i))
        if columns[worst].priority == 0:
            break
        keep.remove(worst)
    while total(lambda i: widths[i]) > width:
        shrinkable = [i for i in keep if widths[i] > floor(i)]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        excess = total(lambda i: widths[i]) - width
        widths[widest] = max(floor(widest), widths[widest] - excess)
    return keep, widths


def _pad(text: str, width: int, align: str) -> str:
    room = " " * max(0, width - display_width(text))
    return room + text if align == ">" else text + room


def print_table(columns: Sequence[Column], rows: Sequence[Any], *, wide: bool = False,
                empty: str | None = None) -> None:
    """Print a table fitted to the terminal; ``empty`` goes to stderr when there are no rows."""
    if not rows and empty:
        click.echo(empty, err=True)
        return
    for line in table_lines(columns, rows, width=terminal_width(), wide=wide):
        click.echo(line)


def echo_json(value: Any) -> None:
    """One JSON style for every ``--json``: indented, UTF-8 kept, keys as the library gives."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def short_number(n: int) -> str:
    """``41472`` → ``41.5k``: the one compact number format of every table."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)
