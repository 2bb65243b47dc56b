"""What every /v1/admin router shares: the admin key, the error answers, the limit on reasons.

Each endpoint calls the same function as the CLI (`models.operations`, `streams.commands`, `producers.seed`). Errors:
unknown version 404, a version whose status does not allow the operation (or whose files fail their
checksums) 409, bad body or unknown target 422, Kafka down 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, HTTPException, status

from api.schemas import ErrorResponse
from api.security import require_admin_key
from models import operations
from models.manifest import ChecksumMismatch
from models.registry import UnknownVersion, VersionConflict
from streams import bus

MAX_REASON_CHARS = 2000

ERRORS = {
    401: {"model": ErrorResponse, "description": "No admin key, or a wrong one."},
    503: {"model": ErrorResponse, "description": "Kafka did not take the announcement."},
}


def admin_router(resource: str) -> APIRouter:
    """The router of /v1/admin/<resource>: every endpoint behind the admin key."""
    return APIRouter(
        prefix=f"/v1/admin/{resource}", tags=["admin"], dependencies=[Depends(require_admin_key)], responses=ERRORS
    )


@contextmanager
def answering_errors() -> Iterator[None]:
    try:
        yield
    except UnknownVersion as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except (VersionConflict, ChecksumMismatch) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except operations.UnknownTarget as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except (bus.ServiceUnavailable, KafkaException) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"Kafka did not answer, retry: {exc}") from exc
    except (FileNotFoundError, ValueError) as exc:
        # A manifest that does not parse, or a pointer to a version that is gone: an operator must look.
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"the model registry is inconsistent: {exc}") from exc
