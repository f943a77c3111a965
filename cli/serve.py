"""``zoo serve``: an OpenAI-compatible endpoint for one base model's adapters, on Ray Serve.

Parses, makes one library call (:func:`zoo.workers.serve.start`), prints, then waits for
Ctrl-C (embedded) or returns (deployed to a cluster with ``--address``). Ray, torch and
transformers are imported inside the command.
"""

from __future__ import annotations

import click

from zoo.cli.options import listen_options, select_option, store_options


@click.command("serve", short_help="Serve adapters over HTTP (OpenAI API) on Ray Serve.")
@click.argument("base", metavar="BASE")
@click.option("--tag", default=None, metavar="T", help="Serve only adapters with this tag.")
@select_option(help="Serve only adapters matching QUERY, the `zoo ls` language; quote it.")
@listen_options(port=8760, port_help="HTTP port of the Ray Serve proxy.")
@click.option("--max-adapters", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Expanded adapters each replica keeps in memory (least recently used out).")
@click.option("--refresh", default="10s", show_default=True,
              help="How often replicas re-read aliases and the selection (5s, 1m).")
@click.option("--replicas", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Ray Serve num_replicas of the deployment.")
@click.option("--num-gpus", type=click.FloatRange(0, 64), default=0.0, show_default=True,
              help="GPUs per replica (Ray Serve ray_actor_options.num_gpus); with a GPU a "
                   "replica runs the base in bf16 on CUDA.")
@click.option("--max-batch-size", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Prompts (of any adapters) decoded together in one batch.")
@click.option("--address", default=None, metavar="RAY",
              help="Deploy to this Ray cluster (e.g. auto, ray://head:10001) and return; "
                   "default: a local Ray in this process, serving until Ctrl-C.")
@click.option("--require-token", is_flag=True,
              help="Answer only requests carrying a live zoo token (`zoo token create`) as "
                   "`Authorization: Bearer`; a token with --prefix gets only its adapters.")
@store_options
def serve(base: str, tag: str | None, query: str | None, host: str, port: int,
          max_adapters: int, refresh: str, replicas: int, num_gpus: float, max_batch_size: int,
          address: str | None, require_token: bool, catalog_url: str | None,
          store_url: str | None) -> None:
    """Serve the adapters of registered base BASE (all, or --tag / --select) as an
    OpenAI-compatible API: GET /v1/models, POST /v1/completions with model = NAME@ALIAS, an
    adapter id prefix or BASE itself. Requests for different adapters share batches; an alias
    move is served within --refresh, without a restart.

    \b
    Example:
      zoo serve tiny-llama --tag prod --port 8760
      curl localhost:8760/v1/completions -H 'content-type: application/json' \\
        -d '{"model": "sentiment@prod", "prompt": "I loved it", "max_tokens": 8}'
    """
    import time

    from zoo.durations import parse_duration
    from zoo.settings import resolve_settings
    from zoo.workers.serve import ServeConfig, check_selection, start, stop

    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url,
                                ray_address=address)
    config = ServeConfig(base=base, catalog_url=settings.catalog_url,
                         store_url=settings.store_url, tag=tag, query=query,
                         max_adapters=max_adapters, refresh_s=parse_duration(refresh),
                         max_batch_size=max_batch_size, require_token=require_token)
    count = check_selection(config)  # a wrong BASE or query fails here, before Ray starts
    url = start(config, host=host, port=port, address=address, num_replicas=replicas,
                num_gpus=num_gpus)
    click.echo(f"serving {count} adapter(s) of {base} at {url}/v1 "
               f"({replicas} replica(s), refresh {refresh})")
    if address:
        click.echo(f"deployed to {address}; remove with `serve shutdown` or by redeploying")
        return
    click.echo("Ctrl-C stops", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop(base)
        from zoo.workers.cluster import shutdown_if_started

        shutdown_if_started()


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(serve)
