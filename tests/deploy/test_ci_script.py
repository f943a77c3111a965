"""`.ci/run` fails, rather than letting tests skip, when PostgreSQL is down or chromium cannot
be installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_ci_fails_when_postgres_cannot_start(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "make-ran"
    _shim(bin_dir, "pg_isready", "exit 2")  # the server never answers
    _shim(bin_dir, "pg_ctlcluster", "exit 1")  # and cannot be started
    _shim(bin_dir, "sleep", "exit 0")  # no real waiting in the retry loop
    _shim(bin_dir, "make", f"touch {marker}; exit 0")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run([str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "PostgreSQL could not be started" in done.stderr
    assert not marker.exists()  # the test command never ran on a half-set-up machine


def test_ci_fails_when_chromium_cannot_be_installed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker, tried = tmp_path / "make-ran", tmp_path / "apt-ran"
    _shim(bin_dir, "pg_isready", "exit 0")  # PostgreSQL answers
    _shim(bin_dir, "apt-get", f"touch {tried}; exit 100")  # no package index reachable
    _shim(bin_dir, "make", f"touch {marker}; exit 0")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "ZOO_CHROMIUM": str(tmp_path / "no-chromium")}
    done = subprocess.run([str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and tried.exists()
    assert "chromium could not be installed" in done.stderr
    assert not marker.exists()
