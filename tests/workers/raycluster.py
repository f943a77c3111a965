"""A real two-node Ray cluster on this machine, started with `ray start` and torn down by pid.

Each node gets its own ``--temp-dir`` and ``ZOO_HOME``; the head runs the job server (the
Ray dashboard) and no training resource; the worker node carries a custom resource
(``zoo_worker``) that the jobs ask for, so every training task must land there. Teardown
kills only processes whose command line names this cluster's temp dirs (never `ray stop`,
which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth_token() -> str:
    """The token this machine's Ray clients use (~/.ray/auth_token, as ray.init creates it)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = Path.home() / ".ray" / "auth_token"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass
class RayCluster:
    root: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    homes: dict[str, Path] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], role: str) -> None:
        temp = self.root / name
        temp.mkdir()
        home = self.root / f"home-{role}"
        home.mkdir(exist_ok=True)
        self.homes[role] = home
        env = {**self.env, "ZOO_HOME": str(home)}
        ray = str(Path(sys.executable).with_name("ray"))
        cmd = [ray, "start", "--block", f"--temp-dir={temp}", "--disable-usage-stats", *args]
        log = (self.root / f"{name}.out").open("w")
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        self.names.append(name)

    def start(self) -> None:
        self._start("head", [
            "--head", "--port", str(self.gcs_port), "--dashboard-host=127.0.0.1",
            "--node-ip-address=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}", "--num-cpus=1", "--num-gpus=0",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
        ], "head")
        self._wait_dashboard()
        self._wait_status("")  # the head's GCS answers before a raylet tries to register
        worker_args = [
            f"--address=127.0.0.1:{self.gcs_port}", "--node-ip-address=127.0.0.1",
            "--num-cpus=2", "--num-gpus=0",
            "--resources=" + json.dumps({"zoo_worker": 4}),
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
        ]
        # On a loaded machine a joining raylet can miss Ray's fixed 30 s registration
        # deadline; `ray start` then exits. Retry with a fresh temp dir.
        for attempt in range(3):
            self._start(f"worker{attempt}", worker_args, "worker")
            try:
                self._wait_nodes()
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                self._kill(self.root / f"worker{attempt}", [self.procs.pop()])
                self.names.pop()

    def _wait_dashboard(self, timeout: float = 120) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                urllib.request.urlopen(f"{self.address}/api/version", timeout=2)  # noqa: S310
                return
            except Exception:  # noqa: BLE001 - not up yet (401 also means "up")
                import urllib.error

                if isinstance(sys.exc_info()[1], urllib.error.HTTPError):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"Ray head did not come up; see {self.root / 'head.out'}")

    def _wait_nodes(self, timeout: float = 180) -> None:
        """Until `ray status` shows the worker node's custom resource."""
        self._wait_status("zoo_worker", timeout)

    def _wait_status(self, needle: str, timeout: float = 180) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            out = subprocess.run([ray, "status", f"--address=127.0.0.1:{self.gcs_port}"],
                                 env=self.env, capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and needle in out.stdout:
                return
            time.sleep(1)
        raise RuntimeError(f"the worker node did not join; see {self.root}")

    def _check_alive(self) -> None:
        for proc, name in zip(self.procs, self.names, strict=True):
            if proc.poll() is not None:
                tail = (self.root / f"{name}.out").read_text()[-2500:]
                raise RuntimeError(f"`ray start` ({name}) exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """Kill every process of this cluster (found by its temp dirs), then remove them."""
        self._kill(self.root, self.procs)
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _kill(marker_dir: Path, popens: list[subprocess.Popen]) -> None:
        import psutil

        marker = str(marker_dir)
        victims = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
            except Exception:  # noqa: BLE001
                continue
            if marker in cmd and proc.pid != os.getpid():
                victims.append(proc)
        for popen in popens:
            with contextlib.suppress(psutil.NoSuchProcess):
                victims.extend(psutil.Process(popen.pid).children(recursive=True))
        for proc in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        for popen in popens:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(victims, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        for popen in popens:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=10)


def start_cluster(extra_env: dict[str, str]) -> RayCluster:
    root = Path(tempfile.mkdtemp(prefix="zr", dir="/tmp"))  # short: Ray's socket paths
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, **extra_env, "PATH": venv_bin + os.pathsep + os.environ["PATH"],
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": auth_token(),
           "RAY_USAGE_STATS_ENABLED": "0"}
    for var in ("RAY_ADDRESS", "ZOO_CATALOG_URL", "ZOO_STORE_URL", "AWS_ENDPOINT_URL"):
        env.pop(var, None)  # the cluster learns these from the submission
    cluster = RayCluster(root, free_port(), free_port(), env)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
