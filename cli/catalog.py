"""Catalog verbs: init, config, ls, show, tag, untag, alias (set|rm|ls).

Each command parses, makes one library call, prints. Only click is imported at module level;
SQLAlchemy, rich and the catalog load inside the command, and nothing here imports torch,
transformers or ray, so a catalog verb answers in a few hundred milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def catalog_option(fn: F) -> F:
    """``--catalog URL`` (default: ZOO_CATALOG_URL, config file, then $ZOO_HOME/catalog.db)."""
    return click.option("--catalog", "catalog_url", metavar="URL", default=None,
                        help="Catalog database URL (sqlite:///PATH or postgresql+psycopg://...).")(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


def open_catalog_from(catalog_url: str | None):  # noqa: ANN201 - a zoo.storage.db.Catalog
    """Resolve the catalog URL (flag > env > file > default) and open it, checking the schema."""
    from zoo.settings import resolve_settings
    from zoo.storage.db import open_catalog

    return open_catalog(resolve_settings(catalog_url=catalog_url).catalog_url)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _short(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "BASE", "TASK", "R/U", "SHARE", "PARAMS", "TAGS", "ALIASES",
                "METRICS", "CREATED"):
        table.add_column(col, overflow="fold", no_wrap=col in ("ID", "CREATED", "R/U"))
    for d in rows:
        table.add_row(*_cells(d))
    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped: don't squeeze into 80 columns
        console = Console(soft_wrap=False, width=240)
    console.print(table)
    if not rows:
        click.echo("no adapters match", err=True)


def _cells(d: dict[str, Any]) -> list[str]:
    metrics = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in d["metrics"].items())
    return [d["id"], d["name"], d["base_model"], d["task"], f"{d['r']}/{d['unshared_r']}",
            f"{d['share_a']}x{d['share_b']}", _short(d["params"]), " ".join(d["tags"]),
            " ".join(d["aliases"]), metrics, d["created_at"][:19].replace("T", " ")]


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    for command in (init, config, ls, show, tag, untag, alias):
        group.add_command(command)


@click.command()
@catalog_option
@json_option
def init(catalog_url: str | None, as_json: bool) -> None:
    """Create the catalog, or upgrade its schema to this version of the zoo."""
    from zoo.settings import resolve_settings
    from zoo.storage.db import init_catalog

    settings = resolve_settings(catalog_url=catalog_url)
    before, after = init_catalog(settings.catalog_url)
    url = settings.redacted()["catalog_url"]
    if as_json:
        _echo_json({"catalog_url": url, "revision_before": before, "revision": after})
    elif before == after:
        click.echo(f"catalog {url} is up to date (schema revision {after})")
    else:
        verb = "created" if before is None else f"upgraded from {before}"
        click.echo(f"catalog {url} {verb} (schema revision {after})")


@click.command()
@catalog_option
@json_option
def config(catalog_url: str | None, as_json: bool) -> None:
    """Show the resolved settings (secrets redacted) and where each came from."""
    from zoo.settings import resolve_settings

    view = resolve_settings(catalog_url=catalog_url).redacted()
    if as_json:
        _echo_json(view)
        return
    sources = view.pop("sources")
    for key, value in view.items():
        origin = f"  ({sources[key]})" if key in sources else ""
        click.echo(f"{key:12} {value if value is not None else '-'}{origin}")


@click.command()
@click.argument("query", nargs=-1)
@click.option("--sort", default="-created", show_default=True, metavar="[-]FIELD",
              help="Sort field, - for descending (e.g. -metrics.accuracy, params).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--all", "all_rows", is_flag=True, help="Every match, streamed (ignores --limit).")
@catalog_option
@json_option
def ls(query: tuple[str, ...], sort: str, limit: int, all_rows: bool, catalog_url: str | None,
       as_json: bool) -> None:
    """List adapters matching QUERY (AND-ed terms), e.g. `zoo ls task=seq-cls r<=8 tag:prod`.

    Fields: name base task r unshared_r share_a share_b params size created ... with
    = != < <= > >= ~ ; tag:KEY[=VALUE]; metrics.METRIC / metrics.DATASET.METRIC.
    """
    from zoo.storage.catalog import adapter_to_dict, iter_adapters, list_adapters

    text = " ".join(query)
    catalog = open_catalog_from(catalog_url)
    try:
        if all_rows:
            with catalog.transaction(readonly=True) as session:
                for row in iter_adapters(session, text, sort):
                    d = adapter_to_dict(row, config=False)
                    click.echo(json.dumps(d, ensure_ascii=False, default=str) if as_json
                               else "  ".join(_cells(d)))
            return
        rows = catalog.run(lambda s: [adapter_to_dict(r, config=False) for r in
                                      list_adapters(s, text, sort, limit)], readonly=True)
    finally:
        catalog.close()
    _echo_json(rows) if as_json else _table(rows)


@click.command()
@click.argument("ref")
@catalog_option
@json_option
def show(ref: str, catalog_url: str | None, as_json: bool) -> None:
    """Everything about one adapter: config, params, tags, aliases, lineage, metrics."""
    from zoo.storage.catalog import adapter_to_dict, resolve_ref

    catalog = open_catalog_from(catalog_url)
    try:
        d = catalog.run(lambda s: adapter_to_dict(resolve_ref(s, ref)), readonly=True)
    finally:
        catalog.close()
    if as_json:
        _echo_json(d)
        return
    for key in ("id", "name", "digest", "size", "params", "task", "r", "unshared_r", "share_a",
                "share_b", "stride_a", "stride_b", "rotation", "init", "alpha", "dtype",
                "created_at"):
        click.echo(f"{key:20} {d[key]}")
    click.echo(f"{'tags':20} {' '.join(d['tags']) or '-'}")
    click.echo(f"{'aliases':20} {' '.join(d['aliases']) or '-'}")
    click.echo("lineage:")
    click.echo(f"  {'base_model':18} {d['base_model']} (digest {d['base_model_digest'] or '-'})")
    click.echo(f"  {'job':18} {d['job_id'] or '-'}")
    click.echo(f"  {'dataset':18} {d['dataset_fingerprint'] or '-'}")
    click.echo("metrics:" + ("" if d["metrics_by_dataset"] else " -"))
    for dataset, values in d["metrics_by_dataset"].items():
        for metric, value in values.items():
            click.echo(f"  {dataset}.{metric} = {value}")
    click.echo("config:")
    click.echo(json.dumps(d["config"], indent=2, sort_keys=True))


def _tag_command(name: str, doc: str, fn_name: str) -> click.Command:
    @click.command(name=name, help=doc)
    @click.argument("ref")
    @click.argument("tags", nargs=-1, required=True)
    @catalog_option
    @json_option
    def command(ref: str, tags: tuple[str, ...], catalog_url: str | None, as_json: bool) -> None:
        from zoo.storage import catalog as api

        fn = getattr(api, fn_name)
        catalog = open_catalog_from(catalog_url)
        try:
            d = catalog.run(lambda s: api.adapter_to_dict(fn(s, ref, tags)))
        finally:
            catalog.close()
        if as_json:
            _echo_json({"id": d["id"], "tags": d["tags"]})
        else:
            click.echo(f"{d['id']} {d['name']}: {' '.join(d['tags']) or '(no tags)'}")

    return command


tag = _tag_command("tag", "Add tags (LABEL or KEY=VALUE) to the adapter REF.", "add_tags")
untag = _tag_command("untag", "Remove tags from REF (a bare KEY removes every KEY=* too).",
                     "remove_tags")


@click.group()
def alias() -> None:
    """Named pointers NAME@ALIAS -> one adapter (e.g. sentiment@prod)."""


@alias.command("set")
@click.argument("name_alias", metavar="NAME@ALIAS")
@click.argument("ref")
@catalog_option
@json_option
def alias_set(name_alias: str, ref: str, catalog_url: str | None, as_json: bool) -> None:
    """Point NAME@ALIAS at REF (moves it atomically if it exists)."""
    from zoo.storage.catalog import set_alias

    catalog = open_catalog_from(catalog_url)
    try:
        adapter_id = catalog.run(lambda s: set_alias(s, name_alias, ref).id)
    finally:
        catalog.close()
    if as_json:
        _echo_json({"alias": name_alias, "adapter_id": adapter_id})
    else:
        click.echo(f"{name_alias} -> {adapter_id}")


@alias.command("rm")
@click.argument("name_alias", metavar="NAME@ALIAS")
@catalog_option
@json_option
def alias_rm(name_alias: str, catalog_url: str | None, as_json: bool) -> None:
    """Delete NAME@ALIAS (the adapter stays)."""
    from zoo.storage.catalog import remove_alias

    catalog = open_catalog_from(catalog_url)
    try:
        adapter_id = catalog.run(lambda s: remove_alias(s, name_alias))
    finally:
        catalog.close()
    if as_json:
        _echo_json({"removed": name_alias, "adapter_id": adapter_id})
    else:
        click.echo(f"removed {name_alias} (was {adapter_id})")


@alias.command("ls")
@click.argument("name", required=False)
@catalog_option
@json_option
def alias_ls(name: str | None, catalog_url: str | None, as_json: bool) -> None:
    """List aliases (of NAME, if given)."""
    from zoo.storage.catalog import list_aliases

    catalog = open_catalog_from(catalog_url)
    try:
        rows = catalog.run(lambda s: list_aliases(s, name), readonly=True)
    finally:
        catalog.close()
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['ref']:40} {row['adapter_id']}  {row['updated_at'][:19]}")
    if not rows:
        click.echo("no aliases", err=True)
