"""The options many commands share, defined once: one name, one help text, one default.

Old spellings stay accepted as hidden aliases (``--query`` for ``--select``, ``--top`` for
``--limit``, ``--metrics`` for ``--metric``): scripts keep working, help shows one vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class AliasedOption(click.Option):
    """An option whose extra spellings are accepted but not shown in ``--help``."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        names = list(args[0]) + list(hidden_aliases)
        super().__init__(names, *args[1:], **kwargs)
        self.hidden_aliases = hidden_aliases

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = [o for o in self.opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (the same fields every command uses) for scripts.")(fn)


def wide_option(fn: F) -> F:
    return click.option("--wide", is_flag=True,
                        help="Show every column at full width (tables otherwise fit the "
                             "terminal).")(fn)


def catalog_option(fn: F) -> F:
    """``--catalog URL`` (default: ZOO_CATALOG_URL, the config file, then $ZOO_HOME/catalog.db)."""
    return click.option("--catalog", "catalog_url", metavar="URL", default=None,
                        help="Catalog database (sqlite:///PATH or postgresql+psycopg://…); "
                             "default: ZOO_CATALOG_URL, the config file, $ZOO_HOME/catalog.db."
                        )(fn)


def store_options(fn: F) -> F:
    """``--catalog`` / ``--store``: override ZOO_CATALOG_URL / ZOO_STORE_URL for one command."""
    fn = click.option("--store", "store_url", metavar="URL", default=None,
                      help="Object store (a directory, file:// or s3://bucket/prefix); default: "
                           "ZOO_STORE_URL, the config file, $ZOO_HOME/store.")(fn)
    return catalog_option(fn)


def listen_options(*, port: int, port_help: str = "Port to listen on.") -> Callable[[F], F]:
    """``--host`` and ``--port`` of a command that listens: loopback unless told otherwise."""
    def decorate(fn: F) -> F:
        fn = click.option("--port", type=click.IntRange(1, 65535), default=port,
                          show_default=True, help=port_help)(fn)
        return click.option("--host", default="127.0.0.1", show_default=True,
                            help="Address to listen on; put a TLS reverse proxy in front for "
                                 "other hosts.")(fn)
    return decorate


def select_option(*, required: bool = False, help: str | None = None) -> Callable[[F], F]:
    """``--select QUERY``: which adapters, in the `zoo ls` query language (quote it)."""
    return click.option("--select", "query", cls=AliasedOption, hidden_aliases=("--query",),
                        required=required, default=None, metavar="'QUERY'",
                        help=help or "Adapters matching QUERY, the `zoo ls` language; quote "
                                     "it: --select 'task=seq-cls r<=8'.")


def limit_option(default: int, what: str = "rows") -> Callable[[F], F]:
    return click.option("--limit", "limit", cls=AliasedOption, hidden_aliases=("--top",),
                        type=click.IntRange(1, 100_000), default=default, show_default=True,
                        help=f"Show at most this many {what}.")
