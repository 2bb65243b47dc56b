"""The FastAPI app: generation with the promoted model, hot-swapped on model updates.

ctrlgpt api      # serve on settings.api_host:settings.api_port
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from transformers.utils import logging as transformers_logging

from api.middleware import AccessLog, BodySizeLimit
from api.ops.metrics import build_registry
from api.ops.monitor import OpsMonitor
from api.routes import (
    admin_crawls,
    admin_models,
    admin_training,
    classify,
    completions,
    dashboard,
    feedback,
    generate,
    health,
    metrics,
    search,
    try_page,
)
from api.security import read_admin_key
from api.server import BodyReadTimeout, server_config
from api.serving.batching import Batcher
from api.serving.generation_metrics import GenerationMetrics
from api.serving.model_updates import STAGE, ModelUpdates, replica_id
from api.serving.served_model import ModelHolder, ModelHolders
from api.validation import request_validation_error
from ctrlgpt.settings import Settings
from models import devices
from streams import bus, topics

log = structlog.get_logger()


def max_body_bytes(settings: Settings) -> int:
    # A JSON string may spell one character as a 12-byte surrogate-pair escape;
    # the other fields need far less than the margin.
    return 12 * settings.max_prompt_chars + 4096


def create_app(
    settings: Settings,
    *,
    holder: ModelHolder | None = None,
    follow_updates: bool = True,
    monitor_kafka: bool | None = None,
) -> FastAPI:
    """The app; with `follow_updates` it consumes model updates from Kafka while it runs.

    `monitor_kafka` (default: as `follow_updates`) samples offsets and follows training
    and model events in the background for /metrics and the dashboard.
    """
    # `holder`, when given, serves the default target (tests, a single-target replica).
    models = ModelHolders.for_settings(settings, {settings.target_sentiment: holder} if holder is not None else None)
    monitor = OpsMonitor(settings) if (follow_updates if monitor_kafka is None else monitor_kafka) else None
    registry, latency = build_registry(monitor, models)
    batcher = Batcher(settings, GenerationMetrics(registry))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        updates = ModelUpdates(settings, models) if follow_updates else None
        if updates is not None:
            updates.start()
        if monitor is not None:
            monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                await run_in_threadpool(monitor.stop)
            if updates is not None:
                await run_in_threadpool(updates.stop)
            await run_in_threadpool(batcher.close)

    app = FastAPI(title="ctrlgpt", summary="Controllable text generation, hot-swapped on promotion.", lifespan=lifespan)
    app.state.settings = settings
    app.state.models = models
    app.state.batcher = batcher
    app.state.ops_monitor = monitor
    app.state.admin_key = read_admin_key(settings)
    app.state.metrics_registry = registry
    app.add_middleware(BodyReadTimeout, timeout_s=settings.api_body_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes(settings))
    app.add_middleware(AccessLog, latency=latency)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.include_router(generate.router)
    app.include_router(generate.router, prefix="/v1")
    app.include_router(completions.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    app.include_router(classify.router)
    app.include_router(search.router)
    app.include_router(feedback.router)
    app.include_router(try_page.router)
    app.include_router(admin_models.router)
    app.include_router(admin_training.router)
    app.include_router(admin_crawls.router)
    return app


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything not answered as a 4xx is a bug of ours: log it whole, answer without internals."""
    log.error("http.internal_error", method=request.method, path=request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def main(settings: Settings, args: argparse.Namespace) -> int:
    device = devices.of(settings)  # device=cuda without a GPU stops the API here, before it serves
    _structured_uvicorn_logs()
    transformers_logging.disable_progress_bar()  # progress bars would break the JSON log lines
    try:
        bus.ensure_topics(
            settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES, topics.LABELS, topics.dead_letter_topic(STAGE)]
        )
    except bus.ServiceUnavailable as exc:
        log.warning("api.kafka_unavailable", error=str(exc), hint="serving; model updates follow once Kafka is up")
    log.info(
        "api.starting",
        url=settings.api_url,
        replica=replica_id(settings),
        model_names=[settings.policy_for(target) for target in settings.target_list],
        device=str(device),
    )
    uvicorn.Server(server_config(settings, create_app(settings))).run()
    return 0


def _structured_uvicorn_logs() -> None:
    """uvicorn logs through the standard library: render its records as the same JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers = [handler]
    uvicorn_logger.propagate = False
