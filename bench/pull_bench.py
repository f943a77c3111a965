"""Pull benchmark (issue 3, acceptance 6b): ``zoo pull`` of 1,000 ~50 KB adapters from an S3
server versus raw parallel boto3 GETs of the same objects with the same worker count, and a
sequential boto3 loop — all measured side by side in ONE run.

    python bench/pull_bench.py [--n 1000] [--size 50000] [--workers 16] [--repeat 3]
                               [--endpoint http://127.0.0.1:9000 --bucket zoo-bench]

Without ``--endpoint`` a moto S3 server is started as a subprocess on a free loopback port
(a separate process, so the server does not share the client's GIL). The catalog is a temporary
SQLite file (``--catalog`` for PostgreSQL). Each method is run ``--repeat`` times; the median
is reported. "zoo (library)" is ``zoo.storage.pull.pull(..., tag=...)``: catalog resolve +
parallel GET + sha256 + temp file + atomic rename. "zoo (CLI)" is a fresh ``zoo pull --tag``
process, start-up included. "raw" is ``get_object().read()`` into memory on a thread pool with
one shared client whose pool has the same size; "sequential" is the same in a plain loop.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zoo.adapter_config import AdapterConfig
from zoo.adapter_meta import file_metadata
from zoo.safetensors_io import RawTensor, encode


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--endpoint", default=None, help="S3 endpoint; default: start moto")
    ap.add_argument("--bucket", default=None)
    ap.add_argument("--catalog", default=None, help="catalog URL; default: temp SQLite")
    args = ap.parse_args()

    for k, v in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                 ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        server, endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    work = Path(tempfile.mkdtemp(prefix="zoo-pull-bench-"))
    try:
        run(args, endpoint, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


def run(args: argparse.Namespace, endpoint: str, work: Path) -> None:
    import boto3
    from botocore.config import Config

    from zoo.storage.blobstore import open_store
    from zoo.storage.catalog import add_adapter
    from zoo.storage.db import init_catalog, open_catalog
    from zoo.storage.parallel import run_parallel
    from zoo.storage.pull import pull

    bucket = args.bucket or f"zoo-bench-{uuid.uuid4().hex[:8]}"
    catalog_url = args.catalog or f"sqlite:///{work / 'catalog.db'}"
    store_url = f"s3://{bucket}/zoo"
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(
        max_pool_connections=max(10, args.workers + 4), s3={"addressing_style": "path"}))
    if args.bucket is None:
        client.create_bucket(Bucket=bucket)
    init_catalog(catalog_url)
    catalog = open_catalog(catalog_url)
    store = open_store(store_url, workers=args.workers)

    # ---- seed: upload N adapters in parallel, then their rows in one transaction
    t0 = time.perf_counter()
    src = work / "src"
    src.mkdir()
    files = []
    for i in range(args.n):
        data = adapter_bytes(i, args.size)
        digest = hashlib.sha256(data).hexdigest()
        path = src / f"{i}.safetensors"
        path.write_bytes(data)
        files.append((path, digest, len(data)))
    run_parallel(files, lambda f: store.put_file(f[1], f[0]), workers=args.workers)
    from zoo.adapter_meta import read_adapter_header

    def add_rows(session):
        for i, (path, digest, size) in enumerate(files):
            add_adapter(session, digest=digest, size=size, config=read_adapter_header(path).config,
                        name=f"bench-{i}", tags=["bench"])

    catalog.run(add_rows)
    keys = [store.key_for(d) for _p, d, _s in files]
    total_bytes = sum(s for _p, _d, s in files)
    seed_s = time.perf_counter() - t0
    print(f"pull bench: {args.n} adapters x {total_bytes / args.n / 1000:.1f} KB "
          f"({total_bytes / 1e6:.1f} MB) on {endpoint}, catalog {catalog.dialect}, "
          f"workers={args.workers}, median of {args.repeat} interleaved rounds; seeded in {seed_s:.1f}s")

    counter = iter(range(10**6))

    def zoo_library() -> None:
        out = work / f"lib-{next(counter)}"
        res = pull(catalog, store, tag="bench", out_dir=out, workers=args.workers)
        assert res.downloaded == args.n, res.downloaded
        shutil.rmtree(out)

    def zoo_cli() -> None:
        out = work / f"cli-{next(counter)}"
        env = {**os.environ, "ZOO_CATALOG_URL": catalog_url, "ZOO_STORE_URL": store_url}
        proc = subprocess.run([sys.executable, "-m", "zoo.cli.main", "pull", "--tag", "bench",
                               "-o", str(out), "--workers", str(args.workers), "--json"],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"zoo pull failed: {proc.stderr}")
        assert json.loads(proc.stdout)["downloaded"] == args.n
        shutil.rmtree(out)

    def get(key: str) -> int:
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def raw_parallel() -> None:
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            assert sum(pool.map(get, keys)) == total_bytes

    def sequential() -> None:
        assert sum(get(k) for k in keys) == total_bytes

    raw_parallel()  # warm both clients' connection pools once
    zoo_library()
    methods = {"raw boto3 parallel GETs": raw_parallel, "zoo pull (library)": zoo_library,
               "zoo pull (CLI, fresh process)": zoo_cli, "sequential boto3 loop": sequential}
    runs: dict[str, list[float]] = {label: [] for label in methods}
    for _ in range(args.repeat):  # interleaved rounds: background load hits every method alike
        for label, fn in methods.items():
            runs[label].append(timed(fn))
    timings = {label: statistics.median(t) for label, t in runs.items()}

    print(f"{'method':32} {'seconds':>8} {'objects/s':>10} {'MB/s':>8}")
    for label, secs in timings.items():
        print(f"{label:32} {secs:8.3f} {args.n / secs:10.1f} {total_bytes / 1e6 / secs:8.2f}")
    raw = timings["raw boto3 parallel GETs"]
    lib = timings["zoo pull (library)"]
    cli = timings["zoo pull (CLI, fresh process)"]
    seq = timings["sequential boto3 loop"]
    print(f"zoo/raw throughput ratio (library): {raw / lib:.2f}x  (target >= 0.8)")
    print(f"zoo/raw throughput ratio (CLI):     {raw / cli:.2f}x")
    print(f"zoo/sequential speed-up (library):  {seq / lib:.2f}x")
    print(f"zoo/sequential speed-up (CLI):      {seq / cli:.2f}x")
    catalog.close()


if __name__ == "__main__":
    main()
