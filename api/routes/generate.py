"""POST /generate: continue a prompt with the served model version."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, HTTPException, status
from starlette.concurrency import run_in_threadpool

from api.deps import CheckedGenerateRequest, CurrentModel
from api.generation import PromptTooLong, SamplingParams, generate
from api.schemas import ErrorResponse, GenerateResponse

log = structlog.get_logger()

router = APIRouter(tags=["generate"])


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={503: {"model": ErrorResponse, "description": "No model version loaded yet."}},
)
async def generate_text(body: CheckedGenerateRequest, served: CurrentModel) -> GenerateResponse:
    params = SamplingParams(
        prompt=body.prompt,
        max_new_tokens=body.max_new_tokens,
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        seed=body.seed,
    )
    try:
        result = await run_in_threadpool(generate, served, params)
    except PromptTooLong as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    log.info("generate", version=result.version, prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
    return GenerateResponse(
        text=result.text,
        completion=result.completion,
        model_version=result.version,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
