"""Request and response bodies of the API.

Limits that depend on settings (prompt length, max_new_tokens) are checked by
`api.deps.checked_generate_request`, which answers 422 in the same shape as these models do.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_NEW_TOKENS = 64


class GenerateRequest(BaseModel):
    # strict: "12" is not a number and true is not 1; unknown fields are refused, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1, description="Text to continue; at most `max_prompt_chars` characters.")
    max_new_tokens: int | None = Field(
        None, ge=1, description=f"Tokens to generate; at most `max_new_tokens_limit`; default {DEFAULT_NEW_TOKENS} or the limit."
    )
    temperature: float = Field(1.0, gt=0, le=5, description="Sampling temperature.")
    top_k: int = Field(50, ge=0, le=100_000, description="Sample from the k most likely tokens; 0: no limit.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: the smallest set of tokens with this mass.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Same seed, same version, same request: same text.")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt must contain text, not only whitespace")
        return prompt


class GenerateResponse(BaseModel):
    text: str = Field(description="The prompt followed by the completion.")
    completion: str
    model_version: str
    prompt_tokens: int
    completion_tokens: int


class HealthResponse(BaseModel):
    status: str = Field(description="'ok' when a model version is served, 'waiting_for_model' before.")
    model_version: str | None


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
