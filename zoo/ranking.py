"""What a leaderboard picture shows, with no drawing library: labels, the Pareto front, limits.

``zoo leaderboard --plot`` (matplotlib, in ``zoo.cli.plot``) and the web catalog's leaderboard
(server-rendered SVG, in ``zoo.server.web.chart``) draw the same picture from the same rows, so
the choices — which adapters are on the front, how a config is named, how far the axes reach —
are made here once.
"""

from __future__ import annotations

from typing import Any


def config_label(row: dict[str, Any]) -> str:
    """Legend label: LoRA when nothing is shared (u = r or m = n = 1), else PRoLoRA."""
    lora = row["unshared_r"] == row["r"] or (row["share_a"] == 1 and row["share_b"] == 1)
    return f"{'LoRA' if lora else 'PRoLoRA'} r={row['r']}"


def pareto_front(rows: list[dict[str, Any]], higher_is_better: bool) -> list[dict[str, Any]]:
    """Rows no other row beats on both axes (fewer parameters AND a better value), by params."""
    front: list[dict[str, Any]] = []
    best: float | None = None
    for row in sorted(rows, key=lambda r: (r["params"], -r["value"] if higher_is_better
                                           else r["value"])):
        value = row["value"]
        if best is None or (value > best if higher_is_better else value < best):
            front.append(row)
            best = value
    return front


def axis_limits(values: list[float]) -> tuple[float, float]:
    """The data's range with a margin; equal values get a band around them, not a zero span."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 if hi > lo else max(abs(hi) * 0.1, 0.05)
    return lo - pad, hi + pad
