"""What a newcomer reaches for in the first hour: `zoo rm`, the one-line Python API, help that
teaches, shell-cut queries explained, tables that fit 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import write_adapter  # noqa: E402

from zoo.cli.main import cli  # noqa: E402

sqlite_backend = bf.sqlite_backend


def zoo(b, *args: str, code: int = 0, env: dict | None = None):
    result = CliRunner().invoke(cli, list(args), env={**b.env(), **(env or {})})
    assert result.exit_code == code, result.output
    return result


def test_rm_refuses_an_aliased_adapter_then_removes(sqlite_backend, tmp_path):
    b = sqlite_backend
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=70)
    adapter_id = zoo(b, "push", str(path), "--name", "old", "--alias", "old@prod",
                     "--tag", "t").stdout.strip()
    refused = zoo(b, "rm", adapter_id, code=9)
    assert "aliases point at" in refused.stderr and "--force" in refused.stderr
    assert b.counts()["adapters"] == 1
    out = zoo(b, "rm", "old@prod", "--force", "--json")
    assert [d["id"] for d in json.loads(out.stdout)] == [adapter_id]
    assert b.counts()["adapters"] == 0 and b.counts()["aliases"] == 0 and b.counts()["tags"] == 0
    assert digest in b.blob_digests()  # the bytes go at the next gc
    zoo(b, "show", adapter_id, code=4)


def test_load_and_publish_in_a_fresh_interpreter(sqlite_backend, tmp_path):
    """`import zoo` is all it takes: no internal imports (MLflow needs one line too)."""
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=71)
    code = (
        "import hashlib, sys, zoo\n"
        "entry = zoo.publish(sys.argv[1], name='py', tags=['from-python'], aliases=['prod'])\n"
        "adapter = zoo.load('py@prod')\n"
        "again = zoo.load(entry['id'][:10])\n"
        "assert hashlib.sha256(adapter.to_bytes()).hexdigest() == entry['digest']\n"
        "assert again.to_bytes() == adapter.to_bytes()\n"
        "print(entry['digest'], adapter.config.r)\n"
    )
    env = {**os.environ, **sqlite_backend.env(), "ZOO_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [digest, "4"]
    cached = list((tmp_path / "home" / "cache" / "adapters").iterdir())
    assert [p.name for p in cached] == [f"{digest}.safetensors"]  # cached like a pull


def _commands(cmd, path):
    import click

    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, [*path, name])
    else:
        yield path, cmd


def test_help_teaches():
    """Every command has an example and a short help that is not cut mid-sentence; every
    visible option says what it does; old spellings are accepted but not shown."""
    import click

    for path, cmd in _commands(cli, []):
        assert "Example" in (cmd.help or ""), path
        assert not cmd.get_short_help_str(limit=60).endswith("..."), path
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, (path, param.opts)
    top = CliRunner().invoke(cli, ["--help"], env={"COLUMNS": "80"}).stdout
    listing = top.split("Commands:")[1].splitlines()
    assert not [line for line in listing if line.endswith("...")] and "  rm " in top
    for args, shown, hidden in [(["eval"], "--metric ", "--metrics"),
                                (["leaderboard"], "--limit", "--top"),
                                (["pull"], "--select", "--query"),
                                (["jobs", "ls"], "--limit", "--top")]:
        text = CliRunner().invoke(cli, [*args, "--help"]).stdout
        assert shown in text and hidden not in text, (args, text)
    dataset_help = " ".join(CliRunner().invoke(cli, ["eval", "--help"]).stdout.split())
    assert '"prompt" and "completion"' in dataset_help and '"text" and "label"' in dataset_help


def test_old_spellings_still_work(sqlite_backend, tmp_path):
    b = sqlite_backend
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=72)
    zoo(b, "push", str(path), "--name", "old-spelling")
    by_select = zoo(b, "pull", "--select", "name=old-spelling", "-o", str(tmp_path / "o1"))
    by_query = zoo(b, "pull", "--query", "name=old-spelling", "-o", str(tmp_path / "o2"))
    assert by_select.stdout == by_query.stdout.replace("o2", "o1")
    assert zoo(b, "jobs", "ls", "--top", "3", "--json").stdout.strip() == "[]"


def test_written_files_get_the_umask_permissions(sqlite_backend, tmp_path):
    """Blobs in a local store, pulled adapters and PEFT exports are ordinary files (0644 under
    umask 022), not mkstemp's 0600: a team shares the store and the pulled folders."""
    b = sqlite_backend
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=73)
    old = os.umask(0o022)
    try:
        zoo(b, "push", str(path), "--name", "perm", "--tag", "perm")
        assert b.store.path_for(digest).stat().st_mode & 0o777 == 0o644
        zoo(b, "pull", "--tag", "perm", "-o", str(tmp_path / "native"))
        zoo(b, "pull", "--tag", "perm", "-o", str(tmp_path / "peft"), "--format", "peft")
    finally:
        os.umask(old)
    written = [*(tmp_path / "native").rglob("*"), *(tmp_path / "peft").rglob("*")]
    modes = {p.name: p.stat().st_mode & 0o777 for p in written if p.is_file()}
    assert len(modes) >= 3 and set(modes.values()) == {0o644}, modes


def _readme_block(heading: str) -> str:
    """The first ```bash block under ``heading`` in the README, verbatim."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split(f"\n{heading}\n", 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0] + "\n"


def test_the_readme_first_hour_runs_as_written(tmp_path):
    """The walkthrough, run by bash with `set -euo pipefail` from a directory laid out like a
    clone (demo/ and zoo/ as in the repo), as a newcomer's shell would: no zoo or Ray variables
    inherited from the test session."""
    root = Path(__file__).resolve().parents[2]
    for name in ("demo", "zoo"):
        (tmp_path / name).symlink_to(root / name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZOO_", "RAY_", "AWS_")) and k != "COLUMNS"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", _readme_block("## The first hour")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "2 succeeded" in out and "sentiment[prolora.r=4]" in out
    assert "sentiment@prod" in out and "evaluated 2 adapter(s) on reviews-100.jsonl" in out
    assert (tmp_path / "adapters").is_dir() and len(list((tmp_path / "adapters").iterdir())) == 1
    assert "<svg" in (tmp_path / "board.svg").read_text()[:500]
    assert "would remove adapter blob" in out  # the removed adapter's bytes wait for gc
    assert "Traceback" not in done.stderr and "gcs_client" not in done.stderr


def test_the_job_spec_table_lists_every_field():
    """docs/jobs.md's table has a row for every field a spec accepts (taken from the schema
    the validator uses), so a new option cannot ship undocumented."""
    from zoo.jobspec import leaf_paths

    doc = (Path(__file__).resolve().parents[2] / "docs" / "jobs.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    documented = {name for line in rows for name in line.split("|")[1].replace("`", "").replace(
        ",", " ").split()}
    assert set(leaf_paths()) | {"sweep"} <= documented, set(leaf_paths()) - documented
