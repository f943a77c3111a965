"""``zoo push | pull | fsck | gc`` end to end through the CLI, on SQLite + local store and on
PostgreSQL + S3 (SeaweedFS): the round trip of acceptance 1, integrity (4) and bad input (5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import real_adapter, sha256_path, write_adapter  # noqa: E402

from zoo.cli.main import cli  # noqa: E402

# shared fixtures (tests/storage/blob_fixtures.py)
backend = bf.backend
s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend


def zoo(b, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), env=b.env(), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_round_trip_push_ls_tag_alias_pull(backend, tmp_path):
    native, digest = real_adapter(tmp_path / "src" / "sent.safetensors", seed=5)
    other, other_digest = write_adapter(tmp_path / "src" / "other.safetensors", seed=6)

    adapter_id = zoo(backend, "push", str(native), "--name", "sentiment", "--tag", "team=nlp",
                     "--alias", "sentiment@staging").stdout.strip()
    pushed = json.loads(zoo(backend, "push", str(other), "--name", "other", "--json").stdout)
    assert pushed["digest"] == other_digest and pushed["uploaded"] is True

    listed = json.loads(zoo(backend, "ls", "--json").stdout)
    assert {a["id"]: a["digest"] for a in listed} == {adapter_id: digest,
                                                      pushed["id"]: other_digest}
    zoo(backend, "tag", adapter_id, "prod")
    zoo(backend, "alias", "set", "sentiment@prod", adapter_id)
    by_tag = json.loads(zoo(backend, "ls", "tag:prod", "--json").stdout)
    assert [a["id"] for a in by_tag] == [adapter_id]

    out = tmp_path / "out"
    res = json.loads(zoo(backend, "pull", "sentiment@prod", "-o", str(out), "--json").stdout)
    (pulled,) = res["adapters"]
    assert pulled["id"] == adapter_id and not pulled["skipped"]
    assert Path(pulled["path"]) == out / f"sentiment-{adapter_id}.safetensors"
    assert sha256_path(Path(pulled["path"])) == digest == sha256_path(native)

    res = zoo(backend, "pull", "--tag", "prod", "-o", str(out))
    assert "0 downloaded, 1 already present" in res.stdout

    res = json.loads(zoo(backend, "pull", "--query", "tag:team=nlp", "-o", str(out / "peft"),
                         "--format", "peft", "--json").stdout)
    peft_dir = Path(res["adapters"][0]["path"])
    from zoo.adapter import Adapter

    expected = Adapter.load(native).to_peft(tmp_path / "expected-peft")
    assert sha256_path(peft_dir / "adapter_model.safetensors") == sha256_path(
        expected / "adapter_model.safetensors")
    # the PEFT export re-imports to exactly the bytes of a push of that export
    assert Adapter.from_peft(peft_dir).digest == Adapter.from_peft(expected).digest

    both = json.loads(zoo(backend, "pull", adapter_id, pushed["id"][:12], "-o",
                          str(tmp_path / "both"), "--workers", "2", "--json").stdout)
    assert sorted(sha256_path(Path(a["path"])) for a in both["adapters"]) == sorted(
        [digest, other_digest])

    fsck = json.loads(zoo(backend, "fsck", "--verify", "--json").stdout)
    assert fsck["ok"] and fsck["orphans"] == [] and fsck["adapter_count"] == 2


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupt_blob_makes_pull_fail_cleanly(backend, tmp_path, how):
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=8)
    adapter_id = zoo(backend, "push", str(path), "--name", "fragile").stdout.strip()
    if backend.kind == "sqlite-local":
        blob = backend.store.path_for(digest)
        data = blob.read_bytes()
    else:
        key = backend.store.key_for(digest)
        data = backend.store.client.get_object(Bucket=backend.store.bucket, Key=key)["Body"].read()
    data = data[:-50] if how == "truncate" else data[:100] + bytes([data[100] ^ 4]) + data[101:]
    if backend.kind == "sqlite-local":
        blob.write_bytes(data)
    else:
        backend.store.client.put_object(Bucket=backend.store.bucket, Key=key, Body=data)

    out = tmp_path / "out"
    res = zoo(backend, "pull", adapter_id, "-o", str(out), ok=False)
    assert res.exit_code == 5
    assert adapter_id in res.stderr and digest in res.stderr and "fragile" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists()  # nothing partial, no temp file, not even the -o directory

    fsck = zoo(backend, "fsck", "--verify", ok=False)
    assert fsck.exit_code == 5 and digest in fsck.stdout


def test_bad_input_is_one_line_and_changes_nothing(sqlite_backend, tmp_path):
    b = sqlite_backend
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=9)
    peft = tmp_path / "pickle-peft"
    peft.mkdir()
    (peft / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (peft / "adapter_model.bin").write_bytes(b"\x80\x02}q\x00.")
    before = b.counts()
    cases = [
        (["push", str(path), "--name", "../../etc/passwd"], 2, "traversal"),
        (["push", str(path), "--name", "/abs/olute"], 2, "absolute"),
        (["push", str(path), "--name", "x" * 10_000], 2, "10000 characters"),
        (["push", str(path), "--name", "ok", "--tag", "../x"], 2, "tag"),
        (["push", str(peft), "--name", "peft"], 3, "pickle"),
        (["push", str(tmp_path / "missing.safetensors"), "--name", "m"], 4, "missing"),
        (["pull", "nosuchid", "-o", str(tmp_path / "o")], 4, "nosuchid"),
        (["pull", "ghost@prod", "-o", str(tmp_path / "o")], 4, "ghost@prod"),
        (["pull", "--query", "name='x'; DROP TABLE adapters", "-o", str(tmp_path / "o")], 2, ""),
        (["gc", "--grace", "soon"], 2, "soon"),
    ]
    for args, code, needle in cases:
        res = zoo(b, *args, ok=False)
        assert res.exit_code == code, (args, res.output)
        line = res.stderr.strip()
        assert line.startswith("zoo: error:") and "\n" not in line, (args, line)
        assert needle in line and len(line) < 400, (args, line)
    assert b.counts() == before
    assert b.blob_digests() == set()
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_fsck_and_gc_cli(sqlite_backend, tmp_path):
    b = sqlite_backend
    path, digest = write_adapter(tmp_path / "a.safetensors", seed=10)
    zoo(b, "push", str(path), "--name", "kept")
    orphan_path, orphan = write_adapter(tmp_path / "o.safetensors", seed=11)
    b.store.put_file(orphan, orphan_path)

    res = zoo(b, "fsck")
    assert f"orphan blob sha256:{orphan}" in res.stdout and res.stdout.strip().endswith("ok")
    assert "would remove 0" in zoo(b, "gc", "--dry-run").stdout  # younger than 1h
    dry = json.loads(zoo(b, "gc", "--dry-run", "--grace", "0", "--json").stdout)
    assert [x["digest"] for x in dry["adapter_blobs"]["removed"]] == [orphan]
    assert orphan in b.blob_digests()
    assert f"removed adapter blob sha256:{orphan}" in zoo(b, "gc", "--grace", "0s").stdout
    assert b.blob_digests() == {digest}
    b.store.delete(digest)
    res = zoo(b, "fsck", ok=False)
    assert res.exit_code == 5 and f"missing blob sha256:{digest}" in res.stdout


def test_push_fsck_gc_do_not_import_torch(sqlite_backend, tmp_path):
    path, _ = write_adapter(tmp_path / "a.safetensors", seed=12)
    code = (
        "import sys\n"
        "from zoo.cli.main import cli\n"
        "for args in (['push', sys.argv[1], '--name', 'light'], ['fsck'], ['gc', '--dry-run']):\n"
        "    try:\n"
        "        cli(args, standalone_mode=False)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e\n"
        "heavy = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, **sqlite_backend.env()}
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
