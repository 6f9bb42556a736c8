"""The S3-protocol server (moto) shared by the storage tests of a session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3 import MotoS3, moto_s3


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="session")
def bucket(s3: MotoS3) -> str:
    return s3.create_bucket()
