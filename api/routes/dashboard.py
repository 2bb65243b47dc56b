"""The operator dashboard (GET /dashboard) and the JSON it polls (GET /v1/ops/...).

The page is static HTML, CSS and plain JavaScript from `api/static/` (no CDN, no
build step); the JSON reads only what the API's `OpsMonitor` already holds, so a
dashboard never waits for Kafka.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse

from api.deps import ModelsDep
from api.ops.monitor import PRODUCED_BY, OpsMonitor

router = APIRouter(tags=["operations"])

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


async def get_monitor(request: Request) -> OpsMonitor:
    monitor = request.app.state.ops_monitor
    if monitor is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="this API instance does not monitor Kafka")
    return monitor


MonitorDep = Annotated[OpsMonitor, Depends(get_monitor)]


@router.get("/dashboard", response_class=FileResponse, include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@router.get("/dashboard/{asset}", response_class=FileResponse, include_in_schema=False)
async def dashboard_asset(asset: str) -> FileResponse:
    if asset not in ASSETS:  # a fixed list: no path from the URL reaches the file system
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dashboard asset {asset!r}")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset])


@router.get("/v1/ops/lag-history")
async def lag_history(monitor: MonitorDep) -> dict:
    """Each group's status now (Burrow-style, per partition) and its total lag at every sample kept."""
    points = monitor.lag_history()
    return {
        "interval_s": monitor.interval_s,
        "now": time.time(),
        "groups": [group.as_dict() for group in monitor.lag()],
        "points": points,
    }


@router.get("/v1/ops/summary")
async def summary(monitor: MonitorDep, models: ModelsDep) -> dict:
    """Throughput and dead letters over time, model versions with their metrics, training runs with their curves."""
    runs, by_stage = monitor.training_runs()
    served = [holder.current for holder in models.by_model_name().values()]
    return {
        "interval_s": monitor.interval_s,
        "now": time.time(),
        "produced_by": PRODUCED_BY,
        "throughput": monitor.throughput_history(),
        "models": monitor.model_versions(),
        "served": [{"model_name": s.manifest.name, "version": s.version} for s in served if s is not None],
        "runs": runs,
        "runs_by_stage": by_stage,
        "undecodable_events": monitor.undecodable_events,
    }
