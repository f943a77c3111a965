"""The leaderboard picture as server-rendered SVG: metric against trainable parameters.

No drawing library in the request path: a few hundred points are a few hundred ``<circle>``
elements. The picture is ``zoo leaderboard --plot``'s (the same ``zoo.ranking`` choices): one
point per ranked adapter coloured by config (LoRA / PRoLoRA per rank), the Pareto front as a
step line, the best few named, parameters on a log axis. Each point links to its adapter page
and carries a tooltip.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup, escape

from zoo.ranking import axis_limits, config_label, pareto_front

WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 36, 52
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
LABELLED = 5


def _log_limits(params: list[int]) -> tuple[float, float]:
    lo, hi = math.log10(max(min(params), 1)), math.log10(max(max(params), 1))
    pad = (hi - lo) * 0.06 if hi > lo else 0.3
    return lo - pad, hi + pad


def _x_ticks(lo: float, hi: float) -> list[int]:
    """1, 2, 5 × powers of ten inside the log range (just powers of ten when that is many)."""
    ticks = []
    for exp in range(math.floor(lo), math.ceil(hi) + 1):
        for mult in ((1,) if hi - lo > 3 else (1, 2, 5)):
            value = mult * 10 ** exp
            if lo <= math.log10(value) <= hi:
                ticks.append(value)
    return ticks


def _y_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for mult in (1, 2, 5, 10):
        if raw <= step * mult:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _short(value: int) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return str(value)


def render_svg(rows: list[dict[str, Any]], *, metric: str, higher_is_better: bool,
               dataset: str) -> Markup:
    """The picture of ranked leaderboard ``rows`` (best first) as inline SVG markup."""
    if not rows:
        return Markup("")
    xlo, xhi = _log_limits([r["params"] for r in rows])
    ylo, yhi = axis_limits([r["value"] for r in rows])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(params: int) -> float:
        return LEFT + (math.log10(max(params, 1)) - xlo) / (xhi - xlo) * plot_w

    def y(value: float) -> float:
        return TOP + (yhi - value) / (yhi - ylo) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">',
             f"<title>{escape(metric)} vs trainable parameters, {len(rows)} adapters on "
             f"{escape(dataset)}</title>"]
    parts += _axes(x, y, xlo, xhi, ylo, yhi, metric, higher_is_better)
    parts += _front(rows, x, y, higher_is_better)
    colours = _colours(rows)
    for row in reversed(rows):  # the best drawn last, on top
        tip = (f"#{row['rank']} {row['name']} ({row['id']}): {metric}={row['value']:.4g}, "
               f"{row['params']:,} params, {config_label(row)}")
        parts.append(f'<a href="/adapters/{escape(row["id"])}"><circle class="point" '
                     f'cx="{x(row["params"]):.1f}" cy="{y(row["value"]):.1f}" r="4.5" '
                     f'fill="{colours[config_label(row)]}" fill-opacity="0.8">'
                     f"<title>{escape(tip)}</title></circle></a>")
    for row in rows[:LABELLED]:  # named to the right of the point, or to its left near the edge
        px, right_edge = x(row["params"]), x(row["params"]) > LEFT + 0.7 * plot_w
        parts.append(f'<text class="label" x="{px - 7 if right_edge else px + 7:.1f}" '
                     f'y="{y(row["value"]) - 6:.1f}" font-size="10" '
                     f'text-anchor="{"end" if right_edge else "start"}">'
                     f"#{row['rank']} {escape(row['name'])}</text>")
    parts += _legend(rows, colours)
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _colours(rows: list[dict[str, Any]]) -> dict[str, str]:
    labels = sorted({config_label(r) for r in rows})
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _axes(x: Any, y: Any, xlo: float, xhi: float, ylo: float, yhi: float, metric: str,
          higher_is_better: bool) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" '
           'fill="none" stroke="#999"/>']
    for tick in _x_ticks(xlo, xhi):
        px = x(tick)
        out.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{bottom}" stroke="#eee"/>')
        out.append(f'<text x="{px:.1f}" y="{bottom + 16}" font-size="10" '
                   f'text-anchor="middle">{_short(tick)}</text>')
    for tick in _y_ticks(ylo, yhi):
        py = y(tick)
        out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py + 3:.1f}" font-size="10" '
                   f'text-anchor="end">{tick:g}</text>')
    better = "higher is better" if higher_is_better else "lower is better"
    out.append(f'<text x="{(LEFT + right) / 2:.0f}" y="{HEIGHT - 12}" font-size="11" '
               'text-anchor="middle">trainable parameters (log scale)</text>')
    out.append(f'<text x="16" y="{(TOP + bottom) / 2:.0f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 16 {(TOP + bottom) / 2:.0f})">{escape(metric)} '
               f"({better})</text>")
    return out


def _front(rows: list[dict[str, Any]], x: Any, y: Any, higher_is_better: bool) -> list[str]:
    """The Pareto front as a step line (each step holds its value until the next point)."""
    front = pareto_front(rows, higher_is_better)
    points: list[str] = []
    for i, row in enumerate(front):
        points.append(f"{x(row['params']):.1f},{y(row['value']):.1f}")
        if i + 1 < len(front):
            points.append(f"{x(front[i + 1]['params']):.1f},{y(row['value']):.1f}")
    return [f'<polyline class="front" points="{" ".join(points)}" fill="none" stroke="#000" '
            'stroke-opacity="0.6" stroke-width="1.2"/>']


def _legend(rows: list[dict[str, Any]], colours: dict[str, str]) -> list[str]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[config_label(row)] = counts.get(config_label(row), 0) + 1
    left, out = WIDTH - RIGHT + 22, []
    for i, (label, colour) in enumerate(colours.items()):
        top = TOP + 8 + 16 * i
        out.append(f'<circle cx="{left}" cy="{top}" r="4.5" fill="{colour}"/>')
        out.append(f'<text x="{left + 10}" y="{top + 4}" font-size="10">{escape(label)} '
                   f"({counts[label]})</text>")
    top = TOP + 8 + 16 * len(colours)
    out.append(f'<line x1="{left - 5}" y1="{top}" x2="{left + 5}" y2="{top}" stroke="#000"/>')
    out.append(f'<text x="{left + 10}" y="{top + 4}" font-size="10">Pareto front</text>')
    return out
