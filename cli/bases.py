"""``zoo base add|ls``: the base-model registry (where eval and merged pulls load bases from)."""

from __future__ import annotations

import click

from zoo.cli.options import json_option, store_options


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(base)


@click.group(short_help="Register base models and list them.")
def base() -> None:
    """Register base models: a name, a location, and the digest of what is there.

    Eval and `pull --format merged` load an adapter's base ONLY from its registered location
    and check its digest; the name written inside an adapter file decides nothing.
    """


@base.command("add", short_help="Register a base model's location under a name.")
@click.argument("name")
@click.argument("location")
@click.option("--upload", is_flag=True,
              help="Copy a local directory into the store, so every machine can load it.")
@json_option
@store_options
def base_add(name: str, location: str, upload: bool, as_json: bool, catalog_url: str | None,
             store_url: str | None) -> None:
    """Register LOCATION (a model directory, s3://bucket/prefix or a hub id in the local
    Hugging Face cache) as the base model NAME. Through a team server (ZOO_URL) only an
    s3:// prefix is accepted, with an admin token that has no name prefix.

    \b
    Examples:
      zoo base add llama-3-8b s3://models/llama-3-8b
      zoo base add minilm ./models/minilm --upload
    """
    from zoo.cli.catalog import client
    from zoo.cli.output import echo_json, safe

    with client(catalog_url, store_url) as zoo:
        view = zoo.base_add(name, location, upload=upload)
    if as_json:
        echo_json(view)
    else:
        click.echo(f"registered base {safe(view['name'])} (digest {view['digest'][:12]}…) at "
                   f"{safe(view['location'])}; {view['adapter_count']} adapter(s) use it")


@base.command("ls", short_help="List base models and where they live.")
@json_option
@store_options
def base_ls(as_json: bool, catalog_url: str | None, store_url: str | None) -> None:
    """List base models: registered ones with their location, and names adapters mention
    that nobody registered yet (no location: eval cannot load them).

    \b
    Example:
      zoo base ls --json
    """
    from zoo.cli.catalog import client
    from zoo.cli.output import Column, echo_json, print_table

    with client(catalog_url, store_url) as zoo:
        views = zoo.bases()
    if as_json:
        echo_json(views)
        return
    print_table([Column("NAME", lambda v: v["name"], min_width=10),
                 Column("DIGEST", lambda v: (v["digest"] or "-")[:12], cut=False),
                 Column("ADAPTERS", lambda v: v["adapter_count"], cut=False, align=">"),
                 Column("LOCATION", lambda v: v["location"] or "- (not registered)", priority=1,
                        min_width=12)], views, empty="no base models")
