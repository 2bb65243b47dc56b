"""/v1/admin/training: ask the trainer to start a run now, or to cancel the running one (`streams.commands`).

The commands topic is a dependency, so a test can point it at a topic of its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep
from api.routes.admin_router import MAX_REASON_CHARS, admin_router, answering_errors
from streams import commands, topics
from streams.topics import Topic

router = admin_router("training")


async def training_commands_topic() -> Topic:
    return topics.TRAINING_COMMANDS


class TrainingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field("", max_length=MAX_REASON_CHARS)


class CommandAccepted(BaseModel):
    command: Literal["train", "cancel"]
    event_id: str
    run_id: str | None


@router.post("", response_model=CommandAccepted, status_code=status.HTTP_202_ACCEPTED)
async def train_now(
    settings: SettingsDep,
    topic: Annotated[Topic, Depends(training_commands_topic)],
    body: TrainingRequest | None = None,
) -> CommandAccepted:
    """Ask the trainer to start a run now, even with no new label (after the running one, if any)."""
    reason = body.reason if body is not None else ""
    with answering_errors():
        request = await run_in_threadpool(
            commands.request_training, settings, "train", requested_by="api", reason=reason, topic=topic
        )
    return CommandAccepted(command=request.command, event_id=request.event_id, run_id=None)


@router.delete("", response_model=CommandAccepted, status_code=status.HTTP_202_ACCEPTED)
async def cancel_training(
    settings: SettingsDep,
    topic: Annotated[Topic, Depends(training_commands_topic)],
    run_id: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this run.")] = None,
    reason: Annotated[str, Query(max_length=MAX_REASON_CHARS)] = "",
) -> CommandAccepted:
    """Ask the trainer to cancel its running run (or only `run_id`); it ends with a `cancelled` progress event."""
    with answering_errors():
        request = await run_in_threadpool(
            commands.request_training, settings, "cancel", run_id=run_id, requested_by="api", reason=reason, topic=topic
        )
    return CommandAccepted(command=request.command, event_id=request.event_id, run_id=request.run_id)
