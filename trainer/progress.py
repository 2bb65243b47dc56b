"""Progress of a training run: `TrainingRunProgressed` events, and the same lines in the log."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from transformers import (
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from streams.records import RunStage, TrainingRunProgressed
from trainer import rl

__all__ = ["ProgressCallback", "ProgressReporter", "RunCancelled"]

log = structlog.get_logger()


class RunCancelled(RuntimeError):
    """The service is stopping: the run ends between two training steps."""


class ProgressReporter:
    """Announces a run's stages and steps through `publish` (Kafka in the pipeline) and the log."""

    def __init__(self, run_id: str, publish: Callable[[TrainingRunProgressed], None] | None = None) -> None:
        self.run_id = run_id
        self._publish = publish

    def report(
        self,
        stage: RunStage,
        *,
        step: int = 0,
        total_steps: int = 0,
        loss: float | None = None,
        reward: float | None = None,
        kl: float | None = None,
        message: str = "",
    ) -> TrainingRunProgressed:
        event = TrainingRunProgressed(
            run_id=self.run_id,
            stage=stage,
            step=step,
            total_steps=total_steps,
            loss=loss,
            reward=reward,
            kl=kl,
            message=message[:2000],
        )
        log.info(
            "train.progress",
            **event.model_dump(include={"run_id", "stage", "step", "total_steps", "loss", "reward", "kl"}),
            message=message,
        )
        if self._publish is not None:
            self._publish(event)
        return event


class ProgressCallback(TrainerCallback):
    """Reports every log of a Hugging Face trainer; stops the run between steps when `stop` is set."""

    def __init__(self, reporter: ProgressReporter, stage: RunStage, stop: threading.Event | None = None) -> None:
        self.reporter = reporter
        self.stage = stage
        self.stop = stop

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: object,
    ) -> None:
        # Each trainer's names for them (PPO's, RLOO's, GRPO's, SFT's) mapped to the same fields.
        figures = rl.figures(logs or {})
        if not figures:
            return  # the closing summary (train_runtime, ...) carries no step figures
        self.reporter.report(self.stage, step=state.global_step, total_steps=state.max_steps, **figures)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        # PPOTrainer ignores control.should_training_stop, so an exception is the one way out of every trainer.
        if self.stop is not None and self.stop.is_set():
            raise RunCancelled(f"stopped during {self.stage} at step {state.global_step}")
