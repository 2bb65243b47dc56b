"""POST /v1/feedback: a person's thumbs up/down on a generation, or their pick of two, as a label event."""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep
from api.labels import LabelPublisher, label_event
from api.schemas import ErrorResponse
from api.validation import Utf8Text
from streams.bus import ServiceUnavailable
from streams.records import PreferenceLabel, RatingLabel

log = structlog.get_logger()

router = APIRouter(tags=["feedback"])

CLIENT_ID_PATTERN = r"^[A-Za-z0-9._@:-]{1,64}$"
FEEDBACK_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_TEXT_CHARS = 20_000


class _Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: Utf8Text = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    target: Utf8Text | None = Field(
        None, description="The sentiment the text was asked for; one of the served targets."
    )
    model_version: Utf8Text | None = Field(
        None, min_length=1, max_length=128, description="The version that wrote the text."
    )
    feedback_id: str | None = Field(
        None,
        pattern=FEEDBACK_ID_PATTERN,
        description="Client-chosen id: sending the same feedback again with it records it once (label id api:<feedback_id>).",
    )


class RatingFeedback(_Feedback):
    kind: Literal["rating"]
    completion: Utf8Text = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    rating: Literal["up", "down"]

    def label(self) -> RatingLabel:
        return RatingLabel(prompt=self.prompt, completion=self.completion, rating=self.rating, target=self.target)


class PreferenceFeedback(_Feedback):
    kind: Literal["preference"]
    chosen: Utf8Text = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    rejected: Utf8Text = Field(min_length=1, max_length=MAX_TEXT_CHARS)

    @model_validator(mode="after")
    def _two_different_texts(self) -> PreferenceFeedback:
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are the same text: there is no preference to record")
        return self

    def label(self) -> PreferenceLabel:
        return PreferenceLabel(prompt=self.prompt, chosen=self.chosen, rejected=self.rejected, target=self.target)


Feedback = Annotated[RatingFeedback | PreferenceFeedback, Field(discriminator="kind")]


class FeedbackAccepted(BaseModel):
    label_id: str = Field(description="Id of the label event on Kafka: api:<feedback_id>, or a fresh one.")
    status: Literal["accepted"] = "accepted"


async def label_publisher(request: Request) -> LabelPublisher:
    """One publisher per app, made on the first feedback (the event loop runs one dependency at a time)."""
    state = request.app.state
    if getattr(state, "label_publisher", None) is None:
        state.label_publisher = LabelPublisher(state.settings)
    return state.label_publisher


@router.post(
    "/v1/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FeedbackAccepted,
    responses={
        503: {"model": ErrorResponse, "description": "Kafka did not take the feedback: retry (same feedback_id)."}
    },
)
async def record_feedback(
    body: Feedback,
    settings: SettingsDep,
    publisher: Annotated[LabelPublisher, Depends(label_publisher)],
    client_id: Annotated[
        str | None, Header(alias="X-Client-Id", pattern=CLIENT_ID_PATTERN, description="Who gives the feedback.")
    ] = None,
) -> FeedbackAccepted:
    if body.target is not None and body.target not in settings.target_list:
        allowed = ", ".join(settings.target_list)
        raise RequestValidationError(
            [{"type": "enum", "loc": ("body", "target"), "msg": f"target must be one of: {allowed}"}]
        )
    event = label_event(
        body.label(), feedback_id=body.feedback_id, client_id=client_id, model_version=body.model_version
    )
    try:
        await run_in_threadpool(publisher.publish, event)
    except ServiceUnavailable as exc:
        log.warning("feedback.kafka_unavailable", label_id=event.label_id, error=str(exc))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"feedback not recorded, retry: {exc}",
            headers={"Retry-After": "5"},
        ) from exc
    log.info("feedback.recorded", label_id=event.label_id, kind=body.kind, annotator=event.annotator)
    return FeedbackAccepted(label_id=event.label_id)
