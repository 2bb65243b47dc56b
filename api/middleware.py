"""ASGI middleware: a cap on request bodies and one structured log line per request."""

from __future__ import annotations

import time

import structlog
from prometheus_client import Histogram
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413, by Content-Length up front or while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app's body read: FastAPI re-raises an HTTPException as is.
                    raise HTTPException(413, detail=self._detail)
            return message

        await self.app(scope, counting_receive, send)

    @property
    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"detail": self._detail}, status_code=413)(scope, receive, send)


class AccessLog:
    """Log method, path, status and duration of every HTTP request; observe the duration in `latency`.

    The histogram is labelled by route template (`/v1/generate`), never by raw path.
    """

    def __init__(self, app: ASGIApp, latency: Histogram | None = None) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - started
            log.info(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 1),
            )
            if self.latency is not None:
                # Unmatched paths share one label: a scanner must not create a series per URL.
                template = getattr(scope.get("route"), "path", None) or "unmatched"
                self.latency.labels(scope["method"], template, str(status)).observe(seconds)
