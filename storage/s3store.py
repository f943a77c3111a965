"""The S3 blob store (AWS S3, SeaweedFS, R2, MinIO) through boto3.

Credentials come from boto3's normal chain (environment, ~/.aws, instance roles); the endpoint
from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (SeaweedFS, MinIO), in which case path-style
addressing is used, because such servers rarely have wildcard DNS for virtual-host buckets.

Every upload carries its SHA-256 checksum (``x-amz-checksum-sha256``: the blob's own digest for
a single PUT, one per part for a multipart upload), so a server that checks it refuses bytes
damaged between hashing and storing (``BadDigest``). Downloads are hashed by the zoo itself
(``zoo.storage.fetch``), so botocore's own response-checksum pass is switched off: it would hash
every byte a second time.

Why these knobs: one shared client (botocore clients are thread-safe) whose connection pool is
sized to the transfer worker count, so parallel pulls do not queue on a pool of 10; retries in
``standard`` mode back off exponentially on throttling (503 SlowDown) and transient network
errors (``AWS_RETRY_MODE=adaptive`` adds botocore's client-side rate limiter, which cost 8-15% of
the wall time of 1,000 small GETs against SeaweedFS with no throttling to answer); large files go
through boto3's TransferConfig (multipart uploads, ranged parallel GETs), small ones through a
single streamed request; timestamps are parsed without dateutil (``parse_s3_timestamp``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.utils import parse_timestamp

from zoo.errors import NotFoundError, StoreError
from zoo.files import hash_stream
from zoo.storage.blobstore import (
    BLOB_DIR,
    BlobInfo,
    UnfinishedWrite,
    blob_key,
    digest_from_key,
)

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
# Downloads from this size on are ranged GETs in parallel (boto3's transfer manager), hashed
# after landing; smaller ones are one GET hashed while it streams. Measured on SeaweedFS with
# 20 x 50 MB blobs and 16 workers: ranged GETs (8 or 16 MiB parts) + hashing the file cost
# 1.6x the CPU of one streamed GET hashed on the way (3.6-3.8 s vs 2.3 s), so on a busy host
# streaming wins; ranged GETs are for blobs so large that one stream would leave the other
# workers idle.
DOWNLOAD_THRESHOLD = 64 * 1024 * 1024
DOWNLOAD_PART = 8 * 1024 * 1024
DOWNLOAD_CONCURRENCY = 4  # ranged GETs in flight per blob
WHOLE_READ = 8 * 1024 * 1024  # a body up to this size is read in one call
STREAM_ATTEMPTS = 3  # botocore retries requests; a body cut mid-stream is retried here
_MISSING = {"404", "NoSuchKey", "NotFound"}
_BAD_KEYS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_DENIED = {"403", "AccessDenied", "Forbidden"}
_DAMAGED = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_client(*, workers: int = 8, endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client with a pool for ``workers`` threads, retries and addressing set."""
    endpoint = endpoint_url or _endpoint()
    config = Config(
        # every worker may run DOWNLOAD_CONCURRENCY ranged GETs: a connection each, none made
        # and thrown away because the pool was full
        max_pool_connections=max(10, workers * DOWNLOAD_CONCURRENCY + 4),
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            # AWS_MAX_ATTEMPTS counts the first try too, like botocore's total_max_attempts
            "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "8")),
        },
        s3={"addressing_style": "path" if endpoint else "auto"},
        connect_timeout=10,
        read_timeout=60,
        tcp_keepalive=True,
        # the zoo hashes what it downloads against the catalog's digest; botocore's optional
        # response checksum would hash every byte a second time
        response_checksum_validation="when_required",
    )
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_s3_timestamp)
    return boto3.session.Session(botocore_session=session).client(
        "s3", endpoint_url=endpoint, config=config)


def parse_s3_timestamp(value: str) -> datetime:
    """S3's two timestamp forms without dateutil, which botocore uses by default and which
    costs 70-110 us a value: a tenth of the client's time for a small GET (its Last-Modified
    header), seconds for a listing of 100,000 blobs. ISO 8601 in XML bodies, RFC 1123 in
    headers; anything else goes to botocore's own parser."""
    try:
        if value[:4].isdigit() and value[4:5] == "-":  # 2026-12-01T13:00:00.000Z
            parsed = datetime.fromisoformat(value)
        else:  # Tue, 01 Dec 2026 13:00:00 GMT
            parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is not None:
            return parsed
    except (TypeError, ValueError, IndexError):
        pass
    return parse_timestamp(value)


class S3BlobStore:
    """Blobs as objects ``s3://bucket/<prefix>/blobs/sha256/ab/cdef…``."""

    def __init__(self, bucket: str, prefix: str = "", *, workers: int = 8,
                 endpoint_url: str | None = None, client: Any = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD,
                 multipart_chunksize: int = MULTIPART_CHUNKSIZE,
                 download_threshold: int = DOWNLOAD_THRESHOLD,
                 download_part: int = DOWNLOAD_PART) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or make_client(workers=workers, endpoint_url=endpoint_url)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,
        )
        self.download = TransferConfig(multipart_threshold=download_threshold,
                                       multipart_chunksize=download_part,
                                       max_concurrency=DOWNLOAD_CONCURRENCY)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    def key_for(self, digest: str) -> str:
        key = blob_key(digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, digest: str | None, exc: Exception) -> StoreError:
        where = f"s3://{self.bucket}/{self.key_for(digest)}" if digest else self.url
        return _store_error(what, where, self.bucket, exc)

    def stat(self, digest: str) -> BlobInfo | None:
        head = self._head(self.key_for(digest))
        if head is None:
            return None
        return BlobInfo(digest, int(head["ContentLength"]), head["LastModified"].timestamp())

    def _head(self, key: str) -> dict | None:
        """HEAD of one object; None when absent, StoreError (one line) when the store fails."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._fail_key("stat", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail_key("stat", key, exc) from exc

    def put_file(self, digest: str, path: str | os.PathLike[str]) -> None:
        """Upload with its SHA-256 checksum: one PUT carrying ``digest`` itself below the
        multipart threshold, else a multipart upload whose every part carries its own."""
        path = os.fspath(path)
        key = self.key_for(digest)
        try:
            if os.path.getsize(path) < self.transfer.multipart_threshold:
                with open(path, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                           Metadata={"sha256": digest},
                                           ChecksumSHA256=_b64_digest(digest))
            else:
                self.client.upload_file(
                    path, self.bucket, key, Config=self.transfer,
                    ExtraArgs={"Metadata": {"sha256": digest}, "ChecksumAlgorithm": "SHA256"})
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("upload to", digest, exc) from exc
        except Exception as exc:  # S3UploadFailedError wraps ClientError
            raise self._fail("upload to", digest, _cause(exc)) from exc

    def put_bytes(self, digest: str, data: bytes) -> None:
        try:  # one PUT: in-memory blobs are small (logs, checkpoints, adapters)
            self.client.put_object(Bucket=self.bucket, Key=self.key_for(digest), Body=data,
                                   Metadata={"sha256": digest},
                                   ChecksumSHA256=_b64_digest(digest))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("upload to", digest, exc) from exc

    def start_put_bytes(self, digest: str, data: bytes) -> Callable[[], None]:
        """The PUT happens now (a PUT is durable once answered); nothing is left to finish."""
        self.put_bytes(digest, data)
        return _nothing

    def read_into(self, digest: str, out: BinaryIO, *,
                  size: int | None = None) -> tuple[str, int]:
        """Download into ``out``; (sha256, size) of what landed. A known large ``size`` uses
        ranged parallel GETs, then hashes the file; others one GET hashed while streaming."""
        key = self.key_for(digest)
        if size is not None and size >= self.download.multipart_threshold:
            try:
                self.client.download_fileobj(self.bucket, key, out, Config=self.download)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise self._missing(digest) from None
                raise self._fail("download of", digest, exc) from exc
            except BotoCoreError as exc:
                raise self._fail("download of", digest, exc) from exc
            out.flush()
            out.seek(0)
            return hash_stream(out)
        last: Exception | None = None
        for attempt in range(STREAM_ATTEMPTS):
            if attempt:  # a retry starts from an empty file
                out.seek(0)
                out.truncate()
            try:
                return self._stream_to(key, out, size=size)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise self._missing(digest) from None
                raise self._fail("download of", digest, exc) from exc
            except (BotoCoreError, OSError) as exc:  # connection cut mid-body
                last = exc
        raise self._fail("download of", digest, last or RuntimeError("unknown"))

    def _stream_to(self, key: str, out: BinaryIO, *, size: int | None = None) -> tuple[str, int]:
        """One GET into ``out``, hashed on the way. A body of known small ``size`` is read in
        one call and written once (per-chunk calls cost more than the hash of 50 KB); others
        are streamed in pieces (``hash_stream``), each hashed while it is still in the cache."""
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            if size is not None and size <= WHOLE_READ and response["ContentLength"] == size:
                data = body.read()
                out.write(data)
                return hashlib.sha256(data).hexdigest(), len(data)
            return hash_stream(body, out)
        finally:
            body.close()

    def _missing(self, digest: str) -> NotFoundError:
        return NotFoundError(f"blob {digest} is missing from store {self.url}")

    def touch(self, digest: str) -> None:
        key = self.key_for(digest)
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                Metadata={"sha256": digest}, MetadataDirective="REPLACE",
            )
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise self._fail("touch", digest, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("touch", digest, exc) from exc

    def delete(self, digest: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(digest))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("delete", digest, exc) from exc

    def list_blobs(self) -> Iterator[BlobInfo]:
        prefix = f"{self.prefix}/{BLOB_DIR}/" if self.prefix else f"{BLOB_DIR}/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    digest = digest_from_key(obj["Key"])
                    if digest is not None:
                        yield BlobInfo(digest, int(obj["Size"]), obj["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("list", None, exc) from exc

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        """Multipart uploads under this store's blobs that were never completed or aborted
        (a killed ``put_file`` of a large blob): S3 keeps, and bills, their parts."""
        prefix = f"{self.prefix}/{BLOB_DIR}/" if self.prefix else f"{BLOB_DIR}/"
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for upload in page.get("Uploads", ()):
                    where = f"s3://{self.bucket}/{upload['Key']}?uploadId={upload['UploadId']}"
                    yield UnfinishedWrite(where, 0, upload["Initiated"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("list multipart uploads in", None, exc) from exc

    def remove_unfinished(self, write: UnfinishedWrite) -> None:
        head = f"s3://{self.bucket}/"
        key, sep, upload_id = write.where.removeprefix(head).partition("?uploadId=")
        if not write.where.startswith(head) or not sep or digest_from_key(key) is None:
            raise ValueError(f"{write.where} is not a multipart upload of store {self.url}")
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise self._fail("abort multipart upload to", None, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("abort multipart upload to", None, exc) from exc

    def hash_blob(self, digest: str) -> tuple[str, int]:
        key = self.key_for(digest)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return hash_stream(body)
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise self._missing(digest) from None
            raise self._fail("read of", digest, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("read of", digest, exc) from exc


    # ---- named objects outside the blob space: the store's binding, s3:// inputs -----------
    def _meta_key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def read_meta(self, name: str) -> bytes | None:
        """A small named object at the store's root (None when absent)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._meta_key(name))["Body"]
            try:
                return body.read()
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._fail_key("read", self._meta_key(name), exc) from exc
        except BotoCoreError as exc:
            raise self._fail_key("read", self._meta_key(name), exc) from exc

    def write_meta(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._meta_key(name), Body=data,
                                   ChecksumSHA256=_b64_digest(hashlib.sha256(data).hexdigest()))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail_key("write", self._meta_key(name), exc) from exc

    def head_key(self, key: str) -> tuple[int, str] | None:
        """(size, ETag) of any object in this bucket, or None when absent."""
        head = self._head(key)
        return None if head is None else (int(head["ContentLength"]), str(head.get("ETag", "")))

    def get_key(self, key: str, out: BinaryIO) -> tuple[str, int]:
        """Download any object of this bucket into ``out``; (sha256, size) of what was written."""
        try:
            return self._stream_to(key, out)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFoundError(f"s3://{self.bucket}/{key} does not exist") from None
            raise self._fail_key("download of", key, exc) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._fail_key("download of", key, exc) from exc

    def list_keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix`` in this bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield obj["Key"], int(obj["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise self._fail_key("list", prefix, exc) from exc

    def _fail_key(self, what: str, key: str, exc: Exception) -> StoreError:
        return _store_error(what, f"s3://{self.bucket}/{key}", self.bucket, exc)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); ConfigError when either part is missing."""
    from zoo.errors import ConfigError

    bucket, _, key = uri[len("s3://"):].partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ConfigError(f"{uri!r} is not s3://bucket/key")
    return bucket, key


def _store_error(what: str, where: str, bucket: str, exc: Exception) -> StoreError:
    """One line that says what went wrong with the store and what to check."""
    code = _code(exc)
    if code == "NoSuchBucket":
        return StoreError(f"{what} {where}: bucket {bucket!r} does not exist")
    if code in _BAD_KEYS:
        return StoreError(f"{what} {where}: the S3 server refused the credentials ({code}); "
                          "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile")
    if code in _DENIED:
        return StoreError(f"{what} {where}: access denied ({code}); check the credentials "
                          "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket's policy")
    if code in _DAMAGED:
        return StoreError(f"{what} {where}: the S3 server refused the bytes, they do not match "
                          f"their checksum ({code}); nothing was stored")
    if isinstance(exc, NoCredentialsError):
        return StoreError(f"{what} {where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
    text = " ".join(str(exc).split())
    return StoreError(f"{what} {where} failed: {type(exc).__name__}: {text}")


def _b64_digest(digest: str) -> str:
    """A hex sha256 as the base64 value of an ``x-amz-checksum-sha256`` header."""
    return base64.b64encode(bytes.fromhex(digest)).decode("ascii")


def _cause(exc: Exception) -> Exception:
    """The ClientError inside boto3's transfer errors (S3UploadFailedError keeps it as the
    cause), so that its code decides the message."""
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(cause, (ClientError, BotoCoreError)) else exc


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _nothing() -> None:
    return None
