"""The ``zoo`` command: a thin click app over the library.

Errors are mapped to one line on stderr and an exit code HERE and nowhere else; ``--debug``
shows the traceback. Command modules import only click at module level: heavy libraries
(torch, transformers, ray) are imported inside the verbs that need them, so catalog verbs
answer in a few hundred milliseconds.
"""

from __future__ import annotations

import importlib
import sys

import click

from zoo import __version__

# Each module defines ``register(group: click.Group) -> None``.
COMMAND_MODULES = ("zoo.cli.catalog", "zoo.cli.transfer", "zoo.cli.jobs", "zoo.cli.evaluate",
                   "zoo.cli.bases", "zoo.cli.admin", "zoo.cli.server", "zoo.cli.export",
                   "zoo.cli.serve")


class ZooGroup(click.Group):
    """Turns ZooError (and a few builtins) into one line on stderr plus its exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("zoo: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
            if ctx.obj and ctx.obj.get("debug"):
                raise
            from zoo.errors import ZooError

            if isinstance(exc, ZooError):
                code = exc.exit_code
            else:  # a missing file is "not found", as documented
                code = 4 if isinstance(exc, FileNotFoundError) else 1
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not isinstance(exc, (ZooError, OSError, ValueError, LookupError)):
                message = f"{type(exc).__name__}: {message}"
            click.echo(f"zoo: error: {message}", err=True)
            sys.exit(code)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zoo")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """adapter zoo: train, catalog, evaluate and ship PRoLoRA adapters."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    cli(prog_name="zoo")


if __name__ == "__main__":
    main()
