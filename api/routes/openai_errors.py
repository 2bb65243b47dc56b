"""OpenAI's error format: `{"error": {"message", "type", "param", "code"}}`, for every error of a route.

400 for a bad request (OpenAI answers invalid bodies with 400, not 422), 404 for an unknown
model, 429 when the queue is full, 503 while a model has no version loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class OpenAIRoute(APIRoute):
    """Answers invalid bodies and every error raised in the route in OpenAI's shape (400 for a bad request, as OpenAI)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _invalid(exc.errors()).response()
            except OpenAIError as exc:
                return exc.response()
            except HTTPException as exc:  # e.g. a body that is not JSON, or too large
                kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
                return OpenAIError(exc.status_code, str(exc.detail), kind=kind, headers=exc.headers).response()

        return openai_handler


def _invalid(errors: Sequence[dict]) -> OpenAIError:
    first = errors[0]
    fields = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = fields[0] if fields else None
    where = ".".join(fields)
    return OpenAIError(400, f"{where}: {first['msg']}" if where else first["msg"], param=param, code="invalid_value")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS = {
    400: {"model": OpenAIErrorResponse, "description": "Invalid request (OpenAI's error shape)."},
    404: {"model": OpenAIErrorResponse, "description": "Unknown model."},
    429: {
        "model": OpenAIErrorResponse,
        "description": "The generation queue is full: retry after `Retry-After` seconds.",
    },
    503: {"model": OpenAIErrorResponse, "description": "The model has no version loaded yet."},
}
