"""``zoo eval`` (batch evaluation on Ray) and ``zoo leaderboard`` (ranked results, a plot).

Heavy imports (ray, torch, matplotlib) happen inside the verbs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from zoo.cli.options import (
    AliasedOption,
    json_option,
    limit_option,
    select_option,
    store_options,
    wide_option,
)


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(eval_command)
    group.add_command(leaderboard)


def _metrics_option(value: str | None) -> tuple[str, ...] | None:
    from zoo.batch_eval import parse_metrics

    return parse_metrics(value)


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_printer(stream: Any = None) -> Callable[[int, int, int], None]:
    """``done/total adapters, rate, ETA`` on one refreshed line (a tty) or one line per update."""
    stream = stream or sys.stderr
    start = time.perf_counter()
    first: dict[str, int] = {}
    tty = hasattr(stream, "isatty") and stream.isatty()

    def update(done: int, total: int, errors: int) -> None:
        base = first.setdefault("done", done)  # skipped adapters do not count for the rate
        elapsed = time.perf_counter() - start
        rate = (done - base) / elapsed if elapsed > 0 and done > base else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        line = (f"eval: {done}/{total} adapters  {rate:.1f} adapters/s  "
                f"ETA {_fmt_duration(eta) if rate else '?'}  errors {errors}")
        stream.write(("\r" + line) if tty else line + "\n")
        if tty and done >= total:
            stream.write("\n")
        stream.flush()

    return update


@click.command("eval", short_help="Score adapters on a dataset; results go to the catalog.")
@select_option(required=True, help="Adapters to evaluate, in the `zoo ls` query language; "
                                   "quote it: --select 'task=causal-lm r<=8'.")
@click.option("--dataset", required=True, metavar="FILE|s3://…",
              help="JSON lines (or CSV/TSV with a header): causal-lm rows hold \"prompt\" and "
                   "\"completion\" (the loss covers the completion), seq-cls rows \"text\" "
                   "and \"label\" (the training labels). Known by its content (sha256).")
@click.option("--metric", "metrics", cls=AliasedOption, hidden_aliases=("--metrics",),
              default=None, metavar="M[,M…]",
              help="Any of loss, perplexity, exact_match (causal-lm), accuracy (seq-cls); "
                   "default: every metric of the adapter's task.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Examples per forward pass; adapters on one base share each batch.")
@click.option("--max-examples", type=click.IntRange(min=1), default=None,
              help="Score only the first N rows (default: all).")
@click.option("--address", metavar="ADDR", default=None,
              help="Ray cluster address (default: RAY_ADDRESS, else a local Ray).")
@click.option("--force", is_flag=True, help="Re-evaluate adapters that already have results.")
@json_option
@store_options
def eval_command(query: str, dataset: str, metrics: str | None, batch_size: int,
                 max_examples: int | None, address: str | None, force: bool, as_json: bool,
                 catalog_url: str | None, store_url: str | None) -> None:
    """Evaluate every adapter matching --select on a dataset; results go to the catalog.

    Adapters already evaluated on the same dataset (same sha256) are skipped unless --force.
    One adapter that fails is an error row; the others are still scored.

    \b
    Example:
      zoo eval --select 'tag:team=nlp task=seq-cls' --dataset eval.jsonl --metric accuracy
    """
    from zoo.cli.catalog import client

    wanted = _metrics_option(metrics)
    with client(catalog_url, store_url) as zoo:
        summary = zoo.evaluate(query=query, dataset=dataset, metrics=wanted,
                               batch_size=batch_size, max_examples=max_examples, force=force,
                               address=address,
                               progress=None if as_json else progress_printer())
    if as_json:
        _echo_json(summary)
    else:
        from zoo.cli.output import safe

        for adapter_id, message in list(summary["error_messages"].items())[:20]:
            click.echo(f"  error {adapter_id}: {safe(message)}")
        click.echo(f"evaluated {summary['evaluated']} adapter(s) on {safe(summary['dataset'])} "
                   f"(sha256 {summary['dataset_sha256'][:12]}) in {summary['elapsed_s']:.1f} s; "
                   f"{summary['skipped']} already had results, {summary['errors']} error(s)")
    if summary["errors"] and not summary["evaluated"] and not summary["skipped"]:
        from zoo.errors import JobError

        raise JobError(f"no adapter could be evaluated ({summary['errors']} error(s))")


@click.command("leaderboard", short_help="Adapters ranked by a metric on a dataset; a plot.")
@click.option("--dataset", required=True, metavar="FILE|SHA256",
              help="The evaluation data file (known by its content), or its sha256: a prefix of "
                   "at least 8 hex characters, as `zoo eval` prints it.")
@click.option("--metric", required=True, metavar="M",
              help="What to rank by: loss, perplexity (lower is better), accuracy, exact_match.")
@select_option(help="Only adapters matching QUERY (the `zoo ls` language); quote it: "
                   "--select 'r<=8'.")
@limit_option(20, "adapters (also what --plot shows)")
@json_option
@wide_option
@click.option("--plot", "plot_path", default=None, metavar="OUT.png|.svg|.pdf",
              help="Also draw the ranked adapters' metric against their trainable parameters, "
                   "with the Pareto front; the extension picks the format.")
@store_options
def leaderboard(dataset: str, metric: str, query: str | None, limit: int, as_json: bool,
                wide: bool, plot_path: str | None, catalog_url: str | None,
                store_url: str | None) -> None:
    """Adapters ranked by their latest METRIC on a dataset.

    \b
    Example:
      zoo leaderboard --dataset eval.jsonl --metric accuracy --select 'task=seq-cls' --plot lb.png
    """
    from zoo.batch_eval import LOWER_IS_BETTER
    from zoo.cli.catalog import client

    if plot_path:
        from zoo.cli.plot import plot_format

        plot_format(plot_path)  # a wrong extension fails before any work
    with client(catalog_url, store_url) as zoo:
        rows = zoo.leaderboard(dataset=dataset, metric=metric, query=query, limit=limit)
    if plot_path:
        from zoo.cli.plot import render
        from zoo.files import write_atomic

        write_atomic(plot_path, render(rows, metric, plot_path,
                                       higher_is_better=metric not in LOWER_IS_BETTER))
    if as_json:
        _echo_json(rows)
    else:
        _print_board(rows, metric, wide)
    if plot_path:
        click.echo(f"plot of {len(rows)} adapter(s) written to {plot_path}", err=as_json)


def _print_board(rows: list[dict[str, Any]], metric: str, wide: bool) -> None:
    from zoo.batch_eval import LOWER_IS_BETTER
    from zoo.cli.catalog import shape_cells
    from zoo.cli.output import Column, cut, print_table, safe, short_number, terminal_width

    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    title = f"{metric} ({better} is better) on "
    name, _, digest = safe(rows[0]["dataset"]).rpartition("@")
    width = None if wide else terminal_width()
    if width:  # the digest identifies the dataset: cut the file name, never it
        name = cut(name, max(width - len(title) - len(digest) - 1, 8))
    click.echo(f"{title}{name}@{digest}")
    rank_cells, share_cells = shape_cells()
    print_table([
        Column("#", lambda r: r["rank"], cut=False, align=">"),
        Column("ID", lambda r: r["id"], cut=False),
        Column("NAME", lambda r: r["name"], min_width=10),
        Column(metric.upper(), lambda r: f"{r['value']:.5g}", cut=False, align=">"),
        Column("PARAMS", lambda r: short_number(r["params"]), priority=2, cut=False, align=">"),
        Column("R/U", rank_cells, priority=3, cut=False),
        Column("SHARE", share_cells, priority=4, cut=False),
        Column("EXAMPLES", lambda r: r["examples"], priority=5, cut=False, align=">"),
    ], rows, wide=wide)


def _echo_json(value: Any) -> None:
    from zoo.cli.output import echo_json

    echo_json(value)
