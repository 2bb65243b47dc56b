"""The bodies of the OpenAI-compatible endpoints, as OpenAI spells them: requests, answers, model cards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import check_temperature
from api.serving.generation import Completion
from api.validation import Utf8Text

DEFAULT_MAX_TOKENS = 16  # as OpenAI's completions


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


def finish_reason(result: Completion) -> Literal["stop", "length"]:
    # "cancelled" only happens once nobody reads the answer.
    return "length" if result.finish_reason == "length" else "stop"


def usage(results: Sequence[Completion], n: int) -> Usage:
    """As OpenAI counts: each prompt once, every choice's tokens."""
    prompt = sum(result.prompt_tokens for result in results[::n])
    completion = sum(result.completion_tokens for result in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
