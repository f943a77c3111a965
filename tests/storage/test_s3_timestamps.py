"""The zoo's S3 client parses timestamps without dateutil, and must agree with botocore's own
parser on everything S3 sends (and hand anything else to it)."""

from __future__ import annotations

import hashlib

import blob_fixtures as bf
import pytest
from botocore.utils import parse_timestamp

from zoo.storage.s3store import S3BlobStore, parse_s3_timestamp

FORMS = [
    "Tue, 01 Dec 2026 13:00:00 GMT",  # a Last-Modified header
    "Tue, 01 Dec 2026 13:00:00 +0200",
    "2026-12-01T13:00:00.000Z",  # a listing's LastModified
    "2026-12-01T13:00:00Z",
    "2026-12-01T13:00:00.123456Z",
    "2026-12-01T13:00:00+01:00",
    "2026-12-01T13:00:00",  # no zone: botocore's own answer
    "1700000000",  # epoch seconds
]

s3_env = bf.s3_env


@pytest.mark.parametrize("value", FORMS)
def test_every_form_parses_as_botocore_parses_it(value):
    ours, theirs = parse_s3_timestamp(value), parse_timestamp(value)
    assert ours == theirs
    assert (ours.tzinfo is None) == (theirs.tzinfo is None)


def test_a_value_botocore_refuses_is_refused():
    with pytest.raises(ValueError):
        parse_s3_timestamp("not a time")


def test_the_store_reads_the_servers_times_as_a_plain_client_does(s3_env, s3_bucket, seaweed):
    store = S3BlobStore(s3_bucket, "times")
    data = b"timestamps"
    digest = hashlib.sha256(data).hexdigest()
    store.put_bytes(digest, data)
    plain = seaweed.client()
    head = plain.head_object(Bucket=s3_bucket, Key=store.key_for(digest))
    listed = plain.list_objects_v2(Bucket=s3_bucket, Prefix="times/")["Contents"][0]
    assert store.stat(digest).mtime == head["LastModified"].timestamp()
    assert [b.mtime for b in store.list_blobs()] == [listed["LastModified"].timestamp()]
