"""Acceptance 2: tokens and scopes through the real server and the real CLI (ZOO_URL set).

No token is 401; a read token cannot change anything (403, catalog unchanged); a prefixed write
token writes only its own names; revoked and expired tokens are refused; the audit trail names
the token of every change and `zoo alias log` shows every move.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from server_fixtures import push_direct

REFUSED = 11  # zoo.errors.AuthError.exit_code


def refused(result) -> None:
    assert result.exit_code == REFUSED, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr


def test_healthz_is_open_and_every_api_path_needs_a_token(served_sqlite):
    s = served_sqlite
    assert s.api("GET", "/healthz") == (200, {"status": "ok"})
    assert s.api("GET", "/openapi.json")[0] == 401
    status, doc = s.api("GET", "/openapi.json", token=s.token("docs", "read"))
    assert status == 200
    for path, ops in doc["paths"].items():
        if path == "/healthz":
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in ops:
            status, body = s.api(method.upper(), concrete, body={} if method != "get" else None)
            assert status == 401, (method, path, status, body)
            assert body["error"] == "AuthError" and body["exit_code"] == REFUSED
    status, body = s.api("GET", "/api/v1/adapters", token="zoo_not-a-real-token")
    assert status == 401 and "zoo_not-a-real-token" not in json.dumps(body)
    refused(s.zoo("ls", token="zoo_wrong", ok=False))


def test_read_token_browses_but_cannot_change_anything(served_sqlite, tmp_path):
    s = served_sqlite
    adapter_id, path, digest = push_direct(s, tmp_path, "sent", 1, "--alias", "sent@prod")
    reader = s.token("reader", "read")
    before = s.backend.counts()
    other, _ = __import__("blob_fixtures").write_adapter(tmp_path / "o.safetensors", seed=2)

    refused(s.zoo("tag", adapter_id, "blue", token=reader, ok=False))
    refused(s.zoo("untag", adapter_id, "x", token=reader, ok=False))
    refused(s.zoo("push", str(other), "--name", "sent", token=reader, ok=False))
    refused(s.zoo("alias", "set", "sent@prod", adapter_id, token=reader, ok=False))
    refused(s.zoo("alias", "rm", "sent@prod", token=reader, ok=False))
    refused(s.zoo("rm", adapter_id, token=reader, ok=False))
    refused(s.zoo("token", "create", "x", "--scope", "admin", token=reader, ok=False))
    status, body = s.api("POST", "/api/v1/jobs", token=reader,
                         body={"spec": "name: sent\nbase_model: tiny\n"})
    assert status == 403 and body["error"] == "ForbiddenError", body
    assert s.backend.counts() == before

    listed = json.loads(s.zoo("ls", "--json", token=reader).stdout)
    assert [a["id"] for a in listed] == [adapter_id]
    out = tmp_path / "pulled"
    s.zoo("pull", "sent@prod", "-o", str(out), token=reader)
    assert (out / f"sent-{adapter_id}.safetensors").read_bytes() == path.read_bytes()


def test_prefix_token_writes_only_its_own_names(served_sqlite, tmp_path):
    s = served_sqlite
    theirs, _, _ = push_direct(s, tmp_path, "team-a.model", 1, "--alias", "team-a.model@prod")
    team_b = s.token("team-b", "write", prefix="team-b.")
    mine, _ = __import__("blob_fixtures").write_adapter(tmp_path / "b.safetensors", seed=3)

    pushed = json.loads(s.zoo("push", str(mine), "--name", "team-b.x", "--alias", "prod",
                              "--json", token=team_b).stdout)
    s.zoo("tag", pushed["id"], "blue", token=team_b)
    s.zoo("alias", "set", "team-b.x@stable", pushed["id"], token=team_b)
    before = s.backend.counts()
    refused(s.zoo("push", str(mine), "--name", "team-a.model", token=team_b, ok=False))
    refused(s.zoo("tag", theirs, "hijacked", token=team_b, ok=False))
    refused(s.zoo("tag", "team-a.model@prod", "hijacked", token=team_b, ok=False))
    refused(s.zoo("alias", "set", "team-a.model@prod", theirs, token=team_b, ok=False))
    refused(s.zoo("alias", "rm", "team-a.model@prod", token=team_b, ok=False))
    refused(s.zoo("rm", theirs, token=team_b, ok=False))
    refused(s.zoo("token", "create", "b2", "--scope", "write", token=team_b, ok=False))
    assert s.backend.counts() == before
    shown = json.loads(s.zoo("show", theirs, "--json", token=team_b).stdout)
    assert shown["tags"] == [] and shown["aliases"] == ["team-a.model@prod"]


def test_revoked_and_expired_tokens_are_refused(served_sqlite):
    s = served_sqlite
    gone, old = s.token("gone", "read"), s.token("old", "read", expires_s=3600)
    s.zoo("ls", token=gone)
    s.zoo("ls", token=old)
    s.zoo("token", "revoke", "gone")
    refused(s.zoo("ls", token=gone, ok=False))

    from sqlalchemy import update

    from zoo.storage.tables import TokenRow, utcnow

    with s.backend.catalog.transaction() as session:  # its hour has passed
        session.execute(update(TokenRow).where(TokenRow.name == "old")
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    refused(s.zoo("ls", token=old, ok=False))
    states = {t["name"]: t for t in json.loads(s.zoo("token", "ls", "--json").stdout)}
    assert states["gone"]["revoked_at"] and not states["gone"]["active"]
    assert states["old"]["expires_at"] and not states["old"]["active"]
    assert states["root"]["active"]


def test_token_cli_shows_the_secret_once_and_never_again(served_sqlite):
    s = served_sqlite
    made = json.loads(s.zoo("token", "create", "ci", "--scope", "read", "--expires", "30d",
                            "--json").stdout)
    assert made["token"].startswith("zoo_") and made["scope"] == "read"
    s.zoo("ls", token=made["token"])
    for args in (("token", "ls", "--json"), ("token", "ls"), ("audit", "--json"), ("audit",)):
        for remote in (True, False):
            out = s.zoo(*args, remote=remote).output
            assert made["token"] not in out and s.admin not in out
    plain = s.zoo("token", "create", "ci2", "--scope", "write", "--prefix", "ci.", remote=False)
    secret = plain.stdout.strip()
    assert secret.startswith("zoo_") and secret not in plain.stderr
    s.zoo("alias", "ls", token=secret)
    refused(s.zoo("token", "create", "ci", "--scope", "read", token=secret, ok=False))
    again = s.zoo("token", "create", "ci", "--scope", "read", ok=False)
    assert again.exit_code == 9 and "exists" in again.stderr


def test_token_file_must_be_private(served_sqlite, tmp_path):
    s = served_sqlite
    home = tmp_path / "home"
    home.mkdir()
    token_file = home / "token"
    token_file.write_text(s.admin + "\n")
    os.chmod(token_file, 0o644)
    env = {"ZOO_TOKEN": None, "ZOO_HOME": str(home)}
    result = s.zoo("ls", env=env, ok=False)
    assert result.exit_code == 2 and "chmod 600" in result.stderr and s.admin not in result.output
    os.chmod(token_file, 0o600)
    s.zoo("ls", env=env)


def test_audit_names_each_change_and_alias_log_shows_every_move(served_sqlite, tmp_path):
    s = served_sqlite
    first, _, _ = push_direct(s, tmp_path, "team-b.m", 1, "--alias", "team-b.m@prod")
    second, _, _ = push_direct(s, tmp_path, "team-b.m", 2)
    writer = s.token("team-b", "write", prefix="team-b.")
    s.zoo("tag", second, "blue", token=writer)
    s.zoo("untag", second, "blue", token=writer)
    s.zoo("alias", "set", "team-b.m@prod", second, token=writer)
    s.zoo("alias", "set", "team-b.m@prod", first)  # through the server as root
    s.zoo("alias", "rm", "team-b.m@prod", token=writer)
    s.zoo("token", "revoke", "team-b")

    rows = json.loads(s.zoo("audit", "--since", "1h", "--json").stdout)
    seen = [(r["actor"], r["verb"]) for r in rows]
    local = f"local:{__import__('getpass').getuser()}"
    assert seen == [
        ("local:" + local.split(":", 1)[1], "token.create"),  # root, made directly
        (local, "push"), (local, "alias.set"), (local, "push"),
        (local, "token.create"),
        ("team-b", "tag"), ("team-b", "untag"), ("team-b", "alias.set"), ("root", "alias.set"),
        ("team-b", "alias.rm"), ("root", "token.revoke"),
    ]
    tag_row = rows[5]
    assert tag_row["target"] == f"team-b.m {second}"
    assert (tag_row["before"], tag_row["after"]) == ([], ["blue"])

    moves = json.loads(s.zoo("alias", "log", "team-b.m@prod", "--json").stdout)
    assert [(m["actor"], m["verb"], m["before"], m["after"]) for m in moves] == [
        (local, "alias.set", None, first),
        ("team-b", "alias.set", first, second),
        ("root", "alias.set", second, first),
        ("team-b", "alias.rm", first, None),
    ]
    assert moves == json.loads(s.zoo("alias", "log", "team-b.m@prod", "--json",
                                     remote=False).stdout)
    table = s.zoo("alias", "log", "team-b.m@prod").stdout
    assert table.count("alias.") == 4 and "team-b" in table


def test_gc_through_the_server_needs_an_unprefixed_admin_token(served_sqlite, tmp_path):
    s = served_sqlite
    gone, _, digest = push_direct(s, tmp_path, "old", 1)
    push_direct(s, tmp_path, "kept", 2)  # gc refuses to delete more than half the store
    s.zoo("rm", gone, remote=False)
    for token in (s.token("r", "read"), s.token("w", "write"),
                  s.token("team-admin", "admin", prefix="team-b.")):
        refused(s.zoo("gc", "--grace", "0", "--force", token=token, ok=False))
    assert digest in s.backend.blob_digests()
    dry = json.loads(s.zoo("gc", "--grace", "0", "--dry-run", "--json").stdout)
    assert [b["digest"] for b in dry["adapter_blobs"]["removed"]] == [digest]
    assert digest in s.backend.blob_digests()
    out = s.zoo("gc", "--grace", "0").stdout
    assert f"removed adapter blob sha256:{digest}" in out
    assert digest not in s.backend.blob_digests()
    [row] = json.loads(s.zoo("audit", "--verb", "gc", "--json").stdout)
    assert row["actor"] == "root" and row["after"]["adapter_blobs"] == 1


def test_fsck_through_the_server_needs_an_unprefixed_admin_token(served_sqlite, tmp_path):
    s = served_sqlite
    push_direct(s, tmp_path, "sent", 1)
    for token in (s.token("r", "read"), s.token("w", "write"),
                  s.token("team-admin", "admin", prefix="team-b.")):
        refused(s.zoo("fsck", "--verify", token=token, ok=False))
    report = json.loads(s.zoo("fsck", "--verify", "--json").stdout)
    assert report["ok"] and report["adapter_count"] == 1 and report["verified"]


def test_base_add_through_the_server_needs_an_unprefixed_admin_token(served_sqlite):
    s = served_sqlite
    for token in (s.token("r", "read"), s.token("w", "write"),
                  s.token("team-admin", "admin", prefix="team-b.")):
        refused(s.zoo("base", "add", "team-b.base", "s3://models/base", token=token, ok=False))
    assert json.loads(s.zoo("base", "ls", "--json").stdout) == []


def test_an_unreachable_server_is_one_line_without_credentials(served_sqlite):
    from tests.conftest import free_port

    url = f"http://someone:pw-in-url@127.0.0.1:{free_port()}"
    result = served_sqlite.zoo("ls", env={"ZOO_URL": url}, ok=False)
    assert result.exit_code == 7 and "cannot reach the zoo server" in result.stderr
    assert "pw-in-url" not in result.output and served_sqlite.admin not in result.output


def test_the_session_cookie_reads_but_cannot_change(served_sqlite, tmp_path):
    """A browser sends cookies with cross-site posts too: writes need the Bearer header."""
    import urllib.error
    import urllib.request

    s = served_sqlite
    adapter_id, _path, _digest = push_direct(s, tmp_path, "cookie", 1)
    writer = s.token("cookie-writer", "write")
    before = s.backend.counts()

    def call(method: str, path: str, body: Any = None) -> int:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(s.url + path, data=data, method=method, headers={
            "Content-Type": "application/json", "Cookie": f"zoo_session={writer}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert call("GET", f"/api/v1/adapters/{adapter_id}") == 200
    assert call("POST", f"/api/v1/adapters/{adapter_id}/tags", {"tags": ["forged"]}) == 401
    assert call("PUT", "/api/v1/aliases/cookie@prod", {"ref": adapter_id}) == 401
    assert s.backend.counts() == before
    status, _ = s.api("POST", f"/api/v1/adapters/{adapter_id}/tags", token=writer,
                      body={"tags": ["real"]})
    assert status == 200
