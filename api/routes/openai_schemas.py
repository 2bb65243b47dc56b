"""The bodies of the OpenAI-compatible endpoints, as OpenAI spells them: requests, answers, model cards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

from api.schemas import check_temperature
from api.serving.generation import Completion
from api.validation import Utf8Text

DEFAULT_MAX_TOKENS = 16  # as OpenAI's completions


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class SamplingFields(BaseModel):
    """What completions and chat share; unknown fields are refused, as OpenAI does.

    OpenAI's penalties and `logit_bias` are accepted at their neutral values (0, empty), which
    clients send by default; any other value is refused (`unsupported`), never silently ignored.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A target's policy: one of GET /v1/models.")
    max_tokens: int | None = Field(None, ge=1, description=f"Tokens to generate; default {DEFAULT_MAX_TOKENS}.")
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Chat's newer name for `max_tokens`; give one of them (or both, equal)."
    )
    temperature: FiniteFloat | None = Field(None, ge=0, le=2, description="0: greedy; default 1.")
    top_p: FiniteFloat | None = Field(None, gt=0, le=1)
    frequency_penalty: FiniteFloat | None = Field(None, ge=-2, le=2, description="Only 0 (no penalty) is supported.")
    presence_penalty: FiniteFloat | None = Field(None, ge=-2, le=2, description="Only 0 (no penalty) is supported.")
    logit_bias: dict[str, FiniteFloat] | None = Field(None, description="Only an empty map (no bias) is supported.")
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

    def unsupported(self) -> tuple[str, str] | None:
        """The first parameter given a value this API cannot honour, and why; None when all can be."""
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if value:
                return name, (
                    f"{name}: only 0 (no penalty) is supported, got {value}; "
                    "leave it out or use POST /v1/generate's repetition_penalty"
                )
        if self.logit_bias:
            return "logit_bias", "logit_bias: biasing tokens is not supported; leave it out or send an empty map"
        if self.max_tokens and self.max_completion_tokens and self.max_tokens != self.max_completion_tokens:
            return "max_completion_tokens", (
                f"max_completion_tokens ({self.max_completion_tokens}) and max_tokens ({self.max_tokens}) disagree; "
                "give one of them"
            )
        return None

    @property
    def tokens_asked(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class CompletionRequest(SamplingFields):
    prompt: Utf8Text | list[Utf8Text] = Field(description="A prompt, or a list of prompts (each gets n choices).")
    echo: bool | None = Field(False, description="Begin each choice's text with its prompt.")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: Utf8Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["developer", "system", "user", "assistant"] = Field(
        description="`developer` is OpenAI's newer name for `system`, and is shown to the model as one."
    )
    content: Utf8Text | list[TextPart] = Field(description="Text, or a list of text parts.")

    @model_validator(mode="before")
    @classmethod
    def _text_parts_only(cls, message: Any) -> Any:
        # Said here, once: a union's own errors would first complain that the list is not a string.
        parts = message.get("content") if isinstance(message, dict) else None
        for part in parts if isinstance(parts, list) else []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise ValueError(f"content: only text parts are supported, not {kind!r}: these models read text alone")
        return message

    def for_template(self) -> dict[str, str]:
        """As a chat template expects a message: `developer` shown as `system`, the content one text."""
        if isinstance(self.content, str):
            text = self.content
        else:
            # As vLLM renders text parts for a template that takes a string: one per line.
            text = "\n".join(part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


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
