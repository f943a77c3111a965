"""The HTTP client: every verb through a team server (``ZOO_URL``) with a token.

Standard library only (``http.client``): a catalog verb through the server imports neither
SQLAlchemy, boto3, torch, Ray nor an HTTP framework, so a cold ``zoo ls`` is a process start
plus one request. Error responses carry the typed error and exit code of ``zoo.errors``; they
are raised here as that error, so the CLI prints the same line and exits with the same code as
embedded use. Downloads are verified on this machine (``zoo.storage.fetch``), whether the bytes
come from a presigned S3 URL or from the server; the token is only ever sent to ZOO_URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urljoin, urlsplit

from zoo import errors as zerr
from zoo.client.base import Json, ProgressFn
from zoo.files import hash_stream
from zoo.job_state import TERMINAL

TOKEN_FILE = "token"
TERMINAL_STATES = frozenset(str(s) for s in TERMINAL)
TIMEOUT_S = 300.0


def resolve_token() -> str | None:
    """``ZOO_TOKEN``, else ``$ZOO_HOME/token``: refused when group or others may read it."""
    secret = os.environ.get("ZOO_TOKEN")
    if secret:
        return secret.strip()
    path = Path(os.environ.get("ZOO_HOME") or "~/.zoo").expanduser() / TOKEN_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise zerr.ConfigError(f"token file {path} is readable by others (mode "
                               f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`")
    return path.read_text().strip() or None


def raise_for(status: int, body: bytes) -> None:
    """The typed error an error response stands for (message and exit code preserved)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or "error" not in data:
        raise zerr.ServerError(f"the zoo server answered HTTP {status} without an error body")
    cls = getattr(zerr, str(data["error"]), None)
    message = str(data.get("message") or f"HTTP {status}")
    if isinstance(cls, type) and issubclass(cls, zerr.ZooError):
        raise cls(message)
    exc = zerr.ZooError(message)
    exc.exit_code = data["exit_code"] if isinstance(data.get("exit_code"), int) else 1
    raise exc


class HttpClient:
    """:class:`zoo.client.base.Client` over the server's REST API."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise zerr.ConfigError(f"ZOO_URL {url!r} is not an http(s):// URL")
        self.url = url.rstrip("/")
        self._parts = parts
        port = f":{parts.port}" if parts.port else ""
        self.shown_url = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"  # no user:pass
        self._token = token
        self._conn: Any = None
        self._timeout: float | None = TIMEOUT_S

    # --------------------------------------------------------------------- transport
    def _connection(self) -> Any:
        if self._conn is None:
            import http.client

            cls = http.client.HTTPSConnection if self._parts.scheme == "https" \
                else http.client.HTTPConnection
            self._conn = cls(self._parts.hostname, self._parts.port, timeout=self._timeout)
        return self._conn

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", **(extra or {})}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, raw: bytes | None = None,
                content_type: str = "application/json") -> Any:
        """One API call; the decoded JSON answer, or the typed error it carries."""
        target = self._parts.path.rstrip("/") + "/api/v1" + path
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            target += "?" + urlencode(query, doseq=True) if query else ""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = self._headers({"Content-Type": content_type} if data is not None else None)
        status, payload = self._send(method, target, data, headers)
        if status >= 400:
            raise_for(status, payload)
        if not payload:
            return None
        return json.loads(payload) if payload[:1] in (b"{", b"[") else payload.decode()

    def _send(self, method: str, target: str, data: bytes | None,
              headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (0, 1):  # a kept-alive connection the server closed: reconnect once
            conn = self._connection()
            try:
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, OSError) as exc:
                conn.close()
                self._conn = None
                if attempt or not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                    raise zerr.ServerError(f"cannot reach the zoo server at {self.shown_url}: "
                                           f"{type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---------------------------------------------------------------------- adapters
    def list_adapters(self, query: str, sort: str, limit: int,
                      count: bool = False) -> tuple[list[Json], int | None]:
        page = self.request("GET", "/adapters", params={"q": query, "sort": sort,
                                                         "limit": limit, "count": count})
        return page["adapters"], page["total"]

    def iter_adapters(self, query: str, sort: str) -> Iterator[Json]:
        after = None
        while True:
            page = self.request("GET", "/adapters", params={"q": query, "sort": sort,
                                                             "limit": 500, "after": after})
            yield from page["adapters"]
            after = page["next"]
            if after is None:
                return

    def show(self, ref: str) -> Json:
        return self.request("GET", f"/adapters/{_seg(ref)}")

    def tag(self, ref: str, tags: Sequence[str]) -> Json:
        return self.request("POST", f"/adapters/{_seg(ref)}/tags", body={"tags": list(tags)})

    def untag(self, ref: str, tags: Sequence[str]) -> Json:
        return self.request("POST", f"/adapters/{_seg(ref)}/untag", body={"tags": list(tags)})

    def alias_set(self, name_alias: str, ref: str) -> str:
        return self.request("PUT", f"/aliases/{_seg(name_alias)}", body={"ref": ref})["adapter_id"]

    def alias_rm(self, name_alias: str) -> str:
        return self.request("DELETE", f"/aliases/{_seg(name_alias)}")["adapter_id"]

    def alias_ls(self, name: str | None) -> list[Json]:
        return self.request("GET", "/aliases", params={"name": name})

    def alias_log(self, name_alias: str) -> list[Json]:
        return self.request("GET", f"/aliases/{_seg(name_alias)}/history")

    def remove(self, refs: Sequence[str], force: bool) -> list[Json]:
        return self.request("POST", "/adapters/remove", body={"refs": list(refs), "force": force})

    # ---------------------------------------------------------------------- transfer
    def push(self, path: str, *, name: str, tags: Sequence[str], aliases: Sequence[str],
             base: str | None) -> Json:
        from zoo.adapter_source import read_adapter_source

        data = read_adapter_source(path)  # a PEFT directory is converted here, as direct use does
        fields = [("name", name), *(("tags", t) for t in tags), *(("aliases", a) for a in aliases)]
        if base is not None:
            fields.append(("base", base))
        body, content_type = _multipart(fields, Path(path).name, data)
        return self.request("POST", "/adapters", raw=body, content_type=content_type)

    def pull(self, refs: Sequence[str], *, out_dir: str, tag: str | None, query: str | None,
             format: str, workers: int, progress: ProgressFn | None) -> Json:
        if format == "merged":
            raise zerr.ConfigError("--format merged is not available through ZOO_URL: the merge "
                                   "needs the registered base; pull native or peft")
        if not refs and tag is None and not query:
            raise zerr.ConfigError("nothing to pull: give REF..., --tag or --query")
        from zoo.storage.pull import PullItem, pull_items

        answer = self.request("POST", "/pull", body={"refs": list(refs), "tag": tag,
                                                     "query": query})
        items = [PullItem(i["id"], i["name"], i["digest"], int(i["size"]))
                 for i in answer["items"]]
        blobs = _RemoteBlobs(self, {i["digest"]: i["url"] for i in answer["items"]})
        return pull_items(blobs, items, out_dir=out_dir, format=format, workers=workers,
                          progress=progress).to_dict()

    # -------------------------------------------------------------------- evaluation
    def leaderboard(self, *, dataset: str, metric: str, query: str | None,
                    limit: int) -> list[Json]:
        path = Path(dataset).expanduser()
        if path.is_file():  # a dataset is known by its content: send its sha256
            from zoo.files import sha256_file

            dataset = sha256_file(path)[0]
        return self.request("GET", "/leaderboard", params={"dataset": dataset, "metric": metric,
                                                           "q": query, "limit": limit})

    def evaluate(self, *, query: str, dataset: str, metrics: Sequence[str] | None,
                 batch_size: int, max_examples: int | None, force: bool, address: str | None,
                 progress: ProgressFn | None) -> Json:
        """The server runs the evaluation (on its Ray) and answers when it is done; a local
        dataset file is uploaded, an s3:// one is named."""
        if address is not None:
            raise zerr.ConfigError("--address does not apply through ZOO_URL: the server "
                                   "evaluates on its own Ray")
        fields = [("select", query), ("batch_size", str(batch_size)), ("force", str(force).lower())]
        fields += [("metrics", m) for m in metrics or ()]
        if max_examples is not None:
            fields.append(("max_examples", str(max_examples)))
        if dataset.startswith("s3://"):
            fields.append(("dataset_uri", dataset))
            name, data = "", None
        else:
            path = Path(dataset).expanduser()
            if not path.is_file():
                raise zerr.DataError(f"dataset {dataset}: no such file")
            name, data = path.name, path.read_bytes()
        body, content_type = _multipart(fields, name, data)
        with self._untimed():  # an evaluation takes as long as it takes
            return self.request("POST", "/evals", raw=body, content_type=content_type)

    @contextlib.contextmanager
    def _untimed(self) -> Iterator[None]:
        """No socket timeout for the requests inside: the server answers a long job (an
        evaluation, a full re-hash) only when it is done."""
        self.close()
        self._timeout = None
        try:
            yield
        finally:
            self.close()
            self._timeout = TIMEOUT_S

    def bases(self) -> list[Json]:
        return self.request("GET", "/bases")

    def base_add(self, name: str, location: str, *, upload: bool) -> Json:
        if upload:
            raise zerr.ConfigError("--upload is not available through ZOO_URL: copy the "
                                   "directory to S3 and register its s3:// prefix")
        return self.request("POST", "/bases", body={"name": name, "location": location})

    def gc(self, *, grace: str, dry_run: bool, force: bool) -> Json:
        return self.request("POST", "/gc", body={"grace": grace, "dry_run": dry_run,
                                                 "force": force})

    def fsck(self, *, verify: bool, workers: int) -> Json:
        with self._untimed():  # --verify reads every byte of the store
            return self.request("POST", "/fsck", body={"verify": verify, "workers": workers})

    # ------------------------------------------------------------------ tokens, audit
    def token_create(self, name: str, *, scope: str, prefix: str | None,
                     expires_s: float | None) -> Json:
        return self.request("POST", "/tokens", body={"name": name, "scope": scope,
                                                      "prefix": prefix, "expires_s": expires_s})

    def token_ls(self) -> list[Json]:
        return self.request("GET", "/tokens")

    def token_revoke(self, name: str) -> Json:
        return self.request("DELETE", f"/tokens/{_seg(name)}")

    def audit(self, *, since_s: float | None, verb: str | None, target: str | None,
              limit: int) -> list[Json]:
        return self.request("GET", "/audit", params={
            "since": None if since_s is None else f"{since_s:g}", "verb": verb,
            "target": target, "limit": limit})

    # -------------------------------------------------------------------------- jobs
    def jobs_ls(self, *, state: str | None, sweep_id: str | None, limit: int) -> list[Json]:
        return self.request("GET", "/jobs", params={"state": state, "sweep": sweep_id,
                                                    "limit": limit})

    def job_show(self, job_id: str) -> Json:
        return self.request("GET", f"/jobs/{_seg(job_id)}")

    def job_cancel(self, job_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for job_id in job_ids:
            out.update(self.request("POST", f"/jobs/{_seg(job_id)}/cancel"))
        return out


    def submit_spec(self, text: str, overrides: Sequence[str]) -> Json:
        """Hand a spec to the server, which submits it to its Ray cluster (data: s3:// URIs)."""
        return self.request("POST", "/jobs", body={"spec": text, "overrides": list(overrides)})

    def stream_log(self, job_id: str, write: Callable[[str], None], *, follow: bool,
                   poll_s: float = 1.0) -> None:
        """The server's log of the job, polled while it runs (as the direct follow does)."""
        job_id = self.job_show(job_id)["id"]
        shown = 0
        while True:
            terminal = self.job_show(job_id)["state"] in TERMINAL_STATES
            text = self.request("GET", f"/jobs/{_seg(job_id)}/logs") or ""
            if len(text) > shown:
                write(text[shown:])
                shown = len(text)
            if not follow or terminal:
                return
            time.sleep(poll_s)

    def wait_jobs(self, job_ids: Sequence[str], *, timeout: float | None,
                  poll_s: float = 1.0) -> dict[str, str]:
        ids = [self.job_show(j)["id"] for j in job_ids]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            states = {j: self.job_show(j)["state"] for j in ids}
            if all(s in TERMINAL_STATES for s in states.values()) or (
                    deadline is not None and time.monotonic() > deadline):
                return states
            time.sleep(poll_s)


def _seg(text: str) -> str:
    """One path segment (``@`` kept: ``sentiment@prod`` reads well in server logs)."""
    return quote(text, safe="@")


def _multipart(fields: list[tuple[str, str]], filename: str,
               data: bytes | None) -> tuple[bytes, str]:
    """A multipart/form-data body: the fields, then the file (when ``data`` is given)."""
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                     f"{value}\r\n".encode())
    if data is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{quote(filename)}"\r\n'
                     'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class _RemoteBlobs:
    """The part of a blob store the verified fetch needs, over the URLs the server gave:
    presigned S3 URLs (fetched without our token) or the server's own blob paths."""

    def __init__(self, client: HttpClient, urls: dict[str, str]) -> None:
        self.client, self.urls, self.url = client, urls, client.url

    def stat(self, digest: str) -> None:
        return None  # sizes always come from the catalog

    def read_into(self, digest: str, out: BinaryIO, *,
                  size: int | None = None) -> tuple[str, int]:
        import urllib.request

        url = self.urls[digest]
        headers = {}
        if not urlsplit(url).scheme:  # the server's path: the only place the token goes
            url = urljoin(self.client.url + "/", url.lstrip("/"))
            headers = self.client._headers()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=TIMEOUT_S) as response:
                return hash_stream(response, out)
        except OSError as exc:
            status = getattr(exc, "code", None)
            if status == 404:
                raise zerr.NotFoundError(f"blob sha256:{digest} is missing") from None
            if status is not None:
                raise_for(status, exc.read() if hasattr(exc, "read") else b"")
            raise zerr.ServerError(f"download of blob sha256:{digest} failed: "
                                   f"{type(exc).__name__}") from None
