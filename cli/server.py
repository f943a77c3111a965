"""``zoo server``: the team server (REST API and web catalog) over this machine's catalog."""

from __future__ import annotations

import os

import click

from zoo.cli.options import listen_options, store_options


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(server)


@click.command(short_help="Serve the catalog to a team: REST API, tokens, audit.")
@listen_options(port=8750)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes; one per core serves a busy team best (SQLite and "
                   "PostgreSQL catalogs both take several).")
@store_options
def server(host: str, port: int, workers: int, catalog_url: str | None,
           store_url: str | None) -> None:
    """Serve the configured catalog and store over HTTP: the REST API under /api/v1 (its
    OpenAPI document at /openapi.json) and the web catalog. Every request needs a token
    (`zoo token create`) except GET /healthz. Plain HTTP: terminate TLS in a reverse proxy.

    \b
    Example:
      zoo server --host 127.0.0.1 --port 8750 --workers 4
    """
    from zoo.client import direct_only

    direct_only("server")
    import uvicorn

    from zoo.server.app import create_app
    from zoo.settings import ENV_VARS, resolve_settings

    settings = resolve_settings(catalog_url=catalog_url, store_url=store_url)
    options = {"host": host, "port": port, "log_level": "warning", "access_log": False,
               "server_header": False}
    click.echo(f"zoo server on http://{host}:{port} (Ctrl-C stops it)", err=True)
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # each worker process builds its app from the environment: hand it what the flags chose
    os.environ.update({ENV_VARS["catalog_url"]: settings.catalog_url,
                       ENV_VARS["store_url"]: settings.store_url, "ZOO_HOME": settings.home})
    uvicorn.run("zoo.server.app:create_app", factory=True, workers=workers, **options)
