"""OpenAI-compatible endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models.

An OpenAI client pointed at this API (`base_url=".../v1"`) works unchanged. A model is
a target's policy, named as on the model-updates topic (`settings.policy_for(target)`,
e.g. `expansion-policy-positive`); the served version is the response's
`system_fingerprint`. The bodies are in `openai_schemas`, the error shape in
`openai_errors`, the streamed chunks in `openai_streaming`. Chat needs a tokenizer
with a chat template; the bootstrapped tokenizer has none, so chat then answers 400
saying so.

With `n` > 1 and a `seed`, choice j samples with seed + j: each choice is reproducible.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from fastapi import APIRouter
from fastapi.sse import EventSourceResponse

from api.deps import BatcherDep, ModelsDep, SettingsDep
from api.routes.openai_errors import ERRORS, OpenAIError, OpenAIRoute
from api.routes.openai_schemas import (
    ChatChoice,
    ChatChoiceMessage,
    ChatRequest,
    ChatResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    SamplingFields,
    finish_reason,
    usage,
)
from api.routes.openai_streaming import Call, chat_chunks, close_all, completion_chunks
from api.serving.batching import (
    Batcher,
    Event,
    QueueFull,
    Started,
    WorkerClosed,
    completion_of,
)
from api.serving.generation import Completion, PromptTooLong, SamplingParams
from api.serving.served_model import ModelHolders, ServedModel
from api.sse import event_stream
from ctrlgpt.settings import Settings

log = structlog.get_logger()

STREAMED = {
    # Each event is a JSON chunk, the last one the literal [DONE], as OpenAI streams.
    "content": {
        "text/event-stream": {
            "itemSchema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
        }
    },
    "description": "JSON, or with `stream` OpenAI's chunks as server-sent events, then `data: [DONE]`.",
}

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


@router.get("/models", response_model=ModelList)
async def list_models(models: ModelsDep) -> ModelList:
    """The policies this replica serves now (a target without a loaded version is left out)."""
    cards = []
    for target in models.targets:
        current = models.holder(target).current
        if current is not None:
            created = int(current.loaded_at.timestamp())
            cards.append(
                ModelCard(id=models.model_name(target), created=created, version=current.version, target=target)
            )
    return ModelList(data=cards)


@router.post("/completions", response_model=CompletionResponse, responses={**ERRORS, 200: STREAMED})
async def completions(
    body: CompletionRequest, models: ModelsDep, settings: SettingsDep, batcher: BatcherDep
) -> CompletionResponse | EventSourceResponse:
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts:
        raise OpenAIError(400, "prompt: give at least one prompt", param="prompt", code="invalid_value")
    for prompt in prompts:
        _check_prompt(prompt, settings, param="prompt")
    _refuse_unsupported(body)
    served, model_name = _model(models, body.model)
    requests = _sampling(body, prompts, settings)
    tickets = await _submit(batcher, model_name, served, requests, user=body.user)
    call = Call(body.model, served.version)
    if body.stream:
        prefixes = [params.prompt if body.echo else "" for params in requests]
        chunks = completion_chunks(call, tickets, prefixes, n=body.n or 1, include_usage=_include_usage(body))
        return event_stream(chunks)
    results = await _results(tickets)
    choices = [
        CompletionChoice(
            text=(params.prompt if body.echo else "") + result.completion,
            index=index,
            finish_reason=finish_reason(result),
        )
        for index, (params, result) in enumerate(zip(requests, results))
    ]
    return CompletionResponse(
        id=call.id,
        created=call.created,
        model=call.model,
        system_fingerprint=call.version,
        choices=choices,
        usage=usage(results, body.n or 1),
    )


@router.post("/chat/completions", response_model=ChatResponse, responses={**ERRORS, 200: STREAMED})
async def chat_completions(
    body: ChatRequest, models: ModelsDep, settings: SettingsDep, batcher: BatcherDep
) -> ChatResponse | EventSourceResponse:
    _refuse_unsupported(body)
    served, model_name = _model(models, body.model)
    template = served.tokenizer.chat_template
    if not template:
        raise OpenAIError(
            400,
            f"model {body.model!r} (version {served.version}) has no chat template: its tokenizer was not trained "
            "for chat. Use POST /v1/completions with a prompt instead.",
            param="model",
            code="chat_template_missing",
        )
    messages = [message.for_template() for message in body.messages]
    # Rendering runs on the event loop: it is a template, not the tokenizer's (thread-bound) encoding.
    prompt = served.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    _check_prompt(prompt, settings, param="messages")
    requests = _sampling(body, [prompt], settings)
    tickets = await _submit(batcher, model_name, served, requests, user=body.user)
    call = Call(body.model, served.version, kind="chat.completion")
    if body.stream:
        chunks = chat_chunks(call, tickets, n=body.n or 1, include_usage=_include_usage(body))
        return event_stream(chunks)
    results = await _results(tickets)
    choices = [
        ChatChoice(
            index=index, message=ChatChoiceMessage(content=result.completion), finish_reason=finish_reason(result)
        )
        for index, result in enumerate(results)
    ]
    return ChatResponse(
        id=call.id,
        created=call.created,
        model=call.model,
        system_fingerprint=call.version,
        choices=choices,
        usage=usage(results, body.n or 1),
    )


def _model(models: ModelHolders, name: str) -> tuple[ServedModel, str]:
    targets = {models.model_name(target): target for target in models.targets}
    if name not in targets:
        raise OpenAIError(
            404,
            f"The model {name!r} does not exist; the models are: {', '.join(targets)}",
            param="model",
            code="model_not_found",
        )
    current = models.holder(targets[name]).current
    if current is None:
        raise OpenAIError(
            503,
            f"The model {name!r} has no version loaded yet; retry once a version is promoted",
            kind="server_error",
            param="model",
            code="model_not_loaded",
        )
    return current, name


def _refuse_unsupported(body: SamplingFields) -> None:
    refused = body.unsupported()
    if refused is not None:
        param, message = refused
        raise OpenAIError(400, message, param=param, code="unsupported_value")


def _check_prompt(prompt: str, settings: Settings, *, param: str) -> None:
    if not prompt.strip():
        message = f"{param}: a prompt must contain text, not only whitespace"
        raise OpenAIError(400, message, param=param, code="invalid_value")
    if len(prompt) > settings.max_prompt_chars:
        raise OpenAIError(
            400,
            f"{param}: a prompt is {len(prompt)} characters; at most {settings.max_prompt_chars} are accepted",
            param=param,
            code="invalid_value",
        )


def _sampling(body: SamplingFields, prompts: list[str], settings: Settings) -> list[SamplingParams]:
    """One `SamplingParams` per choice: prompt by prompt, n choices each."""
    max_tokens = body.tokens_asked
    if max_tokens > settings.max_new_tokens_limit:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise OpenAIError(
            400,
            f"{param}: at most {settings.max_new_tokens_limit} tokens may be asked for",
            param=param,
            code="invalid_value",
        )
    n = body.n or 1
    if len(prompts) * n > settings.completions_max_choices:
        raise OpenAIError(
            400,
            f"n: {len(prompts)} prompt(s) times n={n} asks for more than {settings.completions_max_choices} choices",
            param="n",
            code="invalid_value",
        )
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    return [
        SamplingParams(
            prompt=prompt,
            max_new_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_k=0,  # OpenAI has no top-k
            top_p=body.top_p or 1.0,
            seed=None if body.seed is None else (body.seed + choice) % 2**32,
            stop=tuple(stops),
        )
        for prompt in prompts
        for choice in range(n)
    ]


async def _submit(
    batcher: Batcher, model_name: str, served: ServedModel, requests: list[SamplingParams], *, user: str | None
) -> list[AsyncIterator[Event]]:
    """Queue every choice at once (so they can share batches), then wait until each has started."""
    log.info("completions", model_name=model_name, version=served.version, choices=len(requests), user=user)
    try:
        tickets = batcher.submit_all(model_name, served, requests)
    except QueueFull as exc:
        # OpenAI's shape for too many requests: clients' retry logic knows it.
        raise OpenAIError(
            429,
            str(exc),
            kind="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from exc
    streams = [ticket.events() for ticket in tickets]
    try:
        for events in streams:
            started = await anext(events)
            assert isinstance(started, Started)
    except PromptTooLong as exc:
        await close_all(streams)
        raise OpenAIError(400, str(exc), param="prompt", code="context_length_exceeded") from exc
    except WorkerClosed as exc:
        await close_all(streams)
        raise OpenAIError(503, str(exc), kind="server_error") from exc
    return streams


async def _results(streams: list[AsyncIterator[Event]]) -> list[Completion]:
    try:
        return list(await asyncio.gather(*(completion_of(events) for events in streams)))
    finally:
        await close_all(streams)


def _include_usage(body: SamplingFields) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage
