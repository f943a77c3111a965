"""``zoo push | pull | fsck | gc``: moving adapters between disk, the object store and the catalog.

Each command parses, makes one client call (``zoo.client``: the catalog and store directly, or
a team server), prints. Nothing here imports torch: only ``push`` of a PEFT directory and
``pull --format peft|merged`` do, inside the library, when they need it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from zoo.cli.options import json_option, select_option, store_options


@contextmanager
def opened(catalog_url: str | None, store_url: str | None, *, workers: int = 8) -> Iterator[Any]:
    """(catalog, store) from flags > environment > config file > defaults."""
    from zoo.settings import resolve_settings
    from zoo.storage.blobstore import open_store
    from zoo.storage.db import open_catalog

    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url)
    catalog = open_catalog(settings.catalog_url)
    try:
        yield catalog, open_store(settings.store_url, workers=workers)
    finally:
        catalog.close()


def _emit(data: Any) -> None:
    from zoo.cli.output import echo_json

    echo_json(data)


@click.command("push", short_help="Publish an adapter file or a PEFT LoRA directory.")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--name", required=True,
              help="Adapter name: letters, digits, '-', '_', '.' (e.g. sentiment).")
@click.option("--tag", "tags", multiple=True, metavar="T",
              help="A label (prod) or key=value (team=nlp); repeatable.")
@click.option("--alias", "aliases", multiple=True, metavar="NAME@ALIAS",
              help="Point NAME@ALIAS (or just ALIAS) at the pushed adapter; repeatable.")
@click.option("--base", "base", metavar="NAME", default=None,
              help="The registered base model (`zoo base ls`) the adapter belongs to; default: "
                   "the registered base with the digest the adapter records.")
@json_option
@store_options
def push(path: str, name: str, tags: tuple[str, ...], aliases: tuple[str, ...],
         base: str | None, as_json: bool, catalog_url: str | None, store_url: str | None) -> None:
    """Publish PATH (a zoo adapter file or a PEFT LoRA directory); prints the adapter id.

    Pushing the same bytes under the same name again changes nothing (and adds the tags).

    \b
    Example:
      zoo push out/sentiment.safetensors --name sentiment --tag team=nlp --alias latest
    """
    from zoo.cli.catalog import client

    with client(catalog_url, store_url) as zoo:
        pushed = zoo.push(path, name=name, tags=tags, aliases=aliases, base=base)
    if as_json:
        _emit(pushed)
    else:
        click.echo(pushed["id"])


@click.command("pull", short_help="Download adapters, verified by sha256.")
@click.argument("refs", nargs=-1, metavar="[REF]...")
@click.option("--tag", default=None, metavar="T", help="Every adapter with this tag.")
@select_option(help="Every adapter matching QUERY, the `zoo ls` language; quote it.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=str),
              help="Output directory (created if missing).")
@click.option("--format", "fmt", type=click.Choice(["native", "peft", "merged"]),
              default="native", show_default=True,
              help="native: the zoo file; peft: a PEFT LoRA directory (vLLM, LoRAX and PEFT "
                   "load it); merged: the registered base with the adapter folded in.")
@click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Parallel downloads.")
@json_option
@store_options
def pull(refs: tuple[str, ...], tag: str | None, query: str | None, out_dir: str, fmt: str,
         workers: int, as_json: bool, catalog_url: str | None, store_url: str | None) -> None:
    """Download adapters (REF…, --tag and/or --select) into -o DIR, each verified by sha256
    and renamed into place: a file is whole or absent. Files already there are skipped.

    \b
    Examples:
      zoo pull sentiment@prod -o adapters/
      zoo pull --tag team=nlp --select 'r<=8' -o adapters/ --format peft
    """
    from zoo.cli.catalog import client

    with client(catalog_url, store_url, workers=workers) as zoo, \
            _progress(enabled=not as_json and sys.stderr.isatty()) as progress:
        result = zoo.pull(refs, out_dir=out_dir, tag=tag, query=query, format=fmt,
                          workers=workers, progress=progress)
    if as_json:
        _emit(result)
    else:
        click.echo(f"pulled {len(result['adapters'])} adapter(s) into {result['out_dir']} "
                   f"({result['downloaded']} downloaded, {result['skipped']} already present)")


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int, int, int], None] | None]:
    """A rich progress bar on stderr (adapters done / total), or None when not a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("pull", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("pull", total=None)

    def update(done: int, total: int, nbytes: int) -> None:
        bar.update(task, total=total, completed=done)

    with bar:
        yield update


@click.command("fsck", short_help="Check the store against the catalog.")
@click.option("--verify", is_flag=True,
              help="Also re-hash every referenced blob (reads every byte; default: sizes only).")
@click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Parallel reads for --verify.")
@json_option
@store_options
@click.pass_context
def fsck(ctx: click.Context, verify: bool, workers: int, as_json: bool,
         catalog_url: str | None, store_url: str | None) -> None:
    """Check the store against the catalog: orphan blobs (harmless; `zoo gc` removes them),
    missing blobs and size or digest mismatches (damage: exit code 5).

    \b
    Example:
      zoo fsck --verify
    """
    from zoo.cli.catalog import client
    from zoo.errors import IntegrityError

    with client(catalog_url, store_url, workers=workers) as zoo:
        report = zoo.fsck(verify=verify, workers=workers)
    if as_json:
        _emit(report)
    else:
        click.echo(f"{report['adapter_count']} adapter row(s), {report['blob_count']} blob(s) "
                   f"in {report['store']}{' (verified by sha256)' if report['verified'] else ''}")
        for orphan in report["orphans"]:
            click.echo(f"orphan blob sha256:{orphan['digest']} ({orphan['size']} bytes)")
        for problem in [*report["missing"], *report["mismatched"]]:
            click.echo(problem["message"])
        click.echo("ok" if report["ok"] else f"DAMAGED: {len(report['missing'])} missing, "
                   f"{len(report['mismatched'])} mismatched")
    if not report["ok"]:
        ctx.exit(IntegrityError.exit_code)


@click.command("gc", short_help="Remove what no catalog row needs.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--grace", default="1h", show_default=True,
              help="Keep orphans younger than this (30s, 15m, 1h, 7d): uploads in flight.")
@click.option("--force", is_flag=True,
              help="Delete even when that is more than half of the store's blobs.")
@json_option
@store_options
def gc(dry_run: bool, grace: str, force: bool, as_json: bool, catalog_url: str | None,
       store_url: str | None) -> None:
    """Remove orphan blobs older than --grace: adapter blobs no catalog row references, job
    artifacts (staged inputs, logs, checkpoints) no job row needs, and what killed writers left
    (temp files, S3 multipart uploads never completed). Refused for a store that is not bound
    to this catalog (`zoo init`), and for deleting more than half of the store without --force.

    \b
    Example:
      zoo gc --dry-run && zoo gc
    """
    from zoo.cli.catalog import client

    with client(catalog_url, store_url) as zoo:
        report = zoo.gc(grace=grace, dry_run=dry_run, force=force)
    if as_json:
        _emit(report)
        return
    verb = "would remove" if dry_run else "removed"
    for label, area in (("adapter blob", report["adapter_blobs"]),
                        ("job artifact", report["job_artifacts"])):
        for blob in area["removed"]:
            click.echo(f"{verb} {label} sha256:{blob['digest']} ({blob['size']} bytes)")
        for write in area["unfinished_removed"]:
            click.echo(f"{verb} unfinished write {write['where']}")
        click.echo(f"{label}s: {verb} {len(area['removed'])} orphan(s), "
                   f"{area['removed_bytes']} bytes; kept {len(area['kept_young'])} younger "
                   f"than {grace}")


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    for command in (push, pull, fsck, gc):
        group.add_command(command)
