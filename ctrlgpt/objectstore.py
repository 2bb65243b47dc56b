"""The S3 client of ctrlgpt: one way to reach the object store (the local s3proxy or a cluster's).

Keys come from the settings when given (hosts that do not share the secrets file), else from
the secrets file, where the local s3proxy's were generated. Checksums are computed only where
an operation requires them: recent boto3 adds CRC trailers by default, which s3proxy refuses;
ctrlgpt checks every file against its manifest's sha256 itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.config import Config

from ctrlgpt import secrets
from ctrlgpt.settings import Settings

__all__ = ["Credentials", "client", "credentials"]


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


def credentials(settings: Settings) -> Credentials:
    if settings.objectstore_access_key and settings.objectstore_secret_key:
        return Credentials(settings.objectstore_access_key, settings.objectstore_secret_key)
    stored = secrets.load_or_create(settings.secrets_file)
    return Credentials(stored.objectstore_access_key, stored.objectstore_secret_key)


def client(settings: Settings, *, timeout_s: float = 30.0):  # -> botocore S3 client (typed stubs not installed)
    keys = credentials(settings)
    return boto3.client(
        "s3",
        endpoint_url=settings.objectstore_url,
        region_name=settings.objectstore_region,
        aws_access_key_id=keys.access_key,
        aws_secret_access_key=keys.secret_key,
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
