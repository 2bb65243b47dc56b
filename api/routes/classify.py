"""POST /v1/classify: the sentiment of texts, scored by the reward model of a target's served version."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from api.deps import ModelsDep, SettingsDep, policy_for_target
from api.schemas import ErrorResponse
from api.validation import Utf8Text
from ctrlgpt.settings import Settings

log = structlog.get_logger()

router = APIRouter(tags=["classify"])


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: Utf8Text | None = Field(None, min_length=1, description="One text; or give `texts`.")
    texts: list[Utf8Text] | None = Field(
        None, min_length=1, description="Several texts, at most `classify_max_texts`; or give `text`."
    )
    target: str | None = Field(
        None,
        description="Whose version's reward model scores: one of the `targets` setting; default `target_sentiment`.",
    )

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> ClassifyRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either `text` or `texts`, not both and not neither")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class TextSentiment(BaseModel):
    label: str = Field(description="The version's target sentiment, or its opposite.")
    score: float = Field(description="Raw reward-model score: higher has more of the target sentiment.")
    probability: float = Field(description="Of the target sentiment: logistic of the score minus the threshold.")


class ClassifyResponse(BaseModel):
    model_version: str
    target: str = Field(description="The sentiment the reward model scores.")
    threshold: float = Field(description="Scores above it are labelled with the target sentiment.")
    results: list[TextSentiment] = Field(description="One per text, in the order given.")


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    responses={503: {"model": ErrorResponse, "description": "No version loaded, or the version has no reward model."}},
)
async def classify(body: ClassifyRequest, models: ModelsDep, settings: SettingsDep) -> ClassifyResponse:
    texts = body.all_texts()
    target = body.target if body.target is not None else settings.target_sentiment
    _check_limits(texts, target, settings)
    served = policy_for_target(models, target).served
    scorer = served.scorer
    if scorer is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"model version {served.version} has no reward model: nothing to classify with",
        )
    sentiments = await run_in_threadpool(scorer.classify, texts)
    log.info("classify", version=served.version, texts=len(texts))
    return ClassifyResponse(
        model_version=served.version,
        target=scorer.target,
        threshold=scorer.threshold,
        results=[TextSentiment(label=one.label, score=one.score, probability=one.probability) for one in sentiments],
    )


def _check_limits(texts: list[str], target: str, settings: Settings) -> None:
    """This deployment's targets and limits (422, shaped like any validation error)."""
    max_texts, max_chars = settings.classify_max_texts, settings.max_prompt_chars
    errors = []
    if target not in settings.target_list:
        message = f"target must be one of: {', '.join(settings.target_list)}"
        errors.append({"type": "enum", "loc": ("body", "target"), "msg": message})
    if len(texts) > max_texts:
        errors.append({"type": "too_long", "loc": ("body", "texts"), "msg": f"at most {max_texts} texts per request"})
    for index, text in enumerate(texts):
        if not text.strip():
            errors.append({"type": "value_error", "loc": ("body", "texts", index), "msg": "a text must not be blank"})
        elif len(text) > max_chars:
            message = f"text is {len(text)} characters; at most {max_chars} are accepted"
            errors.append({"type": "too_long", "loc": ("body", "texts", index), "msg": message})
    if errors:
        raise RequestValidationError(errors)
