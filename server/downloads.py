"""Where a client fetches an adapter's bytes: straight from S3 by a presigned URL, or streamed
by this server from a local store. Either way the client verifies the sha256 it was given, so
the server never has to be trusted with integrity, and S3 bytes never pass through it.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import FileResponse, RedirectResponse

from zoo.errors import NotFoundError


def presigned_url(store: Any, digest: str, expires_s: int) -> str | None:
    """A time-limited GET URL for the blob on an S3 store; None for other stores."""
    client, bucket = getattr(store, "client", None), getattr(store, "bucket", None)
    if client is None or bucket is None:
        return None
    return client.generate_presigned_url("get_object",
                                         Params={"Bucket": bucket, "Key": store.key_for(digest)},
                                         ExpiresIn=expires_s)


def blob_url(store: Any, digest: str, expires_s: int) -> str:
    """A presigned URL (S3), else this server's blob path (relative to the server URL)."""
    return presigned_url(store, digest, expires_s) or f"/api/v1/blobs/{digest}"


def blob_response(store: Any, digest: str, expires_s: int) -> Any:
    """The blob's bytes from a local store; a redirect to a presigned URL on S3."""
    url = presigned_url(store, digest, expires_s)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    path = store.path_for(digest)
    if not path.is_file():
        raise NotFoundError(f"blob sha256:{digest} is missing from the store (run `zoo fsck`)")
    return FileResponse(path, media_type="application/octet-stream")
