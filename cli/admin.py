"""``zoo token create|ls|revoke`` and ``zoo audit``: who may do what, and who did what.

Through the client interface: with direct catalog access the database owner is the admin;
through a team server (ZOO_URL) these verbs need an admin token (``zoo audit`` a read token).
"""

from __future__ import annotations

from typing import Any

import click

from zoo.cli.options import catalog_option, json_option, limit_option


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(token)
    group.add_command(audit)


def _echo_json(value: Any) -> None:
    from zoo.cli.output import echo_json

    echo_json(value)


def _seconds(text: str | None) -> float | None:
    from zoo.durations import parse_duration

    return None if text is None else parse_duration(text)


@click.group(short_help="Create, list and revoke team-server tokens.")
def token() -> None:
    """API tokens of the team server (`zoo server`): read browses and pulls; write also pushes,
    tags, moves aliases, submits jobs; admin also manages tokens and runs gc.

    \b
    Examples:
      zoo token create ci --scope read
      zoo token create team-b --scope write --prefix team-b. --expires 90d
    """


@token.command("create", short_help="Create a token; prints its secret once.")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True,
              help="read: browse and pull; write: also push, tag, alias, submit; admin: also "
                   "tokens and gc.")
@click.option("--prefix", default=None, metavar="P",
              help="Limit writes to adapter names (and their aliases) starting with P.")
@click.option("--expires", default=None, metavar="DURATION",
              help="Expire after this long (30d, 12h, 2w); default: never.")
@catalog_option
@json_option
def token_create(name: str, scope: str, prefix: str | None, expires: str | None,
                 catalog_url: str | None, as_json: bool) -> None:
    """Create the token NAME and print its secret: it is shown this once and stored only as a
    hash. Give it to its holder as ZOO_TOKEN (or the file $ZOO_HOME/token, mode 600).

    \b
    Example:
      zoo token create team-b --scope write --prefix team-b. --expires 90d --json
    """
    from zoo.cli.catalog import client

    with client(catalog_url) as zoo:
        made = zoo.token_create(name, scope=scope, prefix=prefix, expires_s=_seconds(expires))
    if as_json:
        _echo_json(made)
        return
    click.echo(made["token"])
    limits = f", names starting with {made['prefix']!r}" if made["prefix"] else ""
    until = f", expires {made['expires_at'][:16].replace('T', ' ')}" if made["expires_at"] else ""
    click.echo(f"token {made['name']}: scope {made['scope']}{limits}{until}; the secret above "
               "is shown only now", err=True)


@token.command("ls", short_help="List tokens (never their secrets).")
@catalog_option
@json_option
def token_ls(catalog_url: str | None, as_json: bool) -> None:
    """List tokens, revoked and expired ones included; secrets are never shown.

    \b
    Example:
      zoo token ls --json
    """
    from zoo.cli.catalog import client

    with client(catalog_url) as zoo:
        rows = zoo.token_ls()
    if as_json:
        _echo_json(rows)
        return
    from zoo.cli.output import Column, print_table

    def state(r: dict[str, Any]) -> str:
        return "active" if r["active"] else ("revoked" if r["revoked_at"] else "expired")

    print_table([Column("NAME", lambda r: r["name"], min_width=10),
                 Column("SCOPE", lambda r: r["scope"], cut=False),
                 Column("PREFIX", lambda r: r["prefix"] or "-", min_width=8),
                 Column("STATE", state, cut=False),
                 Column("EXPIRES", lambda r: (r["expires_at"] or "-")[:16].replace("T", " "),
                        priority=1, cut=False),
                 Column("CREATED", lambda r: r["created_at"][:16].replace("T", " "), priority=2,
                        cut=False)], rows, empty="no tokens")


@token.command("revoke", short_help="Revoke a token for good.")
@click.argument("name")
@catalog_option
@json_option
def token_revoke(name: str, catalog_url: str | None, as_json: bool) -> None:
    """Revoke the token NAME: refused from now on (it stays listed as revoked).

    \b
    Example:
      zoo token revoke team-b
    """
    from zoo.cli.catalog import client

    with client(catalog_url) as zoo:
        row = zoo.token_revoke(name)
    if as_json:
        _echo_json(row)
    else:
        click.echo(f"revoked token {row['name']}")


@click.command(short_help="Who changed what, and when.")
@click.option("--since", default=None, metavar="DURATION",
              help="Only changes newer than this (1h, 1d, 2w); default: all.")
@click.option("--verb", default=None, metavar="VERB",
              help="Only this verb: push tag untag alias.set alias.rm rm submit cancel eval "
                   "token.create token.revoke gc.")
@click.option("--target", default=None, metavar="T",
              help="Only this target (NAME@ALIAS, 'NAME ID', job:ID, token:NAME).")
@limit_option(1000, "changes (the newest)")
@catalog_option
@json_option
def audit(since: str | None, verb: str | None, target: str | None, limit: int,
          catalog_url: str | None, as_json: bool) -> None:
    """The audit trail, oldest first: when, who (a token name, or local:USER for direct use),
    the verb, its target, and what was there before and after.

    \b
    Example:
      zoo audit --since 1d --json
    """
    from zoo.cli.catalog import client

    with client(catalog_url) as zoo:
        rows = zoo.audit(since_s=_seconds(since), verb=verb, target=target, limit=limit)
    if as_json:
        _echo_json(rows)
        return
    import json

    from zoo.cli.output import Column, print_table

    def change(r: dict[str, Any]) -> str:
        before = "" if r["before"] is None else json.dumps(r["before"], ensure_ascii=False)
        after = "" if r["after"] is None else json.dumps(r["after"], ensure_ascii=False)
        return f"{before} -> {after}" if before and after else (after or before)

    print_table([Column("WHEN", lambda r: r["at"][:19].replace("T", " "), cut=False),
                 Column("ACTOR", lambda r: r["actor"], min_width=10),
                 Column("VERB", lambda r: r["verb"], cut=False),
                 Column("TARGET", lambda r: r["target"], min_width=12),
                 Column("CHANGE", change, priority=1, min_width=12)], rows,
                empty="no changes recorded")
