"""POST /generate (and /v1/generate): continue a prompt with the policy of the request's target.

With `"stream": true` or `Accept: text/event-stream` the answer is server-sent events:
`metadata` (model version, target, prompt tokens), then one `token` per text delta,
then `done` (the completion, why it ended, usage); `error` if generation fails midway.
A client that disconnects stops its generation at the next token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.sse import EventSourceResponse

from api.deps import BatcherDep, CheckedGenerateRequest, ModelsDep, TargetModel, policy_for_target
from api.schemas import ErrorResponse, GenerateResponse
from api.serving.batching import (
    Delta,
    Event,
    QueueFull,
    Started,
    WorkerClosed,
    completion_of,
)
from api.serving.generation import Completion, PromptTooLong, SamplingParams
from api.sse import event_stream, sse_event

log = structlog.get_logger()

router = APIRouter(tags=["generate"])

EVENT_STREAM = "text/event-stream"
SSE_EVENT = {  # one server-sent event, as OpenAPI 3.2 describes an event stream's items
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["metadata", "token", "done", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        200: {"content": {EVENT_STREAM: {"itemSchema": SSE_EVENT}}, "description": "JSON, or events when streaming."},
        422: {"description": "Invalid parameters, an unknown target, or a prompt too long for the model's context."},
        429: {
            "model": ErrorResponse,
            "description": "The generation queue is full: retry after `Retry-After` seconds.",
        },
        503: {"model": ErrorResponse, "description": "No policy loaded yet for the target."},
    },
)
async def generate_text(
    request: Request, body: CheckedGenerateRequest, models: ModelsDep, batcher: BatcherDep
) -> GenerateResponse | EventSourceResponse:
    # The target's policy is looked up here, not by a second dependency on the body: FastAPI validates a
    # body once per dependency that needs it, and an invalid one would list each error twice.
    assert body.max_new_tokens is not None and body.target is not None  # filled by checked_generate_request
    policy = policy_for_target(models, body.target)
    params = SamplingParams(
        prompt=body.prompt,
        max_new_tokens=body.max_new_tokens,
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        repetition_penalty=body.repetition_penalty,
        num_beams=body.num_beams,
        seed=body.seed,
    )
    try:
        events = batcher.submit(policy.model_name, policy.served, params).events()
    except QueueFull as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail=str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc
    try:
        started = await anext(events)
    except PromptTooLong as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except WorkerClosed as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    assert isinstance(started, Started)
    if body.stream or EVENT_STREAM in request.headers.get("accept", ""):
        return event_stream(_stream(policy, started, events))
    try:
        result = await completion_of(events)
    finally:
        await events.aclose()
    _log(policy, result)
    return _response(policy, result)


async def _stream(policy: TargetModel, started: Started, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The events of one request; closing this iterator (the client left) cancels its generation."""
    metadata = {
        "model_version": policy.served.version,
        "model_name": policy.model_name,
        "target": policy.target,
        "prompt_tokens": started.prompt_tokens,
    }
    yield sse_event(metadata, event="metadata")
    try:
        async for event in events:
            if isinstance(event, Delta):
                yield sse_event({"text": event.text}, event="token")
            elif isinstance(event, Completion):
                _log(policy, event)
                response = _response(policy, event).model_dump()
                usage = {name: response.pop(name) for name in ("prompt_tokens", "completion_tokens")}
                yield sse_event({**response, "usage": usage}, event="done")
    except Exception as exc:
        log.exception("generate.stream_failed", version=policy.served.version)
        yield sse_event({"detail": f"generation failed: {type(exc).__name__}"}, event="error")
    finally:
        await events.aclose()


def _response(policy: TargetModel, result: Completion) -> GenerateResponse:
    return GenerateResponse(
        text=result.text,
        completion=result.completion,
        model_version=result.version,
        target=policy.target,
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )


def _log(policy: TargetModel, result: Completion) -> None:
    log.info(
        "generate",
        version=result.version,
        target=policy.target,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=result.finish_reason,
    )
