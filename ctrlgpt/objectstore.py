"""The S3 client of ctrlgpt: one way to reach the object store (the local s3proxy or a cluster's).

Keys come from the settings when given (hosts that do not share the secrets file), else from
the secrets file, where the local s3proxy's were generated. Checksums are computed only where
an operation requires them: recent boto3 adds CRC trailers by default, which s3proxy refuses;
ctrlgpt checks every file against its manifest's sha256 itself.

An object store that does not answer, or answers that it cannot now (a 5xx, throttling), is
away, not refusing: `unavailable_as_pause` turns such an error into `StoreUnavailable`, which a
caller waits out and retries (an outage is a pause), while everything else (a missing object,
access denied, a bad request) passes through unchanged, an answer that retrying would not change.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import boto3.exceptions
import botocore.exceptions
from botocore.config import Config

from ctrlgpt import secrets
from ctrlgpt.settings import Settings

__all__ = ["Credentials", "StoreUnavailable", "client", "credentials", "is_transient", "unavailable_as_pause"]


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


class StoreUnavailable(RuntimeError):
    """The store did not answer, or answered that it cannot now: worth retrying, unlike a refusal."""


# Error codes S3-compatible stores answer with when they are overloaded or briefly failing,
# whatever the HTTP status they come with (S3 sends SlowDown as a 503, others as 400 or 429).
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)

# A mount that went away (NFS, FUSE) or a network that did: the same files may be readable again soon.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ENOTCONN,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
    }
)


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the store is away for now (retry) rather than what it holds (refuse)."""
    if isinstance(error, StoreUnavailable):
        return True
    if isinstance(error, boto3.exceptions.RetriesExceededError):
        # A download whose body kept breaking off (boto3's transfers retry only streaming errors).
        return True
    if isinstance(
        error,
        (
            botocore.exceptions.ConnectionError,  # refused, DNS, connect timeout, proxy, TLS handshake
            botocore.exceptions.HTTPClientError,  # closed mid-answer, read timeout, a body that broke off
            botocore.exceptions.IncompleteReadError,
        ),
    ):
        return True
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = error.response.get("Error", {}).get("Code", "")
        # 501: the store does not implement the request, which no retry changes.
        return (status >= 500 and status != 501) or status == 429 or code in TRANSIENT_CODES
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS


@contextmanager
def unavailable_as_pause(what: str) -> Iterator[None]:
    """Raise `StoreUnavailable` (the original as its cause) for a transient error in the block; others pass."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise StoreUnavailable(f"{what}: unavailable ({type(exc).__name__}: {exc})") from exc
        raise
