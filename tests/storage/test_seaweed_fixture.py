"""The test server itself: a SeaweedFS that cannot start is an error (CI fails, never skips),
and the one that runs refuses every key but its own."""

from __future__ import annotations

import pytest
import seaweed as seaweed_module
from botocore.exceptions import ClientError


def test_a_server_that_cannot_start_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(seaweed_module, "weed_binary", lambda: "/bin/false")
    with pytest.raises(RuntimeError, match="SeaweedFS exited with code 1 while starting"):
        seaweed_module.start_seaweed(tmp_path / "broken", timeout=30)


def test_the_server_refuses_other_keys_and_binds_loopback(seaweed, s3_bucket):
    import boto3
    from botocore.config import Config

    assert seaweed.url.startswith("http://127.0.0.1:")
    other = boto3.session.Session().client(
        "s3", endpoint_url=seaweed.url, aws_access_key_id=seaweed.access_key,
        aws_secret_access_key="x" + seaweed.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        other.list_objects_v2(Bucket=s3_bucket)
    command = " ".join(seaweed.proc.args)
    assert "-master.telemetry=false" in command and "-ip.bind=127.0.0.1" in command
