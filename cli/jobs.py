"""Job verbs: ``zoo submit`` and ``zoo jobs ls|show|logs|cancel|wait``.

Thin commands over ``zoo.jobspec`` and ``zoo.workers``; Ray and torch are imported only by the
verbs that run jobs. A bad spec exits 2 with one line naming the field path, before anything
is written.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from zoo.cli.options import json_option, limit_option, wide_option
from zoo.job_state import JobState


def _settings(address: str | None = None) -> Any:
    from zoo.settings import resolve_settings

    return resolve_settings(ray_address=address)


def _catalog(settings: Any) -> Any:
    from zoo.storage.db import open_catalog

    return open_catalog(settings.catalog_url)


def _echo_json(value: Any) -> None:
    from zoo.cli.output import echo_json

    echo_json(value)


def _fail_unless_all_succeeded(states: dict[str, str]) -> None:
    from zoo.errors import JobError

    bad = {j: s for j, s in states.items() if s != "SUCCEEDED"}
    if bad:
        first = next(iter(bad))
        raise JobError(f"{len(bad)} of {len(states)} job(s) did not succeed "
                       f"(e.g. {first} {bad[first]}; see `zoo jobs show {first}`)")


@click.command(short_help="Run the training job(s) of a YAML spec.")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field, YAML-typed (--set train.lr=1e-3, "
                   "--set 'sweep.prolora.r=[4, 8]'); repeatable.")
@click.option("--dry-run", is_flag=True,
              help="Validate everything (fields, files, targets against the base model's "
                   "config) and list the jobs; submit nothing.")
@click.option("--wait/--no-wait", default=None,
              help="Cluster mode: wait for the jobs (default: return their ids at once). "
                   "Embedded mode always waits: the jobs run inside this command.")
@click.option("--address", metavar="ADDR", default=None,
              help="A Ray cluster's job server (http://head:8265); default: RAY_ADDRESS, else "
                   "a local Ray inside this command (embedded).")
@json_option
def submit(spec: str, overrides: tuple[str, ...], dry_run: bool, wait: bool | None,
           address: str | None, as_json: bool) -> None:
    """Run the training job(s) of a YAML SPEC; a sweep: section becomes one job per
    combination. Nothing is written unless the whole spec is valid. See docs/jobs.md for the
    fields.

    \b
    Examples:
      zoo submit job.yaml --dry-run
      zoo submit job.yaml --set prolora.r=16 --set 'sweep.train.seed=[0, 1, 2]'
      zoo submit job.yaml --address http://head:8265 --no-wait
    """
    from zoo.client import direct_only
    from zoo.jobspec import load_specs

    direct_only("submit")
    specs = load_specs(spec, overrides=overrides)
    if dry_run:
        _dry_run(specs, as_json)
        return
    from zoo.workers.submit import submit as submit_jobs

    settings = _settings(address)
    cluster = bool(settings.ray_address)
    if not cluster and wait is False:
        from zoo.errors import ConfigError

        raise ConfigError("--no-wait needs a cluster (--address or RAY_ADDRESS): embedded jobs "
                          "run inside this command, which waits for them")
    say = (lambda m: click.echo(m, err=True)) if not as_json else None
    if not cluster and not as_json:
        click.echo(f"running {len(specs)} job(s) on a local Ray (embedded mode)", err=True)
    result = submit_jobs(specs, catalog_url=settings.catalog_url, store_url=settings.store_url,
                         address=settings.ray_address, wait=True if not cluster else bool(wait),
                         progress=not as_json and sys.stderr.isatty(), echo=say)
    if as_json:
        _echo_json({"mode": result.mode, "sweep_id": result.sweep_id,
                    "submission_id": result.submission_id, "job_ids": result.job_ids,
                    "states": result.states})
    elif result.states:
        _print_outcome(settings, result)
    else:
        click.echo(f"sweep {result.sweep_id}: {len(result.job_ids)} job(s) submitted to "
                   f"{settings.redacted()['ray_address']} (Ray job {result.submission_id}); "
                   f"follow them with `zoo jobs ls --sweep {result.sweep_id[:10]}`")
        for job_id in result.job_ids:
            click.echo(job_id)
    if result.states:
        _fail_unless_all_succeeded(result.states)


def _dry_run(specs: list[Any], as_json: bool) -> None:
    rows = [{"name": s.display_name, "base_model": s.base_model, "task": s.task,
             "ray_options": s.resources.ray_options(), "retries": s.retries,
             "spec": s.to_dict()} for s in specs]
    from zoo.preflight import check_specs

    check_specs(specs)
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}  {row['task']}  {row['ray_options']}")
    click.echo(f"{len(rows)} job(s) valid; nothing submitted (--dry-run)")


def _print_outcome(settings: Any, result: Any) -> None:
    """Each job's state, adapter and main metric, then the sweep: what a submit produced."""
    from zoo.cli.output import Column, print_table
    from zoo.storage import jobs as job_api
    from zoo.storage.catalog import adapters_by_id

    with _catalog(settings) as catalog:
        views = job_api.list_jobs(catalog, ids=result.job_ids)
        made = [v.adapter_id for v in views if v.adapter_id]
        adapters = catalog.run(lambda s: adapters_by_id(s, made), readonly=True)

    def metric(v: Any) -> str:
        found = adapters.get(v.adapter_id or "", {}).get("metrics", {})
        for name in ("accuracy", "exact_match", "loss"):
            if name in found:
                return f"{name}={found[name]:.4g}"
        return ""

    print_table([Column("JOB", lambda v: v.id, cut=False),
                 Column("NAME", lambda v: v.name, min_width=10),
                 Column("STATE", lambda v: v.state, cut=False),
                 Column("ADAPTER", lambda v: v.adapter_id or v.error or "", min_width=12),
                 Column("METRIC", metric, priority=1, cut=False)], views)
    counts = {s: sum(v.state == s for v in views) for s in ("SUCCEEDED", "FAILED", "CANCELLED")}
    click.echo(f"sweep {result.sweep_id}: " + ", ".join(f"{n} {s.lower()}"
                                                        for s, n in counts.items() if n))


@click.group(short_help="List, inspect, follow, cancel and wait for training jobs.")
def jobs() -> None:
    """List, inspect, follow, cancel and wait for training jobs."""


def job_columns() -> list[Any]:
    """The columns of a job table, most important first (lower priority = kept longer)."""
    from zoo.cli.output import Column

    def when(v: dict[str, Any]) -> str:
        return v["submitted_at"][:16].replace("T", " ") if v["submitted_at"] else ""

    return [
        Column("ID", lambda v: v["id"], cut=False),
        Column("NAME", lambda v: v["name"], min_width=10),
        Column("STATE", lambda v: v["state"], cut=False),
        Column("ATTEMPT", lambda v: f"{v['attempt']}/{v['max_retries'] + 1}", priority=4,
               cut=False),
        Column("NODE", lambda v: v["node"] or "", priority=5, min_width=8),
        Column("ADAPTER", lambda v: v["adapter_id"] or "", priority=2, cut=False),
        Column("SUBMITTED", when, priority=3, cut=False),
        Column("ERROR", lambda v: v["error"] or "", priority=1, min_width=10),
    ]


@jobs.command("ls", short_help="List jobs, newest first.")
@click.option("--state", type=click.Choice([s.value for s in JobState], case_sensitive=False),
              help="Only jobs in this state (default: all).")
@click.option("--sweep", "sweep_id", metavar="ID",
              help="Only jobs of one submission (its sweep id, or a unique prefix of it).")
@limit_option(200, "jobs")
@wide_option
@json_option
def ls(state: str | None, sweep_id: str | None, limit: int, wide: bool, as_json: bool) -> None:
    """List jobs, newest first; a sweep's jobs are named with their point,
    e.g. sentiment[prolora.r=8,train.seed=0].

    \b
    Examples:
      zoo jobs ls --state running
      zoo jobs ls --sweep 01m8k2 --json
    """
    from zoo.cli.catalog import client

    with client() as zoo:
        views = zoo.jobs_ls(state=state, sweep_id=sweep_id, limit=limit)
    if as_json:
        _echo_json(views)
        return
    from zoo.cli.output import print_table

    print_table(job_columns(), views, wide=wide, empty="no jobs")


@jobs.command(short_help="Everything about one job, its whole error included.")
@click.argument("job_id")
@json_option
def show(job_id: str, as_json: bool) -> None:
    """Everything about one job: JOB_ID is an id or a unique prefix of one.

    \b
    Example:
      zoo jobs show 01m8k2
    """
    from zoo.cli.catalog import client

    with client() as zoo:
        data = zoo.job_show(job_id)
    if as_json:
        _echo_json(data)
        return
    from zoo.cli.output import safe

    spec = data.pop("spec")
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key:15} {safe(value)}")
    click.echo("spec:")
    click.echo(json.dumps(spec, indent=2, default=str))


@jobs.command(short_help="Print (or follow) a job's log.")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job ends.")
def logs(job_id: str, follow: bool) -> None:
    """Print a job's log: shipped by its worker as it runs, kept once the job is done.

    \b
    Example:
      zoo jobs logs 01m8k2 --follow
    """
    from zoo.cli.catalog import client

    with client() as zoo:
        zoo.stream_log(job_id, lambda text: click.echo(text, nl=False), follow=follow)


@jobs.command(short_help="Cancel jobs and kill their training processes.")
@click.argument("job_ids", nargs=-1, required=True)
def cancel(job_ids: tuple[str, ...]) -> None:
    """Cancel jobs: each is recorded CANCELLED and its training process killed; a job that
    already ended keeps its state.

    \b
    Example:
      zoo jobs cancel 01m8k2 01m8k3
    """
    from zoo.cli.catalog import client

    with client() as zoo:
        outcomes = zoo.job_cancel(job_ids)
    for job_id, outcome in outcomes.items():
        click.echo(f"{job_id}  {outcome}")


@jobs.command(short_help="Wait until jobs end; exit 8 unless all succeeded.")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up after this many seconds (default: wait as long as it takes).")
@json_option
def wait(job_ids: tuple[str, ...], timeout: float | None, as_json: bool) -> None:
    """Wait until the jobs end; exit 8 unless all succeeded.

    \b
    Example:
      zoo jobs wait 01m8k2 01m8k3 --timeout 3600
    """
    from zoo.cli.catalog import client

    with client() as zoo:
        states = zoo.wait_jobs(job_ids, timeout=timeout)
    if as_json:
        _echo_json(states)
    else:
        for job_id, state in states.items():
            click.echo(f"{job_id}  {state}")
    _fail_unless_all_succeeded(states)


def register(group: click.Group) -> None:
    """Add this module's commands to the ``zoo`` group."""
    group.add_command(submit)
    group.add_command(jobs)
