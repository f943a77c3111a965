"""The web catalog's fixtures: a 100k-adapter catalog, a real ``zoo server`` over it, and
Debian's chromium driven by Playwright (``executable_path``: Playwright's own browser download
cannot work offline).

Without chromium (or Playwright) the browser tests skip with the reason, unless
``ZOO_REQUIRE_BROWSER=1`` (``.ci/run`` sets it): then they fail. Screenshots of every page go
to ``$ZOO_TEST_ARTIFACTS/screenshots`` (default ``test-artifacts/screenshots``, gitignored), and
each page's Server-Timing to ``page-timings.tsv`` there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from seed import Seeded, seed

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ZOO_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = os.environ.get("ZOO_CHROMIUM", "/usr/bin/chromium")


@dataclass
class Zoo:
    """The seeded catalog and the server over it."""

    url: str
    catalog_url: str
    store_url: str
    facts: Seeded
    secrets: dict[str, str]  # token name -> secret


@pytest.fixture(scope="session")
def seeded(tmp_path_factory) -> Iterator[tuple[str, str, Seeded, dict[str, str]]]:
    """A SQLite catalog with 100k adapters (plus the real ones), and three tokens:
    ``alice`` (read), ``revoked`` (revoked) and ``expired`` (expired)."""
    from zoo.storage import tokens
    from zoo.storage.db import init_catalog, open_catalog

    root = tmp_path_factory.mktemp("web")
    catalog_url, store_url = f"sqlite:///{root / 'catalog.db'}", str(root / "store")
    init_catalog(catalog_url)
    with open_catalog(catalog_url) as catalog:
        facts = seed(catalog, store_url, root / "work")
        secrets = {name: tokens.create(catalog, name, scope="read", **kw)[1] for name, kw in
                   (("alice", {}), ("revoked", {}), ("expired", {"expires_s": 0.5}))}
        tokens.revoke(catalog, "revoked")
    time.sleep(0.6)  # the expired token's half second is over
    yield catalog_url, store_url, facts, secrets


@pytest.fixture(scope="session")
def zoo_server(seeded, tmp_path_factory) -> Iterator[Zoo]:
    """``zoo server`` over the seeded catalog on a free loopback port."""
    catalog_url, store_url, facts, secrets = seeded
    port = free_port()
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "ZOO_HOME": str(home), "ZOO_CATALOG_URL": catalog_url,
           "ZOO_STORE_URL": store_url}
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(  # `zoo server`: create_app under uvicorn, as users start it
        [sys.executable, "-m", "zoo.cli.main", "server", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, home / "server.log")
        yield Zoo(url, catalog_url, store_url, facts, secrets)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz in {timeout:.0f} s")


def _no_browser(reason: str) -> None:
    if os.environ.get("ZOO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ZOO_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium under Playwright (skip, or fail in CI, when it cannot start)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _no_browser(f"no chromium at {CHROMIUM} (apt-get install chromium, or set ZOO_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("Playwright for Python is not installed (pip install playwright)")
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - any launch failure is "no browser here"
            _no_browser(f"chromium at {CHROMIUM} did not start: {str(exc).splitlines()[0]}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def timings() -> Iterator[list[str]]:
    """Each page the browser loaded with the server's own Server-Timing (catalog and template
    milliseconds), written to ``page-timings.tsv`` beside the screenshots: a record of how the
    pages behave at 100k adapters, never an assertion."""
    lines: list[str] = []
    yield lines
    if lines:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "page-timings.tsv").write_text("status\tserver-timing\turl\n"
                                                    + "\n".join(lines) + "\n")


@pytest.fixture
def page(browser, zoo_server, timings) -> Iterator[Any]:
    """A fresh browser context (no cookies) with a page on the server."""
    context = browser.new_context(base_url=zoo_server.url, accept_downloads=True,
                                  viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)

    def record(response: Any) -> None:
        if response.request.resource_type == "document":
            timings.append(f"{response.status}\t{response.headers.get('server-timing', '')}\t"
                           f"{response.url.removeprefix(zoo_server.url)}")

    context.on("response", record)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where page screenshots go (kept after the run for people to look at)."""
    path = ARTIFACTS / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
