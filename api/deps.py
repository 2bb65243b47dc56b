"""Typed dependencies of the routes: settings, the served models, the batcher, checked requests.

All are `async def`: they do not block, and so never wait for a threadpool slot
that queued work may be holding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError

from api.schemas import DEFAULT_NEW_TOKENS, GenerateRequest
from api.serving.batching import Batcher
from api.serving.served_model import ModelHolder, ModelHolders, ServedModel
from ctrlgpt.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_models(request: Request) -> ModelHolders:
    return request.app.state.models


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelHolders, Depends(get_models)]


async def get_holder(models: ModelsDep, settings: SettingsDep) -> ModelHolder:
    """The holder of the default target's policy (`target_sentiment`)."""
    return models.holder(settings.target_sentiment)


async def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]


async def checked_generate_request(body: GenerateRequest, settings: SettingsDep) -> GenerateRequest:
    """The body within this deployment's limits (else 422, shaped like any validation error), defaults filled."""
    errors = []
    if len(body.prompt) > settings.max_prompt_chars:
        message = f"prompt is {len(body.prompt)} characters; at most {settings.max_prompt_chars} are accepted"
        errors.append(_error("prompt", "too_long", message))
    if body.max_new_tokens is not None and body.max_new_tokens > settings.max_new_tokens_limit:
        message = f"max_new_tokens must be at most {settings.max_new_tokens_limit}"
        errors.append(_error("max_new_tokens", "less_than_equal", message))
    if body.target is not None and body.target not in settings.target_list:
        message = f"target {body.target!r} is not served here; the targets are: {', '.join(settings.target_list)}"
        errors.append(_error("target", "enum", message))
    if errors:
        raise RequestValidationError(errors)
    return body.model_copy(
        update={
            "max_new_tokens": body.max_new_tokens or min(DEFAULT_NEW_TOKENS, settings.max_new_tokens_limit),
            "target": body.target or settings.target_sentiment,
        }
    )


def _error(field: str, kind: str, message: str) -> dict:
    return {"type": kind, "loc": ("body", field), "msg": message}


CheckedGenerateRequest = Annotated[GenerateRequest, Depends(checked_generate_request)]


@dataclass(frozen=True)
class TargetModel:
    """The policy a request's target picked: its model name and the version it uses to the end."""

    target: str
    model_name: str
    served: ServedModel


def policy_for_target(models: ModelHolders, target: str) -> TargetModel:
    """The target's loaded policy; 503 (retry later) while none is."""
    model_name = models.model_name(target)
    current = models.holder(target).current
    if current is None:
        detail = (
            f"no policy for target {target!r} is loaded yet: the API serves one as soon as a version of "
            f"{model_name} is promoted"
        )
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail, headers={"Retry-After": "10"})
    return TargetModel(target, model_name, current)
