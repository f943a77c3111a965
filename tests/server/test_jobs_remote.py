"""Job verbs through the server: the same listings as direct use, cancel needs a write token
for the job's name (and is audited with the token), wait and logs poll the server."""

from __future__ import annotations

import json

from conftest import push_direct  # noqa: F401 - the shared fixtures come with conftest


def _jobs(s, tmp_path, name: str, n: int = 1) -> list[str]:
    from zoo.jobspec import load_specs
    from zoo.storage import jobs

    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\nbase_model: ./model\ntask: causal-lm\n"
                    "data: {train: t.jsonl}\nprolora: {target_modules: [q_proj]}\n")
    return [jobs.create_jobs(s.backend.catalog, load_specs(spec))[0] for _ in range(n)]


def test_jobs_through_the_server(served_sqlite, tmp_path):
    s = served_sqlite
    mine, other = _jobs(s, tmp_path, "team-b.j", 2)
    [theirs] = _jobs(s, tmp_path, "team-a.j")
    remote, direct = s.zoo("jobs", "ls", "--json"), s.zoo("jobs", "ls", "--json", remote=False)
    assert remote.stdout == direct.stdout
    assert {j["id"] for j in json.loads(remote.stdout)} == {mine, other, theirs}
    assert s.zoo("jobs", "show", mine, "--json").stdout == s.zoo(
        "jobs", "show", mine, "--json", remote=False).stdout
    assert s.zoo("jobs", "ls").stdout == s.zoo("jobs", "ls", remote=False).stdout

    reader, team_b = s.token("r", "read"), s.token("team-b", "write", prefix="team-b.")
    assert s.zoo("jobs", "cancel", mine, token=reader, ok=False).exit_code == 11
    assert s.zoo("jobs", "cancel", theirs, token=team_b, ok=False).exit_code == 11
    assert s.zoo("jobs", "cancel", mine, token=team_b).stdout.strip() == f"{mine}  cancelled"
    waited = s.zoo("jobs", "wait", mine, other, "--timeout", "0", "--json", ok=False)
    assert waited.exit_code == 8 and json.loads(waited.stdout) == {
        mine: "CANCELLED", other: "PENDING"}
    assert s.zoo("jobs", "logs", mine).stdout == s.zoo("jobs", "logs", mine, remote=False).stdout
    cancels = json.loads(s.zoo("audit", "--verb", "cancel", "--json").stdout)
    assert [(r["actor"], r["target"]) for r in cancels] == [("team-b", f"job:{mine}")]
    submits = json.loads(s.zoo("audit", "--verb", "submit", "--json").stdout)
    assert {r["target"] for r in submits} == {f"job:{j}" for j in (mine, other, theirs)}
