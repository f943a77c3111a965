"""Acceptance 3: for the same catalog, the CLI through the server and the CLI used directly print
the same ``--json``, and a pull through the server is byte-identical and verified (a corrupted
blob is refused with nothing written), on SQLite + a local store and PostgreSQL + S3."""

from __future__ import annotations

import hashlib
import json

from server_fixtures import push_direct


def both(s, *args: str) -> str:
    remote, direct = s.zoo(*args), s.zoo(*args, remote=False)
    assert remote.stdout == direct.stdout, args
    return remote.stdout


def _evaluate(s, ids: list[str], data) -> str:
    from zoo.storage.evals import write_results

    fingerprint = hashlib.sha256(data.read_bytes()).hexdigest()
    write_results(s.backend.catalog, [
        {"id": i, "metrics": {"accuracy": 0.5 + n / 10, "loss": 1.0 / (n + 1)}, "examples": 8,
         "elapsed_s": 0.1, "error": None} for n, i in enumerate(ids)],
        fingerprint=fingerprint, dataset_name=data.name)
    return fingerprint


def test_listing_show_and_leaderboard_agree(served, tmp_path):
    s = served
    a, _, _ = push_direct(s, tmp_path, "sent", 1, "--tag", "prod", "--alias", "sent@prod")
    b, _, _ = push_direct(s, tmp_path, "sent", 2, "--tag", "team=nlp")
    c, _, _ = push_direct(s, tmp_path, "other.x", 3, "--tag", "prod")
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "good", "label": 1}\n')
    fingerprint = _evaluate(s, [a, b, c], data)

    listed = json.loads(both(s, "ls", "--json"))
    assert {d["id"] for d in listed} == {a, b, c}
    assert [d["id"] for d in json.loads(both(s, "ls", "tag:prod", "--json"))] == [c, a]
    both(s, "ls", "name=sent", "--sort", "-metrics.accuracy", "--json")
    both(s, "ls", "--all", "--json")
    both(s, "ls", "--limit", "1", "-q")
    both(s, "ls", "--wide")
    for ref in (a, a[:20], "sent@prod"):
        assert json.loads(both(s, "show", ref, "--json"))["id"] == a
    both(s, "show", "sent@prod")
    board = json.loads(both(s, "leaderboard", "--dataset", fingerprint, "--metric", "accuracy",
                            "--json"))
    assert [r["id"] for r in board] == [c, b, a]
    both(s, "leaderboard", "--dataset", str(data), "--metric", "loss", "--select", "name=sent",
         "--json")
    both(s, "leaderboard", "--dataset", str(data), "--metric", "accuracy")
    both(s, "alias", "ls", "--json")
    both(s, "base", "ls", "--json")

    missing = s.zoo("show", "sent@nope", ok=False)
    direct = s.zoo("show", "sent@nope", remote=False, ok=False)
    assert (missing.exit_code, missing.stderr) == (direct.exit_code, direct.stderr) == (
        4, direct.stderr)
    bad = s.zoo("ls", "r<<3", ok=False)
    assert (bad.exit_code, bad.stderr) == (2, s.zoo("ls", "r<<3", remote=False, ok=False).stderr)


def test_keyset_pages_through_the_api_cover_everything_once(served, tmp_path):
    s = served
    ids = {push_direct(s, tmp_path, f"m{n}", n)[0] for n in range(5)}
    seen, after = [], None
    while True:
        path = "/api/v1/adapters?limit=2&sort=name" + (f"&after={after}" if after else "")
        status, page = s.api("GET", path, token=s.admin)
        assert status == 200, page
        seen += [d["name"] for d in page["adapters"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [f"m{n}" for n in range(5)] and len(ids) == 5
    status, body = s.api("GET", "/api/v1/adapters?after=not-a-cursor", token=s.admin)
    assert status == 400 and body["exit_code"] == 2


def test_pull_is_byte_identical_and_refuses_a_corrupted_blob(served, tmp_path):
    s = served
    a, path, digest = push_direct(s, tmp_path, "sent", 1, "--alias", "sent@prod")
    out_remote, out_direct = tmp_path / "remote", tmp_path / "direct"
    res = json.loads(s.zoo("pull", "sent@prod", "-o", str(out_remote), "--json").stdout)
    s.zoo("pull", "sent@prod", "-o", str(out_direct), remote=False)
    pulled = out_remote / f"sent-{a}.safetensors"
    assert res["adapters"][0]["path"] == str(pulled) and not res["adapters"][0]["skipped"]
    assert pulled.read_bytes() == path.read_bytes() == (out_direct / pulled.name).read_bytes()
    again = json.loads(s.zoo("pull", "sent@prod", "-o", str(out_remote), "--json").stdout)
    assert again["skipped"] == 1

    status, where = s.api("GET", f"/api/v1/adapters/{a}/download", token=s.admin)
    assert status == 200 and where["digest"] == digest and where["size"] == len(path.read_bytes())
    assert where["url"].startswith("http" if s.backend.kind == "pg-s3" else "/api/v1/blobs/")

    good = path.read_bytes()
    _corrupt(s.backend.store, digest, good[:-1] + bytes([good[-1] ^ 0xFF]))
    fresh = tmp_path / "fresh"
    result = s.zoo("pull", "sent@prod", "-o", str(fresh), ok=False)
    assert result.exit_code == 5 and "failed verification" in result.stderr, result.output
    assert not fresh.exists() or list(fresh.iterdir()) == []
    peft = s.zoo("pull", "sent@prod", "-o", str(fresh), "--format", "peft", ok=False)
    assert peft.exit_code == 5 and (not fresh.exists() or list(fresh.iterdir()) == [])


def _corrupt(store, digest: str, data: bytes) -> None:
    """Replace a stored blob's bytes behind the catalog's back (same size, one byte flipped)."""
    if hasattr(store, "path_for"):
        target = store.path_for(digest)
        target.chmod(0o644)
        target.write_bytes(data)
    else:
        store.client.put_object(Bucket=store.bucket, Key=store.key_for(digest), Body=data)


def test_a_peft_directory_pushed_through_the_server_is_the_adapter_a_direct_push_makes(
        served, tmp_path):
    s = served
    push_direct(s, tmp_path, "sent", 1, "--alias", "sent@prod")
    exported = json.loads(s.zoo("pull", "sent@prod", "-o", str(tmp_path / "peft"), "--format",
                                "peft", "--json", remote=False).stdout)
    peft_dir = exported["adapters"][0]["path"]
    remote = json.loads(s.zoo("push", peft_dir, "--name", "imported", "--json").stdout)
    direct = json.loads(s.zoo("push", peft_dir, "--name", "imported", "--json",
                              remote=False).stdout)
    assert remote["uploaded"] and not direct["uploaded"]
    assert (remote["id"], remote["digest"]) == (direct["id"], direct["digest"])

    missing = str(tmp_path / "nothing-here")
    far = s.zoo("push", missing, "--name", "imported", ok=False)
    near = s.zoo("push", missing, "--name", "imported", remote=False, ok=False)
    assert (far.exit_code, far.stderr) == (near.exit_code, near.stderr) == (4, near.stderr)


def test_fsck_through_the_server_reports_what_direct_use_does(served, tmp_path):
    s = served
    a, path, digest = push_direct(s, tmp_path, "sent", 1)
    gone, _, orphan = push_direct(s, tmp_path, "old", 2)
    push_direct(s, tmp_path, "kept", 3)
    s.zoo("rm", gone, remote=False)
    clean = json.loads(both(s, "fsck", "--verify", "--json"))
    assert clean["ok"] and [o["digest"] for o in clean["orphans"]] == [orphan]
    assert f"orphan blob sha256:{orphan}" in both(s, "fsck")

    good = path.read_bytes()
    _corrupt(s.backend.store, digest, good[:-1] + bytes([good[-1] ^ 0xFF]))
    far = s.zoo("fsck", "--verify", "--json", ok=False)
    near = s.zoo("fsck", "--verify", "--json", remote=False, ok=False)
    assert far.exit_code == near.exit_code == 5 and far.stdout == near.stdout
    [damaged] = json.loads(far.stdout)["mismatched"]
    assert damaged["digest"] == digest and a in damaged["message"]
    text = s.zoo("fsck", "--verify", ok=False)
    assert text.exit_code == 5 and f"digest mismatch sha256:{digest}" in text.stdout
    assert text.stdout.rstrip().endswith("DAMAGED: 0 missing, 1 mismatched")


def test_base_add_through_the_server_registers_an_s3_prefix_and_nothing_else(served, tmp_path):
    from blob_fixtures import real_adapter

    from zoo.digest import base_model_digest

    s = served
    native, _ = real_adapter(tmp_path / "a.safetensors", seed=1, base_dir=tmp_path / "base")
    digest = base_model_digest(tmp_path / "base")
    s.zoo("push", str(native), "--name", "early", remote=False)
    for args, says in (((str(tmp_path / "base"),), "must be an s3:// prefix"),
                       (("tiny-llama",), "must be an s3:// prefix"),  # a hub id: the server's cache
                       ((str(tmp_path / "base"), "--upload"), "--upload is not available")):
        result = s.zoo("base", "add", "tiny", *args, ok=False)
        assert result.exit_code == 2 and says in result.stderr, result.output
        assert result.stderr.count("\n") == 1
    assert json.loads(s.zoo("base", "ls", "--json").stdout)[0]["location"] is None
    if s.backend.kind != "pg-s3":
        return
    store = s.backend.store
    for file in sorted((tmp_path / "base").iterdir()):
        store.client.put_object(Bucket=store.bucket, Key=f"models/tiny/{file.name}",
                                Body=file.read_bytes())
    location = f"s3://{store.bucket}/models/tiny"
    added = json.loads(s.zoo("base", "add", "tiny", location, "--json").stdout)
    assert (added["digest"], added["location"], added["adapter_count"]) == (digest, location, 1)
    [row] = json.loads(both(s, "base", "ls", "--json"))
    assert (row["name"], row["location"]) == ("tiny", location)
    [entry] = json.loads(s.zoo("audit", "--verb", "base.add", "--json").stdout)
    assert entry["actor"] == "root" and entry["after"] == {"location": location,
                                                          "digest": digest}
