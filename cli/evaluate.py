"""``zoo eval`` (batch evaluation on Ray) and ``zoo leaderboard`` (ranked results, a plot).

Heavy imports (ray, torch, matplotlib) happen inside the verbs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from zoo.cli.transfer import opened, store_options


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


@click.command("eval")
@click.option("--select", "query", required=True, metavar="QUERY",
              help='Adapters to evaluate, in the `zoo ls` query language (e.g. "task=causal-lm").')
@click.option("--dataset", required=True, metavar="PATH|s3://…", help="Evaluation data file.")
@click.option("--metrics", default=None, metavar="M[,M…]",
              help="loss, perplexity, exact_match, accuracy (default: all of the task's).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-examples", type=click.IntRange(min=1), default=None)
@click.option("--address", metavar="ADDR", default=None,
              help="Ray cluster address (default: RAY_ADDRESS, else a local Ray).")
@click.option("--force", is_flag=True, help="Re-evaluate adapters that already have results.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@store_options
def eval_command(query: str, dataset: str, metrics: str | None, batch_size: int,
                 max_examples: int | None, address: str | None, force: bool, as_json: bool,
                 catalog_url: str | None, store_url: str | None) -> None:
    """Evaluate every adapter matching QUERY on a dataset; results go to the catalog."""
    from zoo.settings import resolve_settings
    from zoo.workers.cluster import shutdown_if_started
    from zoo.workers.eval_pool import run_eval

    wanted = _metrics_option(metrics)
    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url, ray_address=address)
    with opened(catalog_url, store_url) as (catalog, _store):
        try:
            summary = run_eval(catalog, settings.store_url, dataset=dataset, query=query,
                               address=settings.ray_address, metrics=wanted,
                               batch_size=batch_size, max_examples=max_examples, force=force,
                               progress=None if as_json else progress_printer())
        finally:
            shutdown_if_started()
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        from zoo.cli.output import safe

        for adapter_id, message in list(summary.error_messages.items())[:20]:
            click.echo(f"  error {adapter_id}: {safe(message)}")
        click.echo(f"evaluated {summary.evaluated} adapter(s) on {safe(summary.dataset)} "
                   f"(sha256 {summary.fingerprint[:12]}) in {summary.elapsed_s:.1f} s; "
                   f"{summary.skipped} already had results, {summary.errors} error(s)")
    if summary.errors and not summary.evaluated and not summary.skipped:
        from zoo.errors import JobError

        raise JobError(f"no adapter could be evaluated ({summary.errors} error(s))")


@click.command("leaderboard")
@click.option("--dataset", required=True, metavar="D", help="Dataset name, fingerprint or path.")
@click.option("--metric", required=True, metavar="M", help="e.g. loss, accuracy, exact_match.")
@click.option("--select", "query", default=None, metavar="QUERY", help="Only adapters matching.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--plot", "plot_path", default=None, metavar="OUT.png",
              help="Also plot the metric against trainable parameters (all matches).")
@store_options
def leaderboard(dataset: str, metric: str, query: str | None, top: int, as_json: bool,
                plot_path: str | None, catalog_url: str | None, store_url: str | None) -> None:
    """Adapters ranked by their latest METRIC on a dataset."""
    from zoo.storage.evals import leaderboard as rank

    with opened(catalog_url, store_url) as (catalog, _store):
        rows = rank(catalog, dataset=dataset, metric=metric, query=query,
                    top=None if plot_path else top)
    if plot_path:
        plot_leaderboard(rows, metric, plot_path)
    shown = rows[:top]
    if as_json:
        click.echo(json.dumps(shown, indent=2))
    else:
        header = f"{'#':>4}  {'id':<26}  {'name':<24}  {metric:>12}  {'params':>9}  r/u  share"
        click.echo(header)
        for row in shown:
            click.echo(f"{row['rank']:>4}  {row['id']:<26}  {row['name'][:24]:<24}  "
                       f"{row['value']:>12.5g}  {row['params']:>9}  {row['r']}/{row['unshared_r']}"
                       f"  {row['share_a']}/{row['share_b']}")
    if plot_path:
        click.echo(f"plot of {len(rows)} adapter(s) written to {plot_path}", err=as_json)


def config_label(row: dict[str, Any]) -> str:
    """Legend label: LoRA when nothing is shared (u = r or m = n = 1), else PRoLoRA."""
    lora = row["unshared_r"] == row["r"] or (row["share_a"] == 1 and row["share_b"] == 1)
    return f"{'LoRA' if lora else 'PRoLoRA'} r={row['r']}"


def plot_leaderboard(rows: list[dict[str, Any]], metric: str, path: str) -> None:
    """Metric vs trainable parameters, one point per adapter, coloured by method and rank."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the plot extra
        raise click.ClickException("--plot needs matplotlib: pip install 'adapter-zoo[plot]'") from None
    from zoo.files import write_atomic

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(config_label(row), []).append(row)
    for label, members in sorted(groups.items()):
        ax.scatter([m["params"] for m in members], [m["value"] for m in members], s=14,
                   alpha=0.75, label=f"{label} ({len(members)})")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs trainable parameters on {rows[0]['dataset']}")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
