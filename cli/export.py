"""``zoo export``: adapters as PEFT LoRA folders for vLLM, Ray Serve LLM, LoRAX or PEFT.

Parses, makes one library call (:func:`zoo.storage.export.export`), prints. torch is imported
inside the library only when a folder has to be written.
"""

from __future__ import annotations

import json

import click

from zoo.cli.options import json_option, select_option, store_options


@click.command("export", short_help="Lay adapters out for vLLM, Ray Serve LLM, LoRAX or PEFT.")
@click.argument("refs", nargs=-1, metavar="[REF]...")
@click.argument("dest", metavar="DEST")
@click.option("--tag", default=None, metavar="T", help="Every adapter with this tag.")
@select_option(help="Every adapter matching QUERY, the `zoo ls` language; quote it.")
@click.option("--layout", type=click.Choice(["peft", "vllm", "ray-serve", "lorax"]),
              required=True,
              help="peft: PeftModel.from_pretrained folders; vllm: also prints the "
                   "--lora-modules list as JSON; ray-serve: DEST is the "
                   "dynamic_lora_loading_path; lorax: adapter_id per folder.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Adapters converted and uploaded in parallel.")
@json_option
@store_options
def export(refs: tuple[str, ...], dest: str, tag: str | None, query: str | None, layout: str,
           workers: int, as_json: bool, catalog_url: str | None, store_url: str | None) -> None:
    """Export adapters (REF…, --tag and/or --select) into DEST, a directory or an s3:// prefix:
    one PEFT LoRA folder per adapter, named <name>-<digest12> (an alias move exports a new
    folder and never changes a deployed one), verified, atomic, and recorded in
    DEST/zoo-export.json. Folders already there are skipped.

    \b
    Example:
      zoo export --tag prod --layout vllm /srv/loras
      zoo export sentiment@prod --layout lorax s3://models/loras
    """
    from zoo.cli.transfer import opened
    from zoo.storage.export import export as run_export

    with opened(catalog_url, store_url, workers=workers) as (catalog, store):
        result = run_export(catalog, store, refs, dest=dest, layout=layout, tag=tag, query=query,
                            workers=workers)
    if as_json:
        from zoo.cli.output import echo_json

        echo_json(result.to_dict())
        return
    n = len(result.adapters)
    summary = (f"nothing new: all {n} adapter(s) already in {result.dest}" if not result.written
               else f"exported {result.written} adapter(s) to {result.dest} "
                    f"({result.present} already present)")
    if layout == "vllm":  # stdout is the list a script passes to vLLM
        click.echo(summary, err=True)
        click.echo(json.dumps(result.lora_modules()))
        return
    click.echo(summary)
    for a in result.adapters:
        if layout == "ray-serve":
            click.echo(f"  model id <base>:{a.folder}  ({a.name} {a.id})")
        else:
            click.echo(f"  {a.path}  ({a.name} {a.id})")
    if layout == "ray-serve":
        click.echo(f"dynamic_lora_loading_path: {result.dest}")


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(export)
