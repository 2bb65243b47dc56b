"""/v1/admin/models: each target's versions, pinning, rolling back, reloading what this replica serves.

Each target's policy has its own registry and versions: the endpoints take a `target` (default:
`target_sentiment`). They call the same functions as `ctrlgpt models` (`models.operations`); the
model-updates topic is a dependency, so a test can point it at a topic of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import structlog
from confluent_kafka import KafkaException
from fastapi import Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import ModelsDep, SettingsDep
from api.routes.admin_router import MAX_REASON_CHARS, admin_router, answering_errors
from api.schemas import ErrorResponse
from api.serving.model_updates import Outcome, load_failure, refusal_reason, serve
from api.serving.served_model import ModelHolder
from ctrlgpt.retry import retrying
from ctrlgpt.settings import Settings
from models import operations
from models.announcements import model_update, signing_key
from models.layout import manifest_path
from models.manifest import ChecksumMismatch, Manifest, sha256_of, verify
from models.registry import Change
from models.store import store_for
from streams import bus, commands, topics
from streams.records import ModelPromoted
from streams.snapshot import TopicSnapshot, read_snapshot
from streams.topics import Topic

log = structlog.get_logger()

RELOAD_READ_TIMEOUT_S = 30.0
RELOAD_READ_GIVE_UP_S = 10.0  # beyond it the reload answers 503: an operator retries, not a held request


async def model_updates_topic() -> Topic:
    return topics.MODEL_UPDATES


VERSION_ERRORS = {
    404: {"model": ErrorResponse, "description": "No such version."},
    409: {
        "model": ErrorResponse,
        "description": "The version's status does not allow it, or its files fail their checksums.",
    },
}

router = admin_router("models")


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
                    "version",
                    "name",
                    "status",
                    "status_reason",
                    "parent_version",
                    "created_at",
                    "base_model",
                    "target_sentiment",
                    "metrics",
                    "label_offsets",
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
            action=change.action,
            version=change.version,
            previous=change.previous,
            reason=change.reason,
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


@router.get("", response_model=VersionList)
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

    with answering_errors():
        return await run_in_threadpool(listing)


@router.post("/rollback", response_model=ChangeResponse, responses=VERSION_ERRORS)
async def rollback(
    body: RollbackRequest, settings: SettingsDep, topic: Annotated[Topic, Depends(model_updates_topic)]
) -> ChangeResponse:
    with answering_errors():
        change = await run_in_threadpool(
            operations.rollback, settings, body.version, body.reason, target=body.target, topic=topic
        )
    log.info("admin.rolled_back", version=change.version, previous=change.previous, reason=change.reason)
    return ChangeResponse.of(change)


@router.post("/{version}/pin", response_model=ChangeResponse, responses=VERSION_ERRORS)
async def pin(
    version: str,
    settings: SettingsDep,
    topic: Annotated[Topic, Depends(model_updates_topic)],
    body: PinRequest | None = None,
) -> ChangeResponse:
    body = body or PinRequest()
    with answering_errors():
        change = await run_in_threadpool(
            operations.pin, settings, version, body.reason, target=body.target, topic=topic
        )
    log.info("admin.pinned", version=change.version, previous=change.previous, reason=change.reason)
    return ChangeResponse.of(change)


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        **VERSION_ERRORS,
        503: {"model": ErrorResponse, "description": "The model store is unavailable: retry after `Retry-After`."},
    },
)
async def reload(
    settings: SettingsDep, models: ModelsDep, topic: Annotated[Topic, Depends(model_updates_topic)]
) -> ReloadResponse:
    """Load what each of this replica's policies should serve: its last model update, else its registry's CURRENT.

    The version already serving is not reloaded but its files are verified again against their checksums.
    409 when a version could not be loaded or a served version's files changed on disk (that policy keeps
    the version it serves, or falls back to the last good one if it served none; the others are reloaded);
    each refusal is published as a `ModelLoadFailed`. 503 when the model store is unavailable for a
    version to load (no refusal: that policy keeps its version; the follower retries an announced one).
    """
    with answering_errors():
        snapshot = await run_in_threadpool(_read_updates, settings, topic)
    announced = {r.model_name: r for r in snapshot.records if isinstance(r, ModelPromoted)}  # the last per name
    results: list[Reloaded] = []
    failures: list[str] = []
    unavailable: list[str] = []
    for target in models.targets:
        name = models.model_name(target)
        with answering_errors():
            record, source = await run_in_threadpool(_what_to_serve, settings, target, announced.get(name))
        if record is None:
            results.append(
                Reloaded(
                    target=target, model_name=name, action="nothing_to_serve", version=None, previous=None, source=None
                )
            )
            continue
        outcome = await run_in_threadpool(_reload_one, settings, models.holder(target), record)
        if outcome.action == "failed":
            failures.append(await run_in_threadpool(_refuse, settings, name, record, outcome))
            continue
        if outcome.action == "store_unavailable":
            log.warning(
                "admin.reload_store_unavailable", model_name=name, version=record.version, error=str(outcome.error)
            )
            unavailable.append(f"{name} {record.version}: {outcome.error}")
            continue
        log.info("admin.reloaded", model_name=name, version=outcome.version, action=outcome.action, source=source)
        results.append(
            Reloaded(
                target=target,
                model_name=name,
                action=outcome.action,
                version=outcome.version,
                previous=outcome.previous,
                source=source,
            )
        )
    if failures:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="; ".join(failures + unavailable))
    if unavailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="; ".join(unavailable), headers={"Retry-After": "10"}
        )
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
    manifest = registry.manifest(current)
    uri = store_for(settings).uri(manifest.name, current)
    record = model_update(uri, manifest, sha256_of(manifest_path(path)), key=signing_key(settings))
    return record, "registry"


def _refuse(settings: Settings, model_name: str, record: ModelPromoted, outcome: Outcome) -> str:
    """Publish the refusal as a `ModelLoadFailed` (logged if Kafka does not take it) and describe it."""
    reason = refusal_reason(record, outcome)
    log.error(
        "admin.reload_failed",
        model_name=model_name,
        version=record.version,
        error=str(outcome.error),
        fallback=outcome.fallback,
    )
    producer = bus.make_producer(settings)
    bus.publish(producer, topics.MODEL_LOAD_FAILURES, load_failure(settings, record, outcome, reason))
    try:
        bus.flush_or_raise(producer, commands.PUBLISH_TIMEOUT_S)
    except (bus.ServiceUnavailable, KafkaException) as exc:
        log.error("admin.load_failure_unpublished", model_name=model_name, version=record.version, error=str(exc))
    return f"{model_name}: {reason}"
