"""GET /health and GET /v1/models/current: what this replica serves."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentModel, HolderDep
from api.schemas import CurrentModelResponse, ErrorResponse, HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(holder: HolderDep) -> HealthResponse:
    current = holder.current
    if current is None:
        return HealthResponse(status="waiting_for_model", model_version=None)
    return HealthResponse(status="ok", model_version=current.version)


@router.get(
    "/v1/models/current",
    response_model=CurrentModelResponse,
    responses={503: {"model": ErrorResponse, "description": "No model version loaded yet."}},
)
async def current_model(served: CurrentModel) -> CurrentModelResponse:
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
