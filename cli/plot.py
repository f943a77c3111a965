"""``zoo leaderboard --plot``: the metric against trainable parameters, worth looking at.

One point per ranked adapter (exactly the rows the table shows), coloured by method (LoRA when
nothing is shared, else PRoLoRA, per rank); the best few labelled with their names; the
params/metric Pareto front drawn as a step line (no adapter on it is beaten by one that is both
smaller and better). Axis limits come from the data with a margin, so a board whose values are
all equal still shows them in the middle. The format is the file extension's. Those
choices (front, labels, limits) are ``zoo.ranking``'s, shared with the web leaderboard.
"""

from __future__ import annotations

import io
from typing import Any

from zoo.ranking import axis_limits as _limits
from zoo.ranking import config_label, pareto_front

FORMATS = ("png", "svg", "pdf")
LABELLED = 5


def plot_format(path: str) -> str:
    """The picture format a path asks for; ConfigError for any other extension."""
    from zoo.errors import ConfigError

    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in FORMATS:
        raise ConfigError(f"--plot {path}: the file name must end in "
                          f"{', '.join('.' + f for f in FORMATS)} (the picture's format)")
    return ext


def _label_best(ax: Any, best: list[dict[str, Any]]) -> None:
    """Name the best points; labels of points close together are stacked, not overprinted."""
    lo, hi = _limits([r["value"] for r in best]) if best else (0.0, 1.0)
    near = (hi - lo) * 0.15
    stack = 0
    for i, row in enumerate(best):
        close = i > 0 and abs(row["value"] - best[i - 1]["value"]) < near
        stack = stack + 1 if close else 0
        ax.annotate(f"#{row['rank']} {row['name']}", (row["params"], row["value"]),
                    textcoords="offset points", xytext=(8, 6 - 11 * stack), fontsize=7,
                    arrowprops={"arrowstyle": "-", "alpha": 0.4} if stack else None)


def render(rows: list[dict[str, Any]], metric: str, path: str, *,
           higher_is_better: bool) -> bytes:
    """The picture's bytes, in the format ``path``'s extension names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fmt = plot_format(path)
    plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable, smaller
    fig, ax = plt.subplots(figsize=(8, 5))
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(config_label(row), []).append(row)
    for label, members in sorted(groups.items()):
        ax.scatter([m["params"] for m in members], [m["value"] for m in members], s=28,
                   alpha=0.8, label=f"{label} ({len(members)})", zorder=3)
    front = pareto_front(rows, higher_is_better)
    ax.step([r["params"] for r in front], [r["value"] for r in front], where="post",
            color="black", linewidth=1, alpha=0.6, label="Pareto front", zorder=2)
    _label_best(ax, rows[:LABELLED])  # rows come ranked: the best first
    ax.set_xscale("log")
    ax.set_ylim(*_limits([r["value"] for r in rows]))
    ax.set_xlabel("trainable parameters (log scale)")
    better = "higher is better" if higher_is_better else "lower is better"
    ax.set_ylabel(f"{metric} ({better})")
    ax.set_title(f"{metric} vs trainable parameters, {len(rows)} adapters on {rows[0]['dataset']}",
                 fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    plt.close(fig)
    return buf.getvalue()
