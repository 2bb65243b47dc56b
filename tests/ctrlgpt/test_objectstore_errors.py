"""Which object-store errors are an outage (retry) and which are an answer about what it holds (refuse)."""

from __future__ import annotations

import errno
import socket

import boto3.exceptions
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from ctrlgpt import objectstore
from ctrlgpt.objectstore import StoreUnavailable, is_transient, unavailable_as_pause
from ctrlgpt.settings import Settings
from models.manifest import ChecksumMismatch


def answered(status: int, code: str) -> ClientError:
    """The error boto3 raises for a store's answer (status and error code), as parsed from the wire."""
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


URL = "http://127.0.0.1:9/"


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url=URL),
        ConnectTimeoutError(endpoint_url=URL),
        ConnectionClosedError(endpoint_url=URL),
        ReadTimeoutError(endpoint_url=URL),
        ResponseStreamingError(error="Connection broken: IncompleteRead"),
        boto3.exceptions.RetriesExceededError(ReadTimeoutError(endpoint_url=URL)),
        answered(503, "SlowDown"),
        answered(503, "503"),  # a HEAD's answer has no body: the status is the code
        answered(500, "InternalError"),
        answered(502, "BadGateway"),
        answered(429, "TooManyRequests"),
        answered(400, "RequestTimeout"),
        answered(400, "Throttling"),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        TimeoutError("timed out"),
        OSError(errno.ESTALE, "Stale file handle"),  # an NFS mount of the registry that went away
        OSError(errno.ENOTCONN, "Transport endpoint is not connected"),  # a FUSE mount's daemon died
        StoreUnavailable("already classified"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_outage_is_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        answered(404, "NoSuchKey"),
        answered(404, "NoSuchBucket"),
        answered(403, "AccessDenied"),
        answered(403, "SignatureDoesNotMatch"),
        answered(400, "InvalidRequest"),
        answered(501, "NotImplemented"),
        NoCredentialsError(),
        FileNotFoundError(errno.ENOENT, "No such file"),
        PermissionError(errno.EACCES, "Permission denied"),
        OSError(errno.ENOSPC, "No space left on device"),  # the replica's own cache disk: not the store
        ChecksumMismatch("model.safetensors differs"),
        ValueError("bad"),
    ],
    ids=lambda error: type(error).__name__ + "-" + str(getattr(error, "response", {}).get("Error", {}).get("Code", "")),
)
def test_an_answer_about_what_the_store_holds_is_not(error: BaseException) -> None:
    assert not is_transient(error)


def test_unavailable_as_pause_turns_only_transient_errors_into_store_unavailable() -> None:
    cause = answered(503, "SlowDown")
    with pytest.raises(StoreUnavailable, match="fetching s3://b/v1: unavailable") as raised:
        with unavailable_as_pause("fetching s3://b/v1"):
            raise cause
    assert raised.value.__cause__ is cause
    refusal = answered(404, "NoSuchKey")
    with pytest.raises(ClientError) as passed:
        with unavailable_as_pause("fetching s3://b/v1"):
            raise refusal
    assert passed.value is refusal


def test_a_store_that_is_not_listening_is_unavailable() -> None:
    """A real request to a loopback port nobody listens on: the error boto3 raises is classified transient."""
    with socket.socket() as probe:  # a port free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        objectstore_url=f"http://127.0.0.1:{port}", objectstore_access_key="k", objectstore_secret_key="s"
    )
    with pytest.raises(StoreUnavailable) as raised:
        with unavailable_as_pause("listing"):
            objectstore.client(settings, timeout_s=2.0).list_buckets()
    assert isinstance(raised.value.__cause__, EndpointConnectionError)
