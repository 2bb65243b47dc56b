"""Request and response bodies of the API.

Limits that depend on settings (prompt length, max_new_tokens) are checked by
`api.deps.checked_generate_request`, which answers 422 in the same shape as these models do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

from api.validation import Utf8Text

DEFAULT_NEW_TOKENS = 64
# Dividing logits by a smaller temperature overflows float32: 0 itself means greedy.
MIN_TEMPERATURE = 0.01


class GenerateRequest(BaseModel):
    # strict: "12" is not a number and true is not 1; unknown fields are refused, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: Utf8Text = Field(min_length=1, description="Text to continue; at most `max_prompt_chars` characters.")
    target: str | None = Field(
        None, description="Sentiment to steer toward, one of the `targets` setting; default `target_sentiment`."
    )
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description=f"Tokens to generate; at most `max_new_tokens_limit`; default {DEFAULT_NEW_TOKENS} or the limit.",
    )
    temperature: FiniteFloat = Field(
        1.0, ge=0, le=5, description="Sampling temperature; 0: greedy (always the likeliest token)."
    )
    top_k: int = Field(50, ge=0, le=100_000, description="Sample from the k most likely tokens; 0: no limit.")
    top_p: FiniteFloat = Field(
        1.0, gt=0, le=1, description="Nucleus sampling: the smallest set of tokens with this mass."
    )
    repetition_penalty: FiniteFloat = Field(
        1.0,
        ge=0.1,
        le=10,
        description="Divides the score of tokens already in the text (multiplies a negative one); 1: none.",
    )
    num_beams: int = Field(
        1, ge=1, le=8, description="Beam search over this many beams (deterministic, no sampling, no streaming)."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Same seed, same version, same request: same text.")
    stream: bool = Field(False, description="Answer with server-sent events: metadata, token deltas, then usage.")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt must contain text, not only whitespace")
        return prompt

    @field_validator("temperature")
    @classmethod
    def _zero_or_not_tiny(cls, temperature: float) -> float:
        return check_temperature(temperature)

    @model_validator(mode="after")
    def _beams_do_not_sample(self) -> GenerateRequest:
        if self.num_beams == 1:
            return self
        sampling = [name for name in ("top_k", "top_p", "seed") if name in self.model_fields_set]
        if self.temperature != 0 and "temperature" in self.model_fields_set:
            sampling.insert(0, "temperature")
        if sampling:
            raise ValueError(
                f"num_beams > 1 runs beam search, which is deterministic and does not sample: leave out "
                f"{', '.join(sampling)} (or set temperature to 0)"
            )
        if self.stream:
            raise ValueError("num_beams > 1 cannot stream: beam search knows its text only at the end")
        return self


def check_temperature(temperature: float) -> float:
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}")
    return temperature


class GenerateResponse(BaseModel):
    text: str = Field(
        description="The prompt as the version was shown it (its manifest's prompt template) and the completion, "
        "decoded together by the tokenizer."
    )
    completion: str
    model_version: str
    target: str = Field(description="The sentiment the policy that wrote the completion steers toward.")
    finish_reason: Literal["stop", "length", "cancelled"] = Field(
        description="stop: end of text or a stop string; length: max_new_tokens reached."
    )
    prompt_tokens: int
    completion_tokens: int


class FallbackInfo(BaseModel):
    version: str = Field(description="The last good version serving in place of the refused one.")
    refused_version: str = Field(description="The version this target should serve, refused.")
    reason: str = Field(description="Why it was refused.")


class PendingUpdateInfo(BaseModel):
    version: str = Field(description="The announced version that waits for the model store.")
    reason: str = Field(description="The last error from the model store (unavailable: retried, not refused).")
    since: datetime = Field(description="When the store was first found unavailable for this version.")
    attempts: int = Field(description="Attempts to fetch it so far.")
    next_attempt_at: datetime = Field(description="When it is tried again.")


class HealthResponse(BaseModel):
    status: str = Field(
        description="'ok' when the default target's policy is served, 'fallback' when an older version serves it in "
        "place of a refused one, 'waiting_for_model' before any is."
    )
    model_version: str | None = Field(description="The version serving the default target (`target_sentiment`).")
    targets: dict[str, str | None] = Field(
        description="Every target of this replica and the version serving it (None: not yet)."
    )
    fallbacks: dict[str, FallbackInfo] = Field(
        default_factory=dict, description="The targets served by a fallback version, with the refused version and why."
    )
    pending_updates: dict[str, PendingUpdateInfo] = Field(
        default_factory=dict,
        description="The targets whose announced version waits for the model store, unavailable (the current "
        "version keeps serving; the update is retried with back-off).",
    )


class CurrentModelResponse(BaseModel):
    model_name: str
    version: str
    parent_version: str | None
    base_model: str
    target_sentiment: str
    created_at: datetime
    loaded_at: datetime
    metrics: dict[str, float]


class ErrorResponse(BaseModel):
    detail: str
