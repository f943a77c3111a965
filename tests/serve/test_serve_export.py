"""``zoo export``: every layout loads with PeftModel.from_pretrained and matches the zoo; to a
directory and to an s3:// prefix; verified, atomic, idempotent, immutable per digest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
import blob_fixtures as bf  # noqa: E402
from blob_fixtures import real_adapter  # noqa: E402

import zoo  # noqa: E402
from zoo.cli.main import cli  # noqa: E402
from zoo.errors import ConfigError, IntegrityError  # noqa: E402
from zoo.storage.export import MANIFEST, export, folder_name  # noqa: E402
from zoo.storage.publish import publish  # noqa: E402
from zoo.storage.pull import PullItem  # noqa: E402

s3_env = bf.s3_env
sqlite_backend = bf.sqlite_backend
IDS = torch.tensor([[1, 5, 9, 12, 30, 41, 7]])


@pytest.fixture
def published(sqlite_backend, tmp_path):
    """Three real adapters on one saved tiny base, tagged prod; x@prod on the first."""
    b = sqlite_backend
    base_dir = tmp_path / "base"
    rows = []
    for seed in range(3):
        path, _ = real_adapter(tmp_path / f"a{seed}.safetensors", seed=seed, base_dir=base_dir)
        rows.append(publish(b.catalog, b.store, path, name=f"ad{seed}", tags=["prod"],
                            aliases=["ad0@prod"] if seed == 0 else []))
    return b, base_dir, rows, [zoo.Adapter.load(tmp_path / f"a{s}.safetensors") for s in range(3)]


def zoo_logits(base_dir, adapter):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    zoo.attach(model, adapter)
    with torch.no_grad():
        return model(input_ids=IDS).logits


def peft_logits(base_dir, folder):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(folder))
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


@pytest.mark.parametrize("layout", ["peft", "vllm", "ray-serve", "lorax"])
def test_each_layout_loads_in_peft_and_matches_the_zoo(published, tmp_path, layout):
    b, base_dir, rows, adapters = published
    dest = tmp_path / f"out-{layout}"
    result = export(b.catalog, b.store, dest=str(dest), layout=layout, tag="prod")
    assert result.written == 3 and result.present == 0
    for row, adapter, got in zip(rows, adapters, result.adapters, strict=True):
        assert got.folder == f"{row.adapter['name']}-{adapter.digest[:12]}"
        folder = dest / got.folder
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json",
                                                           "adapter_model.safetensors"]
        torch.testing.assert_close(peft_logits(base_dir, folder), zoo_logits(base_dir, adapter),
                                   atol=1e-5, rtol=1e-5)
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["layout"] == layout
    assert {a["digest"] for a in manifest["adapters"]} == {a.digest for a in adapters}
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    again = export(b.catalog, b.store, dest=str(dest), layout=layout, tag="prod")
    assert again.written == 0 and again.present == 3  # a rerun exports nothing new
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before
    if layout == "vllm":
        assert again.lora_modules() == [f"{a.folder}={dest / a.folder}" for a in result.adapters]


def test_alias_move_exports_a_new_folder_and_keeps_the_old(published, tmp_path):
    from zoo.storage.catalog import set_alias

    b, _, rows, adapters = published
    dest = tmp_path / "out"
    first = export(b.catalog, b.store, ["ad0@prod"], dest=str(dest), layout="lorax")
    old = dest / first.adapters[0].folder
    old_bytes = (old / "adapter_model.safetensors").read_bytes()
    # another version of ad0: adapter 1's bytes published under the name ad0; move the alias
    moved = publish(b.catalog, b.store, adapters[1].to_bytes(), name="ad0")
    with b.catalog.transaction() as session:
        set_alias(session, "ad0@prod", moved.id)
    second = export(b.catalog, b.store, ["ad0@prod"], dest=str(dest), layout="lorax")
    assert second.adapters[0].folder == f"ad0-{adapters[1].digest[:12]}" != first.adapters[0].folder
    assert (old / "adapter_model.safetensors").read_bytes() == old_bytes  # deployed folder intact
    manifest = json.loads((dest / MANIFEST).read_text())
    assert len(manifest["adapters"]) == 2


def test_corrupt_blob_writes_nothing(published, tmp_path):
    b, _, rows, adapters = published
    path = b.store.path_for(adapters[2].digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(IntegrityError, match=rows[2].id):
        export(b.catalog, b.store, [rows[2].id], dest=str(dest), layout="peft")
    assert not (dest / MANIFEST).exists()
    assert [p.name for p in dest.iterdir()] == []  # no half-written folder


def test_s3_prefix(published, s3_env, s3_bucket, tmp_path):
    import boto3

    b, base_dir, rows, adapters = published
    uri = f"s3://{s3_bucket}/serving/loras"
    result = export(b.catalog, b.store, dest=uri, layout="lorax", tag="prod")
    assert result.written == 3
    s3 = boto3.client("s3", endpoint_url=s3_env)
    for got, adapter in zip(result.adapters, adapters, strict=True):
        assert got.path == f"{uri}/{got.folder}"
        local = tmp_path / "fetched" / got.folder
        local.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            s3.download_file(s3_bucket, f"serving/loras/{got.folder}/{name}", str(local / name))
        torch.testing.assert_close(peft_logits(base_dir, local), zoo_logits(base_dir, adapter),
                                   atol=1e-5, rtol=1e-5)
    body = s3.get_object(Bucket=s3_bucket, Key=f"serving/loras/{MANIFEST}")["Body"].read()
    assert len(json.loads(body)["adapters"]) == 3
    again = export(b.catalog, b.store, dest=uri + "/", layout="lorax", tag="prod")
    assert again.written == 0 and again.present == 3


def test_layout_mismatch_and_bad_layout_are_refused(published, tmp_path):
    b, _, rows, _ = published
    ref = rows[1].id
    export(b.catalog, b.store, [ref], dest=str(tmp_path / "o"), layout="peft")
    with pytest.raises(ConfigError, match="already holds a 'peft' export"):
        export(b.catalog, b.store, [ref], dest=str(tmp_path / "o"), layout="vllm")
    with pytest.raises(ConfigError, match="layout"):
        export(b.catalog, b.store, [ref], dest=str(tmp_path / "p"), layout="triton")
    assert not (tmp_path / "p").exists()  # refused before anything is written
    with pytest.raises(ConfigError, match="nothing to export"):
        export(b.catalog, b.store, [], dest=str(tmp_path / "q"), layout="peft")


def test_folder_names_are_immutable_per_digest():
    item = PullItem("01ABC", "sentiment", "ab" * 32, 10)
    assert folder_name(item) == "sentiment-" + "ab" * 6


def test_cli_vllm_prints_lora_modules_and_says_nothing_new(published, tmp_path):
    b, _, _, _ = published
    dest = tmp_path / "vllm"
    runner = CliRunner()
    args = ["export", "--tag", "prod", "--layout", "vllm", str(dest)]
    first = runner.invoke(cli, args, env=b.env())
    assert first.exit_code == 0, first.output
    modules = json.loads(first.stdout)
    assert len(modules) == 3 and all("=" in m and str(dest) in m for m in modules)
    assert "exported 3" in first.stderr
    second = runner.invoke(cli, args, env=b.env())
    assert second.exit_code == 0 and "nothing new" in second.stderr
    assert json.loads(second.stdout) == modules
    bad = runner.invoke(cli, ["export", "nope@prod", "--layout", "peft", str(dest)], env=b.env())
    assert bad.exit_code == 4 and bad.stderr.startswith("zoo: error:")
