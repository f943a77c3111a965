"""Every exit code the README documents is produced by the CLI, as one line on stderr; and the
catalog's own data cannot drive the terminal (control characters are shown, not obeyed)."""

from __future__ import annotations

import json
import pickle
import re
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import adapter_config, write_adapter  # noqa: E402

from zoo.cli.main import cli  # noqa: E402

sqlite_backend = bf.sqlite_backend
README = Path(__file__).resolve().parents[2] / "README.md"


def run(b, *args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env={**b.env(), **(env or {})})


def documented_codes() -> set[int]:
    """The exit codes in the README's table (rows like ``| 4 | not found … |``)."""
    section = README.read_text().split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.M)}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def produce(code: int, b, tmp: Path):
    """Make the CLI exit with ``code`` through a real mistake of that kind."""
    if code == 2:
        return run(b, "ls", "r<=8x")
    if code == 3:
        evil = tmp / "evil.safetensors"
        evil.write_bytes(pickle.dumps({"x": 1}, protocol=2))
        return run(b, "push", str(evil), "--name", "evil")
    if code == 4:
        return run(b, "push", str(tmp / "no-such-file.safetensors"), "--name", "x")
    if code == 5:
        path, digest = write_adapter(tmp / "a.safetensors", seed=60)
        assert run(b, "push", str(path), "--name", "damaged", "--alias", "damaged@x").exit_code == 0
        blob = b.store.path_for(digest)
        blob.chmod(0o644)
        blob.write_bytes(blob.read_bytes()[:-7])  # a truncated blob
        return run(b, "pull", "damaged@x", "-o", str(tmp / "out"))
    if code == 6:
        return run(b, "ls", env={"ZOO_CATALOG_URL": f"sqlite:///{tmp / 'new.db'}"})
    if code == 7:
        path, _ = write_adapter(tmp / "s.safetensors", seed=61)
        return run(b, "push", str(path), "--name", "s", env={
            "ZOO_STORE_URL": "s3://zoo-missing/adapters", "AWS_MAX_ATTEMPTS": "1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
            "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    if code == 8:
        from zoo.jobspec import load_specs
        from zoo.storage import jobs

        spec = tmp / "job.yaml"
        (tmp / "model").mkdir()
        (tmp / "model" / "config.json").write_text("{}")
        (tmp / "t.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
        spec.write_text("name: j\nbase_model: ./model\ntask: causal-lm\n"
                        "data: {train: t.jsonl}\nprolora: {target_modules: [q_proj]}\n")
        [job_id] = jobs.create_jobs(b.catalog, load_specs(spec))
        jobs.mark_failed(b.catalog, job_id, "boom")
        return run(b, "jobs", "wait", job_id)
    if code == 9:
        path, _ = write_adapter(tmp / "p.safetensors", seed=62)
        assert run(b, "push", str(path), "--name", "pinned", "--alias", "pinned@prod").exit_code == 0
        return run(b, "rm", "pinned@prod")
    raise AssertionError(f"no CLI case for exit code {code}")


def test_the_readme_documents_the_codes_this_file_produces():
    # 11 (refused by the team server) is produced in tests/server/test_auth.py
    assert documented_codes() == set(range(2, 10)) | {11}


@pytest.mark.parametrize("code", range(2, 10))
def test_each_documented_exit_code(sqlite_backend, tmp_path, code):
    assert code in documented_codes()
    result = produce(code, sqlite_backend, tmp_path)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr
    assert "Traceback" not in result.output


def test_control_characters_from_the_catalog_are_shown_not_obeyed(sqlite_backend, tmp_path):
    """A file's free text (base name, producer fields) reaches tables and `show` escaped."""
    from zoo.adapter_config import AdapterConfig
    from zoo.adapter_meta import file_metadata
    from zoo.safetensors_io import RawTensor, encode

    cfg = adapter_config(base_model="evil\x1b[31mred\x1b[0m")
    cfg["note"] = "\x1b]0;pwned\x07 and \u202eevil"
    config = AdapterConfig.from_dict(cfg)
    tensors = {k: RawTensor("F32", s, b"\0" * 4 * _numel(s))
               for k, s in config.expected_shapes().items()}
    path = tmp_path / "a.safetensors"
    path.write_bytes(encode(tensors, file_metadata(config)))
    assert run(sqlite_backend, "push", str(path), "--name", "ansi").exit_code == 0
    for args in (["ls"], ["ls", "--wide"], ["ls", "--all"]):
        out = run(sqlite_backend, *args).output
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
        assert "\\x1b[31m" in out
    [row] = json.loads(run(sqlite_backend, "ls", "--json").output)
    shown = run(sqlite_backend, "show", row["id"]).output
    assert "\x1b" not in shown and "\\u001b]0;pwned\\u0007" in shown  # JSON-escaped


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
