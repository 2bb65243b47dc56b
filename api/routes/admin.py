"""/v1/admin: operator endpoints (models, training, crawls), all behind the API's admin key.

The key is `secrets.load_or_create(settings.secrets_file).api_admin_key`, sent as `X-API-Key: KEY`
or `Authorization: Bearer KEY`. Each endpoint calls the same function as the CLI
(`models.operations`, `streams.commands`, `producers.seed`); the topics they publish to are
dependencies, so a test can point them at topics of its own. Each target's policy has its own registry and versions: the
model endpoints take a `target` (default: `target_sentiment`). Errors: unknown version 404, a
version whose status does not allow the operation (or whose files fail their checksums) 409, bad
body or unknown target 422, Kafka down 503.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

import structlog
from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import ModelsDep, SettingsDep
from api.model_updates import Outcome, load_failure, refusal_reason, serve
from api.schemas import ErrorResponse
from api.served_model import ModelHolder
from ctrlgpt import secrets
from ctrlgpt.retry import retrying
from ctrlgpt.settings import Settings
from models import operations
from models.announcements import model_update
from models.layout import manifest_path
from models.manifest import ChecksumMismatch, Manifest, sha256_of, verify
from models.registry import Change, UnknownVersion, VersionConflict
from producers.seed import seed_requests
from streams import bus, commands, topics
from streams.records import CrawlRequested, ModelPromoted
from streams.topics import Topic
from streams.snapshot import TopicSnapshot, read_snapshot

log = structlog.get_logger()

MAX_REASON_CHARS = 2000
MAX_SEED_URLS = 100
RELOAD_READ_TIMEOUT_S = 30.0
RELOAD_READ_GIVE_UP_S = 10.0  # beyond it the reload answers 503: an operator retries, not a held request


async def require_admin_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    given = x_api_key
    if given is None and authorization is not None:
        scheme, _, token = authorization.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    expected = secrets.load_or_create(settings.secrets_file).api_admin_key
    # Constant time: how long a wrong key takes must not tell how much of it was right.
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="admin key required: send X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def model_updates_topic() -> Topic:
    return topics.MODEL_UPDATES


async def training_commands_topic() -> Topic:
    return topics.TRAINING_COMMANDS


async def crawl_requests_topic() -> Topic:
    return topics.CRAWL_REQUESTS


ERRORS = {
    401: {"model": ErrorResponse, "description": "No admin key, or a wrong one."},
    503: {"model": ErrorResponse, "description": "Kafka did not take the announcement."},
}
VERSION_ERRORS = {
    404: {"model": ErrorResponse, "description": "No such version."},
    409: {"model": ErrorResponse, "description": "The version's status does not allow it, or its files fail their checksums."},
}

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin_key)], responses=ERRORS)


class VersionInfo(BaseModel):
    version: str
    name: str
    status: str
    status_reason: str
    parent_version: str | None
    created_at: datetime
    base_model: str
    target_sentiment: str
    metrics: dict[str, float]
    label_offsets: dict[str, int]
    current: bool
    pinned: bool

    @classmethod
    def of(cls, manifest: Manifest, current: str | None, pinned: str | None) -> VersionInfo:
        return cls(
            **manifest.model_dump(
                include={
                    "version", "name", "status", "status_reason", "parent_version", "created_at", "base_model",
                    "target_sentiment", "metrics", "label_offsets",
                }
            ),
            current=manifest.version == current,
            pinned=manifest.version == pinned,
        )


class TargetVersions(BaseModel):
    target: str
    model_name: str
    current: str | None
    pinned: str | None
    versions: list[VersionInfo] = Field(description="Oldest first.")


class VersionList(BaseModel):
    models: list[TargetVersions] = Field(description="One registry per target's policy.")


TargetField = Field(None, min_length=1, max_length=64, description="Whose policy; default: target_sentiment.")


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field("", max_length=MAX_REASON_CHARS)
    target: str | None = TargetField


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: str = Field(min_length=1, max_length=64)
    reason: str = Field("", max_length=MAX_REASON_CHARS)
    target: str | None = TargetField


class ChangeResponse(BaseModel):
    action: Literal["rolled_back", "pinned"]
    version: str
    previous: str | None = Field(description="The version current before; None if it was this one already.")
    reason: str
    manifest_sha256: str

    @classmethod
    def of(cls, change: Change) -> ChangeResponse:
        return cls(
            action=change.action, version=change.version, previous=change.previous, reason=change.reason,
            manifest_sha256=change.manifest_sha256,
        )


class Reloaded(BaseModel):
    target: str
    model_name: str
    action: Literal["swapped", "already_serving", "nothing_to_serve"]
    version: str | None
    previous: str | None
    source: Literal["topic", "registry"] | None = Field(
        description="Where the version came from: the model-updates topic, or the registry's CURRENT."
    )


class ReloadResponse(BaseModel):
    models: list[Reloaded]


class TrainingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field("", max_length=MAX_REASON_CHARS)


class CommandAccepted(BaseModel):
    command: Literal["train", "cancel"]
    event_id: str
    run_id: str | None


class CrawlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    urls: list[str] = Field(min_length=1, max_length=MAX_SEED_URLS, description="Seed URLs, absolute http(s).")
    max_depth: int | None = Field(None, ge=0, le=20, description="Links followed from a seed; default: the crawler's setting.")
    allowed_domains: list[str] = Field(default_factory=list, max_length=100, description="Extra domains in scope.")
    fetch_mode: Literal["browser", "http"] = "browser"
    max_pages: int | None = Field(None, ge=1, description="Pages per site for this crawl; default: the crawler's setting.")


class CrawlAccepted(BaseModel):
    crawl_id: str
    urls: list[str] = Field(description="The seeds as queued: normalized, duplicates removed.")


@contextmanager
def _answering_errors() -> Iterator[None]:
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


@router.get("/models", response_model=VersionList)
async def list_models(
    settings: SettingsDep,
    target: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this target's policy.")] = None,
) -> VersionList:
    def listing() -> VersionList:
        listed = []
        for one in [target] if target else settings.target_list:
            registry = operations.registry_for(settings, one)
            current, pinned = registry.current(), registry.pinned()
            versions = [VersionInfo.of(m, current, pinned) for m in registry.manifests()]
            listed.append(
                TargetVersions(
                    target=one, model_name=registry.root.name, current=current, pinned=pinned, versions=versions
                )
            )
        return VersionList(models=listed)

    with _answering_errors():
        return await run_in_threadpool(listing)


@router.post("/models/rollback", response_model=ChangeResponse, responses=VERSION_ERRORS)
async def rollback(
    body: RollbackRequest, settings: SettingsDep, topic: Annotated[Topic, Depends(model_updates_topic)]
) -> ChangeResponse:
    with _answering_errors():
        change = await run_in_threadpool(
            operations.rollback, settings, body.version, body.reason, target=body.target, topic=topic
        )
    log.info("admin.rolled_back", version=change.version, previous=change.previous, reason=change.reason)
    return ChangeResponse.of(change)


@router.post("/models/{version}/pin", response_model=ChangeResponse, responses=VERSION_ERRORS)
async def pin(
    version: str,
    settings: SettingsDep,
    topic: Annotated[Topic, Depends(model_updates_topic)],
    body: PinRequest | None = None,
) -> ChangeResponse:
    body = body or PinRequest()
    with _answering_errors():
        change = await run_in_threadpool(operations.pin, settings, version, body.reason, target=body.target, topic=topic)
    log.info("admin.pinned", version=change.version, previous=change.previous, reason=change.reason)
    return ChangeResponse.of(change)


@router.post("/models/reload", response_model=ReloadResponse, responses=VERSION_ERRORS)
async def reload(
    settings: SettingsDep, models: ModelsDep, topic: Annotated[Topic, Depends(model_updates_topic)]
) -> ReloadResponse:
    """Load what each of this replica's policies should serve: its last model update, else its registry's CURRENT.

    The version already serving is not reloaded but its files are verified again against their checksums.
    409 when a version could not be loaded or a served version's files changed on disk (that policy keeps
    the version it serves, or falls back to the last good one if it served none; the others are reloaded);
    each refusal is published as a `ModelLoadFailed`.
    """
    with _answering_errors():
        snapshot = await run_in_threadpool(_read_updates, settings, topic)
    announced = {r.model_name: r for r in snapshot.records if isinstance(r, ModelPromoted)}  # the last per name
    results: list[Reloaded] = []
    failures: list[str] = []
    for target in models.targets:
        name = models.model_name(target)
        with _answering_errors():
            record, source = await run_in_threadpool(_what_to_serve, settings, target, announced.get(name))
        if record is None:
            results.append(Reloaded(target=target, model_name=name, action="nothing_to_serve", version=None,
                                    previous=None, source=None))
            continue
        outcome = await run_in_threadpool(_reload_one, settings, models.holder(target), record)
        if outcome.action == "failed":
            failures.append(await run_in_threadpool(_refuse, settings, name, record, outcome))
            continue
        log.info("admin.reloaded", model_name=name, version=outcome.version, action=outcome.action, source=source)
        results.append(Reloaded(target=target, model_name=name, action=outcome.action, version=outcome.version,
                                previous=outcome.previous, source=source))
    if failures:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="; ".join(failures))
    return ReloadResponse(models=results)


def _read_updates(settings: Settings, topic: Topic) -> TopicSnapshot:
    """The model-updates topic, retried with backoff: a partition between two leaders answers again shortly."""
    for attempt in retrying(
        (bus.ServiceUnavailable, KafkaException), what=f"reading {topic.name}", give_up_after_s=RELOAD_READ_GIVE_UP_S
    ):
        with attempt:
            return read_snapshot(settings, topic, RELOAD_READ_TIMEOUT_S)  # the last failure is the answer (503)
    raise AssertionError("retrying returns the snapshot or raises the last failure")


def _reload_one(settings: Settings, holder: ModelHolder, record: ModelPromoted) -> Outcome:
    """Serve `record`'s version; when it already serves, verify its files on disk again instead of reloading."""
    current = holder.current
    if current is None or current.version != record.version:
        return serve(settings, holder, record)
    try:
        verify(current.path)
    except ChecksumMismatch as exc:
        # The weights in memory were verified when they loaded; the files behind them no longer match:
        # nothing could reload this version now. It keeps serving until a good one is announced.
        return Outcome("failed", record.version, previous=current.version, error=exc)
    return Outcome("already_serving", record.version, previous=record.version)


def _what_to_serve(
    settings: Settings, target: str, announced: ModelPromoted | None
) -> tuple[ModelPromoted | None, Literal["topic", "registry"] | None]:
    if announced is not None:
        return announced, "topic"
    registry = operations.registry_for(settings, target)
    current = registry.current()
    if current is None:
        return None, None
    path = registry.path(current)
    record = model_update(path, registry.manifest(current), sha256_of(manifest_path(path)))
    return record, "registry"


def _refuse(settings: Settings, model_name: str, record: ModelPromoted, outcome: Outcome) -> str:
    """Publish the refusal as a `ModelLoadFailed` (logged if Kafka does not take it) and describe it."""
    reason = refusal_reason(record, outcome)
    log.error("admin.reload_failed", model_name=model_name, version=record.version, error=str(outcome.error),
              fallback=outcome.fallback)
    producer = bus.make_producer(settings)
    bus.publish(producer, topics.MODEL_LOAD_FAILURES, load_failure(settings, record, outcome, reason))
    try:
        bus.flush_or_raise(producer, commands.PUBLISH_TIMEOUT_S)
    except (bus.ServiceUnavailable, KafkaException) as exc:
        log.error("admin.load_failure_unpublished", model_name=model_name, version=record.version, error=str(exc))
    return f"{model_name}: {reason}"


@router.post("/training", response_model=CommandAccepted, status_code=status.HTTP_202_ACCEPTED)
async def train_now(
    settings: SettingsDep,
    topic: Annotated[Topic, Depends(training_commands_topic)],
    body: TrainingRequest | None = None,
) -> CommandAccepted:
    """Ask the trainer to start a run now, even with no new label (after the running one, if any)."""
    reason = body.reason if body is not None else ""
    with _answering_errors():
        request = await run_in_threadpool(
            commands.request_training, settings, "train", requested_by="api", reason=reason, topic=topic
        )
    return CommandAccepted(command=request.command, event_id=request.event_id, run_id=None)


@router.delete("/training", response_model=CommandAccepted, status_code=status.HTTP_202_ACCEPTED)
async def cancel_training(
    settings: SettingsDep,
    topic: Annotated[Topic, Depends(training_commands_topic)],
    run_id: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this run.")] = None,
    reason: Annotated[str, Query(max_length=MAX_REASON_CHARS)] = "",
) -> CommandAccepted:
    """Ask the trainer to cancel its running run (or only `run_id`); it ends with a `cancelled` progress event."""
    with _answering_errors():
        request = await run_in_threadpool(
            commands.request_training, settings, "cancel", run_id=run_id, requested_by="api", reason=reason, topic=topic
        )
    return CommandAccepted(command=request.command, event_id=request.event_id, run_id=request.run_id)


@router.post("/crawls", response_model=CrawlAccepted, status_code=status.HTTP_202_ACCEPTED)
async def crawl(
    body: CrawlRequest, settings: SettingsDep, topic: Annotated[Topic, Depends(crawl_requests_topic)]
) -> CrawlAccepted:
    """Queue a crawl: one `CrawlRequested(source="api")` per distinct seed URL."""
    crawl_id = uuid.uuid4().hex
    try:
        seeds = seed_requests(
            body.urls,
            crawl_id=crawl_id,
            max_depth=settings.crawl_max_depth if body.max_depth is None else body.max_depth,
            allowed_domains=body.allowed_domains,
            fetch_mode=body.fetch_mode,
            max_pages=body.max_pages,
        )
    except ValueError as exc:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "urls"), "msg": str(exc)}]) from exc
    requests = [seed.model_copy(update={"source": "api"}) for seed in seeds]
    with _answering_errors():
        await run_in_threadpool(_publish_all, settings, topic, requests)
    log.info("admin.crawl_queued", crawl_id=crawl_id, urls=[r.url for r in requests])
    return CrawlAccepted(crawl_id=crawl_id, urls=[r.url for r in requests])


def _publish_all(settings: Settings, topic: Topic, records: list[CrawlRequested]) -> None:
    producer = bus.make_producer(settings)
    for record in records:
        bus.publish(producer, topic, record)
    bus.flush_or_raise(producer, commands.PUBLISH_TIMEOUT_S)
