"""Catalog verbs: init, config, ls, show, tag, untag, alias (set|rm|ls).

Each command parses, makes one library call, prints. Only click is imported at module level;
SQLAlchemy, rich and the catalog load inside the command, and nothing here imports torch,
transformers or ray, so a catalog verb answers in a few hundred milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from zoo.cli.options import catalog_option, json_option, limit_option, store_options, wide_option


@contextmanager
def client(catalog_url: str | None = None, store_url: str | None = None, *,
           workers: int = 8) -> Iterator[Any]:
    """The zoo client for one command: the team server when ZOO_URL is set, else the catalog
    and store themselves (see ``zoo.client``)."""
    from zoo.client import get_client

    c = get_client(catalog_url=catalog_url, store_url=store_url, workers=workers)
    try:
        yield c
    finally:
        c.close()


def _echo_json(value: Any) -> None:
    from zoo.cli.output import echo_json

    echo_json(value)


def shape_cells() -> tuple[Any, Any]:
    """The R/U (rank/unshared) and SHARE (a x b) cells of an adapter or leaderboard row: one
    format in every table."""
    return (lambda d: f"{d['r']}/{d['unshared_r']}",
            lambda d: f"{d['share_a']}x{d['share_b']}")


def adapter_columns() -> list[Any]:
    """The columns of an adapter table, most important first (lower priority = kept longer)."""
    from zoo.cli.output import Column, short_number

    def metrics(d: dict[str, Any]) -> str:
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in d["metrics"].items())

    rank_cells, share_cells = shape_cells()
    return [
        Column("ID", lambda d: d["id"], cut=False),
        Column("NAME", lambda d: d["name"], min_width=10),
        Column("BASE", lambda d: d["base_model"], priority=4, min_width=8),
        Column("TASK", lambda d: d["task"], priority=5, cut=False),
        Column("R/U", rank_cells, priority=3, cut=False),
        Column("SHARE", share_cells, priority=6, cut=False),
        Column("PARAMS", lambda d: short_number(d["params"]), priority=3, cut=False, align=">"),
        Column("TAGS", lambda d: " ".join(d["tags"]), priority=2, min_width=8),
        Column("ALIASES", lambda d: " ".join(d["aliases"]), priority=2, min_width=8),
        Column("METRICS", metrics, priority=1, min_width=10),
        Column("CREATED", lambda d: d["created_at"][:16].replace("T", " "), priority=7, cut=False),
    ]


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    for command in (init, config, ls, show, tag, untag, alias, rm):
        group.add_command(command)


@click.command(short_help="Create or upgrade the catalog; bind the store.")
@store_options
@click.option("--rebind", is_flag=True,
              help="Bind a store that another catalog owns to this one (after a restore).")
@json_option
def init(catalog_url: str | None, store_url: str | None, rebind: bool, as_json: bool) -> None:
    """Create the catalog or upgrade its schema, and bind the store to it.

    Binding records the catalog's id in the store (and the store in the catalog): gc and fsck
    refuse a store that belongs to another catalog. Run it once after upgrading the zoo.

    \b
    Example:
      zoo init
    """
    from zoo.client import direct_only

    direct_only("init")
    from zoo.settings import resolve_settings
    from zoo.storage.binding import bind
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog

    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url)
    before, after = init_catalog(settings.catalog_url)
    with open_catalog(settings.catalog_url) as catalog:
        binding = bind(catalog, open_store(settings.store_url), rebind=rebind)
    url = settings.redacted()["catalog_url"]
    if as_json:
        _echo_json({"catalog_url": url, "revision_before": before, "revision": after,
                    "catalog_id": binding.catalog_id, "store_url": binding.store_url,
                    "store_id": binding.store_id})
        return
    if before == after:
        click.echo(f"catalog {url} is up to date (schema revision {after})")
    else:
        verb = "created" if before is None else f"upgraded from {before}"
        click.echo(f"catalog {url} {verb} (schema revision {after})")
    click.echo(f"store {binding.store_url} is bound to catalog {binding.catalog_id}")


@click.command(short_help="Show the settings in effect and where each came from.")
@catalog_option
@json_option
def config(catalog_url: str | None, as_json: bool) -> None:
    """Show the resolved settings (secrets redacted) and where each came from: a flag, the
    environment (ZOO_HOME, ZOO_CATALOG_URL, ZOO_STORE_URL, RAY_ADDRESS), $ZOO_HOME/config.toml,
    or the default.

    \b
    Example:
      ZOO_HOME=/tmp/z zoo config --json
    """
    from zoo.settings import resolve_settings

    view = resolve_settings(catalog_url=catalog_url).redacted()
    if as_json:
        _echo_json(view)
        return
    sources = view.pop("sources")
    for key, value in view.items():
        origin = f"  ({sources[key]})" if key in sources else ""
        click.echo(f"{key:12} {value if value is not None else '-'}{origin}")


@click.command(short_help="List adapters matching a query.")
@click.argument("query", nargs=-1, metavar="['QUERY']")
@click.option("--sort", default="-created", show_default=True, metavar="[-]FIELD",
              help="Sort by a field, - for descending: -created, params, name, "
                   "-metrics.accuracy, …")
@limit_option(50, "adapters")
@click.option("--all", "all_rows", is_flag=True,
              help="Every match, streamed one per line (ignores --limit).")
@wide_option
@click.option("--ids", "-q", "ids_only", is_flag=True,
              help="Print only the adapter ids, one per line: BEST=$(zoo ls … -q --limit 1).")
@catalog_option
@json_option
def ls(query: tuple[str, ...], sort: str, limit: int, all_rows: bool, wide: bool,
       ids_only: bool, catalog_url: str | None, as_json: bool) -> None:
    """List adapters matching QUERY: terms AND-ed together, newest first.

    A term is FIELD OP VALUE with OP one of = != < <= > >= ~ (substring), or tag:KEY[=VALUE].
    Fields: id name digest task base base_digest r unshared_r share_a share_b stride_a
    stride_b params size alpha dtype init rotation job dataset created, and metrics.METRIC or
    metrics.SHA256.METRIC (a dataset by its content). QUOTE the query: unquoted, your shell
    takes < and > as redirections.

    \b
    Examples:
      zoo ls
      zoo ls 'task=seq-cls r<=8 tag:prod'
      zoo ls 'metrics.accuracy>=0.9' --sort -metrics.accuracy --limit 10
    """
    from zoo.cli.output import print_table, safe

    text = " ".join(query)
    with client(catalog_url) as zoo:
        if all_rows:
            for d in zoo.iter_adapters(text, sort):
                if ids_only:
                    click.echo(d["id"])
                else:
                    click.echo(json.dumps(d, ensure_ascii=False, default=str) if as_json
                               else "  ".join(safe(c.cell(d)) for c in adapter_columns()))
            return
        rows, total = zoo.list_adapters(text, sort, limit, count=not (as_json or ids_only))
    if as_json:
        _echo_json(rows)
        return
    searched = f"matching {safe(text)!r}" if text else "in the catalog"
    if ids_only:
        click.echo("\n".join(d["id"] for d in rows) if rows else f"no adapters {searched}",
                   err=not rows)
        return
    print_table(adapter_columns(), rows, wide=wide, empty=f"no adapters {searched}")
    if total is not None and total > len(rows):
        click.echo(f"showing {len(rows)} of {total} adapters {searched}; --limit N or --all "
                   "for more", err=True)


@click.command(short_help="Everything about one adapter.")
@click.argument("ref")
@catalog_option
@json_option
def show(ref: str, catalog_url: str | None, as_json: bool) -> None:
    """Everything about one adapter: config, params, tags, aliases, lineage, metrics.

    REF is an adapter id, a unique id prefix (at least 4 characters) or NAME@ALIAS.

    \b
    Example:
      zoo show sentiment@prod
    """
    with client(catalog_url) as zoo:
        d = zoo.show(ref)
    if as_json:
        _echo_json(d)
        return
    from zoo.cli.output import safe

    for key in ("id", "name", "digest", "size", "params", "task", "r", "unshared_r", "share_a",
                "share_b", "stride_a", "stride_b", "rotation", "init", "alpha", "dtype",
                "created_at"):
        click.echo(f"{key:20} {safe(d[key])}")
    click.echo(f"{'tags':20} {safe(' '.join(d['tags'])) or '-'}")
    click.echo(f"{'aliases':20} {safe(' '.join(d['aliases'])) or '-'}")
    click.echo("lineage:")
    click.echo(f"  {'base_model':18} {safe(d['base_model'])} "
               f"(digest {d['base_model_digest'] or '-'})")
    click.echo(f"  {'job':18} {d['job_id'] or '-'}")
    click.echo(f"  {'dataset':18} {d['dataset_fingerprint'] or '-'}")
    click.echo("metrics:" + ("" if d["metrics_by_dataset"] else " -"))
    for dataset, values in d["metrics_by_dataset"].items():
        for metric, value in values.items():
            click.echo(f"  {safe(dataset)}.{safe(metric)} = {value}")
    config = dict(d["config"])
    modules = sorted(config.pop("modules", None) or {})
    click.echo("config:")
    for line in json.dumps(config, indent=2, sort_keys=True).splitlines():
        click.echo(safe(line))  # JSON escapes control characters; safe() catches the rest
    if modules:  # hundreds on a large model: the ends say which, --json lists every one
        span = modules[0] if len(modules) == 1 else f"{modules[0]} … {modules[-1]}"
        click.echo(f"modules: {len(modules)} ({safe(span)}; --json lists them all)")


def _tag_command(name: str, doc: str, short: str, method: str) -> click.Command:
    @click.command(name=name, help=doc, short_help=short)
    @click.argument("ref")
    @click.argument("tags", nargs=-1, required=True)
    @catalog_option
    @json_option
    def command(ref: str, tags: tuple[str, ...], catalog_url: str | None, as_json: bool) -> None:
        with client(catalog_url) as zoo:
            d = getattr(zoo, method)(ref, tags)
        if as_json:
            _echo_json({"id": d["id"], "tags": d["tags"]})
        else:
            from zoo.cli.output import safe

            click.echo(f"{d['id']} {safe(d['name'])}: {safe(' '.join(d['tags'])) or '(no tags)'}")

    return command


tag = _tag_command("tag", """Add tags to the adapter REF: a label (prod) or KEY=VALUE (team=nlp).

    Tags already there are kept, not duplicated.

    \b
    Example:
      zoo tag sentiment@latest prod team=nlp
    """, "Add tags to an adapter.", "tag")
untag = _tag_command("untag", """Remove tags from REF: KEY=VALUE exactly; a bare KEY removes
    the label and every KEY=… value.

    \b
    Example:
      zoo untag sentiment@latest prod
    """, "Remove tags from an adapter.", "untag")


@click.group(short_help="Named pointers NAME@ALIAS to one adapter.")
def alias() -> None:
    """Named pointers NAME@ALIAS to exactly one adapter of that name (sentiment@prod).

    \b
    Examples:
      zoo alias set sentiment@prod 01m8r4b2ye
      zoo alias ls sentiment
    """


@alias.command("set", short_help="Point NAME@ALIAS at an adapter (moves atomically).")
@click.argument("name_alias", metavar="NAME@ALIAS")
@click.argument("ref")
@catalog_option
@json_option
def alias_set(name_alias: str, ref: str, catalog_url: str | None, as_json: bool) -> None:
    """Point NAME@ALIAS at REF (an adapter named NAME); an existing alias moves atomically.

    \b
    Example:
      zoo alias set sentiment@prod 01m8r4b2ye
    """
    with client(catalog_url) as zoo:
        adapter_id = zoo.alias_set(name_alias, ref)
    if as_json:
        _echo_json({"alias": name_alias, "adapter_id": adapter_id})
    else:
        click.echo(f"{name_alias} -> {adapter_id}")


@alias.command("rm", short_help="Delete an alias (the adapter stays).")
@click.argument("name_alias", metavar="NAME@ALIAS")
@catalog_option
@json_option
def alias_rm(name_alias: str, catalog_url: str | None, as_json: bool) -> None:
    """Delete NAME@ALIAS; the adapter it pointed at stays.

    \b
    Example:
      zoo alias rm sentiment@old
    """
    with client(catalog_url) as zoo:
        adapter_id = zoo.alias_rm(name_alias)
    if as_json:
        _echo_json({"removed": name_alias, "adapter_id": adapter_id})
    else:
        click.echo(f"removed {name_alias} (was {adapter_id})")


@alias.command("ls", short_help="List aliases.")
@click.argument("name", required=False)
@catalog_option
@json_option
def alias_ls(name: str | None, catalog_url: str | None, as_json: bool) -> None:
    """List aliases, of the adapter name NAME if given.

    \b
    Example:
      zoo alias ls sentiment
    """
    with client(catalog_url) as zoo:
        rows = zoo.alias_ls(name)
    if as_json:
        _echo_json(rows)
        return
    from zoo.cli.output import Column, print_table

    print_table([Column("ALIAS", lambda r: r["ref"], min_width=12),
                 Column("ADAPTER", lambda r: r["adapter_id"], cut=False),
                 Column("UPDATED", lambda r: r["updated_at"][:16].replace("T", " "), priority=1,
                        cut=False)], rows, empty="no aliases")


@alias.command("log", short_help="Every move of NAME@ALIAS: where, when, by whom.")
@click.argument("name_alias", metavar="NAME@ALIAS")
@catalog_option
@json_option
def alias_log(name_alias: str, catalog_url: str | None, as_json: bool) -> None:
    """Every move of NAME@ALIAS, oldest first: the adapter it pointed at before and after,
    when, and who moved it (a token name, or local:USER for direct use).

    \b
    Example:
      zoo alias log sentiment@prod
    """
    with client(catalog_url) as zoo:
        rows = zoo.alias_log(name_alias)
    if as_json:
        _echo_json(rows)
        return
    from zoo.cli.output import Column, print_table

    print_table([Column("WHEN", lambda r: r["at"][:19].replace("T", " "), cut=False),
                 Column("ACTOR", lambda r: r["actor"], min_width=10),
                 Column("VERB", lambda r: r["verb"], cut=False),
                 Column("FROM", lambda r: r["before"] or "-", priority=1, cut=False),
                 Column("TO", lambda r: r["after"] or "-", cut=False)], rows,
                empty=f"no moves of {name_alias} recorded")


@click.command("rm", short_help="Remove adapters from the catalog.")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option("--force", is_flag=True, help="Remove even adapters an alias points at (the "
              "aliases go too).")
@catalog_option
@json_option
def rm(refs: tuple[str, ...], force: bool, catalog_url: str | None, as_json: bool) -> None:
    """Remove adapters from the catalog (tags, aliases, eval results go with them).

    The bytes stay in the store until the next `zoo gc`; a job that trained a removed adapter
    keeps its row. Refused while an alias points at one, unless --force.

    \b
    Example:
      zoo rm sentiment@old 01m8r4b2ye
    """
    from zoo.cli.output import safe

    with client(catalog_url) as zoo:
        removed = zoo.remove(refs, force)
    if as_json:
        _echo_json(removed)
        return
    for d in removed:
        gone = f" (and {' '.join(d['aliases'])})" if d["aliases"] else ""
        click.echo(f"removed {d['id']} {safe(d['name'])}{safe(gone)}")
