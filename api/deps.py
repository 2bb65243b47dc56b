"""Typed dependencies of the routes: settings, the served model, checked requests.

All are `async def`: they do not block, and so never wait for a threadpool slot
that queued generations may be holding.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError

from api.schemas import DEFAULT_NEW_TOKENS, GenerateRequest
from api.served_model import ModelHolder, ServedModel
from ctrlgpt.settings import Settings

NO_MODEL = "no model version is loaded yet: the API serves one as soon as a version is promoted"


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.models


SettingsDep = Annotated[Settings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]


async def served_model(holder: HolderDep) -> ServedModel:
    """The version this request uses to the end, taken once, at its start."""
    current = holder.current
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NO_MODEL, headers={"Retry-After": "10"})
    return current


async def checked_generate_request(body: GenerateRequest, settings: SettingsDep) -> GenerateRequest:
    """The body within this deployment's limits (else 422, shaped like any validation error), defaults filled."""
    errors = []
    if len(body.prompt) > settings.max_prompt_chars:
        message = f"prompt is {len(body.prompt)} characters; at most {settings.max_prompt_chars} are accepted"
        errors.append(_error("prompt", "too_long", message))
    if body.max_new_tokens is not None and body.max_new_tokens > settings.max_new_tokens_limit:
        message = f"max_new_tokens must be at most {settings.max_new_tokens_limit}"
        errors.append(_error("max_new_tokens", "less_than_equal", message))
    if errors:
        raise RequestValidationError(errors)
    if body.max_new_tokens is None:
        return body.model_copy(update={"max_new_tokens": min(DEFAULT_NEW_TOKENS, settings.max_new_tokens_limit)})
    return body


def _error(field: str, kind: str, message: str) -> dict:
    return {"type": kind, "loc": ("body", field), "msg": message}


CurrentModel = Annotated[ServedModel, Depends(served_model)]
CheckedGenerateRequest = Annotated[GenerateRequest, Depends(checked_generate_request)]
