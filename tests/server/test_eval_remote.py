"""`zoo eval` through the server: the dataset file is uploaded (never read from the server's
disk), results and the audit row land in the catalog, a read token or another team's prefix is
refused. The adapters here have no registered base, so each becomes an error row without a
model load (the scoring itself is covered by tests/eval); the server's Ray is the session's."""

from __future__ import annotations

import json

from conftest import push_direct


def test_eval_through_the_server(ray_local, served_sqlite, tmp_path):
    s = served_sqlite
    a, _, _ = push_direct(s, tmp_path, "team-b.m", 1)
    push_direct(s, tmp_path, "team-a.m", 2)
    data = tmp_path / "reviews.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    reader, team_b = s.token("r", "read"), s.token("team-b", "write", prefix="team-b.")
    before = s.backend.counts()
    for token, select in ((reader, "name=team-b.m"), (team_b, "name~m")):
        refused = s.zoo("eval", "--select", select, "--dataset", str(data), token=token, ok=False)
        assert refused.exit_code == 11, refused.output
    assert s.backend.counts() == before

    result = s.zoo("eval", "--select", "name=team-b.m", "--dataset", str(data), "--json",
                   token=team_b, ok=False)
    assert result.exit_code == 8 and "no adapter could be evaluated" in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["dataset"], summary["errors"], summary["evaluated"]) == ("reviews.jsonl", 1, 0)
    assert "registered" in summary["error_messages"][a]
    [row] = json.loads(s.zoo("audit", "--verb", "eval", "--json").stdout)
    assert row["actor"] == "team-b"
    assert row["target"] == f"reviews.jsonl@{summary['dataset_sha256'][:12]}"
    bad = s.zoo("eval", "--select", "r>0", "--dataset", "/etc/passwd-not-there", ok=False)
    assert bad.exit_code == 2 and "no such file" in bad.stderr
    status, body = s.api("POST", "/api/v1/evals", token=s.admin, body={})
    assert status == 422 and body["exit_code"] == 2
