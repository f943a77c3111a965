"""Retries against a misbehaving S3 endpoint: a small HTTP proxy in front of the S3 server
answers every other request with ``503 SlowDown`` (throttling) or cuts a GET body half-way
(a dropped connection). The store must succeed through both, and fail with a StoreError —
not hang or return short bytes — when retries are turned off."""

from __future__ import annotations

import hashlib
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import blob_fixtures as bf
import pytest
from blob_fixtures import make_adapter_bytes

from zoo.errors import StoreError
from zoo.storage.s3store import S3BlobStore

s3_env = bf.s3_env

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyProxy:
    """Forwards to ``upstream``; ``mode`` 'slowdown' fails odd requests with 503, 'cut' sends
    half of every odd GET body and closes the connection."""

    def __init__(self, upstream: str, mode: str) -> None:
        self.upstream = urlparse(upstream)
        self.mode = mode
        self.count = 0
        self.faults = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.count += 1
                    odd = proxy.count % 2 == 1
                if odd and proxy.mode == "slowdown":
                    with proxy.lock:
                        proxy.faults += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port,
                                                  timeout=30)
                # the Host header goes through unchanged: the client signed it
                headers = dict(self.headers.items())
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                cut = odd and proxy.mode == "cut" and self.command == "GET" and len(data) > 100
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                if cut:
                    with proxy.lock:
                        proxy.faults += 1
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(s3_env, s3_bucket, request):
    proxy = FlakyProxy(s3_env, request.param)
    yield proxy, s3_bucket
    proxy.close()


def _blob(tmp_path, seed):
    data = make_adapter_bytes(seed)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), data


@pytest.mark.parametrize("flaky", ["slowdown", "cut"], indirect=True)
def test_transfers_survive_throttling_and_cut_connections(flaky, tmp_path):
    proxy, bucket = flaky
    store = S3BlobStore(bucket, "retry", endpoint_url=proxy.url)
    path, digest, data = _blob(tmp_path, 1)
    store.put_file(digest, path)
    assert store.stat(digest).size == len(data)
    for i in range(3):
        got = bf.read_blob(store, digest, tmp_path / f"out{i}", size=len(data))
        assert got == (digest, len(data))
        assert (tmp_path / f"out{i}").read_bytes() == data
    assert proxy.faults >= 2  # faults really happened and were retried


@pytest.mark.parametrize("flaky", ["slowdown"], indirect=True)
def test_adaptive_mode_retries_throttling(flaky, tmp_path, monkeypatch):
    proxy, bucket = flaky
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")  # opt-in: also rate-limits the client
    store = S3BlobStore(bucket, "adaptive", endpoint_url=proxy.url)
    assert store.client.meta.config.retries["mode"] == "adaptive"
    path, digest, data = _blob(tmp_path, 2)
    store.put_file(digest, path)
    assert bf.read_blob(store, digest, tmp_path / "o", size=len(data)) == (digest, len(data))
    assert proxy.faults >= 2


@pytest.mark.parametrize("flaky", ["slowdown"], indirect=True)
def test_without_retries_throttling_is_a_store_error(flaky, tmp_path, monkeypatch):
    proxy, bucket = flaky
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = S3BlobStore(bucket, "noretry", endpoint_url=proxy.url)
    path, digest, _ = _blob(tmp_path, 3)
    with pytest.raises(StoreError, match="SlowDown|503|reduce"):
        store.put_file(digest, path)
