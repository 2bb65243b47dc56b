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
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from transformers.utils import logging as transformers_logging

from api.middleware import AccessLog, BodySizeLimit
from api.model_updates import STAGE, ModelUpdates, replica_id
from api.routes import generate, health
from api.served_model import ModelHolder
from ctrlgpt.settings import Settings
from streams import bus, topics

log = structlog.get_logger()


def max_body_bytes(settings: Settings) -> int:
    # A JSON string may spell one character as a 12-byte surrogate-pair escape;
    # the other fields need far less than the margin.
    return 12 * settings.max_prompt_chars + 4096


def create_app(settings: Settings, *, holder: ModelHolder | None = None, follow_updates: bool = True) -> FastAPI:
    """The app; with `follow_updates` it consumes model updates from Kafka while it runs."""
    models = holder if holder is not None else ModelHolder()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        updates = ModelUpdates(settings, models) if follow_updates else None
        if updates is not None:
            updates.start()
        try:
            yield
        finally:
            if updates is not None:
                await run_in_threadpool(updates.stop)

    app = FastAPI(title="ctrlgpt", summary="Controllable text generation, hot-swapped on promotion.", lifespan=lifespan)
    app.state.settings = settings
    app.state.models = models
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes(settings))
    app.add_middleware(AccessLog)
    app.add_exception_handler(Exception, internal_error)
    app.include_router(generate.router)
    app.include_router(generate.router, prefix="/v1")
    app.include_router(health.router)
    return app


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything not answered as a 4xx is a bug of ours: log it whole, answer without internals."""
    log.error("http.internal_error", method=request.method, path=request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def main(settings: Settings, args: argparse.Namespace) -> int:
    _structured_uvicorn_logs()
    transformers_logging.disable_progress_bar()  # progress bars would break the JSON log lines
    try:
        bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.dead_letter_topic(STAGE)])
    except bus.ServiceUnavailable as exc:
        log.warning("api.kafka_unavailable", error=str(exc), hint="serving; model updates follow once Kafka is up")
    log.info("api.starting", url=settings.api_url, replica=replica_id(settings), model_name=settings.policy_name)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None, access_log=False)
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
