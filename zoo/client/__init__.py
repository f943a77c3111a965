"""One client interface, two ways to reach the zoo: direct (the catalog and store themselves)
and HTTP (a team server, ``ZOO_URL``). CLI verbs are written once against :class:`Client`.

With ``ZOO_URL`` set every verb goes through the server with a token (``ZOO_TOKEN``, else the
file ``$ZOO_HOME/token``, which must not be readable by group or others); without it nothing
changes. Importing this package is cheap: the implementations load what they need lazily.
"""

from __future__ import annotations

import os

from zoo.client.base import Client

__all__ = ["Client", "direct_only", "get_client", "remote_url"]


def remote_url() -> str | None:
    """The team server the CLI talks to, or None for direct (embedded) use."""
    return os.environ.get("ZOO_URL") or None


def get_client(*, catalog_url: str | None = None, store_url: str | None = None,
               workers: int = 8) -> Client:
    """The HTTP client when ``ZOO_URL`` is set, else the direct one over catalog and store."""
    url = remote_url()
    if url is not None:
        from zoo.client.http import HttpClient, resolve_token

        if catalog_url or store_url:
            from zoo.errors import ConfigError

            raise ConfigError("--catalog/--store name a catalog to use directly, but ZOO_URL "
                              "sends this command to a team server; unset one of them")

        return HttpClient(url, resolve_token())
    from zoo.client.direct import DirectClient

    return DirectClient(catalog_url=catalog_url, store_url=store_url, workers=workers)


def direct_only(verb: str) -> None:
    """Refuse a verb that does not go through a team server yet, rather than silently using
    whatever catalog this machine would open."""
    if remote_url() is not None:
        from zoo.errors import ConfigError

        raise ConfigError(f"`zoo {verb}` does not work through a team server yet (ZOO_URL is "
                          "set); run it where the catalog is, or unset ZOO_URL")
