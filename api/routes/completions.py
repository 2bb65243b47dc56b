"""OpenAI-compatible endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models.

An OpenAI client pointed at this API (`base_url=".../v1"`) works unchanged. A model is
a target's policy, named as on the model-updates topic (`settings.policy_for(target)`,
e.g. `expansion-policy-positive`); the served version is the response's
`system_fingerprint`. Errors have OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`: 400 for a bad request, 404 for an unknown model, 503 while a
model has no version loaded. Chat needs a tokenizer with a chat template; the
bootstrapped tokenizer has none, so chat then answers 400 saying so.

With `n` > 1 and a `seed`, choice j samples with seed + j: each choice is reproducible.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from api.batching import Batcher, Delta, Event, QueueFull, Started, WorkerClosed
from api.deps import BatcherDep, ModelsDep, SettingsDep
from api.generation import Completion, PromptTooLong, SamplingParams
from api.schemas import check_temperature
from api.served_model import ModelHolders, ServedModel
from api.validation import Utf8Text
from ctrlgpt.settings import Settings

log = structlog.get_logger()

DEFAULT_MAX_TOKENS = 16  # as OpenAI's completions
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
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
    429: {"model": OpenAIErrorResponse, "description": "The generation queue is full: retry after `Retry-After` seconds."},
    503: {"model": OpenAIErrorResponse, "description": "The model has no version loaded yet."},
}

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


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class SamplingFields(BaseModel):
    """What completions and chat share; unknown fields are refused, as OpenAI does."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A target's policy: one of GET /v1/models.")
    max_tokens: int | None = Field(None, ge=1, description=f"Tokens to generate; default {DEFAULT_MAX_TOKENS}.")
    temperature: float | None = Field(None, ge=0, le=2, description="0: greedy; default 1.")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, description="Choices per prompt; with a seed, choice j uses seed + j.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings; the text ends before the first one.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    user: str | None = Field(None, max_length=256, description="The end user, for logs; changes nothing else.")

    @field_validator("temperature")
    @classmethod
    def _zero_or_not_tiny(cls, temperature: float | None) -> float | None:
        return temperature if temperature is None else check_temperature(temperature)

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4 or not all(stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stop


class CompletionRequest(SamplingFields):
    prompt: Utf8Text | list[Utf8Text] = Field(description="A prompt, or a list of prompts (each gets n choices).")
    echo: bool | None = Field(False, description="Begin each choice's text with its prompt.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: Utf8Text


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str = Field(description="The model version that wrote the choices.")
    choices: list[CompletionChoice]
    usage: Usage


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ctrlgpt"
    version: str = Field(description="The version this replica serves.")
    target: str = Field(description="The sentiment this policy steers toward.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models", response_model=ModelList)
async def list_models(models: ModelsDep) -> ModelList:
    """The policies this replica serves now (a target without a loaded version is left out)."""
    cards = []
    for target in models.targets:
        current = models.holder(target).current
        if current is not None:
            created = int(current.loaded_at.timestamp())
            cards.append(ModelCard(id=models.model_name(target), created=created, version=current.version, target=target))
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
    served, model_name = _model(models, body.model)
    requests = _sampling(body, prompts, settings)
    tickets = await _submit(batcher, model_name, served, requests, user=body.user)
    call = _Call(body.model, served.version)
    if body.stream:
        prefixes = [params.prompt if body.echo else "" for params in requests]
        chunks = _completion_chunks(call, tickets, prefixes, n=body.n or 1, include_usage=_include_usage(body))
        return EventSourceResponse(chunks, headers=STREAM_HEADERS)
    results = await _results(tickets)
    choices = [
        CompletionChoice(text=(params.prompt if body.echo else "") + result.completion, index=index,
                         finish_reason=_finish(result))
        for index, (params, result) in enumerate(zip(requests, results))
    ]
    return CompletionResponse(
        id=call.id, created=call.created, model=call.model, system_fingerprint=call.version, choices=choices,
        usage=_usage(results, body.n or 1),
    )


@router.post("/chat/completions", response_model=ChatResponse, responses={**ERRORS, 200: STREAMED})
async def chat_completions(
    body: ChatRequest, models: ModelsDep, settings: SettingsDep, batcher: BatcherDep
) -> ChatResponse | EventSourceResponse:
    served, model_name = _model(models, body.model)
    template = served.tokenizer.chat_template
    if not template:
        raise OpenAIError(
            400,
            f"model {body.model!r} (version {served.version}) has no chat template: its tokenizer was not trained "
            "for chat. Use POST /v1/completions with a prompt instead.",
            param="model", code="chat_template_missing",
        )
    messages = [message.model_dump() for message in body.messages]
    # Rendering runs on the event loop: it is a template, not the tokenizer's (thread-bound) encoding.
    prompt = served.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    _check_prompt(prompt, settings, param="messages")
    requests = _sampling(body, [prompt], settings)
    tickets = await _submit(batcher, model_name, served, requests, user=body.user)
    call = _Call(body.model, served.version, kind="chat.completion")
    if body.stream:
        chunks = _chat_chunks(call, tickets, n=body.n or 1, include_usage=_include_usage(body))
        return EventSourceResponse(chunks, headers=STREAM_HEADERS)
    results = await _results(tickets)
    choices = [
        ChatChoice(index=index, message=ChatChoiceMessage(content=result.completion), finish_reason=_finish(result))
        for index, result in enumerate(results)
    ]
    return ChatResponse(
        id=call.id, created=call.created, model=call.model, system_fingerprint=call.version, choices=choices,
        usage=_usage(results, body.n or 1),
    )


class _Call:
    """What every chunk or answer of one request repeats."""

    def __init__(self, model: str, version: str, kind: str = "text_completion") -> None:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.version = version
        self.kind = kind

    def chunk(self, choices: list[dict], **extra: Any) -> bytes:
        body = {
            "id": self.id, "object": self.kind if self.kind == "text_completion" else "chat.completion.chunk",
            "created": self.created, "model": self.model, "system_fingerprint": self.version, "choices": choices, **extra,
        }
        return format_sse_event(data_str=json.dumps(body))


def _model(models: ModelHolders, name: str) -> tuple[ServedModel, str]:
    targets = {models.model_name(target): target for target in models.targets}
    if name not in targets:
        raise OpenAIError(
            404, f"The model {name!r} does not exist; the models are: {', '.join(targets)}", param="model",
            code="model_not_found",
        )
    current = models.holder(targets[name]).current
    if current is None:
        raise OpenAIError(
            503, f"The model {name!r} has no version loaded yet; retry once a version is promoted", kind="server_error",
            param="model", code="model_not_loaded",
        )
    return current, name


def _check_prompt(prompt: str, settings: Settings, *, param: str) -> None:
    if not prompt.strip():
        message = f"{param}: a prompt must contain text, not only whitespace"
        raise OpenAIError(400, message, param=param, code="invalid_value")
    if len(prompt) > settings.max_prompt_chars:
        raise OpenAIError(
            400, f"{param}: a prompt is {len(prompt)} characters; at most {settings.max_prompt_chars} are accepted",
            param=param, code="invalid_value",
        )


def _sampling(body: SamplingFields, prompts: list[str], settings: Settings) -> list[SamplingParams]:
    """One `SamplingParams` per choice: prompt by prompt, n choices each."""
    max_tokens = body.max_tokens or DEFAULT_MAX_TOKENS
    if max_tokens > settings.max_new_tokens_limit:
        raise OpenAIError(
            400, f"max_tokens: at most {settings.max_new_tokens_limit} tokens may be asked for", param="max_tokens",
            code="invalid_value",
        )
    n = body.n or 1
    if len(prompts) * n > settings.completions_max_choices:
        raise OpenAIError(
            400, f"n: {len(prompts)} prompt(s) times n={n} asks for more than {settings.completions_max_choices} choices",
            param="n", code="invalid_value",
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
            429, str(exc), kind="rate_limit_error", code="rate_limit_exceeded",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from exc
    streams = [ticket.events() for ticket in tickets]
    try:
        for events in streams:
            started = await anext(events)
            assert isinstance(started, Started)
    except PromptTooLong as exc:
        await _close(streams)
        raise OpenAIError(400, str(exc), param="prompt", code="context_length_exceeded") from exc
    except WorkerClosed as exc:
        await _close(streams)
        raise OpenAIError(503, str(exc), kind="server_error") from exc
    return streams


async def _results(streams: list[AsyncIterator[Event]]) -> list[Completion]:
    try:
        return list(await asyncio.gather(*(_completion(events) for events in streams)))
    finally:
        await _close(streams)


async def _completion(events: AsyncIterator[Event]) -> Completion:
    async for event in events:
        if isinstance(event, Completion):
            return event
    raise AssertionError("a request's events end with its completion")


async def _close(streams: list[AsyncIterator[Event]]) -> None:
    for events in streams:
        await events.aclose()


async def _merged(streams: list[AsyncIterator[Event]]) -> AsyncIterator[tuple[int, Event]]:
    """The events of every choice as they come, tagged with the choice's index."""
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                await queue.put((index, event))
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which ends the stream with it
            await queue.put((index, exc))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(index, events)) for index, events in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _close(streams)


async def _completion_chunks(
    call: _Call, streams: list[AsyncIterator[Event]], prefixes: list[str], *, n: int, include_usage: bool
) -> AsyncIterator[bytes]:
    for index, prefix in enumerate(prefixes):
        if prefix:
            yield call.chunk([{"text": prefix, "index": index, "logprobs": None, "finish_reason": None}])
    results: dict[int, Completion] = {}
    async for index, event in _merged(streams):
        if isinstance(event, Delta):
            yield call.chunk([{"text": event.text, "index": index, "logprobs": None, "finish_reason": None}])
        elif isinstance(event, Completion):
            results[index] = event
            yield call.chunk([{"text": "", "index": index, "logprobs": None, "finish_reason": _finish(event)}])
    if include_usage:
        yield call.chunk([], usage=_usage([results[index] for index in sorted(results)], n).model_dump())
    yield DONE


async def _chat_chunks(
    call: _Call, streams: list[AsyncIterator[Event]], *, n: int, include_usage: bool
) -> AsyncIterator[bytes]:
    for index in range(len(streams)):
        role = {"role": "assistant", "content": ""}
        yield call.chunk([{"index": index, "delta": role, "logprobs": None, "finish_reason": None}])
    results: dict[int, Completion] = {}
    async for index, event in _merged(streams):
        if isinstance(event, Delta):
            yield call.chunk([{"index": index, "delta": {"content": event.text}, "logprobs": None, "finish_reason": None}])
        elif isinstance(event, Completion):
            results[index] = event
            yield call.chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": _finish(event)}])
    if include_usage:
        yield call.chunk([], usage=_usage([results[index] for index in sorted(results)], n).model_dump())
    yield DONE


def _include_usage(body: SamplingFields) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def _finish(result: Completion) -> Literal["stop", "length"]:
    # "cancelled" only happens once nobody reads the answer.
    return "length" if result.finish_reason == "length" else "stop"


def _usage(results: Sequence[Completion], n: int) -> Usage:
    """As OpenAI counts: each prompt once, every choice's tokens."""
    prompt = sum(result.prompt_tokens for result in results[::n])
    completion = sum(result.completion_tokens for result in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
