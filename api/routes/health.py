"""GET /health and GET /v1/models/current: what this replica serves."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import HolderDep, ModelsDep, SettingsDep
from api.schemas import (
    CurrentModelResponse,
    ErrorResponse,
    FallbackInfo,
    HealthResponse,
    PendingUpdateInfo,
)

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(holder: HolderDep, models: ModelsDep) -> HealthResponse:
    served = {target: getattr(models.holder(target).current, "version", None) for target in models.targets}
    fallbacks = {}
    for target in models.targets:
        # One read of each: a swap between them must not pair a version with another's fallback.
        current, fallback = models.holder(target).current, models.holder(target).fallback
        if current is not None and fallback is not None:
            fallbacks[target] = FallbackInfo(
                version=current.version, refused_version=fallback.refused_version, reason=fallback.reason
            )
    pending = {
        target: PendingUpdateInfo(**dataclasses.asdict(waiting))
        for target in models.targets
        if (waiting := models.holder(target).pending) is not None
    }
    current = holder.current
    if current is None:
        return HealthResponse(
            status="waiting_for_model", model_version=None, targets=served, fallbacks=fallbacks, pending_updates=pending
        )
    state = "fallback" if holder.fallback is not None else "ok"
    return HealthResponse(
        status=state, model_version=current.version, targets=served, fallbacks=fallbacks, pending_updates=pending
    )


@router.get(
    "/v1/models/current",
    response_model=CurrentModelResponse,
    responses={
        422: {"model": ErrorResponse, "description": "Not a target of this replica."},
        503: {"model": ErrorResponse, "description": "No model version loaded yet for this target."},
    },
)
async def current_model(
    models: ModelsDep,
    settings: SettingsDep,
    target: Annotated[str | None, Query(description="Whose policy; default: target_sentiment.")] = None,
) -> CurrentModelResponse:
    chosen = target or settings.target_sentiment
    if chosen not in models.targets:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown target {chosen!r}; this replica serves {models.targets}"
        )
    served = models.holder(chosen).current
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no version of the {chosen} policy is loaded yet")
    manifest = served.manifest
    return CurrentModelResponse(
        model_name=manifest.name,
        version=served.version,
        parent_version=manifest.parent_version,
        base_model=manifest.base_model,
        target_sentiment=manifest.target_sentiment,
        created_at=manifest.created_at,
        loaded_at=served.loaded_at,
        metrics=manifest.metrics,
    )
