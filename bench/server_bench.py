"""The team server under 32 concurrent clients vs MLflow's tracking server, and a cold remote `zoo ls`.

Run: ``python bench/server_bench.py [--n 100000] [--mlflow-n 10000] [--clients 32] [--seconds 15]``.
Needs the ``bench`` extra (mlflow) and the ``server`` extra. In one run:

1. seeds a SQLite catalog with ``--n`` adapters and MLflow's registry with ``--mlflow-n`` model
   versions (the same synthetic data and bulk seeding as ``bench/catalog_bench.py``);
2. starts ``zoo server`` and ``mlflow server`` on loopback, each with ``--workers`` processes
   (default: one per core; MLflow's own default is 4);
3. drives each with ``wrk`` (Debian's package), ``--clients`` keep-alive connections, for two
   lookups, a tag lookup (50 newest with a tag) and a 3-term filter (base, task, team tag; sorted,
   50 rows), and prints requests/s, p50/p99 latency and the zoo/MLflow throughput ratio;
4. times whole ``zoo ls tag:prod --json`` processes through the server (``ZOO_URL``) and directly
   (``--catalog``), median of ``--cold-runs``, and checks both print the same JSON.

Both servers run on the same 2-core machine as the load generator, so absolute rates are low;
the ratio is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_bench import TEAMS, seed_mlflow, seed_zoo, synth  # noqa: E402

TAG_CHOICES = ["prod"] + [f"team={t}" for t in TEAMS]
THREE_TERMS = "base=llama-3-8b task=seq-cls tag:team=nlp"
ZOO_LOOKUPS = {
    "tag lookup (tag:<t>, 50 newest)": [{"q": f"tag:{t}", "limit": "50"} for t in TAG_CHOICES],
    "3-term filter, sorted, 50": [{"q": THREE_TERMS, "sort": "-created", "limit": "50"}],
}
MLFLOW_LOOKUPS = {
    "tag lookup (tag:<t>, 50 newest)": [
        {"filter": f"tags.{k} = '{v or 'true'}'", "max_results": "50",
         "order_by": "creation_timestamp DESC"} for k, _, v in (t.partition("=") for t in TAG_CHOICES)],
    "3-term filter, sorted, 50": [{
        "filter": "tags.base = 'llama-3-8b' AND tags.task = 'seq-cls' AND tags.team = 'nlp'",
        "max_results": "50", "order_by": "creation_timestamp DESC"}],
}
ZOO_LIST_PATH = "/api/v1/adapters"
MLFLOW_SEARCH_PATH = "/api/2.0/mlflow/model-versions/search"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zoo_bin() -> str:
    """The `zoo` script of the interpreter running the bench (not whichever is first on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "zoo")
    return beside if os.path.exists(beside) else shutil.which("zoo") or "zoo"


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"no answer from {url} within {timeout:.0f} s")


def start_zoo_server(env: dict[str, str], log: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([zoo_bin(), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url + "/healthz", proc)
    return proc, url


def start_mlflow_server(db_path: str, work: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers),
         "--backend-store-uri", f"sqlite:///{db_path}", "--default-artifact-root", str(work / "mlruns")],
        stdout=(work / "mlflow.log").open("wb"), stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url + "/health", proc)
    return proc, url


def create_token(env: dict[str, str], scope: str = "read") -> str:
    out = subprocess.run([zoo_bin(), "token", "create", f"bench-{scope}", "--scope", scope, "--json"],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["token"]


WRK_SCRIPT = """
paths = {%s}
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def load(base_url: str, path: str, variants: list[dict[str, str]], headers: dict[str, str],
         clients: int, seconds: float, work: Path) -> dict[str, float]:
    """Requests/s and p50/p99 latency (ms) from ``wrk``, ``clients`` keep-alive connections, each
    request one of ``variants`` at random. wrk is C: the load generator costs the 2 cores
    little, so both servers are measured rather than a Python client."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("this bench drives the servers with wrk: apt-get install wrk")
    script = work / f"wrk-{abs(hash(path)) % 10**8}.lua"
    script.write_text(WRK_SCRIPT % ", ".join(json.dumps(f"{path}?{urlencode(v)}") for v in variants))
    headers_args = [arg for key, value in headers.items() for arg in ("-H", f"{key}: {value}")]

    def run_wrk(duration: str) -> str:
        cmd = [wrk, f"-t{min(2, clients)}", f"-c{clients}", f"-d{duration}", "--latency",
               "--timeout", "60s", "-s", str(script), *headers_args, base_url]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    run_wrk("2s")  # warm-up: connections, the servers' caches
    out = run_wrk(f"{seconds:.0f}s")
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"requests to {base_url}{path} failed:\n{out}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _latency(out, "50%"), "p99": _latency(out, "99%")}


def _latency(wrk_out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)\s*$", wrk_out, re.M).groups()
    return float(value) * UNITS[unit]


def cold_ls(env: dict[str, str], extra: list[str], runs: int) -> tuple[float, str]:
    """Median wall time (s) of a fresh `zoo ls tag:prod --json` process, and its output."""
    samples, out = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([zoo_bin(), "ls", "tag:prod", "--json", *extra], env=env,
                              capture_output=True, text=True, check=True)
        samples.append(time.perf_counter() - t0)
        out = done.stdout
    return statistics.median(samples), out


def measure_rounds(sides: dict, lookups: list[str], rounds: int) -> dict[str, tuple[dict, dict]]:
    """Each lookup on both servers, ``rounds`` times, the side that goes first alternating (a
    busy host drifts); per side the round with the median throughput is kept."""
    runs: dict[str, dict[str, list[dict]]] = {name: {"zoo": [], "mlflow": []} for name in lookups}
    for k in range(rounds):
        for name in lookups:
            for side in (["zoo", "mlflow"] if k % 2 == 0 else ["mlflow", "zoo"]):
                runs[name][side].append(sides[side](name))
                print(f"  round {k + 1} {name} {side}: {runs[name][side][-1]['rps']:.1f} req/s")

    def median_run(samples: list[dict]) -> dict:
        return sorted(samples, key=lambda r: r["rps"])[len(samples) // 2]

    return {name: (median_run(r["zoo"]), median_run(r["mlflow"])) for name, r in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="adapters in the zoo catalog")
    ap.add_argument("--mlflow-n", type=int, default=10_000, help="model versions in MLflow")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per lookup")
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="repeats of every measurement")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="server processes, the same for both servers (default: one per core)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="zoo-server-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    items = synth(args.n)
    catalog = f"sqlite:///{work}/catalog.db"
    t0 = time.perf_counter()
    seed_zoo(catalog, items)
    print(f"[seed] zoo: {len(items):,} adapters in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    seed_mlflow(str(work / "mlflow.db"), items[: args.mlflow_n])
    print(f"[seed] mlflow: {args.mlflow_n:,} model versions in {time.perf_counter() - t0:.1f} s")

    env = {**os.environ, "ZOO_HOME": str(work / "home"), "ZOO_CATALOG_URL": catalog,
           "ZOO_STORE_URL": str(work / "store")}
    env.pop("ZOO_URL", None)
    token = create_token(env)
    procs = []
    try:
        zproc, zurl = start_zoo_server(env, work / "zoo-server.log", args.workers)
        procs.append(zproc)
        mproc, murl = start_mlflow_server(str(work / "mlflow.db"), work, args.workers)
        procs.append(mproc)
        sides = {
            "zoo": lambda name: load(zurl, ZOO_LIST_PATH, ZOO_LOOKUPS[name],
                                     {"Authorization": f"Bearer {token}"}, args.clients,
                                     args.seconds, work),
            "mlflow": lambda name: load(murl, MLFLOW_SEARCH_PATH, MLFLOW_LOOKUPS[name], {},
                                        args.clients, args.seconds, work),
        }
        results = measure_rounds(sides, list(ZOO_LOOKUPS), args.rounds)
        remote_env = {**env, "ZOO_URL": zurl, "ZOO_TOKEN": token}
        for key in ("ZOO_CATALOG_URL", "ZOO_STORE_URL"):
            remote_env.pop(key)
        remote_s, remote_out = cold_ls(remote_env, [], args.cold_runs)
        direct_s, direct_out = cold_ls(env, ["--catalog", catalog], args.cold_runs)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args, remote_s, direct_s, remote_out == direct_out)


def report(results: dict, args: argparse.Namespace, remote_s: float, direct_s: float,
           same: bool) -> None:
    print(f"\n{args.clients} concurrent clients (wrk), {args.seconds:.0f} s per lookup, median of "
          f"{args.rounds} rounds, "
          f"{args.workers} worker processes per server; zoo server over "
          f"{args.n:,} adapters (SQLite), MLflow server over {args.mlflow_n:,} versions (SQLite)")
    print(f"{'lookup':34} {'zoo req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'mlflow req/s':>13} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}")
    for name, (z, m) in results.items():
        print(f"{name:34} {z['rps']:10.1f} {z['p50']:8.1f} {z['p99']:8.1f} {m['rps']:13.1f} "
              f"{m['p50']:8.1f} {m['p99']:8.1f} {z['rps'] / m['rps']:6.1f}x")
    print(f"\ncold `zoo ls tag:prod --json`, whole process, median of {args.cold_runs}: "
          f"through the server {remote_s:.3f} s, direct {direct_s:.3f} s "
          f"(target < 0.3 s through the server); same JSON: {same}")


if __name__ == "__main__":
    main()
