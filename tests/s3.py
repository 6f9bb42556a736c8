"""A real S3-protocol server for tests and benches: moto's server mode, in a thread, on 127.0.0.1."""

from __future__ import annotations

import logging
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from moto.server import ThreadedMotoServer

from tests.helpers import free_port

ACCESS_KEY = "vidgate-test-access"
# moto accepts any credentials; this one is recognisable, so a test can look for it in logs and bodies.
SECRET_KEY = "vidgate-test-s3-secret-4f1c2a9e"
REGION = "us-east-1"
_NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}


@dataclass
class MotoS3:
    """A running moto server: make buckets, list and read objects directly (unsigned, as moto allows)."""

    endpoint: str

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"vidgate-{secrets.token_hex(4)}"
        response = httpx.put(f"{self.endpoint}/{name}")
        assert response.status_code == 200, response.text
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        response = httpx.get(f"{self.endpoint}/{bucket}", params={"list-type": "2", "prefix": prefix})
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.content)
        return sorted(key.text or "" for key in root.iterfind("s3:Contents/s3:Key", _NS))

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes, read with boto3 (not with vidgate's own client)."""
        body: bytes = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def presigned(self, bucket: str, key: str, ttl_s: int = 3600) -> str:
        url: str = self.client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
        )
        return url

    def client(self) -> Any:
        import boto3  # moto's own dependency; imported only where a test reads objects

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def settings(self, bucket: str, prefix: str = "", *, redirect: bool = False) -> str:
        """Config lines (top-level keys, then the [storage] table: put them after every other top-level key)."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return (
            f'storage_url = "{url}"\ncontent_redirect = {"true" if redirect else "false"}\n'
            f'[storage]\nendpoint_url = "{self.endpoint}"\nregion = "{REGION}"\n'
            f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n'
        )


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on a free port of 127.0.0.1 for the duration."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoS3(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()
